//! How much of the stack a run can write: the bytes the facade zeroes after each run, so that
//! the next run on the same thread's stack finds it all zero (`ebpf_abi::Stack`'s invariant;
//! the argument is in `docs/per-run.md`).
//!
//! The bound is computed once, at load time, from the instructions alone, so it holds for
//! every run of every program, verified or not. It is exact enough for the programs that need
//! it (short filters store only at constant offsets from `r10`), and falls back to the whole
//! stack whenever a store could land anywhere.
//!
//! Public for whoever lends a [`ebpf_abi::Stack`] to `Executable::run_in` itself and so must
//! scrub after each run: an embedder driving an engine directly, and the differential fuzz
//! target, which checks after every run of every engine that scrubbing this much leaves the
//! whole buffer zero (a store these bounds miss is a finding).

use ebpf_abi::{Limits, STACK_FRAME_SIZE, layout};
use ebpf_cfg::facts::{Access, Facts};
use ebpf_cfg::{Cfg, FuncId};
use ebpf_isa::{CallKind, Insn, Program, Reg};

/// The number of bytes at the top of the stack region that a run of `program` under `limits`
/// can write (`limits.stack_size()` when it cannot be bounded): what must be zeroed after it.
///
/// Writes to the stack come from three places, each bounded or given up on:
///
/// - stores and atomics whose base register is `r10` itself, in a program that never writes
///   `r10`: at depth `d`, `r10` is `top - 512 d`, so a store at `r10 + off` writes no lower
///   than `top - 512 d + min(off, 0)`;
/// - stores and atomics through any other register: the address is unknown, so the whole
///   stack;
/// - helpers (which may write any address through `VmMemory`): a program that calls one gets
///   the whole stack.
///
/// The depth `d` is at most the longest chain of local calls from the entry function, which
/// the control-flow graph gives exactly when it has no structural errors (no jump leaves its
/// function, no function falls into the next one) and no recursion; otherwise, the deepest
/// the limits allow.
pub fn stack_reach(program: &Program, limits: &Limits) -> usize {
    reach(program, limits, true, |_| false)
}

/// What the program's own instructions can write at the top of the stack: [`stack_reach`]
/// with helper and kfunc calls (`callx` too: it calls the helper whose id is in a register)
/// counted as writing nothing. A helper writes VM memory only through `VmMemory::write`,
/// which records in the run's map the lowest stack offset it wrote
/// (`MemoryMap::lowest_stack_write`): a lender that reads that mark after the run scrubs the
/// larger of the two and still covers every byte the run wrote ([`with_helper_mark`]).
pub fn own_stack_reach(program: &Program, limits: &Limits) -> usize {
    reach(program, limits, false, |_| false)
}

/// What to scrub after a run whose own stores reach `own` bytes at the top of a stack of
/// `stack_size` bytes and whose helpers wrote no lower than `mark`
/// (`MemoryMap::lowest_stack_write`, `None` when they wrote nothing): every byte the run
/// wrote is in the top `own` bytes or at or above the mark, so the larger of the two covers it.
pub fn with_helper_mark(own: usize, stack_size: usize, mark: Option<u64>) -> usize {
    match mark {
        Some(low) => {
            let helpers =
                usize::try_from(low).map_or(stack_size, |low| stack_size.saturating_sub(low));
            own.max(helpers)
        }
        None => own,
    }
}

/// [`own_stack_reach`] for a run that starts from an entry `facts` admit (`Entry::admits`,
/// checked before the run): a store or atomic through a register other than `r10` writes no
/// stack byte when the facts place every address it can have in another region, or prove
/// it never runs. The facts hold on every path of such a run, whichever engine runs it.
pub fn admitted_stack_reach(program: &Program, limits: &Limits, facts: &Facts) -> usize {
    reach(program, limits, false, |index| {
        !facts.reached(index)
            || match facts.access(index) {
                Access::InBounds { region, .. }
                | Access::Checked {
                    region: Some(region),
                } => u64::from(region) != layout::STACK,
                Access::Checked { region: None } => false,
            }
    })
}

/// The reach of `program`'s runs, helper calls writing the whole stack if `helpers_write`,
/// and a store through another register than `r10` writing nothing where `elsewhere` holds
/// of its index.
fn reach(
    program: &Program,
    limits: &Limits,
    helpers_write: bool,
    elsewhere: impl Fn(usize) -> bool,
) -> usize {
    let full = usize::try_from(limits.stack_size()).unwrap_or(usize::MAX);
    let insns = program.insns();
    if ebpf_cfg::pointers::writes_r10(insns) {
        return full;
    }
    let mut below = 0u64;
    let mut calls = false;
    for (index, insn) in insns.iter().enumerate() {
        let (base, off) = match *insn {
            Insn::Store { dst, off, .. } | Insn::Atomic { dst, off, .. } => (dst, off),
            Insn::Call {
                kind: CallKind::Local,
                ..
            } => {
                calls = true;
                continue;
            }
            Insn::Call { .. } | Insn::CallX { .. } if !helpers_write => continue,
            Insn::Call { .. } | Insn::CallX { .. } => return full,
            _ => continue,
        };
        if base != Reg::R10 {
            if elsewhere(index) {
                continue;
            }
            return full;
        }
        below = below.max(u64::from(off.min(0).unsigned_abs()));
    }
    let depth = if calls {
        call_depth(&Cfg::build(program)).map_or(limits.max_depth(), |d| d.min(limits.max_depth()))
    } else {
        0
    };
    let reach = (depth as u64)
        .saturating_mul(STACK_FRAME_SIZE)
        .saturating_add(below);
    usize::try_from(reach).map_or(full, |r| r.min(full))
}

