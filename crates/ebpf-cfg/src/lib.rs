//! `ebpf-cfg`: the shape of an eBPF program — basic blocks, edges, sub-programs, loops.
//!
//! What it is for: everything the verifier and both JITs need to know about control flow,
//! computed once in (near-)linear time: [`Cfg::build`] splits a decoded program into
//! functions (the entry and every local-call target, each a contiguous range of pcs, as the
//! kernel lays them out), each function into basic blocks with successor and predecessor edges
//! (fall-through vs taken), and then derives reverse post-order, dominators, back edges,
//! natural loops, unreachable blocks, the call graph and recursion, and a longest-path bound
//! for loop-free programs. [`pointers`] is the pointer-hint analysis both JITs share (which
//! region a register probably points into); [`facts`] is the analysis that proves accesses in
//! bounds, divisors nonzero and loops' trip counts and versions, on every path any engine can
//! take, for the verifier and the engines to rely on.
//!
//! What it is not for: judging programs. Structural problems (a jump outside the program or
//! its function, into the second slot of an `lddw`, falling off the end) are recorded as
//! [`CfgError`]s next to a best-effort graph; the verifier turns them into findings.
//!
//! Local calls do not end a basic block: a call is an instruction with an effect (and an edge
//! in the call graph), after which execution continues in the same block.
//!
//! ```
//! let program = ebpf_isa::assemble("mov %r0, 0\nloop:\nadd %r0, 1\njne %r0, 10, loop\nexit").unwrap();
//! let cfg = ebpf_cfg::Cfg::build(&program);
//! assert_eq!(cfg.blocks().len(), 3);
//! assert!(cfg.has_loops());
//! assert!(cfg.errors().is_empty());
//! ```

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod analysis;
mod build;
pub mod facts;
pub mod pointers;

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use ebpf_isa::Program;

pub use analysis::LongestPath;

/// Index of a basic block in [`Cfg::blocks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId(pub u32);

impl BlockId {
    /// The index as `usize`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Index of a function in [`Cfg::functions`]; the entry function is `FuncId(0)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FuncId(pub u32);

impl FuncId {
    /// The index as `usize`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// How a block ends. A successor of `None` is a way out of the block that cannot be taken
/// (a target outside the program or function, the second slot of an `lddw`, or past the end
/// of the function): [`Cfg::errors`] says why, and an engine traps if execution goes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminator {
    /// Execution continues with the next block (the last instruction is not a jump).
    FallThrough(Option<BlockId>),
    /// An unconditional jump.
    Jump(Option<BlockId>),
    /// A conditional jump.
    Branch {
        /// Where it goes when the condition holds.
        taken: Option<BlockId>,
        /// Where it goes otherwise.
        fallthrough: Option<BlockId>,
    },
    /// `exit`: return from the function, or end the program.
    Exit,
}

/// The kind of an edge between blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// To the next block in pc order.
    FallThrough,
    /// To a jump target.
    Taken,
}

/// A basic block: a maximal run of instructions entered only at its first one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// pc of the first instruction.
    pub start: usize,
    /// pc one past the last slot (so `start..end` are the block's slots).
    pub end: usize,
    /// Indices into `Program::insns()` of the block's instructions.
    pub insns: Range<usize>,
    /// The function the block belongs to.
    pub func: FuncId,
    /// How it ends.
    pub terminator: Terminator,
    /// Predecessor blocks (within the function).
    pub preds: Vec<BlockId>,
}

impl Block {
    /// The successor blocks with the kind of each edge (taken first).
    pub fn successors(&self) -> impl Iterator<Item = (BlockId, EdgeKind)> + '_ {
        let (a, b) = match self.terminator {
            Terminator::FallThrough(t) => (t.map(|t| (t, EdgeKind::FallThrough)), None),
            Terminator::Jump(t) => (t.map(|t| (t, EdgeKind::Taken)), None),
            Terminator::Branch { taken, fallthrough } => (
                taken.map(|t| (t, EdgeKind::Taken)),
                fallthrough.map(|t| (t, EdgeKind::FallThrough)),
            ),
            Terminator::Exit => (None, None),
        };
        a.into_iter().chain(b)
    }

    /// Number of instructions (an `lddw` counts once).
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether the block has no instructions (never true of a built CFG).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }
}

