//! The facts of programs with a kernel context: they compile for the packet `run_packet` lays
//! out (`data` after the headroom, `data_end` bounded by the buffer's end), so a guard `data +
//! n > data_end` proves the accesses it dominates and the engines drop their checks. Every
//! engine must still agree with the interpreter on every packet — guarded parsers and their
//! off-by-one mutants, packets of every length, runs the entry does not admit (a socket
//! filter's packet shorter than its Ethernet header), and helpers that move the packet
//! between a guard and an access. The tests' builds have debug assertions, so the JITs run
//! in checked-facts mode: a check a fact removed that fires panics.

use std::sync::Arc;

use ebpf_testgen::{off_by_one, parser, parser_step};
use ebpf_vm::isa::Program;
use ebpf_vm::maps::{Map, Maps};
use ebpf_vm::{Context, Engine, KernelHelpers, Packet, ProgramKind, Trap, Vm};
use proptest::prelude::*;

/// What a run left: `r0` or the trap, and the packet as the program left it.
type Seen = (Result<u64, Trap>, Vec<u8>);

fn load(engine: Engine, program: &Program, kind: ProgramKind, verify: bool) -> Vm {
    load_on_maps(engine, program, kind, verify, &Arc::new(Maps::new(1)))
}

/// [`load`] on a map set of the test's own.
fn load_on_maps(
    engine: Engine,
    program: &Program,
    kind: ProgramKind,
    verify: bool,
    maps: &Arc<Maps>,
) -> Vm {
    let mut builder = Vm::builder()
        .engine(engine)
        .budget(100_000)
        .kernel_helpers(KernelHelpers::new());
    if !verify {
        builder = builder.unverified();
    }
    builder
        .load_with_maps(program.clone(), kind, Arc::clone(maps))
        .unwrap_or_else(|e| panic!("{engine}: {e}\n{}", ebpf_vm::isa::disassemble(program)))
}

fn run(vm: &Vm, kind: ProgramKind, frame: &[u8]) -> Seen {
    let mut packet = Packet::new(frame).unwrap();
    let r = vm
        .run_packet(&mut packet, &Context::default_for(kind))
        .map(|o| o.r0);
    (r, packet.bytes().to_vec())
}

/// Runs `program` on every frame on every engine (verified and not: the facts come from the
/// verifier or from the JIT's own analysis) and checks each against the interpreter; returns
/// the interpreter's results.
fn agree(program: &Program, kind: ProgramKind, frames: &[Vec<u8>]) -> Result<Vec<Seen>, String> {
    let text = || ebpf_vm::isa::disassemble(program);
    let reference = load(Engine::Interpreter, program, kind, false);
    let expected: Vec<Seen> = frames.iter().map(|f| run(&reference, kind, f)).collect();
    for &engine in Engine::ALL {
        for verify in [true, false] {
            let vm = load(engine, program, kind, verify);
            for (frame, want) in frames.iter().zip(&expected) {
                let got = run(&vm, kind, frame);
                if got != *want {
                    return Err(format!(
                        "{engine} ({kind:?}, verified: {verify}) on a {}-byte frame: {:?}, the \
                         interpreter {:?}\n{}",
                        frame.len(),
                        got.0,
                        want.0,
                        text()
                    ));
                }
            }
        }
    }
    Ok(expected)
}

/// The public offsets of `data` and `data_end` in the context of `kind`.
fn fields(kind: ProgramKind) -> (u16, u16) {
    match kind {
        ProgramKind::Xdp => (0, 4),
        ProgramKind::SocketFilter | ProgramKind::Tc => (76, 80),
    }
}

