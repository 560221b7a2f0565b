//! `bpf_loop` as the kernel inlines it, and `bpf_for_each_map_elem` the same way: each call
//! whose callback is known at load time (the `lddw r2, code OFF` that reaches the call in its
//! block) becomes a local call of a small function appended to the program, which calls the
//! callback in a loop. No helper runs program code, and every engine runs the loop as
//! ordinary instructions. `for_each_map_elem`'s function asks a private helper
//! ([`FOR_EACH_STEP`]) for each element in turn: it copies the key into the function's frame
//! and returns the value's address.

use ebpf_isa::{AluOp, CallKind, Cond, Imm64Kind, Insn, Operand, Program, Reg, Width};

/// `bpf_loop`'s kernel id.
pub(crate) const LOOP: u32 = 181;

/// `bpf_for_each_map_elem`'s kernel id.
pub(crate) const FOR_EACH_MAP_ELEM: u32 = 164;

/// The private helper the inlined `for_each_map_elem` calls: `(map, cursor, key_out)` copies
/// the key of the map's first element whose value lies at or after offset `cursor` to
/// `key_out` and returns its value's address, or 0 past the last element. Outside the kernel's id range, so that no kernel program calls it by
/// accident.
pub(crate) const FOR_EACH_STEP: u32 = 0x4b45_0001;

/// Where the inlined `for_each_map_elem` keeps the key it hands the callback: the bottom of
/// its own frame (keys of up to 480 bytes are accepted, as when the frame's top 32 bytes held
/// the function's state).
pub(crate) const FOR_EACH_KEY: i16 = -512;

/// The most iterations `bpf_loop` allows (`BPF_MAX_LOOPS`).
const MAX_LOOPS: i32 = 1 << 23;

/// A `bpf_loop` or `for_each_map_elem` call (the helper id) whose callback is not known at
/// load time.
#[derive(Debug)]
pub(crate) struct UnknownCallback(pub(crate) u32);

/// Rewrites every `call bpf_loop` and `call for_each_map_elem` (see the module comment);
/// `Ok(None)` when there is none.
pub(crate) fn inline_loops(program: &Program) -> Result<Option<Program>, UnknownCallback> {
    let mut insns = program.insns().to_vec();
    let pcs: Vec<usize> = program.iter().map(|(pc, _)| pc).collect();
    let targets = jump_targets(program);
    let mut end_pc = program.slot_count();
    let mut appended = Vec::new();
    for i in 0..insns.len() {
        let Insn::Call {
            kind: CallKind::Helper,
            imm,
        } = insns[i]
        else {
            continue;
        };
        let id = imm as u32;
        if id != LOOP && id != FOR_EACH_MAP_ELEM {
            continue;
        }
        let callback = callback_of(&insns, &pcs, &targets, i).ok_or(UnknownCallback(id))?;
        let start = end_pc;
        let function = if id == LOOP {
            loop_function(start, callback)
        } else {
            for_each_function(start, callback)
        };
        end_pc += function.iter().map(Insn::slots).sum::<usize>();
        appended.extend(function);
        insns[i] = Insn::Call {
            kind: CallKind::Local,
            imm: (start as i64 - pcs[i] as i64 - 1) as i32,
        };
    }
    if appended.is_empty() {
        return Ok(None);
    }
    insns.extend(appended);
    Ok(Some(Program::from_insns(insns)))
}

/// Every pc a jump or call lands on (where a block starts).
fn jump_targets(program: &Program) -> Vec<usize> {
    let mut targets: Vec<usize> = program
        .iter()
        .filter_map(|(pc, insn)| {
            let off = match *insn {
                Insn::Ja { off } | Insn::Jump { off, .. } => i64::from(off),
                Insn::Ja32 { imm } => i64::from(imm),
                Insn::Call {
                    kind: CallKind::Local,
                    imm,
                } => i64::from(imm),
                _ => return None,
            };
            usize::try_from(pc as i64 + 1 + off).ok()
        })
        .collect();
    targets.sort_unstable();
    targets
}