/// The longest chain of nested local calls from the entry function, if the graph is exact
/// (no structural errors, no recursion).
fn call_depth(cfg: &Cfg) -> Option<usize> {
    if !cfg.errors().is_empty() || cfg.recursion().is_some() {
        return None;
    }
    let functions = cfg.functions();
    // Depth below each function, filled callees first (an explicit stack: no recursion on
    // programs with long call chains). Each function is expanded once, so the walk ends and
    // pushes at most one entry per call site even on a call graph with a cycle that
    // `recursion` did not report (a generated program once made the old walk, which
    // re-expanded a function still in progress, grow its stack to 8 GiB).
    let mut below: Vec<Option<usize>> = vec![None; functions.len()];
    let mut expanded_once = vec![false; functions.len()];
    let mut work = vec![(FuncId(0), false)];
    while let Some((f, expanded)) = work.pop() {
        let callees = &functions.get(f.index())?.call_sites;
        if expanded {
            let mut deepest = 0;
            for (_, callee) in callees {
                deepest = deepest.max(below.get(callee.index()).copied().flatten()? + 1);
            }
            *below.get_mut(f.index())? = Some(deepest);
            continue;
        }
        let seen = expanded_once.get_mut(f.index())?;
        if *seen {
            continue;
        }
        *seen = true;
        work.push((f, true));
        // A callee still being expanded would be a cycle, which `recursion` rules out; the
        // `?` above turns any such surprise into "unknown".
        work.extend(
            callees
                .iter()
                .filter(|(_, c)| expanded_once.get(c.index()) == Some(&false))
                .map(|&(_, c)| (c, false)),
        );
    }
    below.first().copied().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(text: &str) -> usize {
        stack_reach(&ebpf_isa::assemble(text).unwrap(), &Limits::default())
    }

    #[test]
    fn the_reach_is_the_lowest_store_below_the_deepest_frame() {
        assert_eq!(reach("mov %r0, 0\nexit"), 0);
        assert_eq!(reach("ldxb %r0, [%r10-9]\nexit"), 0, "loads write nothing");
        assert_eq!(
            reach("stdw [%r10-16], 1\nstb [%r10-3], 1\nmov %r0, 0\nexit"),
            16
        );
        // One call deep: the callee's frame is 512 bytes lower.
        let call = "call local f\nstdw [%r10-8], 1\nexit\nf:\nstdw [%r10-24], 2\nexit";
        assert_eq!(reach(call), 512 + 24);
        let full = Limits::default().stack_size() as usize;
        assert_eq!(
            reach("mov %r1, %r10\nstdw [%r1-8], 1\nexit"),
            full,
            "unknown base"
        );
        assert_eq!(reach("call 1\nexit"), full, "helpers may write the stack");
        assert_eq!(
            reach("add %r10, -8\nstdw [%r10-8], 1\nexit"),
            full,
            "r10 written"
        );
        let recursive = "call local f\nexit\nf:\nstdw [%r10-8], 1\ncall local f\nexit";
        assert_eq!(reach(recursive), 8 * 512 + 8, "as deep as the limits allow");
    }

    #[test]
    fn the_own_reach_leaves_helpers_out_and_the_admitted_one_stores_the_facts_place() {
        let limits = Limits::default();
        let full = limits.stack_size() as usize;
        let own = |text: &str| own_stack_reach(&ebpf_isa::assemble(text).unwrap(), &limits);
        assert_eq!(own("stdw [%r10-16], 1\ncall 1\nexit"), 16);
        assert_eq!(own("mov %r1, %r10\nstdw [%r1-8], 1\nexit"), full);
        assert_eq!(
            own("stdw [%r10-8], 1\ncall %r1\nexit"),
            8,
            "callx calls a helper"
        );
        let admitted = |text: &str| {
            let program = ebpf_isa::assemble(text).unwrap();
            let facts = Facts::analyse(&program, &ebpf_cfg::facts::Entry::input());
            admitted_stack_reach(&program, &limits, &facts)
        };
        // r1 is the input's start: the store lands in the input (checked, but not the stack).
        assert_eq!(admitted("stdw [%r1], 1\nstdw [%r10-8], 1\ncall 1\nexit"), 8);
        assert_eq!(admitted("stdw [%r3], 1\nexit"), full, "r3 is unknown");
        assert_eq!(
            admitted("mov %r1, %r10\nstdw [%r1-8], 1\nexit"),
            full,
            "the stack through another register"
        );
    }

    #[test]
    fn the_helpers_mark_widens_the_own_reach_to_everything_above_it() {
        assert_eq!(
            with_helper_mark(16, 4608, None),
            16,
            "no helper wrote the stack"
        );
        assert_eq!(
            with_helper_mark(16, 4608, Some(4600)),
            16,
            "within the own reach"
        );
        assert_eq!(with_helper_mark(16, 4608, Some(4000)), 608);
        assert_eq!(with_helper_mark(16, 4608, Some(0)), 4608);
        assert_eq!(
            with_helper_mark(0, 4608, Some(u64::MAX)),
            0,
            "past the region"
        );
    }

    #[test]
    fn a_diamond_of_calls_is_walked_once_per_function() {
        // f0 calls f1 twice, f1 calls f2 twice, ...: 2^40 paths through 41 functions.
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&format!(
                "f{i}:\ncall local f{n}\ncall local f{n}\nexit\n",
                n = i + 1
            ));
        }
        text.push_str("f40:\nstdw [%r10-8], 1\nexit\n");
        let limits = Limits {
            max_call_depth: 64,
            ..Limits::default()
        };
        let reach = stack_reach(&ebpf_isa::assemble(&text).unwrap(), &limits);
        let full = limits.stack_size() as usize;
        // The deepest store is 40 frames below the entry's, 8 bytes into its frame.
        assert_eq!(reach, (40 * 512 + 8).min(full));
    }
}
