//! Facts against executions of many programs: generated guarded parsers and loops with their
//! off-by-one mutants, random structured programs, arbitrary instruction sequences, the
//! conformance suite and the clang-compiled ELF fixtures. `PROPTEST_CASES` sets the number of
//! cases of each property (256 by default).

use std::path::PathBuf;

use super::idioms::packet;
use super::{Memory, check, check_speculative};
use ebpf_cfg::facts::{Access, Analysis, Entry, Facts, MetadataFields};
use ebpf_testgen::{
    ClampMutant, StructuredConfig, clamped_walk, closed_program, counted_loop, off_by_one, parser,
    parser_step, structured_with_input,
};
use proptest::prelude::*;

/// A generated parser (`ebpf_testgen::parser`) reading a kernel context's packet: its
/// prologue (`r9` the input's start, `r8` its end) replaced by loads of the metadata buffer's
/// `data` and `data_end`, in as many instructions (the loads' pcs stay).
fn on_packet(text: &str) -> String {
    let prologue = "mov %r9, %r1\nmov %r8, %r1\nadd %r8, %r2\nmov %r0, 0\n";
    assert!(text.starts_with(prologue), "{text}");
    text.replacen(
        prologue,
        "ldxdw %r9, [%r1]\nldxdw %r8, [%r1+8]\nmov %r0, 0\nmov %r0, 0\n",
        1,
    )
}

fn assemble(text: &str) -> ebpf_isa::Program {
    match ebpf_isa::assemble(text) {
        Ok(p) => p,
        Err(e) => panic!("{e}\n{text}"),
    }
}

