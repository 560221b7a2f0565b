//! The stack of a kernel-context run stays private (docs/per-run.md, "Kernel-context runs"):
//! `run_packet` scrubs what the program's own stores can reach (narrowed by the facts when the
//! run's entry admits them) and what its helpers wrote (the run's map records the lowest stack
//! offset a helper wrote), not always the whole stack. Each writer below leaves a secret on the
//! thread's stack through one of those ways; the next `run_packet` on the thread, an unverified
//! program that reads every 8 bytes of the stack region, must see zero — on every engine.

use std::sync::Arc;

use ebpf_vm::maps::{MapSpec, MapType, Maps};
use ebpf_vm::{Context, Engine, Limits, Packet, ProgramKind, Vm};

/// Bytes of the stack region under the default limits (9 frames of 512 bytes).
fn stack_size() -> u64 {
    Limits::default().stack_size()
}

fn load(engine: Engine, text: &str, verify: bool) -> Vm {
    let program = ebpf_vm::isa::assemble(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut maps = Maps::new(1);
    maps.create("values", MapSpec::new(MapType::Array, 4, 64, 1))
        .unwrap();
    let mut builder = Vm::builder().engine(engine).budget(100_000);
    if !verify {
        builder = builder.unverified();
    }
    builder
        .load_with_maps(program, ProgramKind::SocketFilter, Arc::new(maps))
        .unwrap_or_else(|e| panic!("{engine}: {e}\n{text}"))
}

/// ORs every 8 bytes of the stack region, from its lowest byte up to the entry frame's `r10`,
/// into `r0`.
fn reader() -> String {
    format!(
        "mov %r0, 0
        mov %r1, %r10
        sub %r1, {size}
        loop:
        ldxdw %r2, [%r1]
        or %r0, %r2
        add %r1, 8
        jlt %r1, %r10, loop
        exit",
        size = stack_size()
    )
}

/// `bpf_skb_load_bytes(ctx, 0, r10 - 512, 64)`: the helper copies 64 bytes of the packet to the
/// bottom of the current frame.
const LOAD_TO_FRAME_BOTTOM: &str = "mov %r2, 0
        mov %r3, %r10
        add %r3, -512
        mov %r4, 64
        call 26";

/// The writers: (what, program text, verified).
fn writers() -> Vec<(&'static str, String, bool)> {
    vec![
        (
            "a helper writing the bottom of the entry frame",
            format!("{LOAD_TO_FRAME_BOTTOM}\nmov %r0, 0\nexit"),
            true,
        ),
        (
            // No store at all: the program's own reach is two frames; the helper wrote in
            // the third.
            "a helper writing the bottom of a frame two calls deep",
            format!(
                "call local f
                mov %r0, 0
                exit
                f:
                call local g
                exit
                g:
                {LOAD_TO_FRAME_BOTTOM}
                exit"
            ),
            false,
        ),
        (
            // The store through r1 is placed in the map's region by the facts: the reach is
            // the 16 bytes the r10 stores write.
            "stores the facts place in a map's value, and on the stack through r10",
            "lddw %r1, map_value 0
            lddw %r2, 0x5ec2e75ec2e7
            stxdw [%r1], %r2
            stxdw [%r10-8], %r2
            stxdw [%r10-16], %r2
            mov %r0, 0
            exit"
                .to_string(),
            true,
        ),
        (
            "a computed pointer over the whole stack",
            format!(
                "mov %r1, %r10
                sub %r1, {size}
                fill:
                stdw [%r1], 0x5ec2e7
                add %r1, 8
                jlt %r1, %r10, fill
                mov %r0, 0
                exit",
                size = stack_size()
            ),
            false,
        ),
    ]
}

#[test]
fn no_packet_run_reads_what_an_earlier_one_left_on_the_stack() {
    // A socket filter's view starts after the Ethernet header: 64 bytes of secret after it.
    let mut frame = vec![0u8; 14];
    frame.extend_from_slice(&[0x5e; 64]);
    let context = Context::default_for(ProgramKind::SocketFilter);
    for &engine in Engine::ALL {
        let reader = load(engine, &reader(), false);
        for (what, text, verify) in writers() {
            let writer = load(engine, &text, verify);
            for _ in 0..3 {
                let mut packet = Packet::new(&frame).unwrap();
                let wrote = writer.run_packet(&mut packet, &context);
                assert_eq!(wrote.map(|o| o.r0), Ok(0), "{engine}: {what}");
                let mut packet = Packet::new(&frame).unwrap();
                let seen = reader.run_packet(&mut packet, &context).map(|o| o.r0);
                assert_eq!(seen, Ok(0), "{engine}: after {what}, the stack is not zero");
            }
        }
    }
}

/// The writers do write what the reader looks for: a reader that runs them first, in the same
/// run (as a local call), sees a secret.
#[test]
fn the_reader_sees_what_its_own_run_wrote() {
    let mut frame = vec![0u8; 14];
    frame.extend_from_slice(&[0x5e; 64]);
    let context = Context::default_for(ProgramKind::SocketFilter);
    let text = format!(
        "mov %r6, %r1
        call local write
        {reader}
        write:
        mov %r1, %r6
        {LOAD_TO_FRAME_BOTTOM}
        exit",
        reader = reader()
    );
    for &engine in Engine::ALL {
        let vm = load(engine, &text, false);
        let mut packet = Packet::new(&frame).unwrap();
        let seen = vm.run_packet(&mut packet, &context).map(|o| o.r0);
        assert_eq!(seen, Ok(0x5e5e_5e5e_5e5e_5e5e), "{engine}");
    }
}
