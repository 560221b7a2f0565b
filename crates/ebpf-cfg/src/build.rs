//! Building the graph: functions, leaders, blocks, terminators and edges, in one linear pass
//! over the instructions plus a sort of the function entries.

use alloc::vec;
use alloc::vec::Vec;

use ebpf_isa::{Insn, Program};

use crate::{Block, BlockId, Cfg, CfgError, CfgErrorKind, FuncId, Function, Terminator};

/// What a slot holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The first slot of the instruction with this index.
    Start(u32),
    /// The second slot of the `lddw` at this pc.
    LddwTail(usize),
}

/// A jump or call target, checked against the slot map.
fn resolve(slots: &[Slot], pc: usize, delta: i64) -> Result<usize, (i64, Option<usize>)> {
    let target = (pc as i64).saturating_add(1).saturating_add(delta);
    match usize::try_from(target)
        .ok()
        .and_then(|t| slots.get(t).map(|s| (t, *s)))
    {
        Some((t, Slot::Start(_))) => Ok(t),
        Some((_, Slot::LddwTail(lddw))) => Err((target, Some(lddw))),
        None => Err((target, None)),
    }
}

fn jump_delta(insn: &Insn) -> Option<i64> {
    match *insn {
        Insn::Ja { off } | Insn::Jump { off, .. } => Some(i64::from(off)),
        Insn::Ja32 { imm } => Some(i64::from(imm)),
        _ => None,
    }
}