proptest! {
    // `PROPTEST_CASES` sets the number of cases (256 by default).

    /// Generated parsers: the original's loads are all proven; original and mutant are sound
    /// on inputs of every length around what they read.
    #[test]
    fn guarded_parsers_and_their_mutants(
        steps in prop::collection::vec(parser_step(), 1..6),
        mutate in prop::option::of((0usize..24, 0u8..5)),
        data in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let (text, loads) = parser(&steps, None);
        let program = assemble(&text);
        let a = Analysis::run(&program, &Entry::input());
        for &pc in &loads {
            let i = program.iter().position(|(p, _)| p == pc).unwrap();
            prop_assert!(
                matches!(a.facts().access(i), Access::InBounds { .. }),
                "load at pc {} not proven:\n{}", pc, text
            );
        }
        for len in [0, 1, data.len() / 3, data.len() / 2, data.len()] {
            let len = len.min(data.len());
            let mem = Memory::input(&data[..len]);
            if let Err(e) = check(&program, &mem, None) {
                return Err(TestCaseError::fail(format!("{e}\n{text}")));
            }
        }
        if let Some((m, kind)) = mutate {
            let mutation = off_by_one(m, kind, steps.len());
            let (mutant, _) = parser(&steps, Some(mutation));
            let program = assemble(&mutant);
            for len in 0..=data.len().min(48) {
                let mem = Memory::input(&data[..len]);
                if let Err(e) = check(&program, &mem, None) {
                    return Err(TestCaseError::fail(format!("{e}\n{mutant}")));
                }
            }
        }
    }

    /// The same parsers on a kernel context's packet: `data` and `data_end` loaded from the
    /// metadata buffer, the packet after some headroom and before some tailroom (none: a
    /// load past the packet traps). The original's loads are all proven through `data_end
    /// <= end(input)`; original and mutant are sound on packets of every length, and on runs
    /// whose `data_end` lies past the input's end (which the entry must not admit).
    #[test]
    fn guarded_packet_parsers_and_their_mutants(
        steps in prop::collection::vec(parser_step(), 1..6),
        mutate in prop::option::of((0usize..24, 0u8..5)),
        headroom in prop::sample::select(vec![0u32, 1, 14, 256]),
        tailroom in prop::sample::select(vec![0u64, 0, 1, 7, 64]),
        len in 0u64..64,
    ) {
        let (text, loads) = parser(&steps, None);
        let text = on_packet(&text);
        let program = assemble(&text);
        let entry = Entry::metadata(MetadataFields::packet(0, 8, headroom));
        let a = Analysis::run(&program, &entry);
        for &pc in &loads {
            let i = program.iter().position(|(p, _)| p == pc).unwrap();
            prop_assert!(
                matches!(a.facts().access(i), Access::InBounds { .. }),
                "load at pc {} not proven:\n{}", pc, text
            );
        }
        let runs = |program: &ebpf_isa::Program, text: &str| -> Result<(), TestCaseError> {
            for l in [0, 1, len / 2, len] {
                for (tail, past) in [(tailroom, 0), (0, 1)] {
                    let mut mem = packet(headroom, l, tail);
                    mem.packet = mem.packet.map(|(h, end)| (h, end + past));
                    if let Err(e) = check(program, &mem, None) {
                        return Err(TestCaseError::fail(format!("{e}\n{text}")));
                    }
                }
            }
            Ok(())
        };
        runs(&program, &text)?;
        if let Some((m, kind)) = mutate {
            let mutation = off_by_one(m, kind, steps.len());
            let (mutant, _) = parser(&steps, Some(mutation));
            let mutant = on_packet(&mutant);
            runs(&assemble(&mutant), &mutant)?;
        }
    }

    /// Counted loops over the input, and their mutants (`<=`, a load past its element).
    #[test]
    fn counted_loops_and_their_mutants(
        stride_log in 0u8..4,
        width_log in 0u8..4,
        at in 0u8..9,
        by_index in any::<bool>(),
        le in any::<bool>(),
        len in 0usize..70,
    ) {
        let width_log = width_log.min(stride_log);
        let fits = u32::from(at) + (1u32 << width_log) <= 1 << stride_log;
        let text = counted_loop(stride_log, width_log, at, by_index, le);
        let program = assemble(&text);
        let a = Analysis::run(&program, &Entry::input());
        let load = program
            .insns()
            .iter()
            .position(|i| matches!(i, ebpf_isa::Insn::Load { .. }))
            .unwrap();
        if fits && !le {
            prop_assert!(
                matches!(a.facts().access(load), Access::InBounds { .. }),
                "not proven:\n{}", text
            );
        }
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        if let Err(e) = check(&program, &Memory::input(&data), None) {
            return Err(TestCaseError::fail(format!("{e}\n{text}")));
        }
    }

    /// `n = min(len >> s, cap)`, the length's register overwritten, then a walk over `n`
    /// elements and a read of the last: the original's loads are all proven (`n <= (End -
    /// v) >> s` kept over the unshifted bound the overwrite derives); its mutants (a cap one
    /// element too large, the cap taken too early, `<=`, `v[n]`) only as far as every run
    /// allows, on lengths around the cap's.
    #[test]
    fn clamped_walks_and_their_mutants(
        stride_log in 0u8..4,
        cap in 1u32..48,
        mutant in prop::sample::select(vec![
            ClampMutant::None,
            ClampMutant::None,
            ClampMutant::CapPlusOne,
            ClampMutant::ThresholdLow,
            ClampMutant::Inclusive,
            ClampMutant::PastLast,
        ]),
        around in -3i64..3,
        extra in 0u64..8,
    ) {
        let text = clamped_walk(stride_log, cap, mutant);
        let program = assemble(&text);
        let a = Analysis::run(&program, &Entry::input());
        if mutant == ClampMutant::None {
            for (i, insn) in program.insns().iter().enumerate() {
                // (The first walk is unreachable when the cap is 1.)
                if matches!(insn, ebpf_isa::Insn::Load { .. }) && a.facts().reached(i) {
                    prop_assert!(
                        matches!(a.facts().access(i), Access::InBounds { .. }),
                        "{} not proven:\n{}", i, text
                    );
                }
            }
        }
        let elems = (i64::from(cap) + around).max(0) as u64;
        for len in [0, 1, (elems << stride_log) + (extra & ((1 << stride_log) - 1))] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            if let Err(e) = check(&program, &Memory::input(&data), None) {
                return Err(TestCaseError::fail(format!("{e}\n{text}")));
            }
        }
    }

    /// A pointer and a counter walked down together from the end of `n` elements (`p = v +
    /// (n << size)`, `j = n`): the original (`p -= 1 << size`, `j -= 1`, on while `j != 0`,
    /// reading `p[-1]`) has its load proven; its mutants (other steps of either, another exit
    /// test, another offset, one path that skips the counter's step) are only as proven as
    /// every run of them allows.
    #[test]
    fn pointer_and_counter_stepped_together(
        size_log in 0u8..4,
        pointer_step in prop::option::weighted(0.25, -9i32..0),
        counter_step in prop::option::weighted(0.25, -2i32..0),
        exit in 0usize..10,
        off in prop::option::weighted(0.25, -17i32..9),
        skip in prop::bool::weighted(0.2),
        len in 0usize..70,
    ) {
        let size = 1i32 << size_log;
        let load = ["ldxb", "ldxh", "ldxw", "ldxdw"][usize::from(size_log)];
        // The original's test half the time.
        let test = [
            "jne %r6, 0, loop",
            "jsgt %r6, -1, loop",
            "jgt %r6, 1, loop",
            "jne32 %r6, 0, loop",
            "jsgt32 %r6, 0, loop",
        ][exit.saturating_sub(5)];
        let skip_step = if skip { "jeq %r5, 7, stepped\n" } else { "" };
        let text = format!(
            "mov %r0, 0
            mov %r6, %r2
            rsh %r6, {size_log}
            jeq %r6, 0, out
            mov %r4, %r6
            lsh %r4, {size_log}
            add %r4, %r1
            loop:
            {load} %r5, [%r4{off:+}]
            add %r0, %r5
            add %r4, {pointer}
            {skip_step}add %r6, {counter}
            stepped:
            {test}
            out:
            exit",
            off = off.unwrap_or(-size),
            pointer = pointer_step.unwrap_or(-size),
            counter = counter_step.unwrap_or(-1),
        );
        let program = assemble(&text);
        let original = pointer_step.is_none()
            && counter_step.is_none()
            && exit <= 5
            && off.is_none()
            && !skip;
        if original {
            let a = Analysis::run(&program, &Entry::input());
            let load = program
                .insns()
                .iter()
                .position(|i| matches!(i, ebpf_isa::Insn::Load { .. }))
                .unwrap();
            prop_assert!(
                matches!(a.facts().access(load), Access::InBounds { .. }),
                "not proven:\n{}", text
            );
        }
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        if let Err(e) = check(&program, &Memory::input(&data), None) {
            return Err(TestCaseError::fail(format!("{e}\n{text}")));
        }
    }

    /// Random structured programs (calls, loops, stack and input accesses, every ALU and
    /// atomic operation).
    #[test]
    fn structured_programs((s, input) in structured_with_input(StructuredConfig::default())) {
        if let Err(e) = check(&s.program, &Memory::input(&input), Some(s.max_steps + 10)) {
            return Err(TestCaseError::fail(format!("{e}\n{}", ebpf_isa::disassemble(&s.program))));
        }
    }

    /// Speculation: the same programs with their branches decided in advance (every path a
    /// mispredicting CPU may take): an access proven speculation-safe is in bounds on every
    /// such path, whichever way each branch goes.
    #[test]
    fn speculation_safe_proofs_hold_on_mispredicted_paths(
        (s, input) in structured_with_input(StructuredConfig::default()),
        steps in prop::collection::vec(parser_step(), 1..6),
        taken in any::<u64>(),
    ) {
        if let Err(e) = check_speculative(&s.program, &Memory::input(&input), taken) {
            return Err(TestCaseError::fail(format!("{e}\n{}", ebpf_isa::disassemble(&s.program))));
        }
        let (text, _) = parser(&steps, None);
        let program = assemble(&text);
        for len in [0, input.len() / 2, input.len()] {
            if let Err(e) = check_speculative(&program, &Memory::input(&input[..len]), taken) {
                return Err(TestCaseError::fail(format!("{e}\n{text}")));
            }
        }
        // The same parser on a kernel context's packet (no tailroom: a load past it traps).
        let text = on_packet(&text);
        let program = assemble(&text);
        for len in [0, input.len() as u64 / 2, input.len() as u64] {
            if let Err(e) = check_speculative(&program, &packet(16, len, 0), taken) {
                return Err(TestCaseError::fail(format!("{e}\n{text}")));
            }
        }
    }

    /// Without the speculative solve: every fact the same (each access's region, proven or
    /// not, divisions, reachability, versions, loops), except that no access is
    /// speculation-safe.
    #[test]
    fn facts_without_speculation_differ_only_in_speculation(
        (s, _input) in structured_with_input(StructuredConfig::default()),
        steps in prop::collection::vec(parser_step(), 1..6),
    ) {
        let (text, _) = parser(&steps, None);
        for program in [s.program, assemble(&text)] {
            for entry in [Entry::input(), Entry::unknown()] {
                let full = Facts::analyse(&program, &entry);
                let plain = Facts::analyse_without_speculation(&program, &entry);
                for i in 0..program.len() {
                    let cautious = match full.access(i) {
                        Access::InBounds { region, .. } => Access::InBounds {
                            region,
                            speculation_safe: false,
                        },
                        other => other,
                    };
                    prop_assert_eq!(plain.access(i), cautious, "{}", i);
                    prop_assert_eq!(plain.division(i), full.division(i));
                    prop_assert_eq!(plain.reached(i), full.reached(i));
                }
                prop_assert_eq!(plain.versions(), full.versions());
                prop_assert_eq!(plain.loops(), full.loops());
            }
        }
    }

    /// Arbitrary instruction sequences that jump only inside themselves: traps, wild
    /// pointers, jumps between functions, calls.
    #[test]
    fn arbitrary_programs(
        program in closed_program(1..40),
        data in prop::collection::vec(any::<u8>(), 0..64),
        budget in 1u64..400,
    ) {
        if let Err(e) = check(&program, &Memory::input(&data), Some(budget)) {
            return Err(TestCaseError::fail(format!("{e}\n{}", ebpf_isa::disassemble(&program))));
        }
    }
}

