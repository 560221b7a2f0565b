//! Structural checks: decoding every slot, the graph's errors, reachability, `r10` writes,
//! self loops, helpers and unsupported calls, recursion and call depth.

use alloc::vec;
use alloc::vec::Vec;

use ebpf_cfg::{Cfg, CfgErrorKind, FuncId, Terminator};
use ebpf_isa::{AtomicOp, CallKind, DecodeErrorKind, Imm64Kind, Insn, Program, Reg, SLOT_SIZE};

use crate::{Finding, FindingKind, Severity, VerifierConfig};

/// The opcode byte of `lddw`, the one instruction of two slots.
const LDDW_OPCODE: u8 = 0x18;

/// Decodes every slot, collecting every error (decoding resumes at the next slot).
pub(crate) fn decode_all(bytes: &[u8], config: &VerifierConfig) -> Result<Program, Vec<Finding>> {
    let mut findings = Vec::new();
    if !bytes.len().is_multiple_of(SLOT_SIZE) {
        let kind = DecodeErrorKind::LengthNotMultipleOf8 { len: bytes.len() };
        findings.push(Finding::error(
            bytes.len() / SLOT_SIZE,
            FindingKind::Decode(kind),
        ));
        return Err(findings);
    }
    let slots = bytes.len() / SLOT_SIZE;
    if slots > config.max_slots {
        findings.push(Finding::error(
            0,
            FindingKind::TooLong {
                slots,
                max: config.max_slots,
            },
        ));
        return Err(findings);
    }
    let mut insns = Vec::with_capacity(slots);
    let mut pc = 0;
    while pc < slots {
        match ebpf_isa::decode_at(bytes, pc) {
            Ok(insn) => {
                pc += insn.slots();
                insns.push(insn);
            }
            Err(e) => {
                findings.push(Finding::error(e.pc, FindingKind::Decode(e.kind)));
                // A rejected lddw still owns its second slot: do not report that slot again.
                let lddw = bytes.get(pc * SLOT_SIZE) == Some(&LDDW_OPCODE);
                pc += if lddw { 2 } else { 1 };
            }
        }
    }
    if findings.is_empty() {
        Ok(Program::from_insns(insns))
    } else {
        Err(findings)
    }
}

/// Whether an instruction writes `r10`.
fn writes_r10(insn: &Insn) -> bool {
    let dst = match *insn {
        Insn::Alu { dst, .. }
        | Insn::Neg { dst, .. }
        | Insn::MovSx { dst, .. }
        | Insn::Endian { dst, .. }
        | Insn::LoadImm64 { dst, .. }
        | Insn::Load { dst, .. } => Some(dst),
        Insn::Atomic {
            op: AtomicOp::Cmpxchg,
            ..
        } => None,
        Insn::Atomic { op, src, .. } if op.fetches() => Some(src),
        _ => None,
    };
    dst == Some(Reg::R10)
}

