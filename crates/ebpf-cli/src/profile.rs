//! `ebpf run --profile` and `ebpf bench --profile`: how often each instruction ran in one
//! traced run, summed per function and per basic block, hottest first — what `perf annotate`
//! shows for a native program.
//!
//! The counts come from `ebpf_vm::Vm::run_traced` (one step per executed instruction), the
//! blocks and functions from `ebpf_vm::cfg::Cfg`. The report: a summary line, the functions
//! with their totals, then every executed block, hottest first, with its disassembly in LLVM
//! syntax, each instruction annotated with its count, its share of the run and a bar scaled to
//! the hottest instruction; blocks that never ran are listed by pc range at the end.

use std::fmt::Write as _;

use ebpf_vm::cfg::Cfg;
use ebpf_vm::isa::Program;
use ebpf_vm::{Observer, Step};

/// The widest bar, for the hottest instruction.
const BAR: u64 = 20;

/// Execution counts per pc.
#[derive(Clone, Debug)]
pub(crate) struct Profile {
    counts: Vec<u64>,
}

impl Profile {
    /// No executions yet, for a program of `slots` slots.
    pub(crate) fn new(slots: usize) -> Profile {
        Profile {
            counts: vec![0; slots],
        }
    }

    /// The instructions counted.
    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn count(&self, pc: usize) -> u64 {
        self.counts.get(pc).copied().unwrap_or(0)
    }

    /// The report for `program`, which the counted run ran.
    pub(crate) fn report(&self, program: &Program) -> String {
        let cfg = Cfg::build(program);
        let listing: Vec<_> = program.iter().collect();
        let total = self.total();
        let hottest = self.counts.iter().copied().max().unwrap_or(0);
        let share = |n: u64| 100.0 * n as f64 / total.max(1) as f64;
        let block_total = |b: &ebpf_vm::cfg::Block| -> u64 {
            let insns = listing.get(b.insns.clone()).unwrap_or_default();
            insns.iter().map(|&(pc, _)| self.count(pc)).sum()
        };
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "profile: {total} instruction{} executed, {} of {} instructions ran",
            plural(total),
            listing
                .iter()
                .filter(|&&(pc, _)| self.count(pc) > 0)
                .count(),
            listing.len()
        );

        let _ = writeln!(out, "\nfunctions, hottest first:");
        let mut functions: Vec<(u64, usize, usize)> = cfg
            .functions()
            .iter()
            .map(|f| {
                let blocks = f.blocks.start as usize..f.blocks.end as usize;
                let sum = cfg.blocks().get(blocks).unwrap_or_default();
                (sum.iter().map(block_total).sum(), f.entry, f.end)
            })
            .collect();
        functions.sort_by_key(|&(n, entry, _)| (std::cmp::Reverse(n), entry));
        for (n, entry, end) in functions {
            let _ = writeln!(
                out,
                "{n:>12} {:>5.1}%  function at pc {entry} ({})",
                share(n),
                pcs(entry, end.saturating_sub(1))
            );
        }

        let mut blocks: Vec<(u64, &ebpf_vm::cfg::Block)> =
            cfg.blocks().iter().map(|b| (block_total(b), b)).collect();
        blocks.sort_by_key(|&(n, b)| (std::cmp::Reverse(n), b.start));
        let _ = writeln!(out, "\nblocks, hottest first:");
        let mut idle = Vec::new();
        for (n, block) in blocks {
            let last = block.end.saturating_sub(1);
            if n == 0 {
                idle.push((block.start, last));
                continue;
            }
            let entered = self.count(block.start);
            let _ = writeln!(
                out,
                "{}: {n} instruction{} ({:.1}%), entered {entered} time{}",
                pcs(block.start, last),
                plural(n),
                share(n),
                plural(entered)
            );
            for &(pc, insn) in listing.get(block.insns.clone()).unwrap_or_default() {
                let count = self.count(pc);
                let bar = if count == 0 {
                    0
                } else {
                    (count * BAR).div_ceil(hottest.max(1))
                };
                let _ = writeln!(
                    out,
                    "{count:>12} {:>5.1}% {:<width$} {pc:>5}: {}",
                    share(count),
                    "#".repeat(bar as usize),
                    insn.llvm(),
                    width = BAR as usize
                );
            }
        }
        if !idle.is_empty() {
            idle.sort_unstable();
            let ranges: Vec<String> = idle.iter().map(|&(a, b)| pcs(a, b)).collect();
            let _ = writeln!(out, "\nnever executed: {}", ranges.join(", "));
        }
        out
    }
}

/// `pc 3` or `pcs 3-7`.
fn pcs(first: usize, last: usize) -> String {
    if first == last {
        format!("pc {first}")
    } else {
        format!("pcs {first}-{last}")
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl Observer for Profile {
    fn step(&mut self, step: &Step) {
        if let Some(count) = self.counts.get_mut(step.pc) {
            *count += 1;
        }
    }
}