/// A generated parser (`ebpf_testgen::parser`) on a kernel context: its prologue (`r9` the
/// input's start, `r8` its end) replaced by the context loads of `data` and `data_end`, as
/// clang writes them (32-bit loads the load converts), in as many instructions.
fn on_context(text: &str, kind: ProgramKind) -> Program {
    let prologue = "mov %r9, %r1\nmov %r8, %r1\nadd %r8, %r2\nmov %r0, 0\n";
    assert!(text.starts_with(prologue), "{text}");
    let (data, data_end) = fields(kind);
    let text = text.replacen(
        prologue,
        &format!("ldxw %r9, [%r1+{data}]\nldxw %r8, [%r1+{data_end}]\nmov %r0, 0\nja +0\n"),
        1,
    );
    ebpf_vm::isa::assemble(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn kinds() -> impl Strategy<Value = ProgramKind> {
    prop::sample::select(vec![
        ProgramKind::Xdp,
        ProgramKind::Tc,
        ProgramKind::SocketFilter,
    ])
}

proptest! {
    // `PROPTEST_CASES` sets the number of cases (256 by default).

    /// Generated parsers with guards written six ways, and their off-by-one mutants (a load
    /// one byte further, a guard one byte shorter, `>=` for `>`, the guard's sum in 32 bits, a
    /// signed compare), on every engine against the interpreter. The originals never trap.
    #[test]
    fn guarded_packet_parsers_and_their_mutants_agree_on_every_engine(
        steps in prop::collection::vec(parser_step(), 1..6),
        mutate in prop::option::of((0usize..24, 0u8..5)),
        kind in kinds(),
        bytes in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        let frames: Vec<Vec<u8>> = [0, 1, 13, 14, 15, bytes.len() / 2, bytes.len()]
            .into_iter()
            .map(|n| bytes[..n.min(bytes.len())].to_vec())
            .collect();
        let (text, _) = parser(&steps, None);
        let original = on_context(&text, kind);
        let seen = agree(&original, kind, &frames).map_err(TestCaseError::fail)?;
        for (frame, (r, _)) in frames.iter().zip(&seen) {
            prop_assert!(r.is_ok(), "the original trapped on {} bytes: {:?}\n{}", frame.len(), r, text);
        }
        if let Some((m, k)) = mutate {
            let (mutant, _) = parser(&steps, Some(off_by_one(m, k, steps.len())));
            agree(&on_context(&mutant, kind), kind, &frames).map_err(TestCaseError::fail)?;
        }
    }
}

/// An Ethernet, IPv4 and TCP header parser as clang compiles `ipv4_header`/`l4_header`
/// (tests/bpf/common.h), reading a variable-length IP header and the TCP ports; a wrong
/// `data_end` or a guard dropped would read past the packet.
fn headers(kind: ProgramKind) -> Program {
    let (data, data_end) = fields(kind);
    let text = format!(
        "
        ldxw %r2, [%r1+{data}]
        ldxw %r3, [%r1+{data_end}]
        mov %r0, 1
        mov %r4, %r2
        add %r4, 14
        jgt %r4, %r3, out
        ldxh %r5, [%r2+12]
        jne %r5, 0x8, out
        mov %r4, %r2
        add %r4, 34
        jgt %r4, %r3, out
        ldxb %r5, [%r2+14]
        and %r5, 0xf
        lsh %r5, 2
        jlt %r5, 20, out
        mov %r6, %r2
        add %r6, 14
        add %r6, %r5
        mov %r4, %r6
        add %r4, 4
        jgt %r4, %r3, out
        ldxh %r0, [%r6+2]
        ldxh %r7, [%r6]
        add %r0, %r7
        ldxb %r7, [%r2+23]
        add %r0, %r7
    out:
        exit"
    );
    ebpf_vm::isa::assemble(&text).unwrap()
}

/// Frames of every length from 0 to 300 bytes and the longest one, IPv4 with a header of 5 to
/// 15 words, filled so that each length cuts a header somewhere.
fn frames_of_every_length() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for len in (0..=300).chain([Packet::MAX_FRAME - 1, Packet::MAX_FRAME]) {
        let mut f: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        // The headers at the frame's start, and again 14 bytes on, where a socket filter's
        // view starts.
        for at in [0, 14] {
            if len >= at + 14 {
                f[at + 12] = 0x08;
                f[at + 13] = 0x00;
            }
            if len >= at + 15 {
                f[at + 14] = 0x40 | (5 + (len % 11) as u8);
            }
        }
        frames.push(f);
    }
    frames
}

#[test]
fn packets_of_every_length_agree_on_every_engine() {
    let frames = frames_of_every_length();
    for kind in [ProgramKind::Xdp, ProgramKind::Tc, ProgramKind::SocketFilter] {
        let program = headers(kind);
        let seen = agree(&program, kind, &frames).unwrap_or_else(|e| panic!("{e}"));
        // The program reads the ports when the header is there: not always the drop path.
        let read = seen
            .iter()
            .filter(|(r, _)| r.as_ref().is_ok_and(|&r0| r0 != 1));
        assert!(read.count() > 100, "{kind:?}");
        assert!(
            seen.iter().all(|(r, _)| r.is_ok()),
            "{kind:?}: a guarded read trapped"
        );
    }
}

/// A guard, then `xdp_adjust_head` (which moves `data` and rewrites the context's fields),
/// then accesses: through the pointer loaded before the call (still inside the buffer), and
/// through `data` loaded again after it — guarded, unguarded within the buffer, and unguarded
/// before its start (which traps, on every engine at the same pc).
#[test]
fn accesses_after_the_packet_moves_agree_on_every_engine() {
    let body = |after: &str| {
        format!(
            "
            mov %r6, %r1
            ldxw %r7, [%r6]
            ldxw %r8, [%r6+4]
            mov %r0, 1
            mov %r4, %r7
            add %r4, 14
            jgt %r4, %r8, out
            mov %r1, %r6
            mov %r2, DELTA
            call 44
            mov %r9, %r0
            ldxh %r0, [%r7+12]
            ldxw %r2, [%r6]
            ldxw %r3, [%r6+4]
            {after}
        out:
            exit"
        )
    };
    let shapes = [
        // The re-loaded fields, guarded.
        "mov %r4, %r2\nadd %r4, 14\njgt %r4, %r3, out\nldxh %r5, [%r2+12]\nadd %r0, %r5",
        // The re-loaded `data`, unguarded: inside the buffer, or before it (traps).
        "ldxb %r5, [%r2+1]\nadd %r0, %r5",
        "ldxb %r5, [%r2-200]\nadd %r0, %r5",
        // The old `data_end` after the packet moved: in the tailroom, not the packet.
        "ldxb %r5, [%r8]\nadd %r0, %r5\nadd %r0, %r9",
        // The difference of the new fields as a length.
        "sub %r3, %r2\nadd %r0, %r3",
    ];
    let frames: Vec<Vec<u8>> = [0usize, 13, 14, 20, 64, 300, Packet::MAX_FRAME]
        .iter()
        .map(|&n| (0..n).map(|i| i as u8).collect())
        .collect();
    let mut trapped = 0;
    for shape in shapes {
        for delta in ["-16", "-216", "-217", "8", "0"] {
            let text = body(shape).replace("DELTA", delta);
            let program = ebpf_vm::isa::assemble(&text).unwrap();
            let seen = agree(&program, ProgramKind::Xdp, &frames)
                .unwrap_or_else(|e| panic!("delta {delta}: {e}"));
            trapped += seen.iter().filter(|(r, _)| r.is_err()).count();
        }
    }
    assert!(trapped > 0, "no run read before the buffer");
}

/// A program that rewrites its own context's hidden `data_end` (the region is writable; the
/// kernel's verifier would refuse it, ours lets the run check it) 400 bytes further, past the
/// buffer's end for a long frame, then trusts it: the entry's facts must not (a JIT that
/// dropped the check would read past the buffer, or panic in checked-facts mode).
#[test]
fn a_program_moving_its_own_data_end_agrees_on_every_engine() {
    let text = "
        mov %r6, %r1
        ldxdw %r7, [%r6+32]
        add %r7, 400
        stxdw [%r6+32], %r7
        ldxw %r2, [%r6]
        ldxw %r3, [%r6+4]
        mov %r0, 1
        mov %r4, %r2
        add %r4, 3900
        jgt %r4, %r3, out
        ldxb %r0, [%r2+3839]
        ldxb %r0, [%r2+3840]
    out:
        exit";
    let program = ebpf_vm::isa::assemble(text).unwrap();
    let frames: Vec<Vec<u8>> = [0usize, 14, 64, 3400, 3499, 3500, Packet::MAX_FRAME]
        .iter()
        .map(|&n| vec![0xab; n])
        .collect();
    let seen = agree(&program, ProgramKind::Xdp, &frames).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seen[4].0, Ok(1), "3,499 bytes: the lie is not long enough");
    for (r, _) in &seen[5..] {
        // The first load reads the buffer's last byte, the second the one after it.
        assert!(
            matches!(r, Err(t) if t.pc == 11),
            "a read past the buffer: {r:?}"
        );
    }
}