/// The callback's pc: the last write of `r2` before the call `i`, in its block, must be
/// `lddw r2, code OFF`.
fn callback_of(insns: &[Insn], pcs: &[usize], targets: &[usize], i: usize) -> Option<usize> {
    let mut j = i;
    while j > 0 {
        if targets.binary_search(&pcs[j]).is_ok() {
            return None;
        }
        j -= 1;
        match insns[j] {
            Insn::LoadImm64 {
                dst: Reg::R2,
                kind: Imm64Kind::Code,
                imm,
            } => return usize::try_from(pcs[j] as i64 + 1 + i64::from(imm as u32 as i32)).ok(),
            Insn::Alu { dst: Reg::R2, .. }
            | Insn::Neg { dst: Reg::R2, .. }
            | Insn::MovSx { dst: Reg::R2, .. }
            | Insn::Endian { dst: Reg::R2, .. }
            | Insn::Load { dst: Reg::R2, .. }
            | Insn::LoadImm64 { dst: Reg::R2, .. }
            | Insn::Atomic { src: Reg::R2, .. }
            | Insn::Call { .. }
            | Insn::CallX { .. }
            | Insn::LoadPacket { .. }
            | Insn::Exit
            | Insn::Ja { .. }
            | Insn::Ja32 { .. }
            | Insn::Jump { .. } => return None,
            _ => {}
        }
    }
    None
}

/// The function that stands for one `bpf_loop` call, placed at pc `start`: `r1` iterations
/// of `callback(i, r3)`, stopping after an iteration that returns non-zero; `r0` is the
/// number of iterations done; `-EINVAL` for flags (`r4`), `-E2BIG` for more than
/// `BPF_MAX_LOOPS`.
fn loop_function(start: usize, callback: usize) -> Vec<Insn> {
    const R0: Reg = Reg::R0;
    const R1: Reg = Reg::R1;
    const R2: Reg = Reg::R2;
    const R3: Reg = Reg::R3;
    const R4: Reg = Reg::R4;
    const R6: Reg = Reg::R6;
    const R7: Reg = Reg::R7;
    const R8: Reg = Reg::R8;
    let mov = |dst, src| mov(Width::W64, dst, src);
    let jump = |cond, dst, src, off| Insn::Jump {
        width: Width::W64,
        cond,
        dst,
        src,
        off,
    };
    // Every instruction here takes one slot; the call's offset is from its own pc. The
    // context, the count and `i` live in r6-r8, which every engine saves across a local call
    // and restores at its exit: the callback cannot change them, this function's caller gets
    // its own back, and the facts follow the context into the callback (a value kept in the
    // frame would reach it as an unknown load).
    let call_at = start + 8;
    vec![
        /* 0 */ jump(Cond::Ne, R4, Operand::Imm(0), 12), // -> 13: EINVAL
        /* 1 */ jump(Cond::Gt, R1, Operand::Imm(MAX_LOOPS), 13), // -> 15: E2BIG
        /* 2 */ mov(R6, Operand::Reg(R3)),
        /* 3 */ mov(R7, Operand::Reg(R1)),
        /* 4 */ mov(R8, Operand::Imm(0)),
        /* 5 */ jump(Cond::Ge, R8, Operand::Reg(R7), 5), // -> 11: done
        /* 6 */ mov(R1, Operand::Reg(R8)),
        /* 7 */ mov(R2, Operand::Reg(R6)),
        /* 8 */
        Insn::Call {
            kind: CallKind::Local,
            imm: (callback as i64 - call_at as i64 - 1) as i32,
        },
        /* 9 */ add(R8, 1),
        /* 10 */ jump(Cond::Eq, R0, Operand::Imm(0), -6), // -> 5: next
        /* 11 */ mov(R0, Operand::Reg(R8)),
        /* 12 */ Insn::Exit,
        /* 13 */ mov(R0, Operand::Imm(-22)),
        /* 14 */ Insn::Exit,
        /* 15 */ mov(R0, Operand::Imm(-7)),
        /* 16 */ Insn::Exit,
    ]
}

