//! Facts against executions of many programs: generated guarded parsers and loops with their
//! off-by-one mutants, random structured programs, arbitrary instruction sequences, the
//! conformance suite and the clang-compiled ELF fixtures. `PROPTEST_CASES` sets the number of
//! cases of each property (256 by default).

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{Memory, check};
use ebpf_cfg::facts::{Access, Analysis, Entry};
use ebpf_testgen::{StructuredConfig, closed_program, structured_with_input};
use proptest::prelude::*;

/// A guard against the input's end, written one of the ways programs write it.
#[derive(Clone, Copy, Debug)]
enum Guard {
    /// `if (p + n > end) goto drop`
    Gt,
    /// `if (p + n - 1 >= end) goto drop`
    GeMinusOne,
    /// `if (end < p + n) goto drop`
    ReversedLt,
    /// `if (p + n s> end) goto drop`
    SignedGt,
    /// `if (len < n) goto drop` on the remaining length, 32-bit
    Len32,
}

/// One step of a generated parser.
#[derive(Clone, Debug)]
enum Step {
    /// A guard for `n` bytes at `p`, then loads at offsets inside them.
    Header {
        n: u8,
        guard: Guard,
        loads: Vec<(u8, u8)>,
    },
    /// `p += k`.
    Skip(u8),
    /// `p += *p & mask` (after a header of at least one byte).
    VarSkip(u8),
}

/// How a mutant breaks the program by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutation {
    /// A load one byte further.
    LoadPlusOne(usize),
    /// A guard for one byte fewer.
    GuardMinusOne(usize),
    /// `>=` instead of `>` (or the other way round): off by one byte.
    SwapStrictness(usize),
    /// The guard's sum computed in 32 bits (it wraps: a pointer's low half is tiny).
    Wrap32(usize),
    /// A signed compare of an unsigned length.
    Signed(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u8..40, prop::sample::select(vec![Guard::Gt, Guard::GeMinusOne, Guard::ReversedLt, Guard::SignedGt, Guard::Len32]),
              prop::collection::vec((0u8..40, 0u8..4), 1..4))
            .prop_map(|(n, guard, loads)| Step::Header { n, guard, loads }),
        1 => (0u8..20).prop_map(Step::Skip),
        1 => prop::sample::select(vec![3u8, 7, 15, 60]).prop_map(Step::VarSkip),
    ]
}

