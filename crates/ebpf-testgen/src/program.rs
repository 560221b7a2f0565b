//! Strategies for whole programs without run-time guarantees: arbitrary instruction sequences
//! ([`any_program`]) and sequences whose control flow stays inside the program
//! ([`closed_program`]).

use ebpf_isa::table::Spec;
use ebpf_isa::{CallKind, Imm64Kind, Insn, Operand, Program};
use proptest::collection::{SizeRange, vec};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::insn::{any_insn, any_insn_where};

/// Any sequence of valid instructions, `len` instructions long (an `lddw` counts once).
///
/// Every instruction form is equally likely; jump offsets and call immediates are arbitrary,
/// so they may point anywhere, including outside the program or into the middle of an `lddw`.
pub fn any_program(len: impl Into<SizeRange>) -> impl Strategy<Value = Program> + Clone {
    vec(any_insn(), len).prop_map(Program::from_insns)
}

/// Like [`any_program`], with instructions whose table row satisfies `keep`; `len` is a
/// [`SizeRange`] (`(0..64).into()`).
///
/// # Panics
///
/// If no row satisfies `keep`.
pub fn any_program_where(
    len: SizeRange,
    keep: &dyn Fn(&Spec) -> bool,
) -> impl Strategy<Value = Program> + Clone + use<> {
    vec(any_insn_where(keep), len).prop_map(Program::from_insns)
}

/// A program whose control flow stays inside it: `len` instructions followed by an `exit`.
///
/// Guarantees: every jump (`ja`, `ja32`, conditional) and every local call targets the first
/// slot of an instruction of the program (never the second slot of an `lddw`, never past the
/// end), and the last instruction is `exit`, so execution cannot fall off the end.
///
/// Nothing else: it may loop forever, read uninitialized registers, write `r10`, access any
/// memory, call helpers that do not exist, or recurse without end. It is meant for control-flow
/// analyses (basic blocks, sub-programs, loops) and for the verifier's rejection paths.
pub fn closed_program(len: impl Into<SizeRange>) -> impl Strategy<Value = Program> + Clone {
    vec((any_insn(), any::<Index>()), len).prop_map(|items| {
        let mut insns: Vec<Insn> = items.iter().map(|(insn, _)| *insn).collect();
        insns.push(Insn::Exit);
        let mut starts = Vec::with_capacity(insns.len());
        let mut pc = 0usize;
        for insn in &insns {
            starts.push(pc);
            pc += insn.slots();
        }
        for (i, (_, target)) in items.iter().enumerate() {
            let to = starts[target.index(starts.len())];
            let offset = to as i64 - starts[i] as i64 - 1;
            retarget(&mut insns[i], offset);
        }
        Program::from_insns(insns)
    })
}

/// Sets the offset of a jump or local call; a 16-bit offset that does not fit becomes 0 (the
/// next instruction, which exists because the program ends with `exit`).
fn retarget(insn: &mut Insn, offset: i64) {
    match insn {
        Insn::Ja { off } | Insn::Jump { off, .. } => *off = i16::try_from(offset).unwrap_or(0),
        Insn::Ja32 { imm }
        | Insn::Call {
            kind: CallKind::Local,
            imm,
        } => *imm = i32::try_from(offset).unwrap_or(0),
        _ => {}
    }
}

