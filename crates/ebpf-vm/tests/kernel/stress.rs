//! Concurrent runs of one program on shared maps: 4 threads, totals exact, on every engine.

use std::sync::Arc;

use ebpf_vm::maps::UpdateFlags;
use ebpf_vm::{Context, Engine, Packet, ProgramKind, XdpAction};

use crate::corpus::object;
use crate::packets::{ipv4, tcp, udp};

const THREADS: usize = 4;
const RUNS: usize = 2_000;

#[test]
fn threads_sharing_maps_count_exactly() {
    for &engine in Engine::ALL {
        // Atomic adds on a hash value and an array value, from 4 threads.
        let fw = Arc::new(object("xdp_firewall", engine));
        let blocked = [10, 0, 0, 66];
        fw.map("blocked")
            .unwrap()
            .update(&blocked, &0u64.to_le_bytes(), UpdateFlags::Any)
            .unwrap();
        // Plain `+=` on per-CPU values: exact because a run owns its CPU (2 CPUs, 4 threads).
        let counter = Arc::new(object("xdp_counter", engine));
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (fw, counter) = (Arc::clone(&fw), Arc::clone(&counter));
                s.spawn(move || {
                    let ctx = Context::default_for(ProgramKind::Xdp);
                    let drop = ipv4(blocked, [10, 0, 0, 1], 6, &tcp(t as u16, 80, 2, &[]));
                    let pass = ipv4([10, 0, 0, 9], [10, 0, 0, 1], 17, &udp(1, 2, &[]));
                    let mut packet = Packet::new(&drop).unwrap();
                    for i in 0..RUNS {
                        let frame = if i % 2 == 0 { &drop } else { &pass };
                        packet.set(frame).unwrap();
                        let vm = fw.program("xdp_firewall").unwrap();
                        let out = vm.run_packet(&mut packet, &ctx).unwrap();
                        let want = if i % 2 == 0 {
                            XdpAction::Drop
                        } else {
                            XdpAction::Pass
                        };
                        assert_eq!(out.xdp_action(), Some(want));
                        let vm = counter.program("xdp_counter").unwrap();
                        vm.run_packet(&mut packet, &ctx).unwrap();
                    }
                });
            }
        });
        let total = (THREADS * RUNS) as u64;
        let lookup = |o: &ebpf_vm::Object, map: &str, key: &[u8]| {
            o.map(map).unwrap().lookup(key).unwrap().unwrap()
        };
        let u64s = |v: Vec<u8>| -> Vec<u64> {
            v.chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        assert_eq!(
            u64s(lookup(&fw, "blocked", &blocked)),
            [total / 2],
            "{engine}"
        );
        assert_eq!(
            u64s(lookup(&fw, "verdicts", &1u32.to_le_bytes())),
            [total / 2]
        );
        assert_eq!(
            u64s(lookup(&fw, "verdicts", &2u32.to_le_bytes())),
            [total / 2]
        );
        // Per-CPU slots TCP (0) and UDP (1): packets summed over both CPUs.
        for (slot, frame_len) in [(0u32, 54u64), (1, 42)] {
            let v = u64s(lookup(&counter, "stats", &slot.to_le_bytes()));
            let packets: u64 = v.iter().step_by(2).sum();
            let bytes: u64 = v.iter().skip(1).step_by(2).sum();
            assert_eq!(packets, total / 2, "{engine}, slot {slot}");
            assert_eq!(bytes, total / 2 * frame_len, "{engine}, slot {slot}");
        }
    }
}
