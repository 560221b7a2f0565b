//! The single-pass emitter: eBPF instructions in, x86-64 machine code out (a `Vec<u8>`, not yet
//! executable), written with dynasm-rs.
//!
//! One pass over the instructions emits every block in pc order; branch targets are dynamic
//! labels that dynasm patches at the end (backward branches that fit get a rel8 encoding,
//! forward ones rel32, as their distance is not known yet). Out-of-line code — trap stubs, the
//! budget stubs of blocks, and the shared exit paths — follows the program's code, so the hot
//! path is straight-line. Nothing here depends on the host: this module compiles and its
//! output is tested (decoded with iced-x86) on any architecture.
//!
//! # Register mapping
//!
//! | eBPF | host | | eBPF | host |
//! |------|------|-|------|------|
//! | r0 | rsi | | r6 | r12 |
//! | r1 | rdi | | r7 | r13 |
//! | r2 | r8  | | r8 | r14 |
//! | r3 | r9  | | r9 | r15 |
//! | r4 | r10 | | r10 | rbp |
//! | r5 | r11 | | context | rbx |
//!
//! `rcx` holds the remaining instruction budget; `rax` and `rdx` are scratch (`div` and
//! `cmpxchg` need exactly those two). `r6`–`r10` and the context live in callee-saved host
//! registers, so a helper call (through a System V trampoline) needs to save only the budget.

// dynasm!'s expansion converts dynamic register numbers with `.into()`, even from `u8`.
#![allow(clippy::useless_conversion)]

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use dynasmrt::x64::X64Relocation;
use dynasmrt::{DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler, dynasm};
use ebpf_abi::{Flow, InvalidReason, SplitMix64, Target, layout, trap_code};
use ebpf_cfg::facts::{Access, Bound, Charge, Counter, Facts};
use ebpf_isa::{
    AluOp, AtomicOp, ByteOrder, CallKind, Cond, Imm64Kind, Insn, Operand, PacketAddr, Program, Reg,
    SignExtend, Size, SwapWidth, Width,
};

use crate::blocks::Shape;
use crate::context::{
    FRAME_CALLEE_FP, FRAME_RET, FRAME_SIZE, OFF_BIAS, OFF_BLOCK, OFF_FRAME_BASE, OFF_FRAME_END,
    OFF_FRAME_SP, OFF_HELPER_ID, OFF_HOST, OFF_LOOP_COUNT, OFF_NULL, OFF_REGS, OFF_REMAINING,
    OFF_RESUME, OFF_SAVED_RSP, OFF_START, OFF_TRAMPOLINE, OFF_TRAP_ADDR, OFF_TRAP_CODE,
    OFF_TRAP_PC, lim_offset, packed, span_offset, status,
};
use crate::live::{self, Regs};
use crate::{JitError, JitOptions};

/// dynasm with the architecture set.
macro_rules! asm {
    ($ops:expr; $($t:tt)*) => {
        dynasm!($ops ; .arch x64 ; $($t)*)
    };
}

/// `d = ` the `size` bytes at the memory operand `[..]`, zero- or (`signed`) sign-extended.
macro_rules! load_from {
    ($e:ident, $size:expr, $signed:expr, $d:expr, [$($m:tt)*]) => {
        match ($size, $signed) {
            (Size::B, false) => asm!($e.ops; movzx Rd($d), BYTE [$($m)*]),
            (Size::H, false) => asm!($e.ops; movzx Rd($d), WORD [$($m)*]),
            (Size::W, false) => asm!($e.ops; mov Rd($d), DWORD [$($m)*]),
            (Size::DW, _) => asm!($e.ops; mov Rq($d), QWORD [$($m)*]),
            (Size::B, true) => asm!($e.ops; movsx Rq($d), BYTE [$($m)*]),
            (Size::H, true) => asm!($e.ops; movsx Rq($d), WORD [$($m)*]),
            (Size::W, true) => asm!($e.ops; movsxd Rq($d), DWORD [$($m)*]),
        }
    };
}

/// Stores the low `size` bytes of `src` at the memory operand `[..]`; an immediate that must be
/// blinded goes through `rax`.
macro_rules! store_to {
    ($e:ident, $size:expr, $src:expr, [$($m:tt)*]) => {
        match $src {
            Operand::Imm(imm) if !$e.blinds(i64::from(imm)) => match $size {
                Size::B => asm!($e.ops; mov BYTE [$($m)*], imm as i8),
                Size::H => asm!($e.ops; mov WORD [$($m)*], imm as i16),
                Size::W => asm!($e.ops; mov DWORD [$($m)*], imm),
                Size::DW => asm!($e.ops; mov QWORD [$($m)*], imm),
            },
            src => {
                let s = match src {
                    Operand::Reg(s) => h(s),
                    Operand::Imm(imm) => {
                        $e.load_imm(RAX, imm, true);
                        RAX
                    }
                };
                match $size {
                    Size::B => asm!($e.ops; mov BYTE [$($m)*], Rb(s)),
                    Size::H => asm!($e.ops; mov WORD [$($m)*], Rw(s)),
                    Size::W => asm!($e.ops; mov DWORD [$($m)*], Rd(s)),
                    Size::DW => asm!($e.ops; mov QWORD [$($m)*], Rq(s)),
                }
            }
        }
    };
}

const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;
const RBX: u8 = 3;

/// Host register of each eBPF register (see the module docs).
pub(crate) const HOST: [u8; 11] = [6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 5];

/// Whether the code of `insn` leaves `rdx` as it was, apart from an access's host address
/// (`Emitter::host_address` says what it leaves in `rdx`): the plain ALU forms, whose scratch
/// is `rax`, and loads and stores. Shifts by a register park the budget in `rdx`, divisions
/// use it, and the rest is not worth the bookkeeping.
fn keeps_rdx(insn: &Insn) -> bool {
    match *insn {
        Insn::Alu { op, .. } => {
            matches!(
                op,
                AluOp::Mov
                    | AluOp::Add
                    | AluOp::Sub
                    | AluOp::And
                    | AluOp::Or
                    | AluOp::Xor
                    | AluOp::Mul
            ) || matches!(
                (op, insn),
                (
                    AluOp::Lsh | AluOp::Rsh | AluOp::Arsh,
                    Insn::Alu {
                        src: Operand::Imm(_),
                        ..
                    }
                )
            )
        }
        Insn::Neg { .. } | Insn::Load { .. } | Insn::Store { .. } => true,
        Insn::LoadImm64 { kind, .. } => kind == Imm64Kind::Value,
        _ => false,
    }
}

/// The host register of `r`.
fn h(r: Reg) -> u8 {
    HOST.get(usize::from(r.index())).copied().unwrap_or(6)
}

// `bts rax, 34` turns an offset into a VM address in the input region.
const _: () = assert!(layout::INPUT << layout::REGION_SHIFT == 1 << 34);

/// Largest pc the emitter accepts (pcs are 32-bit immediates in the code).
const MAX_SLOTS: usize = i32::MAX as usize - 1;

/// The code of one program, and what the run time needs to know about it.
#[derive(Debug)]
pub(crate) struct Emitted {
    /// Machine code; the entry point is offset 0 (`extern "sysv64" fn(*mut Ctx) -> u32`).
    pub(crate) code: Vec<u8>,
    /// The blocks the code was made of.
    pub(crate) shape: Shape,
    /// Code offset of each block's first instruction.
    pub(crate) block_offsets: Vec<u32>,
    /// Code offset of the resume entry: the prologue, then `jmp [rbx + resume]` (same
    /// signature as the entry at offset 0).
    pub(crate) resume_offset: u32,
}

/// An x86 condition code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cc {
    E,
    Ne,
    A,
    Ae,
    B,
    Be,
    G,
    Ge,
    L,
    Le,
}

fn cc_of(cond: Cond) -> Cc {
    match cond {
        Cond::Eq => Cc::E,
        Cond::Ne | Cond::Set => Cc::Ne,
        Cond::Gt => Cc::A,
        Cond::Ge => Cc::Ae,
        Cond::Lt => Cc::B,
        Cond::Le => Cc::Be,
        Cond::Sgt => Cc::G,
        Cond::Sge => Cc::Ge,
        Cond::Slt => Cc::L,
        Cond::Sle => Cc::Le,
    }
}

/// The trap code of an `InvalidInstruction`.
fn invalid_code(reason: InvalidReason) -> u32 {
    packed(trap_code::INVALID_INSTRUCTION, reason.code())
}

/// Out-of-line code emitted after the program.
#[derive(Clone, Copy, Debug)]
enum Stub {
    /// `mov edx, pc; mov ecx, code; jmp trap_common` (`rax` holds the address, if any).
    Trap { pc: u32, code: u32 },
    /// `add rcx, charge; mov edx, block; jmp budget_common`.
    Budget { block: u32, charge: i32 },
    /// A side exit taken out of a chain: `add rcx, amount; jmp target` (the refund of the
    /// chain's blocks it skips).
    Refund { amount: i32, target: DynamicLabel },
    /// A side exit taken out of a chain into the head of chain `block`, past that head's own
    /// charge (`charge`), settling both at once: `net` is `charge` minus the refund. A
    /// refund larger than the charge cannot run the budget out (`add rcx, -net`); otherwise
    /// `sub rcx, net`, and on a borrow the head's budget stub, with `rcx` as the head's own
    /// `sub` would have left it.
    Settle {
        net: i32,
        block: u32,
        charge: i32,
        body: DynamicLabel,
    },
    /// A check the facts declared impossible failed (checked-facts mode): the run ends with
    /// `status::FACT` and the pc.
    Fact { pc: u32 },
    /// Leaving a counted loop's copy in checked-facts mode: unless the loop ran exactly the
    /// instructions its dispatcher charged (the count, which started at minus them, is 0), to
    /// `fact`; else on to `target`.
    LeaveCounted {
        fact: DynamicLabel,
        target: DynamicLabel,
    },
    /// A guessed region was wrong: the full check of `[base + off]` (`1 << w` bytes), then
    /// back to the access with the host address in `rdx`, or the out-of-bounds trap at `pc`.
    Unguessed {
        base: u8,
        off: i32,
        w: u8,
        write: bool,
        pc: u32,
        back: DynamicLabel,
    },
}

/// How an access is addressed once `host_address` has emitted its check (or proof).
#[derive(Clone, Copy)]
enum At {
    /// `[rdx]`: `rdx` holds the host address.
    Rdx,
    /// `[base + rdx + off]`: `rdx` holds the stack's bias (an unchecked frame access).
    Indexed {
        /// The host register of the access's base.
        base: u8,
        /// The access's offset.
        off: i32,
    },
}

