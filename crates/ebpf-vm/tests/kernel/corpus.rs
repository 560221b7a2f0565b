//! The corpus programs, each on every engine, with the outcomes their C source implies.

use ebpf_vm::{Context, Engine, KernelHelpers, Object, Packet, Vm, XdpAction};

use crate::packets::{arp, ipv4, tcp, udp};

pub(crate) fn object(name: &str, engine: Engine) -> Object {
    let path = format!("{}/../../tests/bpf/{name}.o", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Vm::builder()
        .engine(engine)
        .budget(1_000_000)
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
