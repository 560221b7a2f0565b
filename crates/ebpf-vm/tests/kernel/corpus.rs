//! The corpus programs, each on every engine, with the outcomes their C source implies.

use ebpf_vm::{Context, Engine, KernelHelpers, Object, Packet, Vm, XdpAction};

use crate::packets::{arp, ipv4, ones_sum, tcp, udp};

pub(crate) fn object(name: &str, engine: Engine) -> Object {
    object_with_budget(name, engine, 1_000_000)
}

/// `tests/bpf/{name}.o` loaded for `engine` with the kernel helpers and `budget`.
pub(crate) fn object_with_budget(name: &str, engine: Engine, budget: u64) -> Object {
    let path = format!("{}/../../tests/bpf/{name}.o", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Vm::builder()
        .engine(engine)
        .budget(budget)
        .kernel_helpers(KernelHelpers::new().cpus(2))
        .load_object(&bytes)
        .unwrap_or_else(|e| panic!("{name} on {engine}: {e}"))
}

pub(crate) fn xdp(object: &Object, program: &str, frame: &[u8]) -> (XdpAction, Vec<u8>) {
    let mut packet = Packet::new(frame).unwrap();
    let vm = object.program(program).unwrap();
    let out = vm
        .run_packet(
            &mut packet,
            &Context::default_for(ebpf_vm::ProgramKind::Xdp),
        )
        .unwrap_or_else(|t| panic!("{program} on {}: {t}", vm.engine()));
    (out.xdp_action().unwrap(), packet.bytes().to_vec())
}

fn u64_at(object: &Object, map: &str, key: u32) -> u64 {
    let v = object
        .map(map)
        .unwrap()
        .lookup(&key.to_le_bytes())
        .unwrap()
        .unwrap();
    u64::from_le_bytes(v[..8].try_into().unwrap())
}

#[test]
fn firewall_drops_blocked_sources_and_counts_verdicts() {
    for &engine in Engine::ALL {
        let fw = object("xdp_firewall", engine);
        let blocked = [10, 0, 0, 66];
        fw.map("blocked")
            .unwrap()
            .update(
                &blocked,
                &0u64.to_le_bytes(),
                ebpf_vm::maps::UpdateFlags::NoExist,
            )
            .unwrap();
        let from_blocked = ipv4(blocked, [10, 0, 0, 1], 6, &tcp(1, 80, 2, &[]));
        let from_other = ipv4([10, 0, 0, 7], [10, 0, 0, 1], 6, &tcp(1, 80, 2, &[]));
        assert_eq!(
            xdp(&fw, "xdp_firewall", &from_blocked).0,
            XdpAction::Drop,
            "{engine}"
        );
        assert_eq!(
            xdp(&fw, "xdp_firewall", &from_blocked).0,
            XdpAction::Drop,
            "{engine}"
        );
        assert_eq!(
            xdp(&fw, "xdp_firewall", &from_other).0,
            XdpAction::Pass,
            "{engine}"
        );
        assert_eq!(
            xdp(&fw, "xdp_firewall", &arp()).0,
            XdpAction::Pass,
            "{engine}"
        );
        assert_eq!(
            xdp(&fw, "xdp_firewall", &[0u8; 10]).0,
            XdpAction::Drop,
            "short: {engine}"
        );
        let drops = fw
            .map("blocked")
            .unwrap()
            .lookup(&blocked)
            .unwrap()
            .unwrap();
        assert_eq!(drops, 2u64.to_le_bytes(), "{engine}");
        // XDP_DROP (1): two blocked, one short frame; XDP_PASS (2): the other and the ARP.
        assert_eq!(u64_at(&fw, "verdicts", 1), 3, "{engine}");
        assert_eq!(u64_at(&fw, "verdicts", 2), 2, "{engine}");
        let _ = udp;
    }
}

fn counters(object: &Object, slot: u32, cpus: usize) -> (u64, u64) {
    let v = object
        .map("stats")
        .unwrap()
        .lookup(&slot.to_le_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(v.len(), 16 * cpus, "per-CPU values side by side");
    let word = |i: usize| u64::from_le_bytes(v[8 * i..8 * i + 8].try_into().unwrap());
    (0..cpus).fold((0, 0), |(p, b), c| (p + word(2 * c), b + word(2 * c + 1)))
}

#[test]
fn per_cpu_counter_counts_packets_and_bytes_by_protocol() {
    for &engine in Engine::ALL {
        let counter = object("xdp_counter", engine);
        let t = ipv4([1, 1, 1, 1], [2, 2, 2, 2], 6, &tcp(1, 2, 0x10, &[]));
        let u = ipv4([1, 1, 1, 1], [2, 2, 2, 2], 17, &udp(1, 2, &[0; 30]));
        let icmp = ipv4([1, 1, 1, 1], [2, 2, 2, 2], 1, &[8, 0, 0, 0, 0, 0, 0, 0]);
        let gre = ipv4([1, 1, 1, 1], [2, 2, 2, 2], 47, &[0; 4]);
        let mut v6 = vec![0u8; 60];
        v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        for frame in [&t, &t, &u, &icmp, &gre, &v6, &arp(), &vec![0u8; 5]] {
            assert_eq!(
                xdp(&counter, "xdp_counter", frame).0,
                XdpAction::Pass,
                "{engine}"
            );
        }
        // Slots: TCP 0, UDP 1, ICMP 2, other IPv4 3, IPv6 4, other 5.
        assert_eq!(
            counters(&counter, 0, 2),
            (2, 2 * t.len() as u64),
            "{engine}"
        );
        assert_eq!(counters(&counter, 1, 2), (1, u.len() as u64), "{engine}");
        assert_eq!(counters(&counter, 2, 2), (1, icmp.len() as u64), "{engine}");
        assert_eq!(counters(&counter, 3, 2), (1, gre.len() as u64), "{engine}");
        assert_eq!(counters(&counter, 4, 2), (1, 60), "{engine}");
        assert_eq!(counters(&counter, 5, 2), (2, 42 + 5), "{engine}");
    }
}

/// The key of `struct flow` for a TCP/UDP packet (addresses and ports in network order).
fn flow_key(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> Vec<u8> {
    let mut k = Vec::new();
    k.extend_from_slice(&src);
    k.extend_from_slice(&dst);
    k.extend_from_slice(&sport.to_be_bytes());
    k.extend_from_slice(&dport.to_be_bytes());
    k.extend_from_slice(&[proto, 0, 0, 0]);
    k
}

#[test]
fn conntrack_creates_updates_and_forgets_flows() {
    for &engine in Engine::ALL {
        let ct = object("xdp_conntrack", engine);
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let ack = ipv4(a, b, 6, &tcp(1000, 80, 0x10, &[]));
        let syn = ipv4(a, b, 6, &tcp(1000, 80, 0x02, &[]));
        let rst = ipv4(a, b, 6, &tcp(1000, 80, 0x04, &[]));
        assert_eq!(
            xdp(&ct, "xdp_conntrack", &ack).0,
            XdpAction::Drop,
            "unknown flow, no SYN"
        );
        assert_eq!(xdp(&ct, "xdp_conntrack", &syn).0, XdpAction::Pass);
        assert_eq!(xdp(&ct, "xdp_conntrack", &ack).0, XdpAction::Pass);
        let flows = ct.map("flows").unwrap();
        let key = flow_key(a, b, 1000, 80, 6);
        let st = flows.lookup(&key).unwrap().expect("flow created");
        let word = |i: usize| u64::from_le_bytes(st[8 * i..8 * i + 8].try_into().unwrap());
        assert_eq!(word(0), 2, "packets: {engine}");
        assert_eq!(word(1), (syn.len() + ack.len()) as u64, "bytes: {engine}");
        assert_eq!(word(2), 1, "last_seen: the clock is non-zero");
        assert_eq!(
            u32::from_le_bytes(st[24..28].try_into().unwrap()),
            0x12,
            "SYN|ACK seen"
        );
        // UDP flows need no SYN.
        let dns = ipv4(a, b, 17, &udp(5353, 53, &[1, 2, 3]));
        assert_eq!(xdp(&ct, "xdp_conntrack", &dns).0, XdpAction::Pass);
        assert!(
            flows
                .lookup(&flow_key(a, b, 5353, 53, 17))
                .unwrap()
                .is_some()
        );
        assert_eq!(xdp(&ct, "xdp_conntrack", &rst).0, XdpAction::Pass);
        assert_eq!(
            flows.lookup(&key).unwrap(),
            None,
            "RST forgets the flow: {engine}"
        );
        assert_eq!(flows.len(), 1);
    }
}

/// A TCP segment's checksum over the IPv4 pseudo-header.
fn tcp_checksum_ok(frame: &[u8]) -> bool {
    let ip = &frame[14..34];
    let seg = &frame[34..];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[12..20]);
    pseudo.extend_from_slice(&[0, ip[9]]);
    pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(seg);
    ones_sum(&pseudo) == 0xffff
}

#[test]
fn load_balancer_rewrites_the_destination_and_keeps_checksums_valid() {
    for &engine in Engine::ALL {
        let lb = object("xdp_lb", engine);
        let backends = lb.map("backends").unwrap();
        for i in 0..4u32 {
            let mut b = vec![10, 1, 0, 10 + i as u8];
            b.extend_from_slice(&[2, 0, 0, 0, 0, 0x10 + i as u8, 0, 0]);
            backends
                .update(&i.to_le_bytes(), &b, ebpf_vm::maps::UpdateFlags::Any)
                .unwrap();
        }
        let client = [192, 168, 1, 7];
        let sport = 40000u16;
        let mut frame = ipv4(client, [10, 0, 0, 100], 6, &tcp(sport, 80, 0x02, &[]));
        // A valid TCP checksum before the rewrite.
        let c = !ones_sum(&{
            let mut p = Vec::new();
            p.extend_from_slice(&frame[26..34]);
            p.extend_from_slice(&[0, 6, 0, 20]);
            p.extend_from_slice(&frame[34..]);
            p
        }) as u16;
        frame[50..52].copy_from_slice(&c.to_be_bytes());
        assert!(tcp_checksum_ok(&frame));
        let (action, out) = xdp(&lb, "xdp_lb", &frame);
        assert_eq!(action, XdpAction::Tx, "{engine}");
        // The backend the C code picks: (ntohl(saddr) * 2654435761 ^ ntohs(sport)) >> 16 % 4.
        let h = u32::from_be_bytes(client).wrapping_mul(2_654_435_761) ^ u32::from(sport);
        let index = (h >> 16) % 4;
        assert_eq!(out[30..34], [10, 1, 0, 10 + index as u8], "{engine}");
        assert_eq!(out[0..6], [2, 0, 0, 0, 0, 0x10 + index as u8], "dest MAC");
        assert_eq!(out[6..12], frame[0..6], "source MAC is the old destination");
        assert_eq!(
            ones_sum(&out[14..34]),
            0xffff,
            "IPv4 checksum valid: {engine}"
        );
        assert!(tcp_checksum_ok(&out), "TCP checksum valid: {engine}");
        assert_eq!(u64_at(&lb, "hits", index), 1);
        // Not the virtual address: untouched.
        let other = ipv4(client, [10, 0, 0, 5], 6, &tcp(sport, 80, 0x02, &[]));
        assert_eq!(xdp(&lb, "xdp_lb", &other), (XdpAction::Pass, other.clone()));
    }
}

#[test]
fn dispatcher_tail_calls_the_handler_of_each_protocol() {
    for &engine in Engine::ALL {
        let d = object("xdp_tailcall", engine);
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let t = ipv4(a, b, 6, &tcp(1, 2, 0x02, &[]));
        let discard = ipv4(a, b, 17, &udp(1, 9, &[]));
        let dns = ipv4(a, b, 17, &udp(1, 53, &[]));
        let icmp = ipv4(a, b, 1, &[8, 0, 0, 0, 0, 0, 0, 0]);
        let gre = ipv4(a, b, 47, &[0; 4]);
        let run = |frame: &[u8]| {
            let mut packet = Packet::new(frame).unwrap();
            let ctx = Context::default_for(ebpf_vm::ProgramKind::Xdp);
            let out = d
                .program("xdp_dispatch")
                .unwrap()
                .run_packet(&mut packet, &ctx);
            let out = out.unwrap_or_else(|t| panic!("{engine}: {t}"));
            (out.xdp_action().unwrap(), out.tail_calls)
        };
        assert_eq!(run(&t), (XdpAction::Pass, 1), "{engine}");
        assert_eq!(run(&discard), (XdpAction::Drop, 1), "{engine}");
        assert_eq!(run(&dns), (XdpAction::Pass, 1), "{engine}");
        assert_eq!(run(&icmp), (XdpAction::Drop, 1), "{engine}");
        assert_eq!(run(&gre), (XdpAction::Pass, 0), "no handler: {engine}");
        assert_eq!(run(&arp()), (XdpAction::Pass, 0), "not IPv4: {engine}");
        // Slots: TCP 0, UDP 1, ICMP 2, no handler 3.
        let counts: Vec<u64> = (0..4).map(|s| u64_at(&d, "handled", s)).collect();
        assert_eq!(counts, [1, 2, 1, 1], "{engine}");
        // The prog array holds the handlers' ids, filled from the object's `.values`.
        let dispatch = d.map("dispatch").unwrap();
        let id = |slot: u32| dispatch.lookup(&slot.to_le_bytes()).unwrap();
        assert_eq!(
            id(0),
            Some(d.program_id("handle_tcp").unwrap().to_le_bytes().to_vec())
        );
        // An emptied slot: the tail call fails and the dispatcher counts "no handler".
        dispatch.delete(&0u32.to_le_bytes()).unwrap();
        assert_eq!(run(&t), (XdpAction::Pass, 0), "{engine}");
        assert_eq!(u64_at(&d, "handled", 3), 2);
    }
}

#[test]
fn socket_logger_records_events_in_the_ring_buffer() {
    for &engine in Engine::ALL {
        let log = object("socket_logger", engine);
        let vm = log.program("socket_logger").unwrap();
        let ctx = Context::default_for(ebpf_vm::ProgramKind::SocketFilter);
        let run = |frame: &[u8]| {
            let mut packet = Packet::new(frame).unwrap();
            vm.run_packet(&mut packet, &ctx)
                .unwrap_or_else(|t| panic!("{engine}: {t}"))
                .r0
        };
        // The program sees the packet from the network header on (skb->len = frame - 14),
        // as the kernel's test run gives a socket filter; it keeps skb->len bytes.
        let ip = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, &udp(1, 2, &[0; 10]));
        assert_eq!(run(&ip), (ip.len() - 14) as u64, "{engine}");
        let records = log.map("events").unwrap().ring_records().unwrap();
        assert_eq!(records.len(), 1, "{engine}");
        let r = &records[0];
        let word = |i: usize| u32::from_le_bytes(r[4 * i..4 * i + 4].try_into().unwrap());
        // The view starts at the IPv4 header, so `proto` (bytes 12..14 of the view) is the
        // first half of the source address, never 0x0800: the frame is logged with
        // bpf_ringbuf_output as "other", a 4-byte record of skb->len.
        assert_eq!(r.len(), 4, "{engine}");
        assert_eq!(word(0), (ip.len() - 14) as u32);
        assert_eq!(
            run(&[0u8; 20]),
            0,
            "shorter than an Ethernet header after the pull"
        );
        assert_eq!(u64_at(&log, "lost", 0), 0);
    }
}

#[test]
fn tcp_options_loop_counts_option_kinds() {
    for &engine in Engine::ALL {
        let opts = object("xdp_tcp_options", engine);
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        // MSS (2, len 4), NOP, NOP, SACK-permitted (4, len 2), NOP, window scale (3, len 3),
        // then END and padding: 12 bytes of options.
        let good = [2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7, 0, 0, 0, 0];
        let frame = ipv4(a, b, 6, &tcp(1, 2, 0x02, &good));
        assert_eq!(
            xdp(&opts, "xdp_tcp_options", &frame).0,
            XdpAction::Pass,
            "{engine}"
        );
        let count = |k: u32| u64_at(&opts, "kinds", k);
        assert_eq!(
            (count(1), count(2), count(3), count(4)),
            (3, 1, 1, 1),
            "{engine}"
        );
        // An option of length 1 is malformed: dropped, its kind counted first.
        let bad = ipv4(a, b, 6, &tcp(1, 2, 0x02, &[8, 1, 0, 0]));
        assert_eq!(
            xdp(&opts, "xdp_tcp_options", &bad).0,
            XdpAction::Drop,
            "{engine}"
        );
        assert_eq!(count(8), 1);
    }
}

/// Runs a TC program of `object` on `frame` with the default TC context.
fn tc(object: &Object, program: &str, frame: &[u8]) -> (ebpf_vm::Outcome, Vec<u8>) {
    let mut packet = Packet::new(frame).unwrap();
    let vm = object.program(program).unwrap();
    let out = vm
        .run_packet(&mut packet, &Context::default_for(ebpf_vm::ProgramKind::Tc))
        .unwrap_or_else(|t| panic!("{program} on {}: {t}", vm.engine()));
    (out, packet.bytes().to_vec())
}

#[test]
fn tc_classifier_sees_the_frame_from_the_ethernet_header_and_acts() {
    use ebpf_vm::TcAction;
    for &engine in Engine::ALL {
        let cls = object("tc_classifier", engine);
        assert_eq!(
            cls.program("tc_classifier").unwrap().program_kind(),
            Some(ebpf_vm::ProgramKind::Tc)
        );
        // UDP: TTL 64 -> 63 with a valid header checksum, redirected to interface 2.
        let frame = ipv4([10, 0, 0, 7], [10, 0, 0, 1], 17, &udp(5, 53, b"hi"));
        let (out, after) = tc(&cls, "tc_classifier", &frame);
        assert_eq!(
            TcAction::from_r0(out.r0),
            Some(TcAction::Redirect),
            "{engine}"
        );
        assert_eq!(out.redirect, Some(2), "{engine}");
        assert_eq!(after[22], frame[22] - 1, "{engine}: the TTL");
        assert_eq!(
            ones_sum(&after[14..34]),
            0xffff,
            "{engine}: the IPv4 checksum"
        );
        // What it saw: len is the whole frame (TC starts at the Ethernet header), protocol
        // the Ethernet type as the kernel stores it, the loopback interface, no wire_len.
        let seen = cls
            .map("last")
            .unwrap()
            .lookup(&0u32.to_le_bytes())
            .unwrap()
            .unwrap();
        let field = |i: usize| u32::from_le_bytes(seen[4 * i..4 * i + 4].try_into().unwrap());
        assert_eq!(field(0), frame.len() as u32, "{engine}: len");
        assert_eq!(field(1), 0x0008, "{engine}: protocol");
        assert_eq!(field(2), 1, "{engine}: ifindex");
        assert_eq!(field(9), 0, "{engine}: wire_len");
        assert_eq!(field(10), frame.len() as u32, "{engine}: data_end - data");
        // ICMP is shot, TCP passes, ARP is left to the qdisc.
        let icmp = ipv4([10, 0, 0, 7], [10, 0, 0, 1], 1, &[8, 0, 0, 0, 0, 0, 0, 0]);
        let (out, _) = tc(&cls, "tc_classifier", &icmp);
        assert_eq!(TcAction::from_r0(out.r0), Some(TcAction::Shot), "{engine}");
        let ssh = ipv4([10, 0, 0, 7], [10, 0, 0, 1], 6, &tcp(1000, 22, 2, &[]));
        let (out, after) = tc(&cls, "tc_classifier", &ssh);
        assert_eq!(TcAction::from_r0(out.r0), Some(TcAction::Ok), "{engine}");
        assert_eq!(after, ssh, "{engine}: TCP is not rewritten");
        let (out, _) = tc(&cls, "tc_classifier", &arp());
        assert_eq!(
            TcAction::from_r0(out.r0),
            Some(TcAction::Unspec),
            "{engine}"
        );
        // One packet per action: UNSPEC (key 0), OK (1), SHOT (3), REDIRECT (8).
        for (key, n) in [(0, 1), (1, 1), (3, 1), (8, 1), (4, 0)] {
            assert_eq!(
                u64_at(&cls, "actions", key),
                n,
                "{engine}: action key {key}"
            );
        }
    }
}

#[test]
fn redirect_map_records_the_entry_or_returns_the_miss_action() {
    use ebpf_vm::maps::UpdateFlags;
    for &engine in Engine::ALL {
        let fwd = object("xdp_redirect", engine);
        let index = |name: &str| fwd.maps().iter().position(|m| m.name() == name).unwrap() as u32;
        let entry = |ifindex: u32| [ifindex.to_le_bytes(), 0u32.to_le_bytes()].concat();
        fwd.map("by_port")
            .unwrap()
            .update(&5u32.to_le_bytes(), &entry(9), UpdateFlags::Any)
            .unwrap();
        let run = |frame: &[u8]| {
            let mut packet = Packet::new(frame).unwrap();
            let ctx = Context::default_for(ebpf_vm::ProgramKind::Xdp);
            fwd.program("xdp_redirect")
                .unwrap()
                .run_packet(&mut packet, &ctx)
                .unwrap()
        };
        // UDP to port 53 (53 % 8 = 5): the devmap hash entry; port 54: a miss, XDP_DROP.
        let out = run(&ipv4([10, 0, 0, 7], [10, 0, 0, 1], 17, &udp(1, 53, b"")));
        assert_eq!(out.xdp_action(), Some(XdpAction::Redirect), "{engine}");
        assert_eq!(out.redirect_map, Some((index("by_port"), 5)), "{engine}");
        let out = run(&ipv4([10, 0, 0, 7], [10, 0, 0, 1], 17, &udp(1, 54, b"")));
        assert_eq!(out.xdp_action(), Some(XdpAction::Drop), "{engine}");
        assert_eq!(out.redirect_map, None, "{engine}");
        // ICMP broadcasts through the (empty) devmap: a redirect all the same.
        let icmp = ipv4([10, 0, 0, 7], [10, 0, 0, 1], 1, &[8, 0, 0, 0, 0, 0, 0, 0]);
        let out = run(&icmp);
        assert_eq!(out.xdp_action(), Some(XdpAction::Redirect), "{engine}");
        // Non-IPv4 goes to queue 0's AF_XDP socket once the host sets one.
        assert_eq!(run(&arp()).xdp_action(), Some(XdpAction::Pass), "{engine}");
        fwd.map("xsks")
            .unwrap()
            .update(&0u32.to_le_bytes(), &42u32.to_le_bytes(), UpdateFlags::Any)
            .unwrap();
        let out = run(&arp());
        assert_eq!(out.redirect_map, Some((index("xsks"), 0)), "{engine}");
        // TCP from 10.0.0.8 (8 % 4 = 0): CPU 0 once the host gives it a queue.
        let tcp_frame = ipv4([10, 0, 0, 8], [10, 0, 0, 1], 6, &tcp(1, 80, 2, &[]));
        assert_eq!(
            run(&tcp_frame).xdp_action(),
            Some(XdpAction::Pass),
            "{engine}"
        );
        fwd.map("cpus")
            .unwrap()
            .update(&0u32.to_le_bytes(), &entry(64), UpdateFlags::Any)
            .unwrap();
        assert_eq!(
            run(&tcp_frame).redirect_map,
            Some((index("cpus"), 0)),
            "{engine}"
        );
        // Counted per action: ABORTED 0, DROP 1, PASS 2, REDIRECT 4.
        assert_eq!(u64_at(&fwd, "actions", 1), 1, "{engine}");
        assert_eq!(u64_at(&fwd, "actions", 2), 2, "{engine}");
        assert_eq!(u64_at(&fwd, "actions", 4), 4, "{engine}");
    }
}

#[test]
fn for_each_map_elem_walks_arrays_in_order_and_survives_deletes() {
    for &engine in Engine::ALL {
        let stats = object("xdp_flow_stats", engine);
        let udp_from =
            |last: u8| ipv4([10, 0, 0, last], [10, 0, 0, 1], 17, &udp(1, 53, &[0; 1000]));
        // Sources 1 (four packets) and 2 (one): the fourth packet from 1 evicts it during
        // the walk that counts it.
        for last in [1, 1, 2, 1, 1] {
            assert_eq!(
                xdp(&stats, "xdp_flow_stats", &udp_from(last)).0,
                XdpAction::Pass
            );
        }
        let total = |key| u64_at(&stats, "totals", key);
        let frame = udp_from(1).len() as u64;
        // Five UDP frames of 1,042 bytes: past the 4,096-byte limit at slot 1 (UDP), so the
        // array walk stops there, after visiting slots 0 and 1.
        assert_eq!(total(0), 5 * frame, "{engine}: bytes summed");
        assert_eq!(total(1), 2, "{engine}: array elements visited");
        assert_eq!(total(2), 2, "{engine}: stopped at slot 1 (+1)");
        // The last walk saw sources 1 (4 packets, evicted) and 2 (1 packet).
        assert_eq!(total(3), 2, "{engine}: sources");
        assert_eq!(total(4), 5, "{engine}: their packets");
        assert_eq!(total(5), 2, "{engine}: hash elements visited");
        assert_eq!(total(6), 1, "{engine}: evicted");
        let sources = stats.map("sources").unwrap();
        assert_eq!(sources.lookup(&[10, 0, 0, 1]).unwrap(), None, "{engine}");
        assert!(
            sources.lookup(&[10, 0, 0, 2]).unwrap().is_some(),
            "{engine}"
        );
    }
}

/// A tail call runs the target with the object's data as the caller left it: `.data`
/// written before the call is seen after it, and by every later run of any program of the
/// object (globals are the object's maps, as in the kernel).
#[test]
fn tail_calls_keep_the_objects_globals() {
    for &engine in Engine::ALL {
        let object = object("xdp_globals", engine);
        let run = |name: &str| {
            let mut packet = Packet::new(&[0u8; 64]).unwrap();
            object
                .program(name)
                .unwrap()
                .run_packet(
                    &mut packet,
                    &Context::default_for(ebpf_vm::ProgramKind::Xdp),
                )
                .unwrap()
        };
        // Before `first` ever ran, `second` sees the initial `counter`.
        assert_eq!(run("second").r0, 120, "{engine}");
        let out = run("first");
        assert_eq!((out.r0, out.tail_calls), (230, 1), "{engine}");
        // And after: `first`'s write persists.
        assert_eq!(run("second").r0, 230, "{engine}");
        assert_eq!(
            object.map(".data").unwrap().lookup(&0u32.to_le_bytes()),
            Ok(Some(2u32.to_le_bytes().to_vec())),
            "{engine}"
        );
    }
}