/// Random keys for constant blinding: SplitMix64 seeded from the standard library's per-process
/// random hasher keys.
pub(crate) struct Keys(SplitMix64);

impl Keys {
    pub(crate) fn new() -> Keys {
        use std::hash::{BuildHasher, Hasher};
        let state = std::collections::hash_map::RandomState::new();
        let mut hasher = state.build_hasher();
        hasher.write_usize(&state as *const _ as usize);
        Keys(SplitMix64::new(hasher.finish()))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A key with every byte odd, so every byte of a blinded value differs from the plain one.
    fn key32(&mut self) -> i32 {
        (self.next() as u32 | 0x0101_0101) as i32
    }

    fn key64(&mut self) -> i64 {
        (self.next() | 0x0101_0101_0101_0101) as i64
    }
}

struct Emitter<'p> {
    ops: VecAssembler<X64Relocation>,
    program: &'p Program,
    shape: Shape,
    /// One label per slot pc, plus one for the end; created when first needed.
    labels: Vec<Option<DynamicLabel>>,
    stubs: Vec<(DynamicLabel, Stub)>,
    trap_common: DynamicLabel,
    budget_common: DynamicLabel,
    exit_ok: DynamicLabel,
    epilogue: DynamicLabel,
    blinding: bool,
    keys: Keys,
    /// What holds on every path (`ebpf_cfg::facts`): an access proven in bounds needs no
    /// check, a divisor proven nonzero no test, and a loop with a version gets a second,
    /// unchecked copy selected once at its entry.
    facts: &'p Facts,
    /// Checked-facts mode: keep every check a fact makes impossible, failing to a `Fact`
    /// stub instead of a trap.
    checked: bool,
    /// Spectre v1 masking (`JitOptions::spectre_masking`): the host address of every access
    /// checked at run time is forced to 0 when its check fails, without a branch.
    masking: bool,
    /// `JitOptions::spectre_clamp_proven` (with masking): accesses proven through a branch
    /// get the branch-free clamp (`Emitter::clamp`).
    clamp_proven: bool,
    /// The instruction being emitted.
    index: usize,
    /// The loops that get a second copy (`LoopCopy`), entered from outside through a
    /// dispatcher.
    loops: Vec<LoopCopy>,
    /// The loop (index into `loops`) whose copy is being emitted.
    copy: Option<usize>,
    /// Per slot pc: the label of the copy being emitted (reset per copy).
    copy_labels: Vec<Option<DynamicLabel>>,
    /// What a taken conditional jump at the end of the current block refunds (`Shape::rest`).
    refund: usize,
    /// Per block that a side exit out of a chain goes to (`Stub::Settle`): the label just
    /// past its chain charge in the ordinary code (not in a loop's copy), the charge, and the
    /// block's first pc.
    bodies: Vec<Option<(DynamicLabel, usize, usize)>>,
    /// The region whose bias `rdx` holds, loaded by a proven access earlier in the current
    /// block with nothing since that writes `rdx`: the next proven access to that region
    /// reuses it instead of loading it again.
    bias_in_rdx: Option<u8>,
    /// Code offset of each block emitted so far.
    block_offsets: Vec<u32>,
    /// The callee-saved host registers the code uses (`rbx`, the context's, always): what the
    /// prologues save and the epilogue restores.
    saved: Vec<u8>,
    /// The eBPF registers the code uses: what the budget path stores and the resume entry
    /// loads.
    used: Regs,
    /// The eBPF registers the entry loads from the context (`r1`, `r2`, `r10`, when the code
    /// may read them before writing them) and those it zeroes (any other it may read first,
    /// and the registers loop dispatchers test).
    entry_loads: Regs,
    entry_zeroes: Regs,
}

/// A loop that gets a second copy of its code, entered only from outside the loop through a
/// dispatcher that decides, once per entry, whether the copy may run.
#[derive(Clone)]
struct LoopCopy {
    /// The loop's only entry (an instruction index).
    entry: usize,
    /// The loop's instructions, as ranges of instruction indices.
    insns: Vec<Range<usize>>,
    kind: CopyKind,
    /// The dispatcher: the way into the loop from outside.
    dispatch: DynamicLabel,
    /// The copy's entry.
    copy_entry: DynamicLabel,
}

/// What a loop's copy drops, one or both.
#[derive(Clone, Copy)]
struct CopyKind {
    /// `Facts::versions()[v]`: the copy drops the checks the version's conditions prove; the
    /// dispatcher tests the conditions.
    version: Option<usize>,
    /// A loop whose every entry runs exactly the instructions its [`Charge`] says
    /// (`LoopFact`) and can neither trap nor call (its accesses proven, or its version's):
    /// the dispatcher charges them all at once when the budget has them, and the copy charges
    /// nothing.
    charge: Option<Charge>,
}

/// The largest `per_iteration` of a loop charged at its entry from registers: the charge,
/// fewer than 2^32 trips times this, stays below 2^63 (the checked-facts count is its
/// negation), and the multiplier fits an immediate.
const MAX_AT_ENTRY_PER_ITERATION: u64 = 1 << 20;

/// The loops to copy: every version, and every counted loop that shares no instruction with
/// a version (or is exactly a version's loop: then one copy drops both) whose charge fits the
/// dispatcher, and in which nothing can end the run early (every access proven in bounds or
/// by the version, no call, no exit, no jump to a trap, no invalid instruction), so charging
/// all of it at entry is exact.
fn loop_copies(
    shape: &Shape,
    facts: &Facts,
    ops: &mut VecAssembler<X64Relocation>,
) -> Vec<LoopCopy> {
    let versions = facts.versions();
    let mut loops: Vec<LoopCopy> = versions
        .iter()
        .enumerate()
        .map(|(v, version)| LoopCopy {
            entry: version.entry,
            insns: version.insns.clone(),
            kind: CopyKind {
                version: Some(v),
                charge: None,
            },
            dispatch: ops.new_dynamic_label(),
            copy_entry: ops.new_dynamic_label(),
        })
        .collect();
    let overlaps = |insns: &[Range<usize>]| {
        versions.iter().any(|v| {
            v.insns
                .iter()
                .any(|a| insns.iter().any(|b| a.start < b.end && b.start < a.end))
        })
    };
    for fact in facts.loops() {
        // The loop of a version: its copy may also drop the charges.
        let version = versions
            .iter()
            .position(|v| v.entry == fact.entry && v.insns == fact.insns);
        let versioned = |i: usize| {
            version.is_some_and(|v| {
                versions[v]
                    .accesses
                    .binary_search_by_key(&i, |&(k, _)| k)
                    .is_ok()
            })
        };
        let whole = fact.insns.iter().all(|r| {
            r.clone().all(|i| {
                let (Some(insn), Some(&flow)) = (shape.insns.get(i), shape.view.flows().get(i))
                else {
                    return false;
                };
                let stays = match flow {
                    Flow::Next => true,
                    Flow::Jump(t) | Flow::Branch(t) => matches!(t, Target::Insn(_)),
                    Flow::Call(_) | Flow::Exit | Flow::Invalid(_) => false,
                };
                let memory = matches!(
                    insn,
                    Insn::Load { .. }
                        | Insn::Store { .. }
                        | Insn::Atomic { .. }
                        | Insn::LoadPacket { .. }
                );
                let proven = !memory
                    || matches!(facts.access(i), Access::InBounds { .. })
                    || (versioned(i) && !matches!(insn, Insn::LoadPacket { .. }));
                let plain = !matches!(insn, Insn::Call { .. } | Insn::CallX { .. })
                    && !matches!(insn, Insn::LoadImm64 { kind, .. } if *kind != Imm64Kind::Value);
                stays && proven && plain
            })
        });
        // Every block of the copy lies inside the loop and starts at an instruction of it.
        let inside = |i: usize| fact.insns.iter().any(|r| r.contains(&i));
        let blocks_fit = shape.blocks.iter().all(|b| {
            let mut all = b.first..b.first + b.len;
            all.clone().all(inside) || !all.any(inside)
        });
        let charge = fact.charge();
        let fits_charge = match charge {
            Charge::Known(instructions) => instructions > 0 && instructions <= i32::MAX as u64,
            // The dispatcher adds the offset as an immediate.
            Charge::AtEntry {
                counter,
                per_iteration,
                ..
            } => {
                per_iteration <= MAX_AT_ENTRY_PER_ITERATION
                    && i32::try_from(counter.offset as i64).is_ok()
            }
        };
        if !(fits_charge && whole && blocks_fit) {
            continue;
        }
        if let Some(v) = version {
            if let Some(copy) = loops.get_mut(v) {
                copy.kind.charge = Some(charge);
            }
        } else if !overlaps(&fact.insns) && !loops.iter().any(|c| c.entry == fact.entry) {
            loops.push(LoopCopy {
                entry: fact.entry,
                insns: fact.insns.clone(),
                kind: CopyKind {
                    version: None,
                    charge: Some(charge),
                },
                dispatch: ops.new_dynamic_label(),
                copy_entry: ops.new_dynamic_label(),
            });
        }
    }
    loops
}

