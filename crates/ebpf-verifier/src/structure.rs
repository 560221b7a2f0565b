//! Structural checks: decoding every slot, the graph's errors, reachability and code that
//! never runs, `r10` writes, self loops, helpers and unsupported calls, recursion and call
//! depth.
//!
//! What is wrong with an instruction that can never run is a warning, not an error: the
//! kernel loads such programs (it checks only the paths a run can take), and every engine
//! traps if the instruction is reached after all.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use ebpf_cfg::{BlockId, Cfg, CfgErrorKind, FuncId, Terminator};
use ebpf_isa::{AtomicOp, CallKind, DecodeErrorKind, Imm64Kind, Insn, Program, Reg, SLOT_SIZE};

use crate::dataflow::Live;
use crate::{Finding, FindingKind, Severity, VerifierConfig};

/// The opcode byte of `lddw`, the one instruction of two slots.
const LDDW_OPCODE: u8 = 0x18;

/// What stands in for a slot that does not decode: an instruction every engine compiles as a
/// trap at its pc (a call by BTF id, which no engine runs). Only code that can never run may
/// hold one in an accepted program.
pub(crate) const STAND_IN: Insn = Insn::Call {
    kind: CallKind::Btf,
    imm: 0,
};

/// An instruction that did not decode.
#[derive(Clone, Debug)]
pub(crate) struct Undecodable {
    /// Its first slot.
    pub(crate) pc: usize,
    /// Its slots (two for a malformed `lddw` whose second slot exists).
    pub(crate) slots: usize,
    /// Why.
    pub(crate) kind: DecodeErrorKind,
}

/// Bytes decoded slot by slot, with a [`STAND_IN`] in every slot that did not decode.
pub(crate) struct Decoded {
    pub(crate) program: Program,
    pub(crate) undecodable: Vec<Undecodable>,
}

/// Decodes every slot, collecting every error (decoding resumes at the next slot, or after
/// both slots of a malformed `lddw`); each slot that does not decode gets a stand-in, so that
/// the analyses can tell whether it can ever run. Only a length that is not a whole number of
/// slots, or too long, is an error here.
pub(crate) fn decode_lenient(
    bytes: &[u8],
    config: &VerifierConfig,
) -> Result<Decoded, Vec<Finding>> {
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
    let mut undecodable = Vec::new();
    let mut pc = 0;
    while pc < slots {
        match ebpf_isa::decode_at(bytes, pc) {
            Ok(insn) => {
                pc += insn.slots();
                insns.push(insn);
            }
            Err(e) => {
                // A rejected lddw still owns its second slot: do not report that slot again.
                let lddw = bytes.get(pc * SLOT_SIZE) == Some(&LDDW_OPCODE);
                let n = if lddw && pc + 1 < slots { 2 } else { 1 };
                undecodable.push(Undecodable {
                    pc,
                    slots: n,
                    kind: e.kind,
                });
                insns.extend(core::iter::repeat_n(STAND_IN, n));
                pc += n;
            }
        }
    }
    Ok(Decoded {
        program: Program::from_insns(insns),
        undecodable,
    })
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

/// The pcs of the stand-ins (increasing), asked about in increasing pc order. Every stand-in
/// is a call by BTF id, so a search of the whole list per such call was quadratic in the
/// number of undecodable slots (an accepted program may hold up to `max_slots` of them in
/// dead code); a cursor makes the walk linear.
struct StandIns<'a> {
    pcs: &'a [usize],
    next: usize,
}

/// How many stand-in pcs every [`StandIns::contains`] has looked at, for the test that the
/// walk is linear.
#[cfg(test)]
static STAND_IN_STEPS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

