//! Runs one program of a kernel-context object (`tests/bpf/*.o`) through `Vm::run_packet` many
//! times on one engine, on one TCP segment: a steady loop for counting what a packet costs.
//! Under callgrind, the instructions of `RUNS + 10000` runs minus those of `RUNS` runs, over
//! 10,000, is the cost of one packet, whatever the machine's load (docs/facts.md, "Programs
//! with a kernel context"):
//!
//! `cargo build --release -p ebpf-vm --example packet_run`, then
//! `valgrind --tool=callgrind target/release/examples/packet_run ENGINE OBJECT PROGRAM RUNS`
//!
//! A budget of 1,000,000 instructions is set (`xdp_tcp_options` needs one: it loops).
//! `ENGINE` is an engine's short name (`interp`, `x86`, `cranelift`, `tiered`), `OBJECT` a
//! file name in `tests/bpf` without `.o` (`xdp_tcp_options`), `PROGRAM` its function.

use std::hint::black_box;

use ebpf_vm::{Context, Engine, Packet, Vm};

/// An Ethernet frame holding an IPv4 TCP segment from 10.0.0.7:1000 to 10.0.0.1:80 with 20
/// bytes of options (MSS, SACK permitted, timestamps, a window scale) and 32 bytes of payload.
fn frame() -> Vec<u8> {
    let options: [u8; 20] = [
        2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    let payload = [0x5au8; 32];
    let tcp_len = 20 + options.len();
    let total = 20 + tcp_len + payload.len();
    let mut f = vec![0u8; 12];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&[10, 0, 0, 7, 10, 0, 0, 1]);
    f.extend_from_slice(&[0x03, 0xe8, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0]);
    f.extend_from_slice(&[((tcp_len / 4) << 4) as u8, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(&options);
    f.extend_from_slice(&payload);
    f
}

fn main() {
    let mut args = std::env::args().skip(1);
    let engine = args.next().unwrap_or_else(|| "x86".to_string());
    let object = args.next().unwrap_or_else(|| "xdp_tcp_options".to_string());
    let program = args.next().unwrap_or_else(|| object.clone());
    let runs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let Some(&engine) = Engine::ALL.iter().find(|e| e.name() == engine) else {
        eprintln!("unknown engine {engine}");
        std::process::exit(2);
    };
    let path = format!("{}/../../tests/bpf/{object}.o", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let loaded = Vm::builder()
        .engine(engine)
        .budget(1_000_000)
        .load_object(&bytes)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let vm = loaded
        .program(&program)
        .unwrap_or_else(|| panic!("{path} has no program {program}"));
    let kind = vm.program_kind().unwrap_or(ebpf_vm::ProgramKind::Xdp);
    let context = Context::default_for(kind);
    let frame = frame();
    let mut packet = Packet::new(&frame).unwrap_or_else(|| panic!("frame too long"));
    let mut last = (0, 0);
    for _ in 0..runs {
        packet.set(black_box(&frame));
        last = vm
            .run_packet(&mut packet, black_box(&context))
            .map_or((u64::MAX, 0), |o| (o.r0, o.instructions));
    }
    println!(
        "{engine} {object} {program}: {runs} runs, r0 {}, {} instructions each",
        last.0, last.1
    );
}