/// Emits the code of `program`.
pub(crate) fn emit(
    program: &Program,
    options: &JitOptions,
    facts: &Facts,
) -> Result<Emitted, JitError> {
    let shape = Shape::of(program);
    let slots = shape.view.slot_count();
    if slots > MAX_SLOTS || shape.blocks.len() > MAX_SLOTS {
        return Err(JitError::TooLarge { slots });
    }
    let mut ops = VecAssembler::<X64Relocation>::new(0);
    ops.reserve_ops(program.len().saturating_mul(24).saturating_add(256));
    let trap_common = ops.new_dynamic_label();
    let budget_common = ops.new_dynamic_label();
    let exit_ok = ops.new_dynamic_label();
    let epilogue = ops.new_dynamic_label();
    let loops = loop_copies(&shape, facts, &mut ops);
    let regs = live::entry_regs(&shape.insns, &shape.view);
    // A dispatcher compares a version's registers before the loop runs: whatever the loop
    // does with them, they hold what the contract says, so the choice of copy never depends
    // on what the host left in a register.
    let tested = loops
        .iter()
        .flat_map(|c| {
            let conditions = c
                .kind
                .version
                .and_then(|v| facts.versions().get(v))
                .map(|v| v.conditions.iter().map(|c| c.reg).collect())
                .unwrap_or_default();
            let counter = match c.kind.charge {
                Some(Charge::AtEntry { counter, .. }) => match counter.bound {
                    Bound::Reg(b) => alloc::vec![counter.reg, b],
                    Bound::Imm(_) => alloc::vec![counter.reg],
                },
                _ => Vec::new(),
            };
            [conditions, counter].concat()
        })
        .fold(0, |set: Regs, r| set | 1 << u32::from(r).min(10));
    let used = regs.used | tested;
    let args = live::bit(Reg::R1) | live::bit(Reg::R2) | live::bit(Reg::R10);
    let entry_loads = (regs.live | tested) & args;
    let entry_zeroes = (regs.live | tested) & !args;
    let mut saved = vec![RBX];
    saved.extend(
        (6..=10)
            .filter(|r| used & 1 << r != 0)
            .filter_map(|r| HOST.get(r).copied()),
    );
    let mut e = Emitter {
        ops,
        program,
        shape,
        labels: vec![None; slots + 1],
        stubs: Vec::new(),
        trap_common,
        budget_common,
        exit_ok,
        epilogue,
        blinding: options.constant_blinding,
        keys: Keys::new(),
        facts,
        checked: options.checked_facts,
        masking: options.spectre_masking,
        clamp_proven: options.spectre_masking && options.spectre_clamp_proven,
        index: 0,
        loops,
        copy: None,
        copy_labels: Vec::new(),
        refund: 0,
        bodies: Vec::new(),
        bias_in_rdx: None,
        block_offsets: Vec::new(),
        saved,
        used,
        entry_loads,
        entry_zeroes,
    };
    e.prologue(true);
    e.body();
    e.copies();
    let resume = e.ops.offset().0 as u32;
    e.prologue(false);
    asm!(e.ops; jmp QWORD [rbx + OFF_RESUME]);
    e.out_of_line();
    let ops = core::mem::replace(&mut e.ops, VecAssembler::new(0));
    let code = ops
        .finalize()
        .map_err(|err| JitError::Assembler(alloc::format!("{err}")))?;
    Ok(Emitted {
        code,
        shape: e.shape,
        block_offsets: e.block_offsets,
        resume_offset: resume,
    })
}