/// The parser as assembly: `r9` walks the input, `r8` is its end. Loads are clamped into their
/// header, so only a mutation can make one run past the guard.
fn parser(steps: &[Step], mutation: Option<Mutation>) -> (String, Vec<usize>) {
    let mut s = String::from("mov %r9, %r1\nmov %r8, %r1\nadd %r8, %r2\nmov %r0, 0\n");
    let mut pc = 4usize;
    let mut loads = Vec::new();
    let mut header = 0u8;
    // Whether the bytes of the current header are provable (`end - p < n` is not: it needs
    // p <= end first, which a parser may not have).
    let mut provable = true;
    for (k, st) in steps.iter().enumerate() {
        match st {
            Step::Header {
                n,
                guard,
                loads: ls,
            } => {
                let minus = matches!(mutation, Some(Mutation::GuardMinusOne(m)) if m == k);
                let n = if minus { n - 1 } else { *n };
                let this = |m: fn(usize) -> Mutation| mutation == Some(m(k));
                let add = if this(Mutation::Wrap32) {
                    "add32"
                } else {
                    "add"
                };
                let (gt, ge) = if this(Mutation::SwapStrictness) {
                    ("jge", "jgt")
                } else {
                    ("jgt", "jge")
                };
                let lt32 = if this(Mutation::Signed) {
                    "jslt32"
                } else {
                    "jlt32"
                };
                let lines = match guard {
                    Guard::Gt => format!("mov %r3, %r9\n{add} %r3, {n}\n{gt} %r3, %r8, drop\n"),
                    Guard::GeMinusOne => format!(
                        "mov %r3, %r9\n{add} %r3, {}\n{ge} %r3, %r8, drop\n",
                        i32::from(n) - 1
                    ),
                    Guard::ReversedLt => {
                        format!("mov %r3, %r9\n{add} %r3, {n}\njlt %r8, %r3, drop\n")
                    }
                    Guard::SignedGt => {
                        format!("mov %r3, %r9\n{add} %r3, {n}\njsgt %r3, %r8, drop\n")
                    }
                    Guard::Len32 => {
                        format!("mov %r3, %r8\nsub %r3, %r9\n{lt32} %r3, {n}, drop\n")
                    }
                };
                pc += 3;
                s.push_str(&lines);
                header = n;
                provable = !matches!(guard, Guard::Len32);
                for (j, &(off, size)) in ls.iter().enumerate() {
                    let bytes = 1u8 << size;
                    if bytes > header {
                        continue;
                    }
                    let mut off = off.min(header - bytes);
                    if matches!(mutation, Some(Mutation::LoadPlusOne(m)) if m == k * 4 + j) {
                        off += 1;
                    }
                    let op = ["ldxb", "ldxh", "ldxw", "ldxdw"][usize::from(size)];
                    let _ = writeln!(s, "{op} %r4, [%r9+{off}]\nxor %r0, %r4");
                    if provable {
                        loads.push(pc);
                    }
                    pc += 2;
                }
            }
            Step::Skip(k) => {
                let _ = writeln!(s, "add %r9, {k}");
                pc += 1;
                header = header.saturating_sub(*k);
            }
            Step::VarSkip(mask) => {
                if header == 0 {
                    continue;
                }
                let _ = writeln!(s, "ldxb %r4, [%r9]\nand %r4, {mask}\nadd %r9, %r4");
                if provable {
                    loads.push(pc);
                }
                pc += 3;
                header = 0;
            }
        }
    }
    s.push_str("exit\ndrop:\nmov %r0, 1\nexit\n");
    (s, loads)
}

/// A loop over the input: `count` elements of `stride` bytes (from `len >> log2(stride)`),
/// each read with a `width`-byte load at offset `at`, by pointer or by index.
fn counted_loop(stride_log: u8, width_log: u8, at: u8, by_index: bool, le: bool) -> String {
    let stride = 1u32 << stride_log;
    let cmp = if le { "jle" } else { "jlt" };
    let op = ["ldxb", "ldxh", "ldxw", "ldxdw"][usize::from(width_log)];
    if by_index {
        format!(
            "mov %r0, 0\nmov %r3, %r2\nrsh %r3, {stride_log}\njeq %r3, 0, out\nmov %r4, 0\n\
             loop:\nmov %r5, %r4\nlsh %r5, {stride_log}\nadd %r5, %r1\n{op} %r6, [%r5+{at}]\n\
             add %r0, %r6\nadd %r4, 1\n{cmp} %r4, %r3, loop\nout:\nexit"
        )
    } else {
        format!(
            "mov %r0, 0\nmov %r3, %r2\nrsh %r3, {stride_log}\njeq %r3, 0, out\nmov %r4, 0\n\
             loop:\n{op} %r6, [%r1+{at}]\nadd %r0, %r6\nadd %r1, {stride}\nadd %r4, 1\n\
             {cmp} %r4, %r3, loop\nout:\nexit"
        )
    }
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
        steps in prop::collection::vec(step(), 1..6),
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
            let step = m % steps.len().max(1);
            let mutation = match kind {
                0 => Mutation::LoadPlusOne(m),
                1 => Mutation::GuardMinusOne(step),
                2 => Mutation::SwapStrictness(step),
                3 => Mutation::Wrap32(step),
                _ => Mutation::Signed(step),
            };
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

    /// Random structured programs (calls, loops, stack and input accesses, every ALU and
    /// atomic operation).
    #[test]
    fn structured_programs((s, input) in structured_with_input(StructuredConfig::default())) {
        if let Err(e) = check(&s.program, &Memory::input(&input), Some(s.max_steps + 10)) {
            return Err(TestCaseError::fail(format!("{e}\n{}", ebpf_isa::disassemble(&s.program))));
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
            metadata: false,
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