impl<'a> StandIns<'a> {
    fn new(pcs: &'a [usize]) -> StandIns<'a> {
        StandIns { pcs, next: 0 }
    }

    /// Whether `pc` is a stand-in; `pc` must not be less than in the previous call.
    fn contains(&mut self, pc: usize) -> bool {
        while let Some(&next) = self.pcs.get(self.next) {
            #[cfg(test)]
            STAND_IN_STEPS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            if next >= pc {
                return next == pc;
            }
            self.next += 1;
        }
        false
    }
}

/// `undecodable`: the pcs of stand-ins for slots that did not decode, in increasing order
/// (reported by the caller, not here as calls by BTF id).
pub(crate) fn check(
    program: &Program,
    cfg: &Cfg,
    config: &VerifierConfig,
    live: &Live,
    undecodable: &[usize],
    out: &mut Vec<Finding>,
) {
    for e in cfg.errors() {
        // "Execution can fall off the end" is false of code that never executes.
        let dead = e.kind == CfgErrorKind::FallsOffEnd && !live.pc(cfg, e.pc);
        if !dead {
            out.push(Finding::error(e.pc, FindingKind::Structure(e.kind)));
        }
    }

    // Every function that runs must be able to return.
    for (f, func) in cfg.functions().iter().enumerate() {
        if !live.function(FuncId(f as u32)) {
            continue;
        }
        let exits = func
            .rpo
            .iter()
            .any(|&b| live.block(b) && matches!(cfg.block(b).terminator, Terminator::Exit));
        if !exits {
            out.push(Finding::error(func.entry, FindingKind::NoReachableExit));
        }
    }

    // Runs of blocks that never run (as ranges of block indices, in pc order).
    let mut run: Option<Range<usize>> = None;
    for (i, block) in cfg.blocks().iter().enumerate() {
        let id = BlockId(i as u32);
        let extends = run
            .as_ref()
            .is_some_and(|r| cfg.blocks()[r.end - 1].end == block.start);
        match (live.block(id), &mut run) {
            (false, Some(r)) if extends => r.end = i + 1,
            (false, _) => {
                flush(cfg, live, run.take(), config.unreachable, out);
                run = Some(i..i + 1);
            }
            (true, _) => flush(cfg, live, run.take(), config.unreachable, out),
        }
    }
    flush(cfg, live, run, config.unreachable, out);

    // Per-instruction checks: errors where the instruction can run, warnings where it cannot.
    let mut stand_ins = StandIns::new(undecodable);
    for (pc, insn) in program.iter() {
        let severity = if live.pc(cfg, pc) {
            Severity::Error
        } else {
            Severity::Warning
        };
        let mut report = |kind| out.push(Finding { pc, severity, kind });
        if writes_r10(insn) {
            report(FindingKind::WriteToR10);
        }
        if insn.jump_target(pc) == Some(pc) {
            report(FindingKind::SelfLoop);
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
                    report(FindingKind::UnknownHelper { id: u64::from(id) });
                }
            }
            Insn::Call {
                kind: CallKind::Btf,
                ..
            } if !stand_ins.contains(pc) => report(FindingKind::UnsupportedCall),
            Insn::LoadImm64 { kind, .. } if kind != Imm64Kind::Value => {
                report(FindingKind::UnsupportedLddw);
            }
            _ => {}
        }
    }

    // Recursion, else call depth: the deepest chain of calls reaching each function.
    if let Some(cycle) = recursion(cfg, live) {
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
    let depth = call_depths(cfg, live);
    for (f, func) in cfg.functions().iter().enumerate() {
        let Some(d) = depth[f] else { continue };
        for &(pc, _) in &func.call_sites {
            let reached = d + 1;
            if live.pc(cfg, pc) && reached > config.max_call_depth {
                let kind = FindingKind::CallDepthExceeded {
                    depth: reached,
                    max: config.max_call_depth,
                };
                out.push(Finding::error(pc, kind));
            }
        }
    }
}

/// Reports a run of dead blocks (indices, contiguous in pc order): code that never runs
/// because a branch on known values always goes the other way (the first such branch into the
/// run is named), else code that no path reaches at all.
fn flush(
    cfg: &Cfg,
    live: &Live,
    run: Option<Range<usize>>,
    severity: Severity,
    out: &mut Vec<Finding>,
) {
    let Some(blocks) = run.and_then(|r| cfg.blocks().get(r)) else {
        return;
    };
    let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
        return;
    };
    let (start, end) = (first.start, last.end);
    let branch = blocks
        .iter()
        .flat_map(|b| &b.preds)
        .filter(|p| live.block(**p))
        .filter_map(|p| {
            let pred = cfg.block(*p);
            matches!(pred.terminator, Terminator::Branch { .. })
                .then(|| last_pc(cfg, *p))
                .flatten()
        })
        .min();
    let kind = match branch {
        Some(branch) => FindingKind::NeverRuns { end, branch },
        None => FindingKind::Unreachable { end },
    };
    out.push(Finding {
        pc: start,
        severity,
        kind,
    });
}