/// `runs` runs of `vm` on a 64-byte packet, each with its result and the values of `map`'s
/// keys 0 to 3 after it (a missing key: no bytes).
fn runs_and_values(vm: &Vm, map: &Map, runs: usize) -> Vec<(Result<u64, Trap>, Vec<u8>)> {
    (0..runs)
        .map(|_| {
            let mut packet = Packet::new(&[0u8; 64]).unwrap();
            let ctx = Context::default_for(ProgramKind::Xdp);
            let r = vm.run_packet(&mut packet, &ctx).map(|o| o.r0);
            let mut seen = Vec::new();
            for key in 0u32..4 {
                seen.extend(map.lookup(&key.to_le_bytes()).unwrap().unwrap_or_default());
            }
            (r, seen)
        })
        .collect()
}

/// A hash map's lookup, tested against NULL, then `*(u64 *)(v + off) += 1`: the facade's
/// entry names the map's region, so the facts prove the access for `off` up to 8 of a 16-byte
/// value (and not at 9, which reads into the next slot or, for the last, past the region),
/// and every engine, verified (where the verifier accepts it) or not, agrees with the
/// interpreter on keys present and absent — in checked-facts mode (debug builds), where a
/// removed check that fires panics.
#[test]
fn accesses_through_a_lookups_result_are_proven_and_agree_on_every_engine() {
    use ebpf_vm::cfg::facts::{Access, Facts};
    use ebpf_vm::maps::{MapSpec, MapType, UpdateFlags};
    const RUNS: usize = 24;
    for off in [0, 8, 9] {
        let mut results: Vec<(Result<u64, Trap>, Vec<u8>)> = Vec::new();
        for &engine in Engine::ALL {
            // (The verifier refuses the access at 9, as the kernel's does.)
            for verify in [off <= 8, false] {
                let mut maps = Maps::new(1);
                maps.create("h", MapSpec::new(MapType::Hash, 4, 16, 4))
                    .unwrap();
                let maps = Arc::new(maps);
                let h = maps.get("h").unwrap();
                for key in 0u32..4 {
                    let value = [key as u8; 16];
                    h.update(&key.to_le_bytes(), &value, UpdateFlags::Any)
                        .unwrap();
                }
                h.delete(&2u32.to_le_bytes()).unwrap();
                // The key: a pseudo-random number from 0 to 7 (the same sequence on every VM).
                let text = format!(
                    "call 7\nand %r0, 7\nstxw [%r10-4], %r0\n\
                     lddw %r1, 0xfeed000000000000\nmov %r2, %r10\nadd %r2, -4\ncall 1\n\
                     jeq %r0, 0, miss\nldxdw %r3, [%r0+{off}]\nadd %r3, 1\n\
                     stxdw [%r0+{off}], %r3\nmov %r0, %r3\nexit\nmiss:\nmov %r0, 99\nexit"
                );
                let vm = load_on_maps(
                    engine,
                    &crate::helpers::program(&text),
                    ProgramKind::Xdp,
                    verify,
                    &maps,
                );
                let facts = Facts::analyse(vm.program(), vm.facts_entry());
                let at = |i: usize| matches!(facts.access(i), Access::InBounds { .. });
                let (load, store) = (8, 10);
                assert_eq!(
                    (at(load), at(store)),
                    (off <= 8, off <= 8),
                    "offset {off}: {:?}",
                    vm.program().insns()[load]
                );
                results.extend(runs_and_values(&vm, h, RUNS));
            }
        }
        let first = &results[..RUNS];
        assert!(first.iter().any(|(r, _)| *r == Ok(99)), "no key missed");
        assert!(first.iter().any(|(r, _)| *r != Ok(99)), "no key found");
        for (i, chunk) in results.chunks(RUNS).enumerate() {
            assert_eq!(chunk, first, "offset {off}, engine run {i}");
        }
    }
}

