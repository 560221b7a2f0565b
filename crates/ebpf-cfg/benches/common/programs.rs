//! Large generated programs for the control-flow-graph and verifier benchmarks (shared by
//! `ebpf-cfg/benches/cfg.rs` and `ebpf-verifier/benches/verify.rs`, which include this file
//! with `#[path]`, so both measure the very same programs).
//!
//! Every program is valid — it passes the verifier with the default configuration — so the
//! verifier benchmark measures the whole pipeline, not an early rejection.

use std::time::Duration;

use ebpf_isa::{AluOp, CallKind, Cond, Insn, Operand, Program, Reg, Size, Width};

/// One million instructions: the size the benchmarks are about.
pub(crate) const MILLION: usize = 1_000_000;

/// Makes a program of about the given number of instructions.
pub(crate) type Make = fn(usize) -> Program;

/// The program shapes, by name.
pub(crate) const SHAPES: [(&str, Make); 5] = [
    ("loops", loops),
    ("nested", nested),
    ("branches", branches),
    ("calls", calls),
    ("functions", functions),
];

/// Whether shape `name` may be benchmarked at [`MILLION`] instructions: `measure(n)` (the time
/// of one operation on an `n`-instruction program) is probed at 10,000 and 100,000, and the
/// 1,000,000 time extrapolated cautiously from the growth; a projection over `skip_above` is
/// reported and refused, so a superlinear regression shows up as a message instead of an
/// hours-long run.
pub(crate) fn worth_a_million(
    name: &str,
    skip_above: Duration,
    mut measure: impl FnMut(usize) -> Duration,
) -> bool {
    let small = measure(10_000);
    let medium = measure(100_000);
    let growth = medium.as_secs_f64() / small.as_secs_f64().max(1e-9);
    // Cautious: a growth above 10x is taken to get worse with size (quadratic costs dominate
    // more as the size grows), so the factor is growth² / 10, in 10..=100.
    let factor = (growth * growth / 10.0).clamp(10.0, 100.0);
    let projected = Duration::from_secs_f64(medium.as_secs_f64() * factor);
    println!(
        "{name}: 10k {small:.2?}, 100k {medium:.2?} (x{growth:.0} for 10x the size), \
         1M projected {projected:.2?}"
    );
    if projected > skip_above {
        println!("{name}: not benchmarked at 1M: projected over {skip_above:?}");
        return false;
    }
    true
}

fn alu(op: AluOp, dst: Reg, src: Operand) -> Insn {
    Insn::Alu {
        width: Width::W64,
        op,
        dst,
        src,
    }
}

fn imm(i: i32) -> Operand {
    Operand::Imm(i)
}

fn jump(cond: Cond, dst: Reg, value: i32, off: i16) -> Insn {
    Insn::Jump {
        width: Width::W64,
        cond,
        dst,
        src: imm(value),
        off,
    }
}

/// Pads with `add r0, 1` to `n - 1` instructions and ends with `exit`.
fn finish(mut v: Vec<Insn>, n: usize) -> Program {
    while v.len() + 1 < n {
        v.push(alu(AluOp::Add, Reg::R0, imm(1)));
    }
    v.push(Insn::Exit);
    Program::from_insns(v)
}

/// Repeated 9-instruction blocks, each a counted loop (3 iterations) around a stack store, a
/// stack load and a branch: about n / 9 loops, n / 2 basic blocks, all in one function.
pub(crate) fn loops(n: usize) -> Program {
    let mut v = vec![alu(AluOp::Mov, Reg::R0, imm(0))];
    while v.len() + 10 < n {
        v.push(alu(AluOp::Mov, Reg::R2, imm(1)));
        // loop:
        v.push(alu(AluOp::Add, Reg::R0, Operand::Reg(Reg::R2)));
        v.push(Insn::Store {
            size: Size::DW,
            dst: Reg::R10,
            off: -8,
            src: Operand::Reg(Reg::R0),
        });
        v.push(Insn::Load {
            size: Size::DW,
            signed: false,
            dst: Reg::R3,
            src: Reg::R10,
            off: -8,
        });
        v.push(jump(Cond::Gt, Reg::R3, 100, 1));
        v.push(alu(AluOp::Add, Reg::R0, imm(1)));
        v.push(alu(AluOp::Add, Reg::R2, imm(1)));
        v.push(jump(Cond::Lt, Reg::R2, 4, -7));
        v.push(alu(AluOp::Xor, Reg::R0, imm(3)));
    }
    finish(v, n)
}

