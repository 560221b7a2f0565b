//! [`Program`]: a decoded instruction sequence, addressed by pc (slot index).

use alloc::vec::Vec;

use crate::codec;
use crate::insn::Insn;
use crate::table::{CpuVersion, Form, Group};

/// A sequence of decoded instructions.
///
/// Positions are pcs, i.e. 8-byte slot indices as in the encoding: an `lddw` at pc 3 makes the
/// next instruction pc 5. Jump offsets are relative to these pcs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Program {
    insns: Vec<Insn>,
    /// `pcs[i]` is the pc of `insns[i]`.
    pcs: Vec<usize>,
}

impl Program {
    /// A program from instructions in order.
    pub fn from_insns(insns: Vec<Insn>) -> Program {
        let mut pcs = Vec::with_capacity(insns.len());
        let mut pc = 0usize;
        for insn in &insns {
            pcs.push(pc);
            pc = pc.saturating_add(insn.slots());
        }
        Program { insns, pcs }
    }

    /// The instructions, in order.
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// Consumes the program, returning its instructions.
    pub fn into_insns(self) -> Vec<Insn> {
        self.insns
    }

    /// Number of instructions (an `lddw` counts once).
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether the program has no instructions.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Number of 8-byte slots (an `lddw` counts twice).
    pub fn slot_count(&self) -> usize {
        self.insns.iter().map(Insn::slots).sum()
    }

    /// Each instruction with its pc.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Insn)> + '_ {
        self.pcs.iter().copied().zip(&self.insns)
    }

    /// The instruction that starts at `pc` (`None` for the second slot of an `lddw` and past
    /// the end).
    pub fn at_pc(&self, pc: usize) -> Option<&Insn> {
        let i = self.pcs.binary_search(&pc).ok()?;
        self.insns.get(i)
    }

    /// The program's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(&self.insns)
    }

    /// The conformance groups the program's instructions belong to, and the lowest CPU version
    /// that has them all (as bpf_conformance classifies programs).
    pub fn requirements(&self) -> (Vec<Group>, CpuVersion) {
        let mut groups = Vec::new();
        let mut cpu = CpuVersion::V1;
        for insn in &self.insns {
            let spec = Form::of(insn).spec();
            cpu = cpu.max(spec.cpu);
            if !groups.contains(&spec.group) {
                groups.push(spec.group);
            }
        }
        groups.sort();
        (groups, cpu)
    }
}

impl FromIterator<Insn> for Program {
    fn from_iter<I: IntoIterator<Item = Insn>>(iter: I) -> Program {
        Program::from_insns(iter.into_iter().collect())
    }
}