/// An atomic on a lookup's result in an array of several 16-byte values: at offsets 0 and 8 it
/// is proven (the facade says every value is 8-aligned), at 4 it is not and traps, misaligned,
/// identically on every engine, verified (where the verifier accepts it) or not — in
/// checked-facts mode (debug builds), where a removed check that fires panics.
#[test]
fn atomics_on_a_lookups_result_in_a_multi_value_map_are_proven_and_agree_on_every_engine() {
    use ebpf_vm::cfg::facts::{Access, Facts};
    use ebpf_vm::maps::{MapSpec, MapType};
    const RUNS: usize = 24;
    for map_type in [MapType::Array, MapType::PerCpuArray] {
        for off in [0, 8, 4] {
            let mut results: Vec<(Result<u64, Trap>, Vec<u8>)> = Vec::new();
            for &engine in Engine::ALL {
                for verify in [off % 8 == 0, false] {
                    let mut maps = Maps::new(1);
                    maps.create("a", MapSpec::new(map_type, 4, 16, 4)).unwrap();
                    let maps = Arc::new(maps);
                    let a = maps.get("a").unwrap();
                    // The key: a pseudo-random number from 0 to 7 (the same sequence on every
                    // VM); 4 to 7 miss.
                    let text = format!(
                        "call 7\nand %r0, 7\nstxw [%r10-4], %r0\n\
                         lddw %r1, 0xfeed000000000000\nmov %r2, %r10\nadd %r2, -4\ncall 1\n\
                         jeq %r0, 0, miss\nmov %r1, 3\nlock fetch add [%r0+{off}], %r1\n\
                         mov %r0, %r1\nexit\nmiss:\nmov %r0, 99\nexit"
                    );
                    let vm = load_on_maps(
                        engine,
                        &crate::helpers::program(&text),
                        ProgramKind::Xdp,
                        verify,
                        &maps,
                    );
                    let facts = Facts::analyse(vm.program(), vm.facts_entry());
                    let atomic = 9;
                    assert!(
                        matches!(
                            vm.program().insns()[atomic],
                            ebpf_vm::isa::Insn::Atomic { .. }
                        ),
                        "{:?}",
                        vm.program().insns()[atomic]
                    );
                    assert_eq!(
                        matches!(facts.access(atomic), Access::InBounds { .. }),
                        off % 8 == 0,
                        "{map_type:?}, offset {off}"
                    );
                    results.extend(runs_and_values(&vm, a, RUNS));
                }
            }
            let first = &results[..RUNS];
            assert!(first.iter().any(|(r, _)| *r == Ok(99)), "no key missed");
            if off % 8 == 0 {
                assert!(
                    first.iter().any(|(r, _)| r.is_ok() && *r != Ok(99)),
                    "no key found"
                );
            } else {
                assert!(first.iter().any(|(r, _)| r.is_err()), "no misaligned trap");
            }
            for (i, chunk) in results.chunks(RUNS).enumerate() {
                assert_eq!(chunk, first, "{map_type:?}, offset {off}, engine run {i}");
            }
        }
    }
}