#[test]
fn the_conformance_suite() {
    let Some((files, _)) = ebpf_testdata::suite() else {
        return;
    };
    for path in files {
        let v = ebpf_testdata::read(&path).unwrap();
        let program = ebpf_isa::assemble_lines(&v.asm_lines()).unwrap();
        let mem = Memory {
            input: v.mem.clone(),
            ..Memory::default()
        };
        if let Err(e) = check(&program, &mem, None) {
            panic!("{}: {e}", path.display());
        }
    }
}

/// The clang-compiled fixtures in `tests/elf`, on each of their inputs.
#[test]
fn the_elf_fixtures() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/elf");
    let expected = std::fs::read_to_string(root.join("expected.txt")).unwrap();
    let mut runs = 0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (object, function, input) = (f[0], f[1], f[2]);
        let bytes = std::fs::read(root.join(format!("{object}.o"))).unwrap();
        let elf = ebpf_elf::ElfObject::parse(&bytes).unwrap();
        let loaded = elf.load(ebpf_elf::Selector::Function(function)).unwrap();
        let hex = std::fs::read_to_string(root.join(format!("inputs/{input}.hex"))).unwrap();
        let data: Vec<u8> = hex
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.split_whitespace())
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        let mem = Memory {
            input: Some(data),
            rodata: loaded.rodata.clone(),
            data: loaded.data.clone(),
            ..Memory::default()
        };
        if let Err(e) = check(&loaded.program, &mem, Some(10_000_000)) {
            panic!("{object} {function} {input}: {e}");
        }
        runs += 1;
    }
    assert!(runs > 40, "{runs} runs");
}