/// `program` with its immediates — ALU and jump operands, stored constants, helper ids, packet
/// offsets from `narrow`, `lddw` values from `wide`, each taken in turn and cycling — and
/// everything else as it was: the same forms and control flow with chosen constants (the
/// edges of constant blinding, [`crate::blinding_edge_imm`]). An empty list leaves its
/// immediates as they were.
pub fn with_immediates(program: &Program, narrow: &[i32], wide: &[u64]) -> Program {
    let (mut narrow, mut wide) = (narrow.iter().cycle(), wide.iter().cycle());
    let insns = program
        .insns()
        .iter()
        .map(|&insn| {
            let mut imm32 = |old: i32| narrow.next().copied().unwrap_or(old);
            match insn {
                Insn::Alu {
                    src: Operand::Imm(imm),
                    width,
                    op,
                    dst,
                } => Insn::Alu {
                    src: Operand::Imm(imm32(imm)),
                    width,
                    op,
                    dst,
                },
                Insn::Jump {
                    src: Operand::Imm(imm),
                    width,
                    cond,
                    dst,
                    off,
                } => Insn::Jump {
                    src: Operand::Imm(imm32(imm)),
                    width,
                    cond,
                    dst,
                    off,
                },
                Insn::Store {
                    src: Operand::Imm(imm),
                    size,
                    dst,
                    off,
                } => Insn::Store {
                    src: Operand::Imm(imm32(imm)),
                    size,
                    dst,
                    off,
                },
                Insn::Call {
                    kind: CallKind::Helper,
                    imm,
                } => Insn::Call {
                    kind: CallKind::Helper,
                    imm: imm32(imm),
                },
                Insn::LoadPacket { size, addr, imm } => Insn::LoadPacket {
                    size,
                    addr,
                    imm: imm32(imm),
                },
                Insn::LoadImm64 {
                    dst,
                    kind: Imm64Kind::Value,
                    imm,
                } => Insn::LoadImm64 {
                    dst,
                    kind: Imm64Kind::Value,
                    imm: wide.next().copied().unwrap_or(imm),
                },
                other => other,
            }
        })
        .collect();
    Program::from_insns(insns)
}

#[cfg(test)]
mod tests {
    use ebpf_isa::{CpuVersion, Group, decode};

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn closed_programs_jump_to_instruction_starts(p in closed_program(0..40)) {
            prop_assert_eq!(p.insns().last(), Some(&Insn::Exit));
            for (pc, insn) in p.iter() {
                for target in [insn.jump_target(pc), insn.call_target(pc)].into_iter().flatten() {
                    prop_assert!(p.at_pc(target).is_some(), "pc {}: target {}", pc, target);
                }
                let jumps = matches!(insn, Insn::Ja { .. } | Insn::Ja32 { .. } | Insn::Jump { .. })
                    || matches!(insn, Insn::Call { kind: CallKind::Local, .. });
                if jumps {
                    prop_assert!(insn.jump_target(pc).or(insn.call_target(pc)).is_some());
                }
            }
        }

        #[test]
        fn programs_have_the_requested_length(p in any_program(3..7)) {
            prop_assert!((3..7).contains(&p.len()));
            prop_assert_eq!(decode(&p.to_bytes()).unwrap(), p);
        }

        #[test]
        fn filtered_programs_respect_the_filter(
            p in any_program_where((0..20).into(), &|s| s.cpu <= CpuVersion::V1 && s.group == Group::Base64)
        ) {
            let (groups, cpu) = p.requirements();
            prop_assert!(cpu <= CpuVersion::V1);
            prop_assert!(groups.iter().all(|g| *g == Group::Base64));
        }

        #[test]
        fn chosen_immediates_replace_the_constants_and_nothing_else(
            p in closed_program(0..40),
            narrow in proptest::collection::vec(any::<i32>(), 1..8),
            wide in proptest::collection::vec(any::<u64>(), 1..4),
        ) {
            let q = with_immediates(&p, &narrow, &wide);
            prop_assert_eq!(q.len(), p.len());
            let (mut n, mut w) = (narrow.iter().cycle(), wide.iter().cycle());
            for ((pc, a), (_, b)) in p.iter().zip(q.iter()) {
                let bytes = |i: &Insn| ebpf_isa::encode(&[*i]);
                // Same opcode, registers and offset: only the immediate field may differ.
                prop_assert_eq!(&bytes(a)[..4], &bytes(b)[..4], "pc {}", pc);
                prop_assert_eq!(a.jump_target(pc), b.jump_target(pc));
                prop_assert_eq!(a.call_target(pc), b.call_target(pc));
                match *b {
                    Insn::Alu { src: Operand::Imm(imm), .. }
                    | Insn::Jump { src: Operand::Imm(imm), .. }
                    | Insn::Store { src: Operand::Imm(imm), .. }
                    | Insn::Call { kind: CallKind::Helper, imm }
                    | Insn::LoadPacket { imm, .. } => {
                        prop_assert_eq!(Some(&imm), n.next(), "pc {}", pc);
                    }
                    Insn::LoadImm64 { kind: Imm64Kind::Value, imm, .. } => {
                        prop_assert_eq!(Some(&imm), w.next(), "pc {}", pc);
                    }
                    _ => prop_assert_eq!(a, b),
                }
            }
        }
    }
}