pub(crate) fn build(program: &Program) -> Cfg {
    let insns = program.insns();
    let len = program.slot_count();
    let mut errors = Vec::new();
    let mut cfg = Cfg {
        blocks: Vec::new(),
        functions: Vec::new(),
        block_of_slot: Vec::new(),
        errors: Vec::new(),
        idom: Vec::new(),
        dom_pre: Vec::new(),
        dom_post: Vec::new(),
        back_edges: Vec::new(),
        loops: Vec::new(),
        has_cycles: false,
        recursion: None,
        reachable_funcs: Vec::new(),
    };
    if insns.is_empty() {
        cfg.errors.push(CfgError {
            pc: 0,
            kind: CfgErrorKind::Empty,
        });
        return cfg;
    }

    // Slot map and instruction pcs.
    let mut slots = vec![Slot::Start(0); len];
    let mut pcs = Vec::with_capacity(insns.len());
    for (i, (pc, insn)) in program.iter().enumerate() {
        pcs.push(pc);
        slots[pc] = Slot::Start(i as u32);
        if insn.slots() == 2 {
            slots[pc + 1] = Slot::LddwTail(pc);
        }
    }

    // Function entries: pc 0 and every valid local-call target.
    let mut entries = vec![0usize];
    for (pc, insn) in program.iter() {
        if let Insn::Call {
            kind: ebpf_isa::CallKind::Local,
            imm,
        } = *insn
        {
            match resolve(&slots, pc, i64::from(imm)) {
                Ok(t) => entries.push(t),
                Err((target, Some(lddw))) => {
                    let kind = CfgErrorKind::CallIntoLddw {
                        target: target as usize,
                        lddw,
                    };
                    errors.push(CfgError { pc, kind });
                }
                Err((target, None)) => {
                    errors.push(CfgError {
                        pc,
                        kind: CfgErrorKind::CallOutOfRange { target },
                    });
                }
            }
        }
    }
    entries.sort_unstable();
    entries.dedup();
    // func_end[f] = entry of f + 1, or the program length.
    let func_of_pc = |pc: usize| -> usize { entries.partition_point(|&e| e <= pc) - 1 };
    let func_end = |f: usize| -> usize { entries.get(f + 1).copied().unwrap_or(len) };

    // Leaders: function entries, jump targets in the same function, and what follows a jump
    // or an exit.
    let mut leader = vec![false; insns.len()];
    let index_of = |pc: usize| -> Option<usize> {
        match slots.get(pc) {
            Some(Slot::Start(i)) => Some(*i as usize),
            _ => None,
        }
    };
    for &e in &entries {
        if let Some(i) = index_of(e) {
            leader[i] = true;
        }
    }
    for (i, insn) in insns.iter().enumerate() {
        let pc = pcs[i];
        let ends_block = jump_delta(insn).is_some() || matches!(insn, Insn::Exit);
        if ends_block && i + 1 < insns.len() {
            leader[i + 1] = true;
        }
        if let Some(delta) = jump_delta(insn)
            && let Ok(t) = resolve(&slots, pc, delta)
            && func_of_pc(t) == func_of_pc(pc)
            && let Some(ti) = index_of(t)
        {
            leader[ti] = true;
        }
    }

    // Blocks, in pc order.
    let mut blocks: Vec<Block> = Vec::new();
    let mut block_of_slot = vec![BlockId(0); len];
    let mut start = 0usize;
    for i in 0..insns.len() {
        let last = i + 1 == insns.len() || leader[i + 1];
        if !last {
            continue;
        }
        let id = BlockId(blocks.len() as u32);
        let first_pc = pcs[start];
        let end_pc = pcs[i] + insns[i].slots();
        for slot in &mut block_of_slot[first_pc..end_pc] {
            *slot = id;
        }
        blocks.push(Block {
            start: first_pc,
            end: end_pc,
            insns: start..i + 1,
            func: FuncId(func_of_pc(first_pc) as u32),
            // Filled in below, once every block exists.
            terminator: Terminator::Exit,
            preds: Vec::new(),
        });
        start = i + 1;
    }

    // Terminators.
    for block in &mut blocks {
        let last = block.insns.end - 1;
        let pc = pcs[last];
        let insn = &insns[last];
        let func = func_of_pc(pc);
        let next_pc = pc + insn.slots();
        let fallthrough = if next_pc < func_end(func) {
            Some(block_of_slot[next_pc])
        } else {
            None
        };
        let target = |errors: &mut Vec<CfgError>, delta: i64| -> Option<BlockId> {
            match resolve(&slots, pc, delta) {
                Ok(t) if func_of_pc(t) == func => Some(block_of_slot[t]),
                Ok(t) => {
                    errors.push(CfgError {
                        pc,
                        kind: CfgErrorKind::JumpOutOfFunction { target: t },
                    });
                    None
                }
                Err((t, Some(lddw))) => {
                    let kind = CfgErrorKind::JumpIntoLddw {
                        target: t as usize,
                        lddw,
                    };
                    errors.push(CfgError { pc, kind });
                    None
                }
                Err((target, None)) => {
                    errors.push(CfgError {
                        pc,
                        kind: CfgErrorKind::JumpOutOfRange { target },
                    });
                    None
                }
            }
        };
        let terminator = match *insn {
            Insn::Exit => Terminator::Exit,
            Insn::Ja { .. } | Insn::Ja32 { .. } => {
                Terminator::Jump(jump_delta(insn).and_then(|d| target(&mut errors, d)))
            }
            Insn::Jump { .. } => {
                let taken = jump_delta(insn).and_then(|d| target(&mut errors, d));
                Terminator::Branch { taken, fallthrough }
            }
            _ => Terminator::FallThrough(fallthrough),
        };
        let may_fall = matches!(
            terminator,
            Terminator::FallThrough(None)
                | Terminator::Branch {
                    fallthrough: None,
                    ..
                }
        );
        if may_fall {
            errors.push(CfgError {
                pc,
                kind: CfgErrorKind::FallsOffEnd,
            });
        }
        block.terminator = terminator;
    }

    // Predecessors.
    for b in 0..blocks.len() {
        let succs: Vec<BlockId> = blocks[b].successors().map(|(s, _)| s).collect();
        for s in succs {
            let preds = &mut blocks[s.index()].preds;
            if preds.last() != Some(&BlockId(b as u32)) {
                preds.push(BlockId(b as u32));
            }
        }
    }

    // Functions.
    let mut functions = Vec::with_capacity(entries.len());
    for (f, &entry) in entries.iter().enumerate() {
        let first = block_of_slot[entry].0;
        let last = blocks.partition_point(|b| b.start < func_end(f)) as u32;
        let mut call_sites = Vec::new();
        for b in &blocks[first as usize..last as usize] {
            for i in b.insns.clone() {
                if let Insn::Call {
                    kind: ebpf_isa::CallKind::Local,
                    imm,
                } = insns[i]
                    && let Ok(t) = resolve(&slots, pcs[i], i64::from(imm))
                    && let Ok(callee) = entries.binary_search(&t)
                {
                    call_sites.push((pcs[i], FuncId(callee as u32)));
                }
            }
        }
        functions.push(Function {
            entry,
            end: func_end(f),
            blocks: first..last,
            rpo: Vec::new(),
            call_sites,
        });
    }

    errors.sort_by_key(|e| e.pc);
    cfg.blocks = blocks;
    cfg.functions = functions;
    cfg.block_of_slot = block_of_slot;
    cfg.errors = errors;
    cfg
}