/// The callbacks' accesses in the corpus (`tests/bpf`): `parse_option` (`bpf_loop`, in
/// `xdp_tcp_options`) and `sum_bytes`/`scan_sources` (`for_each_map_elem`, in
/// `xdp_flow_stats`) reach their state through the context pointer the inlined loop hands them,
/// a pointer into the caller's frame. It is proven because the loop keeps it in a callee-saved
/// register: every access of `parse_option` is proven, and in the `for_each` callbacks every
/// one but those through the map value's pointer (from a helper the facts do not know: at most
/// 3). Kept in the frame, the context was an unknown load: 8 and 10 accesses unproven.
#[test]
fn callback_contexts_are_proven() {
    use ebpf_vm::cfg::facts::{Access, Facts};
    use ebpf_vm::isa::{AluOp, CallKind, Insn, Operand, Reg};
    for (object, program, callbacks, at_most_unproven) in [
        ("xdp_tcp_options", "xdp_tcp_options", 1, 0),
        ("xdp_flow_stats", "xdp_flow_stats", 2, 3),
    ] {
        let object = crate::corpus::object(object, Engine::Interpreter);
        let vm = object.program(program).unwrap();
        let insns = vm.program().insns();
        let pcs: Vec<usize> = vm.program().iter().map(|(pc, _)| pc).collect();
        let index_of = |pc: usize| pcs.binary_search(&pc).ok();
        let local_target = |k: usize| match insns[k] {
            Insn::Call {
                kind: CallKind::Local,
                imm,
            } => index_of((pcs[k] as i64 + 1 + i64::from(imm)) as usize),
            _ => None,
        };
        let copies = |k: usize, dst: Reg, src: Reg| {
            insns[k]
                == Insn::Alu {
                    width: ebpf_vm::isa::Width::W64,
                    op: AluOp::Mov,
                    dst,
                    src: Operand::Reg(src),
                }
        };
        // The inlined loops' calls of their callbacks: `r2 = r6` (the context) before
        // `bpf_loop`'s, `r4 = r7` before `for_each`'s.
        let mut starts: Vec<usize> = (0..insns.len()).filter_map(local_target).collect();
        starts.sort_unstable();
        let callback_starts: Vec<usize> = (1..insns.len())
            .filter(|&k| copies(k - 1, Reg::R2, Reg::R6) || copies(k - 1, Reg::R4, Reg::R7))
            .filter_map(local_target)
            .collect();
        assert_eq!(callback_starts.len(), callbacks, "{program}");
        let facts = Facts::analyse(vm.program(), vm.facts_entry());
        let mut accesses = 0;
        let mut unproven = Vec::new();
        for &start in &callback_starts {
            let end = starts
                .iter()
                .copied()
                .find(|&s| s > start)
                .unwrap_or(insns.len());
            for (k, insn) in insns.iter().enumerate().take(end).skip(start) {
                if matches!(
                    insn,
                    Insn::Load { .. } | Insn::Store { .. } | Insn::Atomic { .. }
                ) {
                    accesses += 1;
                    if !matches!(facts.access(k), Access::InBounds { .. }) {
                        unproven.push((k, *insn));
                    }
                }
            }
        }
        assert!(
            accesses >= 8,
            "{program}: {accesses} accesses in its callbacks"
        );
        assert!(
            unproven.len() <= at_most_unproven,
            "{program}: unproven in its callbacks {unproven:?}"
        );
    }
}