impl Emitter<'_> {
    fn label(&mut self, pc: usize) -> DynamicLabel {
        if let Some(Some(l)) = self.labels.get(pc) {
            return *l;
        }
        let l = self.ops.new_dynamic_label();
        if let Some(slot) = self.labels.get_mut(pc) {
            *slot = Some(l);
        }
        l
    }

    fn bind(&mut self, pc: usize) {
        let l = self.label(pc);
        asm!(self.ops; =>l);
    }

    /// Where a transfer to `target` jumps: the code of the instruction it arrives at, or a
    /// stub that traps.
    fn target_label(&mut self, target: Target) -> DynamicLabel {
        match target {
            Target::Insn(i) => {
                // Inside the copy being emitted, transfers stay in it; from outside a copied
                // loop, its entry is its dispatcher.
                if let Some(c) = self.copy
                    && self.inside(c, i)
                {
                    return self.copy_label(i);
                }
                // Only a way in from outside may select the copy: the copy's facts hold for
                // the states the loop reaches from its entry with the conditions true, not for
                // every state at its head.
                let label = match self.loops.iter().position(|c| c.entry == i) {
                    Some(w) if !self.inside(w, self.index) => self.loops[w].dispatch,
                    _ => {
                        let pc = self.shape.view.pcs().get(i).copied().unwrap_or(0);
                        self.label(pc)
                    }
                };
                // Leaving a counted copy in checked-facts mode: first, the loop ran exactly
                // the instructions its fact says.
                match self.copy.map(|c| self.loops[c].kind) {
                    Some(CopyKind {
                        charge: Some(_), ..
                    }) if self.checked => {
                        let pc = self.shape.view.pcs().get(self.index).copied().unwrap_or(0);
                        let fact = self.fact_stub(pc);
                        self.stub(Stub::LeaveCounted {
                            fact,
                            target: label,
                        })
                    }
                    _ => label,
                }
            }
            Target::Trap { pc, reason } => self.trap_stub(pc, invalid_code(reason)),
        }
    }

    /// Whether instruction `i` belongs to copied loop `c`.
    fn inside(&self, c: usize, i: usize) -> bool {
        self.loops
            .get(c)
            .is_some_and(|c| c.insns.iter().any(|r| r.contains(&i)))
    }

    /// The label of instruction `i` in the copy being emitted.
    fn copy_label(&mut self, i: usize) -> DynamicLabel {
        let pc = self.shape.view.pcs().get(i).copied().unwrap_or(0);
        if let Some(Some(l)) = self.copy_labels.get(pc) {
            return *l;
        }
        let l = self.ops.new_dynamic_label();
        if let Some(slot) = self.copy_labels.get_mut(pc) {
            *slot = Some(l);
        }
        l
    }

    /// A stub for a check the facts declared impossible (checked-facts mode).
    fn fact_stub(&mut self, pc: usize) -> DynamicLabel {
        self.stub(Stub::Fact { pc: pc as u32 })
    }

    fn stub(&mut self, stub: Stub) -> DynamicLabel {
        let l = self.ops.new_dynamic_label();
        self.stubs.push((l, stub));
        l
    }

    fn trap_stub(&mut self, pc: usize, code: u32) -> DynamicLabel {
        self.stub(Stub::Trap {
            pc: pc as u32,
            code,
        })
    }

    /// A trap right here (`rax` must hold the address for memory traps).
    fn trap_inline(&mut self, pc: usize, code: u32) {
        let (pc, l) = (pc as i32, self.trap_common);
        asm!(self.ops
            ; mov edx, pc
            ; mov ecx, code as i32
            ; jmp =>l
        );
    }

    /// Whether a 2-byte branch at the current position reaches `label` (only known for labels
    /// already defined, i.e. backward branches).
    fn short(&self, label: DynamicLabel) -> bool {
        match self.ops.labels().resolve_dynamic(label) {
            Ok(target) => {
                let next = self.ops.offset().0 as isize + 2;
                (-128..=127).contains(&(target.0 as isize - next))
            }
            Err(_) => false,
        }
    }

    fn jmp(&mut self, label: DynamicLabel) {
        if self.short(label) {
            asm!(self.ops; jmp BYTE =>label);
        } else {
            asm!(self.ops; jmp =>label);
        }
    }

    fn jcc(&mut self, cc: Cc, label: DynamicLabel) {
        let short = self.short(label);
        macro_rules! j {
            ($($v:ident => $m:ident),*) => {
                match (cc, short) {
                    $(
                        (Cc::$v, true) => asm!(self.ops; $m BYTE =>label),
                        (Cc::$v, false) => asm!(self.ops; $m =>label),
                    )*
                }
            };
        }
        j!(E => je, Ne => jne, A => ja, Ae => jae, B => jb, Be => jbe, G => jg, Ge => jge, L => jl, Le => jle);
    }

    // ---------------------------------------------------------------------------------------
    // Frame of the whole run.

    /// Whether the prologue pushes an even number of registers, and so must move `rsp` by 8
    /// more to keep it 16-byte aligned (the return address is the odd one).
    fn pads(&self) -> bool {
        self.saved.len().is_multiple_of(2)
    }

    /// The prologue of the entry (`entry`: the registers the code may read before writing
    /// them set as the contract says — `r1`, `r2` and `r10` from the context, the others
    /// zeroed — and nothing else) or of the resume entry (every register the code uses, from
    /// the context, where the budget path left them). Both save the same callee-saved host
    /// registers, those the code uses, which the shared epilogue restores.
    fn prologue(&mut self, entry: bool) {
        for r in self.saved.clone() {
            asm!(self.ops; push Rq(r));
        }
        if self.pads() {
            // The return address plus an even number of pushes: rsp moves by 8 more, so that
            // it is 16-byte aligned from here on and every helper call below sees the
            // alignment the System V ABI requires.
            asm!(self.ops; sub rsp, 8);
        }
        asm!(self.ops
            ; mov rbx, rdi
            ; mov [rbx + OFF_SAVED_RSP], rsp
        );
        let (loads, zeroes) = if entry {
            (self.entry_loads, self.entry_zeroes)
        } else {
            (self.used, 0)
        };
        for (i, &r) in HOST.iter().enumerate() {
            if loads & 1 << i != 0 {
                let off = OFF_REGS + 8 * i as i32;
                asm!(self.ops; mov Rq(r), [rbx + off]);
            } else if zeroes & 1 << i != 0 {
                asm!(self.ops; xor Rd(r), Rd(r));
            }
        }
        asm!(self.ops; mov rcx, [rbx + OFF_REMAINING]);
    }

    fn out_of_line(&mut self) {
        // Every label is bound by now: jumps and calls reach instructions that start blocks
        // (or trap stubs), and returns reach the instruction after a call or the end.
        let stubs = core::mem::take(&mut self.stubs);
        for (label, stub) in stubs {
            asm!(self.ops; =>label);
            match stub {
                Stub::Trap { pc, code } => self.trap_inline(pc as usize, code),
                Stub::Fact { pc } => {
                    let epilogue = self.epilogue;
                    asm!(self.ops
                        ; mov QWORD [rbx + OFF_TRAP_PC], pc as i32
                        ; mov eax, status::FACT as i32
                        ; jmp =>epilogue
                    );
                }
                Stub::LeaveCounted { fact, target } => {
                    asm!(self.ops
                        ; cmp QWORD [rbx + OFF_LOOP_COUNT], 0
                        ; jne =>fact
                    );
                    self.jmp(target);
                }
                Stub::Budget { block, charge } => {
                    let common = self.budget_common;
                    asm!(self.ops
                        ; add rcx, charge
                        ; mov edx, block as i32
                        ; jmp =>common
                    );
                }
                Stub::Refund { amount, target } => {
                    asm!(self.ops; add rcx, amount);
                    self.jmp(target);
                }
                Stub::Settle {
                    net,
                    block,
                    charge,
                    body,
                } => {
                    if net < 0 {
                        asm!(self.ops; add rcx, -net);
                        self.jmp(body);
                    } else {
                        let common = self.budget_common;
                        asm!(self.ops
                            ; sub rcx, net
                            ; jae =>body
                            ; add rcx, charge
                            ; mov edx, block as i32
                            ; jmp =>common
                        );
                    }
                }
                Stub::Unguessed {
                    base,
                    off,
                    w,
                    write,
                    pc,
                    back,
                } => {
                    let trap = self.ops.new_dynamic_label();
                    self.full_check(base, off, usize::from(w), write, trap, None);
                    asm!(self.ops; jmp =>back; =>trap);
                    self.trap_inline(pc as usize, oob_code(usize::from(w), write));
                }
            }
        }
        let (trap_common, budget_common, exit_ok, epilogue) = (
            self.trap_common,
            self.budget_common,
            self.exit_ok,
            self.epilogue,
        );
        asm!(self.ops
            ; =>trap_common
            ; mov [rbx + OFF_TRAP_ADDR], rax
            ; mov [rbx + OFF_TRAP_PC], rdx
            ; mov [rbx + OFF_TRAP_CODE], rcx
            ; mov eax, status::TRAP as i32
            ; jmp =>epilogue
            ; =>budget_common
        );
        // The registers the code never uses stay as they are: nothing reads them (not the
        // slow path, which steps the same instructions, nor the resume entry).
        for (i, &r) in HOST.iter().enumerate() {
            if self.used & 1 << i != 0 {
                let off = OFF_REGS + 8 * i as i32;
                asm!(self.ops; mov [rbx + off], Rq(r));
            }
        }
        asm!(self.ops
            ; mov [rbx + OFF_REMAINING], rcx
            ; mov [rbx + OFF_BLOCK], rdx
            ; mov eax, status::BUDGET as i32
            ; jmp =>epilogue
            ; =>exit_ok
            ; mov [rbx + OFF_REGS], rsi
            ; mov [rbx + OFF_REMAINING], rcx
            ; xor eax, eax
            ; =>epilogue
            ; mov rsp, [rbx + OFF_SAVED_RSP]
        );
        if self.pads() {
            asm!(self.ops; add rsp, 8);
        }
        for r in self.saved.clone().into_iter().rev() {
            asm!(self.ops; pop Rq(r));
        }
        asm!(self.ops; ret);
    }

    fn body(&mut self) {
        let slots = self.shape.view.slot_count();
        let blocks = core::mem::take(&mut self.shape.blocks);
        // The heads that side exits out of chains go to get a label past their charge.
        self.bodies = vec![None; blocks.len()];
        for (b, block) in blocks.iter().enumerate() {
            let last = block.first + block.len - 1;
            if self.shape.rest.get(b).is_some_and(|&r| r > 0)
                && let Some(&Flow::Branch(target)) = self.shape.view.flows().get(last)
                && let Some(t) = self.shape.block_of(target)
                && let Some(head) = blocks.get(t)
                && !self.shape.chained.get(t).copied().unwrap_or(true)
                && let Some(&pc) = self.shape.view.pcs().get(head.first)
                && let Some(slot) = self.bodies.get_mut(t)
                && slot.is_none()
            {
                let charge = head.charge + self.shape.rest.get(t).copied().unwrap_or(0);
                *slot = Some((self.ops.new_dynamic_label(), charge, pc));
            }
        }
        for (b, block) in blocks.iter().enumerate() {
            let first_pc = self.shape.view.pcs().get(block.first).copied().unwrap_or(0);
            if let Some(v) = self.loops.iter().position(|c| c.entry == block.first) {
                // The block before may be part of the loop and fall into its entry: that way
                // in is from inside, so it jumps over the dispatcher.
                let falls_from_inside =
                    b.checked_sub(1)
                        .and_then(|p| blocks.get(p))
                        .is_some_and(|p| {
                            let last = p.first + p.len - 1;
                            self.inside(v, last)
                                && matches!(
                                    self.shape.view.flows().get(last),
                                    Some(Flow::Next | Flow::Branch(_))
                                )
                        });
                if falls_from_inside {
                    let entry = self.label(first_pc);
                    self.jmp(entry);
                }
                self.dispatcher(v);
            }
            self.bind(first_pc);
            self.block_offsets.push(self.ops.offset().0 as u32);
            self.block_code(b, block);
        }
        self.shape.blocks = blocks;
        // Execution that runs past the last slot (or a call returning there) traps.
        self.bind(slots);
        self.trap_inline(slots, invalid_code(InvalidReason::FellOffEnd));
    }

    /// The budget charge and the instructions of block `b`. In a counted loop's copy, which
    /// its dispatcher charged in full, nothing is charged (in checked-facts mode the block's
    /// instructions are counted instead, up from minus the charge, failing to a `Fact` stub
    /// past the loop's total).
    fn block_code(&mut self, b: usize, block: &crate::blocks::Block) {
        let insns = self.program.insns();
        match self.copy.map(|c| self.loops[c].kind) {
            Some(CopyKind {
                charge: Some(_), ..
            }) => {
                self.refund = 0;
                if self.checked {
                    let pc = self.shape.view.pcs().get(block.first).copied().unwrap_or(0);
                    let fact = self.fact_stub(pc);
                    asm!(self.ops
                        ; add QWORD [rbx + OFF_LOOP_COUNT], block.len as i32
                        ; jg =>fact
                    );
                }
            }
            _ => {
                self.refund = self.shape.rest.get(b).copied().unwrap_or(0);
                // A chain's head charges the whole chain; its other blocks charge nothing.
                if !self.shape.chained.get(b).copied().unwrap_or(false) {
                    self.charge_chain(b, block.charge + self.refund);
                    if self.copy.is_none()
                        && let Some(&Some((body, _, _))) = self.bodies.get(b)
                    {
                        asm!(self.ops; =>body);
                    }
                }
            }
        }
        for i in block.first..block.first + block.len {
            let view = &self.shape.view;
            let (Some(insn), Some(&pc), Some(&flow)) =
                (insns.get(i), view.pcs().get(i), view.flows().get(i))
            else {
                continue;
            };
            self.index = i;
            // Only instructions whose code never writes `rdx` keep its bias for a later
            // access; a block is entered from elsewhere with anything in it.
            if i == block.first || !keeps_rdx(insn) {
                self.bias_in_rdx = None;
            }
            self.insn(insn, flow, pc);
            if !keeps_rdx(insn) {
                self.bias_in_rdx = None;
            }
        }
    }

    /// `sub rcx, charge; jb stub`: charges `charge` instructions from block `b` on (the rest
    /// of its chain), or steps them exactly on the slow path if fewer remain.
    fn charge_chain(&mut self, b: usize, charge: usize) {
        if charge == 0 {
            return;
        }
        let stub = self.stub(Stub::Budget {
            block: b as u32,
            charge: charge as i32,
        });
        asm!(self.ops; sub rcx, charge as i32);
        self.jcc(Cc::B, stub);
    }

    /// The way into copied loop `c` from outside: if what its copy needs holds, its copy;
    /// else on into the ordinary loop, which follows.
    fn dispatcher(&mut self, c: usize) {
        let LoopCopy {
            dispatch,
            copy_entry: copy,
            kind,
            ..
        } = self.loops[c].clone();
        asm!(self.ops; =>dispatch);
        let fail = self.ops.new_dynamic_label();
        // A version: every condition holds (on the registers as they are and the region
        // table).
        let conditions = kind
            .version
            .and_then(|v| self.facts.versions().get(v))
            .map(|v| v.conditions.clone())
            .unwrap_or_default();
        for c in conditions {
            // End of the region: its limit for 1-byte loads, (region << 32) + len (0 if the
            // region is empty or unmapped, which fails every condition that matters).
            let end = lim_offset(false, 0, u64::from(c.region));
            self.load_imm64(RDX, c.offset as u64);
            asm!(self.ops
                ; mov rax, [rbx + end]
                ; add rax, rdx
                ; js =>fail
            );
            if c.shift > 0 {
                asm!(self.ops; shr rax, c.shift as i8);
            }
            let r = HOST[usize::from(c.reg).min(10)];
            asm!(self.ops
                ; cmp Rq(r), rax
                ; ja =>fail
            );
        }
        // A counted loop: the budget covers the whole loop, charged here at once.
        match kind.charge {
            Some(Charge::Known(instructions)) => {
                asm!(self.ops
                    ; cmp rcx, instructions as i32
                    ; jb =>fail
                    ; sub rcx, instructions as i32
                );
                if self.checked {
                    asm!(self.ops; mov QWORD [rbx + OFF_LOOP_COUNT], -(instructions as i32));
                }
            }
            Some(Charge::AtEntry {
                counter,
                per_iteration,
                until_exit,
            }) => self.charge_at_entry(counter, per_iteration, until_exit, fail),
            None => {}
        }
        asm!(self.ops; jmp =>copy; =>fail);
    }

    /// The charge of a loop whose trip count its registers give (`Counter::instructions`, which
    /// this computes the same way) into `rdx`, taken from the budget; to `fail` when the closed
    /// form does not apply or the budget is short (the ordinary loop then charges as it goes,
    /// exactly). Clobbers `rax` and `rdx`.
    fn charge_at_entry(
        &mut self,
        counter: Counter,
        per_iteration: u64,
        until_exit: u64,
        fail: DynamicLabel,
    ) {
        let (none, have) = (self.ops.new_dynamic_label(), self.ops.new_dynamic_label());
        // x = r[reg] + offset in rax (the offset fits: `loop_copies`), the bound in rdx.
        self.load_imm(RDX, counter.offset as i64 as i32, true);
        let x = HOST[usize::from(counter.reg).min(10)];
        asm!(self.ops; add rdx, Rq(x); mov rax, rdx);
        match counter.bound {
            Bound::Reg(b) => {
                let b = HOST[usize::from(b).min(10)];
                asm!(self.ops; mov rdx, Rq(b));
            }
            Bound::Imm(b) => self.load_imm(RDX, b as i64 as i32, true),
        }
        // To "goes on while x < b, x up by 2^k" (see `Counter::trips`).
        if counter.signed {
            asm!(self.ops; btc rax, 63; btc rdx, 63);
        }
        if counter.down {
            asm!(self.ops; not rax; not rdx);
        }
        if counter.inclusive {
            asm!(self.ops; add rdx, 1; jc =>fail);
        }
        asm!(self.ops; cmp rax, rdx);
        if counter.until_equal {
            // Beyond the bound, `!=` goes on until the counter wraps around.
            asm!(self.ops; ja =>fail);
        }
        asm!(self.ops; jae =>none);
        let k = counter.step_log2.min(6);
        if k > 0 {
            // The last counter tested, below b + 2^k, must not wrap.
            let room = -((1i32 << k) - 1);
            asm!(self.ops
                ; cmp rdx, room
                ; jae =>fail
                ; sub rdx, rax
                ; add rdx, (1 << k) - 1
                ; shr rdx, k as i8
            );
        } else {
            asm!(self.ops; sub rdx, rax);
        }
        // trips < 2^32 (MAX_AT_ENTRY_TRIPS), so trips * per_iteration cannot overflow.
        asm!(self.ops
            ; mov rax, rdx
            ; shr rax, 32
            ; jnz =>fail
            ; imul rdx, rdx, per_iteration as i32
            ; add rdx, until_exit as i32
            ; jmp =>have
            ; =>none
            ; mov edx, until_exit as i32
            ; =>have
            ; cmp rcx, rdx
            ; jb =>fail
            ; sub rcx, rdx
        );
        if self.checked {
            asm!(self.ops; neg rdx; mov [rbx + OFF_LOOP_COUNT], rdx);
        }
    }

    /// The second copy of every copied loop: its blocks again, transfers inside the loop
    /// staying in the copy and the ways out going to the ordinary code. A version's copy has
    /// the facts proven under its conditions, and charges the budget exactly as the original
    /// (the slow path resumes in the original, which is always correct); a counted loop's copy
    /// charges nothing, and a way out into the middle of a chain charges the chain's rest.
    fn copies(&mut self) {
        let blocks = core::mem::take(&mut self.shape.blocks);
        let slots = self.shape.view.slot_count();
        for c in 0..self.loops.len() {
            self.copy = Some(c);
            self.copy_labels = vec![None; slots + 1];
            let counted = self.loops[c].kind.charge.is_some();
            let members: Vec<usize> = (0..blocks.len())
                .filter(|&b| self.inside(c, blocks[b].first))
                .collect();
            for (k, &b) in members.iter().enumerate() {
                let block = blocks[b];
                if block.first == self.loops[c].entry {
                    let copy = self.loops[c].copy_entry;
                    asm!(self.ops; =>copy);
                }
                let l = self.copy_label(block.first);
                asm!(self.ops; =>l);
                self.block_code(b, &block);
                // A block that falls through continues at the next instruction: the next
                // block of the copy if it is that one, else a jump there.
                let last = block.first + block.len - 1;
                let falls = matches!(
                    self.shape.view.flows().get(last),
                    Some(Flow::Next | Flow::Branch(_))
                );
                let next_is_adjacent = members
                    .get(k + 1)
                    .is_some_and(|&n| blocks[n].first == last + 1);
                if falls && !next_is_adjacent {
                    self.index = last;
                    let next = self.target_label(self.shape.view.next(last));
                    // Out of a counted copy into a block its chain head would have charged.
                    if counted
                        && let Some(n) = self.shape.block_of(self.shape.view.next(last))
                        && !self.inside(c, blocks[n].first)
                        && self.shape.chained.get(n).copied().unwrap_or(false)
                    {
                        let rest = self.shape.rest.get(n).copied().unwrap_or(0);
                        self.charge_chain(n, blocks[n].charge + rest);
                    }
                    self.jmp(next);
                }
            }
            self.copy = None;
        }
        self.shape.blocks = blocks;
    }

    // ---------------------------------------------------------------------------------------
    // Instructions.

    fn insn(&mut self, insn: &Insn, flow: Flow, pc: usize) {
        if let Flow::Invalid(reason) = flow {
            self.trap_inline(pc, invalid_code(reason));
            return;
        }
        match *insn {
            Insn::Alu {
                width,
                op,
                dst,
                src: Operand::Imm(imm),
            } => self.alu_imm(width == Width::W64, op, h(dst), imm),
            Insn::Alu {
                width,
                op,
                dst,
                src: Operand::Reg(src),
            } => self.alu_reg(width == Width::W64, op, h(dst), h(src)),
            Insn::Neg { width, dst } => {
                let d = h(dst);
                if width == Width::W64 {
                    asm!(self.ops; neg Rq(d));
                } else {
                    asm!(self.ops; neg Rd(d));
                }
            }
            Insn::MovSx {
                width,
                from,
                dst,
                src,
            } => self.movsx(width == Width::W64, from, h(dst), h(src)),
            Insn::Endian { order, width, dst } => self.endian(order, width, h(dst)),
            Insn::Ja { .. } | Insn::Ja32 { .. } => {
                if let Flow::Jump(target) = flow {
                    let l = self.target_label(target);
                    self.jmp(l);
                }
            }
            Insn::Jump {
                width,
                cond,
                dst,
                src,
                ..
            } => {
                if let Flow::Branch(target) = flow {
                    self.cond_jump(width == Width::W64, cond, h(dst), src, target);
                }
            }
            Insn::Call {
                kind: CallKind::Helper,
                imm,
            } => {
                self.load_imm(RAX, imm, false);
                asm!(self.ops; mov [rbx + OFF_HELPER_ID], rax);
                self.helper_call(pc);
            }
            Insn::CallX { reg } => {
                let r = h(reg);
                asm!(self.ops; mov [rbx + OFF_HELPER_ID], Rq(r));
                self.helper_call(pc);
            }
            Insn::Call {
                kind: CallKind::Local,
                ..
            } => {
                if let Flow::Call(target) = flow {
                    self.local_call(pc, target);
                }
            }
            Insn::Call {
                kind: CallKind::Btf,
                ..
            } => {}
            Insn::Exit => self.exit(),
            Insn::LoadImm64 { dst, kind, imm } => {
                if kind == Imm64Kind::Value {
                    self.load_imm64(h(dst), imm);
                }
            }
            Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            } => self.load(size, signed, h(dst), src, off, pc),
            Insn::Store {
                size,
                dst,
                off,
                src,
            } => self.store(size, dst, off, src, pc),
            Insn::Atomic {
                width,
                op,
                dst,
                src,
                off,
            } => self.atomic(width == Width::W64, op, dst, h(src), off, pc),
            Insn::LoadPacket { size, addr, imm } => self.load_packet(size, addr, imm, pc),
        }
    }

    /// Whether the immediate `imm` must be blinded: blinding is on and the value is outside
    /// -32768..=65535. Every immediate is encoded in at most 32 bits and sign-extended by the
    /// instruction (a 64-bit one that fits is emitted as a 32-bit `mov`, zero- or
    /// sign-extended), so a value in that range puts at most two chosen bytes into the code, the
    /// other two being `00 00` or `ff ff`: the exposure of a 16-bit memory offset, which is not
    /// blinded either (as in Linux).
    fn blinds(&self, imm: i64) -> bool {
        self.blinding && !(-32768..=65535).contains(&imm)
    }

    /// `reg = imm` (sign-extended when `wide`, else zero-extended from 32 bits), blinded when
    /// [`Emitter::blinds`] says so.
    fn load_imm(&mut self, reg: u8, imm: i32, wide: bool) {
        if self.blinds(i64::from(imm)) {
            let k = self.keys.key32();
            if wide {
                asm!(self.ops; mov Rq(reg), imm ^ k; xor Rq(reg), k);
            } else {
                asm!(self.ops; mov Rd(reg), imm ^ k; xor Rd(reg), k);
            }
        } else if wide && imm < 0 {
            asm!(self.ops; mov Rq(reg), imm);
        } else {
            asm!(self.ops; mov Rd(reg), imm);
        }
    }

    /// `d = v`, an `lddw` value. With blinding on, a VM address `region << 32 | off` (a
    /// region id, as the loader relocates a map or section symbol, and an offset below 2^16)
    /// is built from its parts, `mov d, region; shl d, 32; or d, off`: one byte from the
    /// handful of region ids and two chosen bytes, each run apart from the others, where a
    /// plain `movabs` would put the offset and the id next to each other. Any other value
    /// that does not fit [`Emitter::blinds`]'s range is blinded with a 64-bit key.
    fn load_imm64(&mut self, d: u8, v: u64) {
        if !self.blinds(v as i64) {
            if let Ok(v32) = u32::try_from(v) {
                asm!(self.ops; mov Rd(d), v32 as i32);
            } else if let Ok(s32) = i32::try_from(v as i64) {
                asm!(self.ops; mov Rq(d), s32);
            } else {
                asm!(self.ops; mov Rq(d), QWORD v as i64);
            }
        } else if let Some((region, off)) = region_address(v) {
            asm!(self.ops; mov Rd(d), region; shl Rq(d), 32);
            if off != 0 {
                asm!(self.ops; or Rq(d), off);
            }
        } else {
            let k = self.keys.key64();
            let blinded = (v as i64) ^ k;
            asm!(self.ops
                ; mov Rq(d), QWORD blinded
                ; mov rax, QWORD k
                ; xor Rq(d), rax
            );
        }
    }

    /// `d op= s` for the operations that have a plain two-register form.
    fn simple_reg(&mut self, wide: bool, op: AluOp, d: u8, s: u8) {
        match (op, wide) {
            (AluOp::Add, true) => asm!(self.ops; add Rq(d), Rq(s)),
            (AluOp::Add, false) => asm!(self.ops; add Rd(d), Rd(s)),
            (AluOp::Sub, true) => asm!(self.ops; sub Rq(d), Rq(s)),
            (AluOp::Sub, false) => asm!(self.ops; sub Rd(d), Rd(s)),
            (AluOp::And, true) => asm!(self.ops; and Rq(d), Rq(s)),
            (AluOp::And, false) => asm!(self.ops; and Rd(d), Rd(s)),
            (AluOp::Or, true) => asm!(self.ops; or Rq(d), Rq(s)),
            (AluOp::Or, false) => asm!(self.ops; or Rd(d), Rd(s)),
            (AluOp::Xor, true) => asm!(self.ops; xor Rq(d), Rq(s)),
            (AluOp::Xor, false) => asm!(self.ops; xor Rd(d), Rd(s)),
            (AluOp::Mul, true) => asm!(self.ops; imul Rq(d), Rq(s)),
            (AluOp::Mul, false) => asm!(self.ops; imul Rd(d), Rd(s)),
            (AluOp::Mov, true) if d != s => asm!(self.ops; mov Rq(d), Rq(s)),
            // Zero-extends, even onto itself.
            (AluOp::Mov, false) => asm!(self.ops; mov Rd(d), Rd(s)),
            _ => {}
        }
    }

    fn alu_reg(&mut self, wide: bool, op: AluOp, d: u8, s: u8) {
        match op {
            AluOp::Div => self.div_reg(wide, false, false, d, s),
            AluOp::Mod => self.div_reg(wide, false, true, d, s),
            AluOp::Sdiv => self.div_reg(wide, true, false, d, s),
            AluOp::Smod => self.div_reg(wide, true, true, d, s),
            AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => {
                // The count must be in cl, where the budget lives: park the budget in rdx.
                asm!(self.ops; mov rdx, rcx; mov ecx, Rd(s));
                match (op, wide) {
                    (AluOp::Lsh, true) => asm!(self.ops; shl Rq(d), cl),
                    (AluOp::Lsh, false) => asm!(self.ops; shl Rd(d), cl),
                    (AluOp::Rsh, true) => asm!(self.ops; shr Rq(d), cl),
                    (AluOp::Rsh, false) => asm!(self.ops; shr Rd(d), cl),
                    (_, true) => asm!(self.ops; sar Rq(d), cl),
                    (_, false) => asm!(self.ops; sar Rd(d), cl),
                }
                if !wide {
                    // A 32-bit shift by 0 may leave the upper half alone: zero-extend.
                    asm!(self.ops; mov Rd(d), Rd(d));
                }
                asm!(self.ops; mov rcx, rdx);
            }
            _ => self.simple_reg(wide, op, d, s),
        }
    }

    fn alu_imm(&mut self, wide: bool, op: AluOp, d: u8, imm: i32) {
        match op {
            AluOp::Mov => self.load_imm(d, imm, wide),
            AluOp::Div => self.div_imm(wide, false, false, d, imm),
            AluOp::Mod => self.div_imm(wide, false, true, d, imm),
            AluOp::Sdiv => self.div_imm(wide, true, false, d, imm),
            AluOp::Smod => self.div_imm(wide, true, true, d, imm),
            AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => {
                let count = (imm as u32 & if wide { 63 } else { 31 }) as i8;
                if count == 0 {
                    if !wide {
                        asm!(self.ops; mov Rd(d), Rd(d));
                    }
                    return;
                }
                match (op, wide) {
                    (AluOp::Lsh, true) => asm!(self.ops; shl Rq(d), count),
                    (AluOp::Lsh, false) => asm!(self.ops; shl Rd(d), count),
                    (AluOp::Rsh, true) => asm!(self.ops; shr Rq(d), count),
                    (AluOp::Rsh, false) => asm!(self.ops; shr Rd(d), count),
                    (_, true) => asm!(self.ops; sar Rq(d), count),
                    (_, false) => asm!(self.ops; sar Rd(d), count),
                }
            }
            _ if self.blinds(i64::from(imm)) => {
                self.load_imm(RAX, imm, wide);
                self.simple_reg(wide, op, d, RAX);
            }
            _ => match (op, wide) {
                (AluOp::Add, true) => asm!(self.ops; add Rq(d), imm),
                (AluOp::Add, false) => asm!(self.ops; add Rd(d), imm),
                (AluOp::Sub, true) => asm!(self.ops; sub Rq(d), imm),
                (AluOp::Sub, false) => asm!(self.ops; sub Rd(d), imm),
                (AluOp::And, true) => asm!(self.ops; and Rq(d), imm),
                (AluOp::And, false) => asm!(self.ops; and Rd(d), imm),
                (AluOp::Or, true) => asm!(self.ops; or Rq(d), imm),
                (AluOp::Or, false) => asm!(self.ops; or Rd(d), imm),
                (AluOp::Xor, true) => asm!(self.ops; xor Rq(d), imm),
                (AluOp::Xor, false) => asm!(self.ops; xor Rd(d), imm),
                (AluOp::Mul, true) => asm!(self.ops; imul Rq(d), Rq(d), imm),
                (_, _) => asm!(self.ops; imul Rd(d), Rd(d), imm),
            },
        }
    }

    /// Division and modulo by a register, without ever raising #DE: by zero, the quotient is 0
    /// and the remainder `d`; the signed `MIN / -1` never reaches `idiv`. A divisor the facts
    /// prove nonzero needs no zero test, one never `-1` against the smallest value no `-1` test
    /// (in checked-facts mode the tests stay and fail to a `Fact` stub instead).
    fn div_reg(&mut self, wide: bool, signed: bool, modulo: bool, d: u8, s: u8) {
        let facts = self.facts.division(self.index);
        let pc = self.shape.view.pcs().get(self.index).copied().unwrap_or(0);
        // The zero test: skipped, to a `Fact` stub, or to the `zero` case.
        let zero_test = !facts.nonzero || self.checked;
        let zero_fact = (facts.nonzero && self.checked).then(|| self.fact_stub(pc));
        let minus_test = signed && (!facts.no_overflow || self.checked);
        let minus_fact = (signed && facts.no_overflow && self.checked).then(|| self.fact_stub(pc));
        let done = self.ops.new_dynamic_label();
        let zero = self.ops.new_dynamic_label();
        if zero_test {
            if wide {
                asm!(self.ops; test Rq(s), Rq(s));
            } else {
                asm!(self.ops; test Rd(s), Rd(s));
            }
            asm!(self.ops; jz =>zero_fact.unwrap_or(zero));
        }
        if minus_test {
            let normal = self.ops.new_dynamic_label();
            if wide {
                asm!(self.ops; cmp Rq(s), -1);
            } else {
                asm!(self.ops; cmp Rd(s), -1);
            }
            asm!(self.ops; jne =>normal);
            // The fact is about -1 with the smallest dividend (where `idiv` faults); -1 with
            // any other is merely a negation.
            if let Some(fact) = minus_fact {
                if wide {
                    asm!(self.ops; mov rax, QWORD i64::MIN; cmp Rq(d), rax; je =>fact);
                } else {
                    asm!(self.ops; cmp Rd(d), i32::MIN; je =>fact);
                }
            }
            match (modulo, wide) {
                (true, _) => asm!(self.ops; xor Rd(d), Rd(d)),
                (false, true) => asm!(self.ops; neg Rq(d)),
                (false, false) => asm!(self.ops; neg Rd(d)),
            }
            asm!(self.ops; jmp =>done; =>normal);
        }
        match (signed, wide) {
            (true, true) => asm!(self.ops; mov rax, Rq(d); cqo; idiv Rq(s)),
            (true, false) => asm!(self.ops; mov eax, Rd(d); cdq; idiv Rd(s)),
            (false, true) => asm!(self.ops; mov rax, Rq(d); xor edx, edx; div Rq(s)),
            (false, false) => asm!(self.ops; mov eax, Rd(d); xor edx, edx; div Rd(s)),
        }
        match (modulo, wide) {
            (true, true) => asm!(self.ops; mov Rq(d), rdx),
            (true, false) => asm!(self.ops; mov Rd(d), edx),
            (false, true) => asm!(self.ops; mov Rq(d), rax),
            (false, false) => asm!(self.ops; mov Rd(d), eax),
        }
        if zero_test && zero_fact.is_none() {
            // Division by zero gives 0; modulo by zero leaves dst (zero-extended at 32 bits).
            asm!(self.ops; jmp =>done; =>zero);
            match (modulo, wide) {
                (true, true) => {}
                (true, false) => asm!(self.ops; mov Rd(d), Rd(d)),
                (false, _) => asm!(self.ops; xor Rd(d), Rd(d)),
            }
        }
        asm!(self.ops; =>done);
    }

    /// Division and modulo by a constant: the edge cases are decided here, powers of two become
    /// shifts and masks, the rest divides by the constant in `rcx` (the budget is parked on the
    /// host stack meanwhile).
    fn div_imm(&mut self, wide: bool, signed: bool, modulo: bool, d: u8, imm: i32) {
        let divisor = if wide {
            imm as i64 as u64
        } else {
            u64::from(imm as u32)
        };
        if divisor == 0 {
            if !modulo {
                asm!(self.ops; xor Rd(d), Rd(d));
            } else if !wide {
                asm!(self.ops; mov Rd(d), Rd(d));
            }
            return;
        }
        if signed && imm == -1 {
            match (modulo, wide) {
                (true, _) => asm!(self.ops; xor Rd(d), Rd(d)),
                (false, true) => asm!(self.ops; neg Rq(d)),
                (false, false) => asm!(self.ops; neg Rd(d)),
            }
            return;
        }
        if !signed && divisor.is_power_of_two() && divisor <= 1 << 31 {
            let k = divisor.trailing_zeros() as i8;
            if modulo {
                let mask = (divisor - 1) as i32;
                if self.blinds(i64::from(mask)) {
                    self.load_imm(RAX, mask, false);
                    self.simple_reg(wide, AluOp::And, d, RAX);
                } else if wide {
                    asm!(self.ops; and Rq(d), mask);
                } else {
                    asm!(self.ops; and Rd(d), mask);
                }
            } else if k == 0 {
                if !wide {
                    asm!(self.ops; mov Rd(d), Rd(d));
                }
            } else if wide {
                asm!(self.ops; shr Rq(d), k);
            } else {
                asm!(self.ops; shr Rd(d), k);
            }
            return;
        }
        asm!(self.ops; push rcx);
        self.load_imm(RCX, imm, wide);
        if wide {
            asm!(self.ops; mov rax, Rq(d));
            if signed {
                asm!(self.ops; cqo; idiv rcx);
            } else {
                asm!(self.ops; xor edx, edx; div rcx);
            }
            if modulo {
                asm!(self.ops; mov Rq(d), rdx);
            } else {
                asm!(self.ops; mov Rq(d), rax);
            }
        } else {
            asm!(self.ops; mov eax, Rd(d));
            if signed {
                asm!(self.ops; cdq; idiv ecx);
            } else {
                asm!(self.ops; xor edx, edx; div ecx);
            }
            if modulo {
                asm!(self.ops; mov Rd(d), edx);
            } else {
                asm!(self.ops; mov Rd(d), eax);
            }
        }
        asm!(self.ops; pop rcx);
    }

    fn movsx(&mut self, wide: bool, from: SignExtend, d: u8, s: u8) {
        match (wide, from) {
            (true, SignExtend::From8) => asm!(self.ops; movsx Rq(d), Rb(s)),
            (true, SignExtend::From16) => asm!(self.ops; movsx Rq(d), Rw(s)),
            (true, SignExtend::From32) => asm!(self.ops; movsxd Rq(d), Rd(s)),
            (false, SignExtend::From8) => asm!(self.ops; movsx Rd(d), Rb(s)),
            (false, SignExtend::From16) => asm!(self.ops; movsx Rd(d), Rw(s)),
            (false, SignExtend::From32) => asm!(self.ops; mov Rd(d), Rd(s)),
        }
    }

    fn endian(&mut self, order: ByteOrder, width: SwapWidth, d: u8) {
        match (order, width) {
            (ByteOrder::Le, SwapWidth::W16) => asm!(self.ops; movzx Rd(d), Rw(d)),
            (ByteOrder::Le, SwapWidth::W32) => asm!(self.ops; mov Rd(d), Rd(d)),
            (ByteOrder::Le, SwapWidth::W64) => {}
            (_, SwapWidth::W16) => asm!(self.ops; rol Rw(d), 8; movzx Rd(d), Rw(d)),
            (_, SwapWidth::W32) => asm!(self.ops; bswap Rd(d)),
            (_, SwapWidth::W64) => asm!(self.ops; bswap Rq(d)),
        }
    }

    fn cond_jump(&mut self, wide: bool, cond: Cond, d: u8, src: Operand, target: Target) {
        let test = cond == Cond::Set;
        match src {
            Operand::Reg(s) => {
                let s = h(s);
                match (test, wide) {
                    (true, true) => asm!(self.ops; test Rq(d), Rq(s)),
                    (true, false) => asm!(self.ops; test Rd(d), Rd(s)),
                    (false, true) => asm!(self.ops; cmp Rq(d), Rq(s)),
                    (false, false) => asm!(self.ops; cmp Rd(d), Rd(s)),
                }
            }
            Operand::Imm(imm) if self.blinds(i64::from(imm)) => {
                self.load_imm(RAX, imm, wide);
                match (test, wide) {
                    (true, true) => asm!(self.ops; test Rq(d), rax),
                    (true, false) => asm!(self.ops; test Rd(d), eax),
                    (false, true) => asm!(self.ops; cmp Rq(d), rax),
                    (false, false) => asm!(self.ops; cmp Rd(d), eax),
                }
            }
            Operand::Imm(imm) => match (test, wide) {
                (true, true) => asm!(self.ops; test Rq(d), imm),
                (true, false) => asm!(self.ops; test Rd(d), imm),
                (false, true) => asm!(self.ops; cmp Rq(d), imm),
                (false, false) => asm!(self.ops; cmp Rd(d), imm),
            },
        }
        let label = match target {
            // Leaving a chain early: through a refund of what the chain's rest charged.
            Target::Insn(_) if self.refund > 0 => {
                let label = self.target_label(target);
                match self.settled_exit(target, label) {
                    Some(settled) => settled,
                    None => self.stub(Stub::Refund {
                        amount: self.refund as i32,
                        target: label,
                    }),
                }
            }
            // An instruction, or (taken, it traps) a trap stub.
            _ => self.target_label(target),
        };
        self.jcc(cc_of(cond), label);
    }

    /// A side exit out of a chain (refunding `self.refund`) to `target`, whose code starts at
    /// `label`, settled in one step with the charge of the chain it enters: straight past that
    /// charge when the two are equal, else through a `Stub::Settle`. Only in the ordinary
    /// code, to a block whose code is its charge and then the rest (not a dispatcher or a
    /// check on the way out of a copy).
    fn settled_exit(&mut self, target: Target, label: DynamicLabel) -> Option<DynamicLabel> {
        if self.copy.is_some() {
            return None;
        }
        let t = self.shape.block_of(target)?;
        let (body, charge, pc) = self.bodies.get(t).copied().flatten()?;
        if label != self.label(pc) {
            return None;
        }
        let charge = i32::try_from(charge).ok()?;
        let net = charge.checked_sub(i32::try_from(self.refund).ok()?)?;
        if net == 0 {
            return Some(body);
        }
        Some(self.stub(Stub::Settle {
            net,
            block: t as u32,
            charge,
            body,
        }))
    }

    // ---------------------------------------------------------------------------------------
    // Memory.

    /// Emits what makes the access `[base + off]` of `1 << w` bytes addressable, and says how
    /// to address it ([`At`]), or jumps to code that traps with the VM address in `rax`.
    ///
    /// Three shapes, by what the facts say of the access:
    /// - in bounds of region `r` on every path (`Access::InBounds`, or proven under the
    ///   conditions of the loop copy being emitted): no check at all, `rdx` = the region's bias
    ///   and the access is `[base + rdx + off]` (an atomic, through `rdx`); in checked-facts
    ///   mode, the full check, failing to a `Fact` stub;
    /// - probably in region `r` (`Facts::likely_region`; not for atomics): `rdx = base + off -
    ///   start[r]`, one compare against `span[r]`, `rdx += host[r]`; a wrong guess goes out of
    ///   line to the full check;
    /// - otherwise the full check against the region table (`full_check`).
    ///
    /// Spectre v1 masking (`self.masking`): a check's branch can be mispredicted, and the CPU
    /// then runs the access speculatively with an address the check refused — far out of any
    /// region if the program chose it. So on every checked shape the host address is also
    /// made to depend on the check's own flags, as data: right after the branch, the guessed
    /// region's `sbb rax, rax` (all ones when the compare's carry says "below the span", zero
    /// otherwise) is ANDed into the host address, and the full check's `cmovae` replaces it
    /// with `[rbx + OFF_NULL]` (0). Either way a refused address becomes 0, the never-mapped
    /// null page, even speculatively: CPUs predict branches, not flags. Proven accesses have
    /// no check, so nothing to mask (docs/jit-x86.md says what that relies on).
    fn host_address(
        &mut self,
        base: Reg,
        off: i16,
        w: usize,
        write: bool,
        atomic: bool,
        pc: usize,
    ) -> Option<At> {
        let width = 1i32 << w;
        let off = i32::from(off);
        let b = h(base);
        let mis_code = packed(trap_code::MISALIGNED_ATOMIC, width as u64);
        let i = self.index;
        // The proven region, and whether the proof holds on speculative paths too.
        let cached = self.bias_in_rdx.take();
        let proven = match self.facts.access(i) {
            Access::InBounds {
                region,
                speculation_safe,
            } => Some((region, speculation_safe)),
            // A version's proof rests on its dispatcher's branch.
            Access::Checked { .. } => self.copy.and_then(|c| {
                let v = self.loops.get(c)?.kind.version?;
                let accesses = &self.facts.versions().get(v)?.accesses;
                let at = accesses.binary_search_by_key(&i, |&(k, _)| k).ok()?;
                Some((accesses[at].1, false))
            }),
        };
        if let Some((region, speculation_safe)) = proven {
            if self.checked {
                let fact = self.fact_stub(pc);
                let misaligned = atomic.then_some(fact);
                self.full_check(b, off, w, write, fact, misaligned);
                return Some(At::Rdx);
            }
            if self.clamp_proven && !speculation_safe {
                self.clamp(b, off, w, write, region);
                return Some(At::Rdx);
            }
            let bias = OFF_BIAS + 8 * i32::from(region);
            if !atomic {
                if cached != Some(region) {
                    asm!(self.ops; mov rdx, [rbx + bias]);
                }
                self.bias_in_rdx = Some(region);
                return Some(At::Indexed { base: b, off });
            }
            asm!(self.ops
                ; lea rdx, [Rq(b) + off]
                ; add rdx, [rbx + bias]
            );
            return Some(At::Rdx);
        }
        if !atomic && let Some(r) = self.facts.likely_region(i) {
            let back = self.ops.new_dynamic_label();
            let unguessed = self.stub(Stub::Unguessed {
                base: b,
                off,
                w: w as u8,
                write,
                pc: pc as u32,
                back,
            });
            let start = OFF_START + 8 * i32::from(r);
            let host = OFF_HOST + 8 * i32::from(r);
            let span = span_offset(write, w, u64::from(r));
            if off == 0 {
                asm!(self.ops; mov rdx, Rq(b));
            } else {
                asm!(self.ops; lea rdx, [Rq(b) + off]);
            }
            asm!(self.ops
                ; sub rdx, [rbx + start]
                ; cmp rdx, [rbx + span]
                ; jae =>unguessed
            );
            if self.masking {
                // Carry set (in bounds): rax = all ones; clear (a mispredicted jae): 0.
                asm!(self.ops
                    ; sbb rax, rax
                    ; add rdx, [rbx + host]
                    ; and rdx, rax
                );
            } else {
                asm!(self.ops; add rdx, [rbx + host]);
            }
            asm!(self.ops; =>back);
            return Some(At::Rdx);
        }
        let oob = self.trap_stub(pc, oob_code(w, write));
        let misaligned = atomic.then(|| self.trap_stub(pc, mis_code));
        self.full_check(b, off, w, write, oob, misaligned);
        Some(At::Rdx)
    }

    /// The host address of an access proven in region `r` by a proof that rests on a branch
    /// (a guard of the program's, a loop bound, a version's dispatcher), in `rdx`, clamped
    /// without a branch: `edx` = the address's low 32 bits (its offset in region `r`, which
    /// the proof says it lies in), compared with `span[r]`, `sbb rax, rax` (all ones below the
    /// span, else 0) ANDed into `rdx + host[r]`. Architecturally the access is in bounds and
    /// the mask all ones; on the path a mispredicted guard leads to, an offset past the span
    /// becomes 0, the never-mapped null page, and an address in another region at most lands
    /// inside region `r`. The span comes from the region table, which the CPU reads as data
    /// (it predicts branches, not loaded values).
    fn clamp(&mut self, b: u8, off: i32, w: usize, write: bool, r: u8) {
        let host = OFF_HOST + 8 * i32::from(r);
        let span = span_offset(write, w, u64::from(r));
        if off == 0 {
            asm!(self.ops; mov edx, Rd(b));
        } else {
            asm!(self.ops; lea edx, [Rq(b) + off]);
        }
        asm!(self.ops
            ; cmp rdx, [rbx + span]
            ; sbb rax, rax
            ; add rdx, [rbx + host]
            ; and rdx, rax
        );
    }

    /// `rax = base + off` (the VM address); if `1 << w` bytes there are out of bounds, jumps to
    /// `oob`; then, for atomics, to `misaligned` if the address is not a multiple of the width
    /// (bounds first, as the interpreter); otherwise leaves the host address in `rdx` (with
    /// masking, 0 where the bounds check failed: see `host_address`).
    fn full_check(
        &mut self,
        b: u8,
        off: i32,
        w: usize,
        write: bool,
        oob: DynamicLabel,
        misaligned: Option<DynamicLabel>,
    ) {
        if off == 0 {
            asm!(self.ops; mov rax, Rq(b));
        } else {
            asm!(self.ops; lea rax, [Rq(b) + off]);
        }
        let lim = lim_offset(write, w, 0);
        asm!(self.ops
            ; mov rdx, rax
            ; shr rdx, 32
            ; and edx, 63
            ; cmp rax, [rbx + rdx * 8 + lim]
            ; jae =>oob
        );
        if self.masking {
            // `mov` and `lea` keep the compare's flags for the `cmovae`, which must come
            // before the alignment test overwrites them.
            asm!(self.ops
                ; mov rdx, [rbx + rdx * 8 + OFF_BIAS]
                ; lea rdx, [rdx + rax]
                ; cmovae rdx, [rbx + OFF_NULL]
            );
            if let Some(mis) = misaligned {
                asm!(self.ops; test al, ((1 << w) - 1) as i8; jnz =>mis);
            }
            return;
        }
        if let Some(mis) = misaligned {
            asm!(self.ops; test al, ((1 << w) - 1) as i8; jnz =>mis);
        }
        asm!(self.ops
            ; mov rdx, [rbx + rdx * 8 + OFF_BIAS]
            ; add rdx, rax
        );
    }

    fn load(&mut self, size: Size, signed: bool, d: u8, src: Reg, off: i16, pc: usize) {
        let w = size_index(size);
        match self.host_address(src, off, w, false, false, pc) {
            None => {}
            Some(At::Rdx) => load_from!(self, size, signed, d, [rdx]),
            Some(At::Indexed { base: b, off }) => {
                load_from!(self, size, signed, d, [Rq(b) + rdx + off])
            }
        }
    }

    fn store(&mut self, size: Size, dst: Reg, off: i16, src: Operand, pc: usize) {
        let w = size_index(size);
        match self.host_address(dst, off, w, true, false, pc) {
            None => {}
            Some(At::Rdx) => store_to!(self, size, src, [rdx]),
            Some(At::Indexed { base: b, off }) => store_to!(self, size, src, [Rq(b) + rdx + off]),
        }
    }

    fn atomic(&mut self, wide: bool, op: AtomicOp, dst: Reg, s: u8, off: i16, pc: usize) {
        let w = if wide { 3 } else { 2 };
        if self.host_address(dst, off, w, true, true, pc).is_none() {
            return;
        }
        match (op, wide) {
            (AtomicOp::Add { fetch: false }, true) => asm!(self.ops; lock add [rdx], Rq(s)),
            (AtomicOp::Add { fetch: false }, false) => asm!(self.ops; lock add [rdx], Rd(s)),
            (AtomicOp::Or { fetch: false }, true) => asm!(self.ops; lock or [rdx], Rq(s)),
            (AtomicOp::Or { fetch: false }, false) => asm!(self.ops; lock or [rdx], Rd(s)),
            (AtomicOp::And { fetch: false }, true) => asm!(self.ops; lock and [rdx], Rq(s)),
            (AtomicOp::And { fetch: false }, false) => asm!(self.ops; lock and [rdx], Rd(s)),
            (AtomicOp::Xor { fetch: false }, true) => asm!(self.ops; lock xor [rdx], Rq(s)),
            (AtomicOp::Xor { fetch: false }, false) => asm!(self.ops; lock xor [rdx], Rd(s)),
            (AtomicOp::Add { fetch: true }, true) => asm!(self.ops; lock xadd [rdx], Rq(s)),
            (AtomicOp::Add { fetch: true }, false) => asm!(self.ops; lock xadd [rdx], Rd(s)),
            (AtomicOp::Xchg, true) => asm!(self.ops; xchg [rdx], Rq(s)),
            (AtomicOp::Xchg, false) => asm!(self.ops; xchg [rdx], Rd(s)),
            (AtomicOp::Cmpxchg, true) => asm!(self.ops
                ; mov rax, rsi
                ; lock cmpxchg [rdx], Rq(s)
                ; mov rsi, rax
            ),
            (AtomicOp::Cmpxchg, false) => asm!(self.ops
                ; mov eax, esi
                ; lock cmpxchg [rdx], Rd(s)
                ; mov esi, eax
            ),
            // Fetching and/or/xor: a compare-exchange loop, with the budget parked on the host
            // stack to free rcx for the new value.
            (AtomicOp::Or { .. } | AtomicOp::And { .. } | AtomicOp::Xor { .. }, true) => {
                asm!(self.ops; push rcx; mov rax, [rdx]; again:; mov rcx, rax);
                match op {
                    AtomicOp::Or { .. } => asm!(self.ops; or rcx, Rq(s)),
                    AtomicOp::And { .. } => asm!(self.ops; and rcx, Rq(s)),
                    _ => asm!(self.ops; xor rcx, Rq(s)),
                }
                asm!(self.ops
                    ; lock cmpxchg [rdx], rcx
                    ; jnz <again
                    ; pop rcx
                    ; mov Rq(s), rax
                );
            }
            (AtomicOp::Or { .. } | AtomicOp::And { .. } | AtomicOp::Xor { .. }, false) => {
                asm!(self.ops; push rcx; mov eax, [rdx]; again:; mov ecx, eax);
                match op {
                    AtomicOp::Or { .. } => asm!(self.ops; or ecx, Rd(s)),
                    AtomicOp::And { .. } => asm!(self.ops; and ecx, Rd(s)),
                    _ => asm!(self.ops; xor ecx, Rd(s)),
                }
                asm!(self.ops
                    ; lock cmpxchg [rdx], ecx
                    ; jnz <again
                    ; pop rcx
                    ; mov Rd(s), eax
                );
            }
        }
    }

    /// `LD_ABS`/`LD_IND`: `r0` = the big-endian value at input offset `(src as u32) + imm`
    /// (wrapping in 32 bits).
    fn load_packet(&mut self, size: Size, addr: PacketAddr, imm: i32, pc: usize) {
        match addr {
            PacketAddr::Abs => self.load_imm(RAX, imm, false),
            PacketAddr::Ind(src) => {
                let s = h(src);
                if self.blinds(i64::from(imm)) {
                    self.load_imm(RDX, imm, false);
                    asm!(self.ops; mov eax, Rd(s); add eax, edx);
                } else {
                    asm!(self.ops; mov eax, Rd(s); add eax, imm);
                }
            }
        }
        // The interpreter reads 4 bytes for any size but B and H, and reports the size.
        let (w, checked) = match size {
            Size::B => (0, 1),
            Size::H => (1, 2),
            _ => (2, 4),
        };
        let reported = size.bytes();
        let oob = self.trap_stub(
            pc,
            packed(trap_code::OUT_OF_BOUNDS_READ, u64::from(reported)),
        );
        let lim = lim_offset(false, w, layout::INPUT);
        let bias = OFF_BIAS + 8 * layout::INPUT as i32;
        asm!(self.ops
            ; bts rax, 34
            ; cmp rax, [rbx + lim]
            ; jae =>oob
            ; mov rdx, [rbx + bias]
        );
        if self.masking {
            // The offset is the program's (any 32-bit value): masked as `full_check` does.
            asm!(self.ops
                ; lea rdx, [rdx + rax]
                ; cmovae rdx, [rbx + OFF_NULL]
            );
            match checked {
                1 => asm!(self.ops; movzx esi, BYTE [rdx]),
                2 => asm!(self.ops; movzx esi, WORD [rdx]; rol si, 8),
                _ => asm!(self.ops; mov esi, DWORD [rdx]; bswap esi),
            }
            return;
        }
        match checked {
            1 => asm!(self.ops; movzx esi, BYTE [rax + rdx]),
            2 => asm!(self.ops; movzx esi, WORD [rax + rdx]; rol si, 8),
            _ => asm!(self.ops; mov esi, DWORD [rax + rdx]; bswap esi),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Calls and exits.

    /// Calls the trampoline for the helper whose id is in the context: the budget goes to the
    /// context, `r1`–`r5` to the trampoline's argument registers (System V: `rsi`, `rdx`,
    /// `rcx`, `r8`, `r9`, after the context in `rdi`), `r0` comes back, `r1`–`r5` are zeroed.
    ///
    /// The arguments travel in registers, not through the context: the trampoline copied
    /// them from there with 16-byte loads that spanned two of these 8-byte stores, which the
    /// store buffer cannot forward, so every call waited for the stores to reach the cache.
    fn helper_call(&mut self, pc: usize) {
        let epilogue = self.epilogue;
        // Each move reads its source before any later move overwrites it: `rsi` (r0) and
        // `rdx` are free, `rcx` (the budget) is saved first, and `r8`/`r9` (r2/r3) are
        // copied out before r4/r5 move in.
        asm!(self.ops
            ; mov [rbx + OFF_REMAINING], rcx
            ; mov QWORD [rbx + OFF_TRAP_PC], pc as i32
            ; mov rsi, rdi
            ; mov rdx, r8
            ; mov rcx, r9
            ; mov r8, r10
            ; mov r9, r11
            ; mov rdi, rbx
            ; call QWORD [rbx + OFF_TRAMPOLINE]
            ; test eax, eax
            ; jnz =>epilogue
            ; mov rsi, [rbx + OFF_REGS]
            ; mov rcx, [rbx + OFF_REMAINING]
            ; xor edi, edi
            ; xor r8d, r8d
            ; xor r9d, r9d
            ; xor r10d, r10d
            ; xor r11d, r11d
        );
    }

    /// A local call: a fresh frame, the caller's r6–r10 and the return address on the shadow
    /// stack in the context.
    fn local_call(&mut self, pc: usize, target: Target) {
        let depth = self.trap_stub(pc, packed(trap_code::CALL_DEPTH_EXCEEDED, 0));
        let next = self.target_label(self.shape.view.next(self.index));
        let callee = self.target_label(target);
        asm!(self.ops
            ; mov rdx, [rbx + OFF_FRAME_SP]
            ; cmp rdx, [rbx + OFF_FRAME_END]
            ; jae =>depth
            ; mov [rdx], r12
            ; mov [rdx + 8], r13
            ; mov [rdx + 16], r14
            ; mov [rdx + 24], r15
            ; mov [rdx + 32], rbp
            ; lea rax, [=>next]
            ; mov [rdx + FRAME_RET], rax
            ; mov rbp, [rdx + FRAME_CALLEE_FP]
            ; add rdx, FRAME_SIZE
            ; mov [rbx + OFF_FRAME_SP], rdx
        );
        self.jmp(callee);
    }

    /// `exit`: at depth 0 the program ends; otherwise the caller's frame comes back.
    fn exit(&mut self) {
        let exit_ok = self.exit_ok;
        asm!(self.ops
            ; mov rdx, [rbx + OFF_FRAME_SP]
            ; cmp rdx, [rbx + OFF_FRAME_BASE]
        );
        self.jcc(Cc::E, exit_ok);
        asm!(self.ops
            ; sub rdx, FRAME_SIZE
            ; mov [rbx + OFF_FRAME_SP], rdx
            ; mov r12, [rdx]
            ; mov r13, [rdx + 8]
            ; mov r14, [rdx + 16]
            ; mov r15, [rdx + 24]
            ; mov rbp, [rdx + 32]
            ; jmp QWORD [rdx + FRAME_RET]
        );
    }
}

/// `(region, offset)` when `v` is the VM address `region << 32 | offset` of a region id
/// (1..=`MAX_REGION`) and an offset below 2^16: the `lddw` values [`Emitter::load_imm64`]
/// builds from their parts instead of blinding them.
fn region_address(v: u64) -> Option<(i32, i32)> {
    let region = v >> layout::REGION_SHIFT;
    let off = v & layout::OFFSET_MASK;
    if (1..=layout::MAX_REGION).contains(&region) && off <= 0xffff {
        Some((region as i32, off as i32))
    } else {
        None
    }
}

/// `w` such that the size is `1 << w` bytes.
/// The trap code of an out-of-bounds access of `1 << w` bytes.
fn oob_code(w: usize, write: bool) -> u32 {
    let code = if write {
        trap_code::OUT_OF_BOUNDS_WRITE
    } else {
        trap_code::OUT_OF_BOUNDS_READ
    };
    packed(code, 1 << w)
}

fn size_index(size: Size) -> usize {
    match size {
        Size::B => 0,
        Size::H => 1,
        Size::W => 2,
        Size::DW => 3,
    }
}
