//! Programs that guard their input accesses the ways real programs do, and their off-by-one
//! mutants: packet parsers (`if (p + n > end) goto drop`, then loads inside the `n` bytes) and
//! loops over the input counted from its length. An original never reads past what it
//! checked; a mutant may, by exactly the mistakes people make (one byte further, `>=` for
//! `>`, a 32-bit sum that wraps, a signed compare of a length, `<=` for `<`). Static analyses
//! must prove the originals' accesses and not the mutants' faulty ones; engines must agree on
//! both and never trap on an original.

use std::fmt::Write as _;

use proptest::prelude::*;

/// A guard against the input's end, written one of the ways programs write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
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
    /// `q = p > end ? NULL : p; if (p > end) goto drop; if (q + n > end) goto drop; p = q`:
    /// what clang makes of a helper returning NULL or the header (`l4_header`) tested with
    /// `if (!q || q + 1 > end)` — the second test re-tests `p`, not `q`.
    Retest,
}

/// One step of a generated parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParserStep {
    /// A guard for `n` bytes at `p`, then loads at offsets inside them: `(offset, log2 of the
    /// width)`, offsets clamped into the header.
    Header {
        /// Bytes the guard checks.
        n: u8,
        /// How it checks them.
        guard: Guard,
        /// The loads after it.
        loads: Vec<(u8, u8)>,
    },
    /// `p += k`.
    Skip(u8),
    /// `p += *p & mask` (after a header of at least one byte).
    VarSkip(u8),
}

/// How a mutant breaks a parser by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffByOne {
    /// Load number `k` (step index × 4 + load index) reads one byte further.
    LoadPlusOne(usize),
    /// Step `k`'s guard checks one byte fewer.
    GuardMinusOne(usize),
    /// Step `k` uses `>=` instead of `>` (or the other way round): off by one byte.
    SwapStrictness(usize),
    /// Step `k` computes the guard's sum in 32 bits (it wraps: a pointer's low half is tiny).
    Wrap32(usize),
    /// Step `k` compares the remaining length signed.
    Signed(usize),
}

/// A parser step: mostly headers, some fixed and variable skips.
pub fn parser_step() -> impl Strategy<Value = ParserStep> {
    let guard = prop::sample::select(vec![
        Guard::Gt,
        Guard::GeMinusOne,
        Guard::ReversedLt,
        Guard::SignedGt,
        Guard::Len32,
        Guard::Retest,
    ]);
    prop_oneof![
        4 => (1u8..40, guard, prop::collection::vec((0u8..40, 0u8..4), 1..4))
            .prop_map(|(n, guard, loads)| ParserStep::Header { n, guard, loads }),
        1 => (0u8..20).prop_map(ParserStep::Skip),
        1 => prop::sample::select(vec![3u8, 7, 15, 60]).prop_map(ParserStep::VarSkip),
    ]
}

/// A mutation of a parser of `steps` steps: `(which, kind)` from any numbers (a strategy can
/// draw them independently of the steps).
pub fn off_by_one(which: usize, kind: u8, steps: usize) -> OffByOne {
    let step = which % steps.max(1);
    match kind % 5 {
        0 => OffByOne::LoadPlusOne(which),
        1 => OffByOne::GuardMinusOne(step),
        2 => OffByOne::SwapStrictness(step),
        3 => OffByOne::Wrap32(step),
        _ => OffByOne::Signed(step),
    }
}