/// `bpf_loop` with a callback reading `ctx[i]` on a 40-byte buffer in the caller's frame for
/// as many iterations as the packet has bytes, behind a guard `i <= 39`: proven (into the
/// stack), and no run traps. Its mutant `i <= 40` reads the byte past the buffer, the
/// stack's end, on packets of 41 bytes or more: not proven, and it traps identically on
/// every engine (in checked-facts mode in debug builds).
#[test]
fn a_callbacks_context_access_is_proven_and_its_off_by_one_traps_on_every_engine() {
    use ebpf_vm::cfg::facts::{Access, Facts};
    use ebpf_vm::isa::{CallKind, Imm64Kind, Insn, Reg};
    for (last, proven) in [(39, true), (40, false)] {
        let text = format!(
            "ldxw %r6, [%r1+4]
             ldxw %r7, [%r1+0]
             sub %r6, %r7
             stdw [%r10-40], 1
             stdw [%r10-32], 2
             stdw [%r10-24], 3
             stdw [%r10-16], 4
             stdw [%r10-8], 5
             mov %r1, %r6
             lddw %r2, 0
             mov %r3, %r10
             add %r3, -40
             mov %r4, 0
             call 181
             exit
             jgt %r1, {last}, +4
             add %r2, %r1
             ldxb %r0, [%r2+0]
             mov %r0, 0
             exit
             mov %r0, 1
             exit"
        );
        // `lddw r2, code OFF` (index 9, pc 9) for the callback at pc 16, as the ELF loader
        // writes it; the callback's load is instruction 17.
        let (lddw, callback_pc, read) = (9, 16, 17);
        let mut insns = ebpf_vm::isa::assemble(&text).unwrap().into_insns();
        insns[lddw] = Insn::LoadImm64 {
            dst: Reg::R2,
            kind: Imm64Kind::Code,
            imm: (callback_pc - lddw - 1) as u64,
        };
        assert!(matches!(
            insns[13],
            Insn::Call {
                kind: CallKind::Helper,
                imm: 181
            }
        ));
        assert!(
            matches!(insns[read], Insn::Load { .. }),
            "{:?}",
            insns[read]
        );
        let program = Program::from_insns(insns);
        let vm = load(Engine::Interpreter, &program, ProgramKind::Xdp, false);
        let facts = Facts::analyse(vm.program(), vm.facts_entry());
        assert_eq!(
            facts.access(read),
            if proven {
                Access::InBounds {
                    region: ebpf_vm::layout::STACK as u8,
                    speculation_safe: false,
                }
            } else {
                Access::Checked {
                    region: Some(ebpf_vm::layout::STACK as u8),
                }
            },
            "i <= {last}"
        );
        let frames: Vec<Vec<u8>> = (14..48).map(|n| vec![n as u8; n]).collect();
        let seen = agree(&program, ProgramKind::Xdp, &frames).unwrap_or_else(|e| panic!("{e}"));
        // Up to 40 bytes, every iteration reads; past that, the original stops after the
        // 41st (its callback returns 1) and the mutant traps in it.
        for (frame, (r, _)) in frames.iter().zip(&seen) {
            let n = frame.len();
            if n <= 40 {
                assert_eq!(*r, Ok(n as u64), "i <= {last}, {n} bytes");
            } else if proven {
                assert_eq!(*r, Ok(41), "i <= {last}, {n} bytes");
            } else {
                assert!(r.is_err(), "i <= {last}, {n} bytes: {r:?}");
            }
        }
    }
}