pub(crate) fn check(program: &Program, cfg: &Cfg, config: &VerifierConfig, out: &mut Vec<Finding>) {
    for e in cfg.errors() {
        // "Execution can fall off the end" is false of code that never executes.
        let dead = e.kind == CfgErrorKind::FallsOffEnd
            && cfg.block_at(e.pc).is_some_and(|b| !cfg.is_reachable(b));
        if !dead {
            out.push(Finding::error(e.pc, FindingKind::Structure(e.kind)));
        }
    }

    // Every function that runs must be able to return.
    for (f, func) in cfg.functions().iter().enumerate() {
        if !cfg.function_reachable(FuncId(f as u32)) {
            continue;
        }
        let exits = func
            .rpo
            .iter()
            .any(|&b| matches!(cfg.block(b).terminator, Terminator::Exit));
        if !exits {
            out.push(Finding::error(func.entry, FindingKind::NoReachableExit));
        }
    }

    // Unreachable runs of blocks.
    let mut run: Option<(usize, usize)> = None;
    for (i, block) in cfg.blocks().iter().enumerate() {
        let reachable = cfg.is_reachable(ebpf_cfg::BlockId(i as u32));
        match (reachable, run) {
            (false, Some((start, end))) if end == block.start => run = Some((start, block.end)),
            (false, _) => {
                flush(run.take(), config.unreachable, out);
                run = Some((block.start, block.end));
            }
            (true, _) => flush(run.take(), config.unreachable, out),
        }
    }
    flush(run, config.unreachable, out);

    // Per-instruction checks.
    for (pc, insn) in program.iter() {
        if writes_r10(insn) {
            out.push(Finding::error(pc, FindingKind::WriteToR10));
        }
        if insn.jump_target(pc) == Some(pc) {
            out.push(Finding::error(pc, FindingKind::SelfLoop));
        }
        match *insn {
            Insn::Call {
                kind: CallKind::Helper,
                imm,
            } => {
                let id = imm as u32;
                if let Some(helpers) = &config.helpers
                    && !helpers.contains(&id)
                {
                    out.push(Finding::error(
                        pc,
                        FindingKind::UnknownHelper { id: u64::from(id) },
                    ));
                }
            }
            Insn::Call {
                kind: CallKind::Btf,
                ..
            } => {
                out.push(Finding::error(pc, FindingKind::UnsupportedCall));
            }
            Insn::LoadImm64 { kind, .. } if kind != Imm64Kind::Value => {
                out.push(Finding::error(pc, FindingKind::UnsupportedLddw));
            }
            _ => {}
        }
    }

    // Recursion, else call depth: the deepest chain of calls reaching each function.
    if let Some(cycle) = cfg.recursion() {
        let pc = cycle.first().map_or(0, |f| cfg.function(*f).entry);
        let cycle = cycle.iter().map(|f| cfg.function(*f).entry).collect();
        let kind = FindingKind::Recursion { cycle };
        out.push(Finding {
            pc,
            severity: config.recursion,
            kind,
        });
        return;
    }
    let depth = call_depths(cfg);
    for (f, func) in cfg.functions().iter().enumerate() {
        let Some(d) = depth[f] else { continue };
        for &(pc, _) in &func.call_sites {
            let reached = d + 1;
            let reachable = cfg.block_at(pc).is_some_and(|b| cfg.is_reachable(b));
            if reachable && reached > config.max_call_depth {
                let kind = FindingKind::CallDepthExceeded {
                    depth: reached,
                    max: config.max_call_depth,
                };
                out.push(Finding::error(pc, kind));
            }
        }
    }
}

fn flush(run: Option<(usize, usize)>, severity: Severity, out: &mut Vec<Finding>) {
    if let Some((start, end)) = run {
        out.push(Finding {
            pc: start,
            severity,
            kind: FindingKind::Unreachable { end },
        });
    }
}

/// For each reachable function, the deepest nesting at which it can run (entry = 0), in the
/// acyclic call graph (longest path from the entry).
fn call_depths(cfg: &Cfg) -> Vec<Option<usize>> {
    let n = cfg.functions().len();
    let callees = |f: usize| -> Vec<usize> {
        cfg.function(FuncId(f as u32))
            .call_sites
            .iter()
            .filter(|(pc, _)| cfg.block_at(*pc).is_some_and(|b| cfg.is_reachable(b)))
            .map(|(_, c)| c.index())
            .collect()
    };
    // Topological order by DFS post-order from the entry.
    let mut order = Vec::new();
    let mut seen = vec![false; n];
    let mut stack = vec![(0usize, false)];
    while let Some((f, expanded)) = stack.pop() {
        if expanded {
            order.push(f);
            continue;
        }
        if n == 0 || core::mem::replace(&mut seen[f], true) {
            continue;
        }
        stack.push((f, true));
        stack.extend(
            callees(f)
                .into_iter()
                .filter(|c| !seen[*c])
                .map(|c| (c, false)),
        );
    }
    let mut depth: Vec<Option<usize>> = vec![None; n];
    if n > 0 {
        depth[0] = Some(0);
    }
    for &f in order.iter().rev() {
        let Some(d) = depth[f] else { continue };
        for c in callees(f) {
            depth[c] = Some(depth[c].map_or(d + 1, |x: usize| x.max(d + 1)));
        }
    }
    depth
}