/// The engines bench's programs (`ebpf-bench/programs`), which bound their loops by lengths
/// and counts read from the input.
const BENCH: [(&str, &str); 6] = [
    ("poly", include_str!("../../../ebpf-bench/programs/poly.s")),
    ("hash", include_str!("../../../ebpf-bench/programs/hash.s")),
    ("sort", include_str!("../../../ebpf-bench/programs/sort.s")),
    (
        "packet",
        include_str!("../../../ebpf-bench/programs/packet.s"),
    ),
    (
        "divmod",
        include_str!("../../../ebpf-bench/programs/divmod.s"),
    ),
    (
        "histogram",
        include_str!("../../../ebpf-bench/programs/histogram.s"),
    ),
];

proptest! {
    /// The bench programs on random bodies whose length field (and count field) is right,
    /// short, long or absurd: facts, versions and loop counts hold on every run.
    #[test]
    fn bench_programs_with_lying_headers(
        which in 0usize..BENCH.len(),
        body in prop::collection::vec(any::<u8>(), 0..160),
        lie in prop::sample::select(vec![0i64, 0, 0, -1, -8, 1, 8, 1 << 20, i64::MAX]),
        count in prop::sample::select(vec![None, Some(0u64), Some(1), Some(3), Some(9), Some(u64::MAX / 4)]),
    ) {
        let (name, source) = BENCH[which];
        let program = assemble(source);
        let mut input = Vec::new();
        let len = (body.len() as i64 + 8).wrapping_add(lie) as u64;
        input.extend_from_slice(&len.to_le_bytes());
        input.extend_from_slice(&body);
        if let (Some(n), true) = (count, input.len() >= 16) {
            input[8..16].copy_from_slice(&n.to_le_bytes());
        }
        if let Err(e) = check(&program, &Memory::input(&input), Some(300_000)) {
            return Err(TestCaseError::fail(format!("{name}: {e}")));
        }
    }
}