/// The pc of a block's last instruction.
fn last_pc(cfg: &Cfg, b: BlockId) -> Option<usize> {
    let block = cfg.block(b);
    // Every instruction of a block but an lddw takes one slot; a branch is never an lddw.
    block.end.checked_sub(1).filter(|pc| *pc >= block.start)
}

/// The functions called by live call sites of `f`.
fn live_callees(cfg: &Cfg, live: &Live, f: usize) -> Vec<usize> {
    cfg.function(FuncId(f as u32))
        .call_sites
        .iter()
        .filter(|(pc, _)| live.pc(cfg, *pc))
        .map(|(_, c)| c.index())
        .collect()
}

/// A cycle of calls that can all run, if there is one: the graph's own cycle when all its
/// calls are live (the usual case), else one found among the live calls.
fn recursion(cfg: &Cfg, live: &Live) -> Option<Vec<FuncId>> {
    if let Some(cycle) = cfg.recursion() {
        let all_live = cycle.iter().enumerate().all(|(i, f)| {
            let next = cycle[(i + 1) % cycle.len()];
            live.function(*f) && live_callees(cfg, live, f.index()).contains(&next.index())
        });
        if all_live {
            return Some(cycle.to_vec());
        }
    } else {
        return None;
    }
    // Depth-first search over live calls from the entry; a call back into a function on the
    // current path closes a cycle.
    let n = cfg.functions().len();
    let mut on_path = vec![false; n];
    let mut done = vec![false; n];
    let mut path: Vec<(usize, Vec<usize>)> = Vec::new();
    if n > 0 {
        on_path[0] = true;
        path.push((0, live_callees(cfg, live, 0)));
    }
    while let Some((f, pending)) = path.last_mut() {
        let f = *f;
        match pending.pop() {
            Some(c) if on_path[c] => {
                let from = path.iter().position(|(g, _)| *g == c).unwrap_or(0);
                return Some(
                    path[from..]
                        .iter()
                        .map(|(g, _)| FuncId(*g as u32))
                        .collect(),
                );
            }
            Some(c) if !done[c] => {
                on_path[c] = true;
                path.push((c, live_callees(cfg, live, c)));
            }
            Some(_) => {}
            None => {
                on_path[f] = false;
                done[f] = true;
                path.pop();
            }
        }
    }
    None
}

/// For each live function, the deepest nesting at which it can run (entry = 0), in the
/// acyclic graph of live calls (longest path from the entry).
fn call_depths(cfg: &Cfg, live: &Live) -> Vec<Option<usize>> {
    let n = cfg.functions().len();
    let callees = |f: usize| live_callees(cfg, live, f);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verifier;
    use core::sync::atomic::Ordering;

    /// `mov r0, 0; exit`, then `junk` slots that do not decode (opcode 0xff), in dead code:
    /// accepted, one stand-in each. Looking them up must cost a bounded number of steps per
    /// slot (it was a scan of every stand-in per stand-in: `junk²/2` steps).
    #[test]
    fn finding_the_stand_ins_is_linear_in_the_slots() {
        let junk = 20_000;
        let mut bytes = vec![0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
        for _ in 0..junk {
            bytes.extend_from_slice(&[0xff, 0, 0, 0, 0, 0, 0, 0]);
        }
        let before = STAND_IN_STEPS.load(Ordering::Relaxed);
        let verified = Verifier::new(VerifierConfig::default())
            .verify_bytes(&bytes)
            .unwrap();
        let steps = STAND_IN_STEPS.load(Ordering::Relaxed) - before;
        assert_eq!(verified.undecodable().len(), junk);
        let decode = |f: &&Finding| matches!(f.kind, FindingKind::Decode(_));
        assert_eq!(verified.warnings().iter().filter(decode).count(), junk);
        // Each call advances past the previous pc once and looks at the next: 2 per slot,
        // with room for another test's few stand-ins counted at the same time.
        assert!(
            steps <= 2 * junk + 1_000,
            "{steps} steps for {junk} stand-ins"
        );
    }
}
