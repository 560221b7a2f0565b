//! Strategies for whole programs without run-time guarantees: arbitrary instruction sequences
//! ([`any_program`]) and sequences whose control flow stays inside the program
//! ([`closed_program`]).

use ebpf_isa::table::Spec;
use ebpf_isa::{CallKind, Insn, Program};
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
    }
}