/// The function that stands for one `for_each_map_elem(map, callback, ctx, flags)` call,
/// placed at pc `start`: `callback(map, &key, &value, ctx)` for each element in turn,
/// stopping after a call that returns non-zero; `r0` is the number of elements visited;
/// `-EINVAL` for flags (`r4`). Elements are visited in the order of their values' offsets:
/// the [`FOR_EACH_STEP`] helper finds the first element at or after a cursor, which moves
/// past each one visited, so a callback that deletes its element skips none.
fn for_each_function(start: usize, callback: usize) -> Vec<Insn> {
    const R0: Reg = Reg::R0;
    const R1: Reg = Reg::R1;
    const R2: Reg = Reg::R2;
    const R3: Reg = Reg::R3;
    const R4: Reg = Reg::R4;
    const R6: Reg = Reg::R6;
    const R7: Reg = Reg::R7;
    const R8: Reg = Reg::R8;
    const R9: Reg = Reg::R9;
    const R10: Reg = Reg::R10;
    let jump = |cond, dst, off| Insn::Jump {
        width: Width::W64,
        cond,
        dst,
        src: Operand::Imm(0),
        off,
    };
    let mov64 = |dst, src| mov(Width::W64, dst, src);
    // One slot each. The map, the context, the count and the cursor live in r6-r9, which the
    // callback cannot change (as in `loop_function`); the key at the frame's bottom, which the
    // callback reaches only through the key pointer it is given.
    let call_at = start + 19;
    let key = i32::from(FOR_EACH_KEY);
    vec![
        /* 0 */ jump(Cond::Ne, R4, 22), // -> 23: EINVAL
        /* 1 */ mov64(R6, Operand::Reg(R1)),
        /* 2 */ mov64(R7, Operand::Reg(R3)),
        /* 3 */ mov64(R8, Operand::Imm(0)),
        /* 4 */ mov64(R9, Operand::Imm(0)),
        /* 5 */ mov64(R1, Operand::Reg(R6)),
        /* 6 */ mov64(R2, Operand::Reg(R9)),
        /* 7 */ mov64(R3, Operand::Reg(R10)),
        /* 8 */ add(R3, key),
        /* 9 */
        Insn::Call {
            kind: CallKind::Helper,
            imm: FOR_EACH_STEP as i32,
        },
        /* 10 */ jump(Cond::Eq, R0, 10), // -> 21: done
        /* 11 */ mov(Width::W32, R9, Operand::Reg(R0)), // the value's offset
        /* 12 */ add(R9, 1),
        /* 13 */ add(R8, 1),
        /* 14 */ mov64(R1, Operand::Reg(R6)),
        /* 15 */ mov64(R2, Operand::Reg(R10)),
        /* 16 */ add(R2, key),
        /* 17 */ mov64(R3, Operand::Reg(R0)),
        /* 18 */ mov64(R4, Operand::Reg(R7)),
        /* 19 */
        Insn::Call {
            kind: CallKind::Local,
            imm: (callback as i64 - call_at as i64 - 1) as i32,
        },
        /* 20 */ jump(Cond::Eq, R0, -16), // -> 5: next
        /* 21 */ mov64(R0, Operand::Reg(R8)),
        /* 22 */ Insn::Exit,
        /* 23 */ mov64(R0, Operand::Imm(-22)),
        /* 24 */ Insn::Exit,
    ]
}

/// `dst = src` at `width` (32 bits zero-extends).
fn mov(width: Width, dst: Reg, src: Operand) -> Insn {
    Insn::Alu {
        width,
        op: AluOp::Mov,
        dst,
        src,
    }
}

/// `dst += imm`.
fn add(dst: Reg, imm: i32) -> Insn {
    Insn::Alu {
        width: Width::W64,
        op: AluOp::Add,
        dst,
        src: Operand::Imm(imm),
    }
}