/// The blocks of [`loops`] inside one outer loop (run twice, `ja32` back to the top): one
/// natural loop containing every other one.
pub(crate) fn nested(n: usize) -> Program {
    let mut v = loops(n.saturating_sub(4).max(12)).into_insns();
    v.pop(); // the exit
    let top = 1; // after `mov r0, 0`
    v.insert(top, alu(AluOp::Mov, Reg::R7, imm(0)));
    v.push(alu(AluOp::Add, Reg::R7, imm(1)));
    v.push(jump(Cond::Ge, Reg::R7, 2, 1));
    let back = top as i64 + 1 - (v.len() as i64 + 1);
    v.push(Insn::Ja32 {
        imm: i32::try_from(back).expect("fits"),
    });
    v.push(Insn::Exit);
    Program::from_insns(v)
}

/// Repeated 5-instruction diamonds (if/else, no loops): the program is loop-free, so the
/// verifier also computes its longest path.
pub(crate) fn branches(n: usize) -> Program {
    let mut v = vec![alu(AluOp::Mov, Reg::R0, imm(0))];
    while v.len() + 6 < n {
        v.push(jump(Cond::Eq, Reg::R1, 0, 2));
        v.push(alu(AluOp::Add, Reg::R0, imm(1)));
        v.push(Insn::Ja { off: 1 });
        v.push(alu(AluOp::Add, Reg::R0, imm(2)));
        v.push(alu(AluOp::Xor, Reg::R0, imm(5)));
    }
    finish(v, n)
}

/// Diamonds as in [`branches`], with a local call to one of 16 small functions before every
/// tenth one: a main function with many blocks and many call sites.
pub(crate) fn calls(n: usize) -> Program {
    const FUNCS: usize = 16;
    const FUNC_LEN: usize = 4;
    let main_len = n.saturating_sub(FUNCS * FUNC_LEN).max(2);
    let mut v = vec![alu(AluOp::Mov, Reg::R6, imm(0))];
    let mut calls = Vec::new();
    let mut k = 0usize;
    while v.len() + 7 < main_len {
        if k.is_multiple_of(10) {
            // The argument: a call leaves r1-r5 unwritten for the verifier, so pass it anew.
            v.push(alu(AluOp::Mov, Reg::R1, Operand::Reg(Reg::R6)));
            calls.push((v.len(), (k / 10) % FUNCS));
            v.push(Insn::Call {
                kind: CallKind::Local,
                imm: 0,
            });
        }
        k += 1;
        v.push(jump(Cond::Eq, Reg::R6, 0, 2));
        v.push(alu(AluOp::Add, Reg::R6, imm(1)));
        v.push(Insn::Ja { off: 1 });
        v.push(alu(AluOp::Add, Reg::R6, imm(2)));
    }
    v.push(alu(AluOp::Mov, Reg::R0, Operand::Reg(Reg::R6)));
    v.push(Insn::Exit);
    let mut entries = Vec::with_capacity(FUNCS);
    for _ in 0..FUNCS {
        entries.push(v.len());
        v.push(alu(AluOp::Mov, Reg::R0, Operand::Reg(Reg::R1)));
        v.push(jump(Cond::Eq, Reg::R0, 0, 1));
        v.push(alu(AluOp::Add, Reg::R0, imm(1)));
        v.push(Insn::Exit);
    }
    // No lddw anywhere: instruction indices are pcs.
    for (pc, f) in calls {
        let imm = entries[f] as i64 - pc as i64 - 1;
        v[pc] = Insn::Call {
            kind: CallKind::Local,
            imm: i32::try_from(imm).expect("fits"),
        };
    }
    Program::from_insns(v)
}

/// A main function calling n / 11 small functions of 10 instructions (each with a branch),
/// one after the other: many functions.
pub(crate) fn functions(n: usize) -> Program {
    const LEN: usize = 10;
    let count = (n.saturating_sub(1) / (LEN + 1)).max(1);
    let mut v = Vec::with_capacity(n);
    for i in 0..count {
        // Function i starts at count + 1 + i * LEN.
        let entry = count + 1 + i * LEN;
        v.push(Insn::Call {
            kind: CallKind::Local,
            imm: i32::try_from(entry - i - 1).expect("fits"),
        });
    }
    v.push(Insn::Exit);
    for _ in 0..count {
        // Not r1: only the first call would pass it written (a call clobbers r1-r5).
        v.push(alu(AluOp::Mov, Reg::R0, Operand::Reg(Reg::R10)));
        for _ in 0..LEN - 3 {
            v.push(alu(AluOp::Add, Reg::R0, imm(1)));
        }
        v.push(jump(Cond::Eq, Reg::R0, 0, 0));
        v.push(Insn::Exit);
    }
    Program::from_insns(v)
}
