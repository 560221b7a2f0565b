//! Every corpus program on ≥ 100 packets (valid, truncated, malformed, random) on every engine
//! of `Engine::ALL`, compared with the interpreter after each packet: `r0` or the trap, the
//! output packet, tail calls taken, and every map's contents.

use ebpf_vm::{Context, Engine, Object, Packet, ProgramKind};

use crate::corpus::object;
use crate::packets::{arp, ipv4, tcp, udp};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Between 0 and `max - 1` random bytes.
    fn some_bytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize;
        self.bytes(n)
    }
}

/// 150 frames: valid TCP (random flags and options), UDP and ICMP between a few hosts (so
/// flows repeat), the virtual address of the load balancer, ARP and IPv6, each sometimes cut
/// short; malformed IPv4 headers; random bytes.
fn packets() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let hosts = [
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        [10, 0, 0, 66],
        [10, 0, 0, 100],
    ];
    let mut out = Vec::new();
    for i in 0..150 {
        let src = hosts[rng.below(3) as usize];
        let dst = hosts[rng.below(4) as usize];
        let mut frame = match i % 10 {
            0..=3 => {
                let options: Vec<u8> = match rng.below(4) {
                    0 => vec![],
                    1 => vec![2, 4, 5, 0xb4, 1, 1, 4, 2],
                    2 => vec![1, 3, 3, 7],
                    _ => {
                        let words = rng.below(5) as usize;
                        rng.bytes(4 * words)
                    }
                };
                let flags = [0x02, 0x10, 0x12, 0x04, 0x18][rng.below(5) as usize];
                ipv4(
                    src,
                    dst,
                    6,
                    &tcp(1000 + rng.below(3) as u16, 80, flags, &options),
                )
            }
            4 | 5 => {
                let dport = [53, 9, 123][rng.below(3) as usize];
                let payload = rng.some_bytes(40);
                ipv4(src, dst, 17, &udp(5000, dport, &payload))
            }
            6 => ipv4(src, dst, 1, &[8, 0, 0, 0, 0, 1, 0, 1]),
            7 => {
                if rng.below(2) == 0 {
                    arp()
                } else {
                    let mut v6 = rng.bytes(54);
                    v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
                    v6
                }
            }
            8 => {
                let mut f = ipv4(src, dst, 6, &tcp(1, 2, 0x02, &[]));
                f[14] = [0x44, 0x4f, 0x65, 0x46][rng.below(4) as usize]; // bad ihl/version
                f
            }
            _ => rng.some_bytes(80),
        };
        if i % 3 == 2 {
            let cut = rng.below(frame.len() as u64 + 1) as usize;
            frame.truncate(cut);
        }
        out.push(frame);
    }
    out
}

/// A map's name and its entries (key, value) — or its records, as keys with empty values.
type MapDump = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// Every map's contents: sorted entries, or the ring buffer's records.
fn dump(object: &Object) -> Vec<MapDump> {
    object
        .maps()
        .iter()
        .map(|m| {
            let mut entries = match m.ring_records() {
                Ok(records) => records.into_iter().map(|r| (r, Vec::new())).collect(),
                Err(_) => m.entries(),
            };
            if m.ring_records().is_err() {
                entries.sort();
            }
            (m.name().to_string(), entries)
        })
        .collect()
}

/// What one packet did.
type Step = (
    Result<(u64, u32), String>,
    Vec<u8>,
    Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>,
);

fn run_all(engine: Engine, name: &str, program: &str, seed: &dyn Fn(&Object)) -> Vec<Step> {
    let object = object(name, engine);
    seed(&object);
    let vm = object.program(program).unwrap();
    let context = Context::default_for(vm.program_kind().unwrap());
    let mut packet = Packet::new(&[]).unwrap();
    packets()
        .iter()
        .map(|frame| {
            packet.set(frame).unwrap();
            let out = vm
                .run_packet(&mut packet, &context)
                .map(|o| (o.r0, o.tail_calls))
                .map_err(|t| t.to_string());
            (out, packet.bytes().to_vec(), dump(&object))
        })
        .collect()
}

fn compare(name: &str, program: &str, seed: &dyn Fn(&Object)) {
    let reference = run_all(Engine::Interpreter, name, program, seed);
    assert!(reference.len() >= 100);
    let verdicts: std::collections::BTreeSet<_> =
        reference.iter().map(|s| format!("{:?}", s.0)).collect();
    // The packets exercise the program: its verdict varies, or its maps change.
    let maps_change = reference.first().map(|s| &s.2) != reference.last().map(|s| &s.2);
    assert!(
        verdicts.len() >= 2 || maps_change,
        "{program}: {verdicts:?}"
    );
    for &engine in Engine::ALL {
        let got = run_all(engine, name, program, seed);
        for (i, (want, got)) in reference.iter().zip(&got).enumerate() {
            assert_eq!(
                want, got,
                "{program}, packet {i}, {engine} against the interpreter"
            );
        }
    }
}

fn none(_: &Object) {}

#[test]
fn every_corpus_program_agrees_on_every_engine() {
    let seed_firewall = |o: &Object| {
        let blocked = o.map("blocked").unwrap();
        let any = ebpf_vm::maps::UpdateFlags::Any;
        blocked
            .update(&[10, 0, 0, 66], &0u64.to_le_bytes(), any)
            .unwrap();
    };
    let seed_lb = |o: &Object| {
        for i in 0..4u32 {
            let b = [10, 1, 0, i as u8, 2, 0, 0, 0, 0, i as u8, 0, 0];
            let any = ebpf_vm::maps::UpdateFlags::Any;
            o.map("backends")
                .unwrap()
                .update(&i.to_le_bytes(), &b, any)
                .unwrap();
        }
    };
    compare("xdp_firewall", "xdp_firewall", &seed_firewall);
    compare("xdp_counter", "xdp_counter", &none);
    compare("xdp_conntrack", "xdp_conntrack", &none);
    compare("xdp_lb", "xdp_lb", &seed_lb);
    for program in ["xdp_dispatch", "handle_tcp", "handle_udp", "handle_icmp"] {
        compare("xdp_tailcall", program, &none);
    }
    compare("socket_logger", "socket_logger", &none);
    compare("xdp_tcp_options", "xdp_tcp_options", &none);
    let _ = ProgramKind::Xdp;
}