/// A function: the entry (pc 0) or the target of a local call. Functions are contiguous: a
/// function runs from its entry pc to the next function's entry pc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// pc of the first instruction.
    pub entry: usize,
    /// pc one past its last slot.
    pub end: usize,
    /// Its blocks, in pc order; the first is the entry block.
    pub blocks: Range<u32>,
    /// Blocks reachable from the entry, in reverse post-order.
    pub rpo: Vec<BlockId>,
    /// pcs of its local calls with valid targets, with the callee.
    pub call_sites: Vec<(usize, FuncId)>,
}

impl Function {
    /// The entry block.
    pub fn entry_block(&self) -> BlockId {
        BlockId(self.blocks.start)
    }
}

/// A structural problem found while building the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CfgError {
    /// pc of the offending instruction.
    pub pc: usize,
    /// What is wrong.
    pub kind: CfgErrorKind,
}

/// What is structurally wrong with an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CfgErrorKind {
    /// The program has no instructions.
    Empty,
    /// A jump's target is outside the program.
    JumpOutOfRange {
        /// The target pc (may be negative).
        target: i64,
    },
    /// A jump lands on the second slot of an `lddw`.
    JumpIntoLddw {
        /// The target pc.
        target: usize,
        /// pc of the `lddw`.
        lddw: usize,
    },
    /// A jump leaves its function.
    JumpOutOfFunction {
        /// The target pc.
        target: usize,
    },
    /// A local call's target is outside the program.
    CallOutOfRange {
        /// The target pc (may be negative).
        target: i64,
    },
    /// A local call lands on the second slot of an `lddw`.
    CallIntoLddw {
        /// The target pc.
        target: usize,
        /// pc of the `lddw`.
        lddw: usize,
    },
    /// Execution can run past the last instruction of a function (its last instruction is
    /// neither `exit` nor an unconditional jump).
    FallsOffEnd,
}

impl fmt::Display for CfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pc {}: ", self.pc)?;
        match self.kind {
            CfgErrorKind::Empty => write!(f, "the program is empty"),
            CfgErrorKind::JumpOutOfRange { target } => {
                write!(f, "jump to pc {target}, outside the program")
            }
            CfgErrorKind::JumpIntoLddw { target, lddw } => write!(
                f,
                "jump to pc {target} lands inside the second half of lddw at pc {lddw}"
            ),
            CfgErrorKind::JumpOutOfFunction { target } => {
                write!(f, "jump to pc {target} leaves the function")
            }
            CfgErrorKind::CallOutOfRange { target } => {
                write!(f, "call to pc {target}, outside the program")
            }
            CfgErrorKind::CallIntoLddw { target, lddw } => write!(
                f,
                "call to pc {target} lands inside the second half of lddw at pc {lddw}"
            ),
            CfgErrorKind::FallsOffEnd => {
                write!(f, "execution can fall off the end of the function")
            }
        }
    }
}

/// The control-flow graph of a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cfg {
    blocks: Vec<Block>,
    functions: Vec<Function>,
    /// For each slot, the block containing it.
    block_of_slot: Vec<BlockId>,
    errors: Vec<CfgError>,
    idom: Vec<Option<BlockId>>,
    /// Pre- and post-order numbers of each block in its function's dominator tree
    /// (`u32::MAX` for unreachable blocks).
    dom_pre: Vec<u32>,
    dom_post: Vec<u32>,
    back_edges: Vec<(BlockId, BlockId)>,
    loops: Vec<Loop>,
    /// Whether reachable code contains a cycle (including irreducible ones).
    has_cycles: bool,
    recursion: Option<Vec<FuncId>>,
    /// Functions reachable from the entry through calls from reachable blocks.
    reachable_funcs: Vec<bool>,
}