/// A parser in the assembler's syntax: `r1`/`r2` are the input's start and length at entry,
/// `r9` walks the input, `r8` is its end; it exits with 1 at `drop`, else with the loaded
/// bytes xored. Also returns the pcs of the loads a guard proves (those after a `Len32`
/// guard are not provable: `end - p < n` says nothing unless `p <= end` is known).
pub fn parser(steps: &[ParserStep], mutation: Option<OffByOne>) -> (String, Vec<usize>) {
    let mut s = String::from("mov %r9, %r1\nmov %r8, %r1\nadd %r8, %r2\nmov %r0, 0\n");
    let mut pc = 4usize;
    let mut loads = Vec::new();
    let mut header = 0u8;
    let mut provable = true;
    for (k, st) in steps.iter().enumerate() {
        match st {
            ParserStep::Header {
                n,
                guard,
                loads: ls,
            } => {
                let this = |m: fn(usize) -> OffByOne| mutation == Some(m(k));
                let n = if this(OffByOne::GuardMinusOne) {
                    n - 1
                } else {
                    *n
                };
                let add = if this(OffByOne::Wrap32) {
                    "add32"
                } else {
                    "add"
                };
                let (gt, ge) = if this(OffByOne::SwapStrictness) {
                    ("jge", "jgt")
                } else {
                    ("jgt", "jge")
                };
                let lt32 = if this(OffByOne::Signed) {
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
                    Guard::Retest => format!(
                        "mov %r5, 0\njgt %r9, %r8, +1\nmov %r5, %r9\njgt %r9, %r8, drop\n\
                         mov %r3, %r5\n{add} %r3, {n}\n{gt} %r3, %r8, drop\nmov %r9, %r5\n"
                    ),
                };
                pc += lines.lines().count();
                s.push_str(&lines);
                header = n;
                provable = !matches!(guard, Guard::Len32);
                for (j, &(off, size)) in ls.iter().enumerate() {
                    let bytes = 1u8 << size;
                    if bytes > header {
                        continue;
                    }
                    let mut off = off.min(header - bytes);
                    if mutation == Some(OffByOne::LoadPlusOne(k * 4 + j)) {
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
            ParserStep::Skip(k) => {
                let _ = writeln!(s, "add %r9, {k}");
                pc += 1;
                header = header.saturating_sub(*k);
            }
            ParserStep::VarSkip(mask) => {
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

/// A loop over the input in the assembler's syntax: `len >> stride_log` elements of
/// `1 << stride_log` bytes, each read with a `1 << width_log`-byte load at offset `at`, by
/// pointer or by index (`by_index`), the counter compared with `<` or, a mutant, `<=` (`le`).
/// The original (`!le`, `at + width <= stride`) reads only inside the input; it exits with the
/// sum of what it read.
pub fn counted_loop(stride_log: u8, width_log: u8, at: u8, by_index: bool, le: bool) -> String {
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

/// How a mutant breaks a [`clamped_walk`] by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClampMutant {
    /// The original.
    None,
    /// The cap is one element more than the lengths that take it hold (`n = cap + 1`).
    CapPlusOne,
    /// The cap is taken from one element below its length (`len < (cap - 1) << s`).
    ThresholdLow,
    /// The walk runs to `i <= n`.
    Inclusive,
    /// The last element is read one element further (`v[n]` for `v[n - 1]`).
    PastLast,
}

/// clang's `n = min(len >> stride_log, cap)` (`cap` at least 1) followed by two walks over
/// `n` elements of `1 << stride_log` bytes by a pointer stepped beside a counter — the first
/// from element 1 (skipped when `n < 2`), its counter in the length's register, which an
/// `lddw` then overwrites — and a read of the last
/// element after them (`tests/elf/loops/sort.c`'s sort and checksum loops): every element is
/// read with a load of the whole element. The mutants change the `min` and the second walk. The original reads only inside the input; it exits with
/// the sum of what it read.
pub fn clamped_walk(stride_log: u8, cap: u32, mutant: ClampMutant) -> String {
    let stride = 1u64 << stride_log;
    let op = ["ldxb", "ldxh", "ldxw", "ldxdw"][usize::from(stride_log.min(3))];
    let cap = u64::from(cap.max(1));
    let threshold = match mutant {
        ClampMutant::ThresholdLow => (cap - 1) << stride_log,
        _ => cap << stride_log,
    };
    let capped = if mutant == ClampMutant::CapPlusOne {
        cap + 1
    } else {
        cap
    };
    let cmp = if mutant == ClampMutant::Inclusive {
        "jle"
    } else {
        "jlt"
    };
    let last: i64 = if mutant == ClampMutant::PastLast {
        0
    } else {
        -(1i64 << stride_log)
    };
    format!(
        "mov %r3, %r2\nrsh %r3, {stride_log}\njlt %r2, {threshold}, small\nmov %r3, {capped}\n\
         small:\nmov %r0, 0\njlt %r3, 2, second\nmov %r2, 1\nmov %r4, %r1\n\
         add %r4, {stride}\nfirst:\n{op} %r6, [%r4]\nxor %r0, %r6\nadd %r4, {stride}\n\
         add %r2, 1\njlt %r2, %r3, first\nsecond:\njeq %r3, 0, out\n\
         lddw %r2, 0x100000001b3\nmov %r4, 0\n\
         mov %r5, %r1\nwalk:\n{op} %r6, [%r5]\nadd %r0, %r6\nadd %r5, {stride}\nadd %r4, 1\n\
         {cmp} %r4, %r3, walk\nmul %r0, %r2\nlsh %r3, {stride_log}\nadd %r1, %r3\n\
         {op} %r6, [%r1{last:+}]\nadd %r0, %r6\nout:\nexit"
    )
}