/// `xdp_lb`'s `l4_csum` shape on an XDP context: `p` is NULL or one of two pointers into the
/// packet, behind a guard of 20 bytes, then `if (p)` and two bytes read and written at `p`.
/// Proven (the join is "NULL or in the packet"); the mutants — no test, 1 for NULL — are not,
/// and trap on the NULL path identically on every engine, verified (where the verifier accepts
/// them) or not, in checked-facts mode (debug builds).
#[test]
fn a_null_or_packet_pointer_tested_for_null_is_proven_and_agrees_on_every_engine() {
    use ebpf_vm::cfg::facts::{Access, Facts};
    let text = "
        ldxw %r9, [%r1+0]
        ldxw %r3, [%r1+4]
        mov %r0, 0
        mov %r4, %r9
        add %r4, 20
        jgt %r4, %r3, out
        mov %r8, 0
        ldxb %r5, [%r9+0]
        jeq %r5, 0, test
        mov %r8, %r9
        add %r8, 6
        jeq %r5, 1, test
        mov %r8, %r9
        add %r8, 16
    test:
        jeq %r8, 0, out
        ldxh %r0, [%r8+0]
        stxh [%r8+2], %r0
    out:
        exit";
    let frames: Vec<Vec<u8>> = (0..3u8)
        .flat_map(|first| {
            (0..=24usize).map(move |n| {
                let mut f: Vec<u8> = (0..n).map(|i| i as u8 + 0x40).collect();
                if let Some(b) = f.first_mut() {
                    *b = first;
                }
                f
            })
        })
        .collect();
    // (mutant, proven, traps on the NULL path). A 32-bit test is proven too: the test's
    // block is short, so each of its three predecessors is refined on its own (NULL always
    // takes the jump, the pointers' low halves never do).
    for (mutant, proven, traps) in [
        (None, true, false),
        (Some(("jeq %r8, 0, out", "ja +0")), false, true),
        (Some(("jeq %r8, 0, out", "jeq32 %r8, 0, out")), true, false),
        (Some(("mov %r8, 0", "mov %r8, 1")), false, true),
    ] {
        let text = match mutant {
            Some((from, to)) => text.replace(from, to),
            None => text.to_string(),
        };
        let program = ebpf_vm::isa::assemble(&text).unwrap();
        let vm = load(Engine::Interpreter, &program, ProgramKind::Xdp, false);
        let facts = Facts::analyse(vm.program(), vm.facts_entry());
        let at = |i: usize| matches!(facts.access(i), Access::InBounds { .. });
        assert_eq!((at(15), at(16)), (proven, proven), "{mutant:?}");
        let seen = agree(&program, ProgramKind::Xdp, &frames).unwrap_or_else(|e| panic!("{e}"));
        for (frame, (r, _)) in frames.iter().zip(&seen) {
            let null_path = frame.len() >= 20 && frame[0] == 0;
            assert_eq!(
                r.is_err(),
                null_path && traps,
                "{mutant:?} on {} bytes starting {:?}: {r:?}",
                frame.len(),
                frame.first()
            );
        }
    }
}