/// A natural loop: a back edge's target (the header) and every block that reaches the back
/// edge's source without passing the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loop {
    /// The loop header (dominates every block of the loop).
    pub header: BlockId,
    /// The blocks of the loop, header included, sorted.
    pub blocks: Vec<BlockId>,
}

impl Cfg {
    /// Builds the graph of `program`. Never fails and never panics: problems are recorded in
    /// [`Cfg::errors`].
    pub fn build(program: &Program) -> Cfg {
        let mut cfg = build::build(program);
        analysis::analyse(&mut cfg);
        cfg
    }

    /// Every block, sorted by pc.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// A block by id.
    pub fn block(&self, id: BlockId) -> &Block {
        &self.blocks[id.index()]
    }

    /// Every function, sorted by pc; the entry function first.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// A function by id.
    pub fn function(&self, id: FuncId) -> &Function {
        &self.functions[id.index()]
    }

    /// The block containing slot `pc`.
    pub fn block_at(&self, pc: usize) -> Option<BlockId> {
        self.block_of_slot.get(pc).copied()
    }

    /// The function starting at `pc`.
    pub fn function_at(&self, pc: usize) -> Option<FuncId> {
        let i = self.functions.binary_search_by_key(&pc, |f| f.entry).ok()?;
        Some(FuncId(i as u32))
    }

    /// Structural problems found while building.
    pub fn errors(&self) -> &[CfgError] {
        &self.errors
    }

    /// The immediate dominator of a block (`None` for entry blocks and unreachable blocks).
    pub fn idom(&self, id: BlockId) -> Option<BlockId> {
        self.idom.get(id.index()).copied().flatten()
    }

    /// Whether `a` dominates `b` (every path from the function entry to `b` passes `a`).
    pub fn dominates(&self, a: BlockId, b: BlockId) -> bool {
        if a == b {
            return true;
        }
        let pre = |x: BlockId| self.dom_pre.get(x.index()).copied().unwrap_or(u32::MAX);
        let post = |x: BlockId| self.dom_post.get(x.index()).copied().unwrap_or(u32::MAX);
        let (pa, pb) = (pre(a), pre(b));
        pa != u32::MAX && pb != u32::MAX && pa <= pb && post(b) <= post(a)
    }

    /// Whether a block is reachable: from its function's entry, in a function reachable from
    /// the program's entry through calls.
    pub fn is_reachable(&self, id: BlockId) -> bool {
        let block = self.block(id);
        let func = self.function(block.func);
        let in_rpo = func.entry_block() == id || self.idom(id).is_some();
        in_rpo && self.function_reachable(block.func)
    }

    /// Whether a function is reachable from the entry through calls in reachable blocks.
    pub fn function_reachable(&self, f: FuncId) -> bool {
        self.reachable_funcs
            .get(f.index())
            .copied()
            .unwrap_or(false)
    }

    /// Edges `(from, to)` whose target dominates their source.
    pub fn back_edges(&self) -> &[(BlockId, BlockId)] {
        &self.back_edges
    }

    /// Natural loops, one per loop header.
    pub fn loops(&self) -> &[Loop] {
        &self.loops
    }

    /// Whether any reachable code can run in a cycle (natural or irreducible loop).
    pub fn has_loops(&self) -> bool {
        self.has_cycles
    }

    /// A cycle in the call graph, if there is one (the functions on it, in call order).
    pub fn recursion(&self) -> Option<&[FuncId]> {
        self.recursion.as_deref()
    }

    /// For a program without loops or recursion: the largest number of instructions any run
    /// can execute (each call counts once plus its callee's longest path). `None` when the
    /// program can loop or recurse. Ways out that trap (see [`Cfg::errors`]) end a run early, so they
    /// do not lengthen the bound.
    pub fn longest_path(&self) -> Option<LongestPath> {
        analysis::longest_path(self)
    }
}
