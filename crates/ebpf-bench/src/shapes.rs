//! Large generated programs of four shapes, for compile-time scaling: straight-line code,
//! branchy code, loops and many sub-programs, each of about `n` instructions and accepted by
//! the verifier (with a budget, for the loops).
//!
//! Every shape touches the stack and computes an `r0` from its input registers, so that no
//! engine can fold the program away; none of them traps on any input.

use ebpf_isa::builder::Builder;
use ebpf_isa::{Program, Reg};

/// A generator: a program of about this many instructions.
pub type Generator = fn(usize) -> Program;

/// The shapes, by name: `straight`, `branchy`, `loops`, `calls`.
pub const SHAPES: &[(&str, Generator)] = &[
    ("straight", straight),
    ("branchy", branchy),
    ("loops", loops),
    ("calls", calls),
];

/// The shape called `name` with about `n` instructions.
pub fn shape(name: &str, n: usize) -> Option<Program> {
    SHAPES
        .iter()
        .find(|(shape, _)| *shape == name)
        .map(|(_, make)| make(n))
}

fn built(b: Builder) -> Program {
    match b.build() {
        Ok(p) => p,
        // Every label below is bound before `build`.
        Err(e) => panic!("shape generator: {e}"),
    }
}

/// Straight-line arithmetic with a stack store every 8 instructions, as
/// [`crate::straight_line`], after `r0 = r1` (the verifier wants `r0` written before use).
pub fn straight(n: usize) -> Program {
    let body = crate::straight_line(n.saturating_sub(1));
    let mut insns = vec![ebpf_isa::Insn::Alu {
        width: ebpf_isa::Width::W64,
        op: ebpf_isa::AluOp::Mov,
        dst: Reg::R0,
        src: ebpf_isa::Operand::Reg(Reg::R1),
    }];
    insns.extend_from_slice(body.insns());
    Program::from_insns(insns)
}

/// Loop-free code with a conditional forward jump every 5 instructions: diamonds
/// `if r2 > k { r0 += k } else { r0 ^= k }` with a stack store and reload in between.
pub fn branchy(n: usize) -> Program {
    let mut b = Builder::new();
    b.mov64(Reg::R0, Reg::R1).stxdw(Reg::R10, -8, Reg::R0);
    let mut i = 2;
    let mut k = 0i32;
    while i + 8 <= n {
        let other = b.label();
        let join = b.label();
        k = k.wrapping_add(7919);
        b.jgt(Reg::R2, k & 0xffff, other).add64(Reg::R0, k).ja(join);
        b.bind(other);
        b.xor64(Reg::R0, k);
        b.bind(join);
        b.stxdw(Reg::R10, -16, Reg::R0)
            .ldxdw(Reg::R3, Reg::R10, -8)
            .add64(Reg::R0, Reg::R3)
            .rsh64(Reg::R0, 1);
        i += 8;
    }
    b.exit();
    built(b)
}

/// Small counted loops one after another: `for j in 0..4 { r0 += j * r2; stack[-8] = r0 }`,
/// 9 instructions each.
pub fn loops(n: usize) -> Program {
    let mut b = Builder::new();
    b.mov64(Reg::R0, Reg::R1);
    let mut i = 1;
    while i + 10 <= n {
        b.mov64(Reg::R3, 0);
        let top = b.label_here();
        b.mov64(Reg::R4, Reg::R3)
            .mul64(Reg::R4, Reg::R2)
            .add64(Reg::R0, Reg::R4)
            .stxdw(Reg::R10, -8, Reg::R0)
            .ldxdw(Reg::R5, Reg::R10, -8)
            .xor64(Reg::R0, Reg::R5)
            .add64(Reg::R3, 1)
            .jlt(Reg::R3, 4, top);
        i += 9;
    }
    b.exit();
    built(b)
}

/// Many sub-programs, each called once from the main program: `r0 = f_i(r0)` where
/// `f_i` stores its argument in its own frame, reloads it and adds `i`. About 9
/// instructions per sub-program (2 for the call, 7 in the callee).
pub fn calls(n: usize) -> Program {
    let count = (n.saturating_sub(2) / 9).max(1);
    let mut b = Builder::new();
    let functions: Vec<_> = (0..count).map(|_| b.label()).collect();
    b.mov64(Reg::R0, Reg::R1);
    for &f in &functions {
        b.mov64(Reg::R1, Reg::R0).call_local(f);
    }
    b.exit();
    for (i, &f) in functions.iter().enumerate() {
        b.bind(f);
        b.stxdw(Reg::R10, -8, Reg::R1)
            .ldxdw(Reg::R0, Reg::R10, -8)
            .add64(Reg::R0, i as i32)
            .mov64(Reg::R2, Reg::R0)
            .rsh64(Reg::R2, 3)
            .xor64(Reg::R0, Reg::R2)
            .exit();
    }
    built(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_about_n_instructions_and_run() {
        for &(name, make) in SHAPES {
            for n in [100, 1000] {
                let program = make(n);
                let len = program.insns().len();
                assert!(len <= n + 1 && len + 12 >= n, "{name} {n}: {len}");
                let limits = ebpf_abi::Limits {
                    budget: Some(1 << 20),
                    ..ebpf_abi::Limits::default()
                };
                ebpf_interp::Interpreter::new(&program)
                    .run(
                        ebpf_abi::MemoryMap::new(),
                        [0, 0],
                        &ebpf_abi::Helpers::new(),
                        &limits,
                    )
                    .unwrap_or_else(|t| panic!("{name} {n}: {t}"));
            }
        }
    }
}
