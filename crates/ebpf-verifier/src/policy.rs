//! [`Policy`]: an embedder's own check, and [`PolicyView`], what it sees of a program.

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use ebpf_cfg::Cfg;
use ebpf_isa::{Insn, Program};

use crate::Severity;

/// An embedder's own check, run after the built-in ones on programs that decode and have a
/// control-flow graph. Its findings are reported like the built-in ones.
pub trait Policy: Send + Sync {
    /// A short name, shown with each finding.
    fn name(&self) -> &str;

    /// Adds findings about the program to `out`, as `(pc, severity, message)`.
    fn check(&self, program: &PolicyView<'_>, out: &mut Vec<(usize, Severity, String)>);
}

/// What a [`Policy`] sees of a program: its instructions with their pcs, and the structure the
/// verifier found — functions, basic blocks and natural loops, as pcs and pc ranges.
#[derive(Clone, Copy)]
pub struct PolicyView<'a> {
    program: &'a Program,
    cfg: &'a Cfg,
}

impl<'a> PolicyView<'a> {
    pub(crate) fn new(program: &'a Program, cfg: &'a Cfg) -> PolicyView<'a> {
        PolicyView { program, cfg }
    }

    /// The program.
    pub fn program(&self) -> &'a Program {
        self.program
    }

    /// Each instruction with its pc.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &'a Insn)> + 'a {
        self.program.iter()
    }

    /// The functions (pc 0, then every local-call target), as pc ranges in pc order: a
    /// function runs from its entry to the next function's entry.
    pub fn functions(&self) -> impl Iterator<Item = Range<usize>> + 'a {
        self.cfg.functions().iter().map(|f| f.entry..f.end)
    }

    /// The basic blocks, as pc ranges in pc order (local calls do not end a block).
    pub fn blocks(&self) -> impl Iterator<Item = Range<usize>> + 'a {
        self.cfg.blocks().iter().map(|b| b.start..b.end)
    }

    /// The pc of the header of each natural loop, ascending (a header with two back edges
    /// heads two loops).
    pub fn loop_headers(&self) -> Vec<usize> {
        let cfg = self.cfg;
        let mut headers: Vec<usize> = cfg
            .loops()
            .iter()
            .map(|l| cfg.block(l.header).start)
            .collect();
        headers.sort_unstable();
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_names_functions_blocks_and_loops_by_pc() {
        let program = ebpf_isa::assemble(
            "mov %r0, 0\nloop:\nadd %r0, 1\njlt %r0, 3, loop\ncall local f\nexit\nf:\nmov %r0, 7\nexit",
        )
        .unwrap();
        let cfg = Cfg::build(&program);
        let view = PolicyView::new(&program, &cfg);
        assert_eq!(view.iter().count(), 7);
        assert_eq!(view.functions().collect::<Vec<_>>(), [0..5, 5..7]);
        assert_eq!(view.blocks().collect::<Vec<_>>(), [0..1, 1..3, 3..5, 5..7]);
        assert_eq!(view.loop_headers(), [1]);
    }
}
