//! eBPF to Cranelift IR: one function per unit of the plan (one for the whole program unless
//! it is large), and, for a program of several units, a dispatcher that calls them in turn.
//!
//! Registers `r0`–`r10`, the remaining budget and the call depth are frontend `Variable`s, so
//! Cranelift's SSA construction and register allocator keep them in machine registers. The
//! blocks, their exits, the budget checkpoints and the units come from [`Plan`]; each plan block
//! is emitted once, in pc order, with no budget test except at checkpoints. When a checkpoint
//! finds too little budget left for its region, the [`Shortfall`] decides what follows: the
//! in-process JIT hands the run to the interpreter, objects continue in a *checked* copy of the
//! region (see `plan.rs` for the scheme).
//!
//! Local calls are jumps: the call pushes `(return site, r6..r9, r10)` on the frame stack in
//! the context's scratch buffer and sets `r10` to the new frame; `exit` at depth 0 leaves the
//! program, deeper it pops the frame and continues at the return site through a jump table.
//! Helpers are called through the context's helper pointer. A transfer into another unit stores
//! the registers in the context and returns to the dispatcher, which calls that unit.
//!
//! Every memory access is checked against the region table, inline (see [`Tx::memory`]).
//! Nothing here ever raises a hardware trap: failed checks, and the budget, branch to cold
//! blocks that store the trap in the context and return.
//!
//! Compile time is most of what this module decides, so the IR is kept small: blocks are
//! sealed as soon as their last predecessor is emitted (few block parameters for the SSA
//! builder to add and then remove), cold paths are filled where they branch off (then moved to
//! the end of the layout), and nothing is emitted twice in-process.

use std::collections::HashMap;

use cranelift_codegen::entity::SecondaryMap;
use cranelift_codegen::entity::packed_option::PackedOption;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I8, I16, I32, I64};
use cranelift_codegen::ir::{
    self, AbiParam, AliasRegionData, AtomicRmwOp, BlockArg, Endianness, FuncRef, Function,
    InstBuilder, JumpTableData, MemFlagsData, Signature, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use ebpf_abi::registers::bit;
use ebpf_abi::{InvalidReason, layout, trap_code as code};
use ebpf_cfg::facts::{Access, Bound, Charge, Condition, Counter, Division, Facts, LoopFact};
use ebpf_cfg::pointers;
use ebpf_isa::{
    AluOp, AtomicOp, ByteOrder, CallKind, Cond, Insn, Operand, PacketAddr, Program, Reg,
    SignExtend, Size, SwapWidth, Width,
};

use crate::context::{FACT_FAILED, SUSPENDED, off};
use crate::hints::{self, Hint};
use crate::live::{self, Regs};
use crate::plan::{Plan, Target, Term};

/// `fn(ctx: *mut Context) -> u64`: the program's entry point, and every unit's.
pub(crate) fn entry_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.push(AbiParam::new(I64));
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// The helper entry point: `(ctx, id, r1, r2, r3, r4, r5) -> status`.
fn helper_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..7 {
        sig.params.push(AbiParam::new(I64));
    }
    sig.returns.push(AbiParam::new(I64));
    sig
}

/// The check function: `(ctx, addr, site)`, leaving the host address in the context, or 0
/// after storing the trap.
///
/// It preserves every register (Cranelift's `preserve_all` convention, which has no return
/// value: the result goes to the context's `host` field), so that a call on a cold path costs
/// the register allocator nothing on the hot one.
pub(crate) fn check_signature() -> Signature {
    let mut sig = Signature::new(CallConv::PreserveAll);
    for _ in 0..3 {
        sig.params.push(AbiParam::new(I64));
    }
    sig
}

/// How generated code reaches the check function.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Check {
    /// At this address (in-process: one check function per ISA, compiled once).
    Address(u64),
    /// As a function of the same module (objects).
    Func(FuncRef),
}

/// Fills `func` (which has the [`check_signature`]) with the check function that the cold
/// paths of memory accesses call: the full bounds check of [`Tx::checked_address`] for an
/// access described by `site` (`width | write << 8 | pc << 16`), returning the host address,
/// or 0 after storing the out-of-bounds trap in the context. One function instead of an
/// inline copy per access keeps the IR of every access small; it only runs when a region
/// guess fails, or to report a trap.
pub(crate) fn translate_check(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    frontend: TargetFrontendConfig,
) {
    let mut b = FunctionBuilder::new(func, fctx);
    let flags = MemFlagsData::trusted();
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let (ctx, addr, site) = {
        let p = b.block_params(entry);
        (p[0], p[1], p[2])
    };
    let hi = b.ins().band_imm_s(addr, 0x3f_0000_0000);
    let rel = b.ins().isub(addr, hi);
    let eight = b.ins().ushr_imm_s(hi, 29);
    let sixteen = b.ins().ishl_imm_s(eight, 1);
    let offset = b.ins().iadd(eight, sixteen);
    let entry_addr = b.ins().iadd(ctx, offset);
    let len = b.ins().load(I64, flags, entry_addr, off::REGION_LEN);
    let writable = b.ins().load(I64, flags, entry_addr, off::REGION_WRITABLE);
    let write = b.ins().ushr_imm_s(site, 8);
    let write = b.ins().band_imm_s(write, 1);
    let one = b.ins().iconst(I64, 1);
    let allowed = b.ins().select(write, writable, one);
    let zero = b.ins().iconst(I64, 0);
    let limit = b.ins().select(allowed, len, zero);
    let width = b.ins().band_imm_s(site, 0xff);
    let end = b.ins().iadd(rel, width);
    let out = b.ins().icmp(IntCC::UnsignedGreaterThan, end, limit);
    let fail = b.create_block();
    let ok = b.create_block();
    b.ins().brif(out, fail, &[], ok, &[]);
    b.switch_to_block(ok);
    b.seal_block(ok);
    let host = b.ins().load(I64, flags, entry_addr, 0);
    let p = b.ins().iadd(host, rel);
    // Spectre v1, whatever the options (the function is shared and cold): a mispredicted
    // branch above hands back 0, never the refused address.
    let p = b.ins().select_spectre_guard(out, zero, p);
    b.ins().store(flags, p, ctx, off::HOST);
    b.ins().return_(&[]);
    b.switch_to_block(fail);
    b.seal_block(fail);
    // OUT_OF_BOUNDS_READ + write is OUT_OF_BOUNDS_WRITE.
    let kind = b.ins().iadd_imm_s(write, code::OUT_OF_BOUNDS_READ as i64);
    let pc = b.ins().ushr_imm_s(site, 16);
    for (v, offset) in [
        (pc, off::TRAP_PC),
        (kind, off::TRAP_KIND),
        (addr, off::TRAP_A),
        (width, off::TRAP_B),
    ] {
        b.ins().store(flags, v, ctx, offset);
    }
    b.ins().store(flags, zero, ctx, off::HOST);
    b.ins().return_(&[]);
    b.finalize(frontend);
}

/// What a checkpoint does when less budget is left than its region may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shortfall {
    /// Stop with [`SUSPENDED`], the run as it stands at the checkpoint in the context,
    /// for the host to finish in the interpreter (in-process).
    Suspend,
    /// Continue in a checked copy of the region (objects: no interpreter to hand over to).
    CheckedCopy,
}

/// What the facts removed from a program's code (see [`Prepared::removed`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Loads, stores and atomics in the program.
    pub accesses: usize,
    /// Of those, compiled with no bounds check (proven in bounds).
    pub unchecked: usize,
    /// Loops with an unchecked copy (entered when their conditions hold at entry).
    pub versions: usize,
    /// Accesses unchecked in those copies (and checked in the ordinary loop).
    pub versioned: usize,
    /// Counted loops with a copy that charges no budget (charged once at their entry when
    /// the budget has them all).
    pub counted: usize,
    /// Zero and `-1` tests register divisors need (one per unsigned, two per signed).
    pub divisor_tests: usize,
    /// Of those, left out (the divisor proven nonzero, the signed overflow impossible).
    pub divisor_tests_gone: usize,
}

/// A unit's status when it returns to the dispatcher: run the unit of `ctx.next` next.
/// (0: the program exited, trapped or was suspended; the context says which.)
const CONTINUE: i64 = 1;

/// What translating a program's units needs, computed once for all of them.
pub(crate) struct Prepared<'p> {
    pub(crate) plan: Plan,
    /// What any return site reads (see [`live::return_reads`]): what `ret` restores from a
    /// frame and hands on.
    ret_live: Regs,
    insns: &'p [Insn],
    /// The pc of each instruction.
    pcs: Vec<usize>,
    /// Region hints at each block's entry.
    entries: Vec<hints::State>,
    /// Whether `r10` is never written (frame offsets are exact, frame slots unchecked).
    frame_exact: bool,
    shortfall: Shortfall,
    /// Spectre v1 masking (`JitOptions::spectre_masking`): see [`Tx::guard`].
    masking: bool,
    /// Masking and `JitOptions::spectre_clamp_proven`: accesses proven through a branch get
    /// the clamp of [`Tx::clamp`].
    clamp_proven: bool,
    /// Registers live at each block.
    live: Vec<Regs>,
    /// What the code may rely on (`ebpf_cfg::facts`; in-process only, objects have none).
    facts: Option<&'p Facts>,
    /// Keep the checks the facts remove, failing with [`FACT_FAILED`]
    /// (`JitOptions::checked_facts`).
    checked_facts: bool,
    /// The facts' loop versions this translation builds (see [`Versioned`]).
    versions: Vec<Versioned>,
    /// Per plan block: the index in `versions` of the loop it belongs to (`u32::MAX`: none).
    in_version: Vec<u32>,
    /// Per plan block: the index in `versions` of the loop it is the entry of (`u32::MAX`).
    version_entry: Vec<u32>,
    /// Whether the bounds of hinted checks may be plain `select`s ([`Tx::entry_select`]):
    /// with Cranelift's optimiser off (`opt_level = none`, the default) nothing moves a
    /// `select` out of the entry block, and it costs the compiler three blocks less than a
    /// branch and a join. Set by the caller (false: always the branch).
    pub(crate) plain_selects: bool,
}

/// A loop with a second copy of its blocks: edges into its entry from outside go through a
/// dispatcher that decides once per entry whether the copy may run; edges inside the copy stay
/// in it, edges out of it leave it. Either a version of the facts (`ebpf_cfg::facts::Version`),
/// whose copy has the version's accesses unchecked, or a counted loop (`LoopFact`), whose copy
/// charges no budget (its dispatcher charged all of it).
pub(crate) struct Versioned {
    /// The loop's entry block.
    entry: usize,
    /// The plan blocks of the loop.
    blocks: Vec<usize>,
    /// What must hold on entry (a version).
    conditions: Vec<Condition>,
    /// The accesses proven in the copy: instruction index and region, sorted (a version).
    accesses: Vec<(usize, u8)>,
    /// A counted loop: what its dispatcher charges.
    counted: Option<Counted>,
}

/// What the dispatcher of a counted loop's copy charges and needs.
#[derive(Clone, Copy)]
struct Counted {
    /// The instructions one entry of the loop runs until it leaves.
    charge: Charge,
    /// The budget the code after the loop needs when it is entered from the copy, up to its
    /// next checkpoint: the blocks the loop leaves to are not checkpoints when the loop's head
    /// is the checkpoint that covers them, and the copy skips the head's test.
    after: u64,
}

/// The most a counted loop's copy may charge at once: far below where the dispatcher's sum
/// with the code after it could overflow.
const MAX_COUNTED: u64 = 1 << 48;

/// The largest `per_iteration` of a loop charged at its entry from registers: fewer than
/// 2^32 trips of it stay below [`MAX_COUNTED`].
const MAX_AT_ENTRY_PER_ITERATION: u64 = 1 << 16;

/// The versions of `facts` that `plan` can build: a loop whose blocks are all in one unit, with
/// no local call and no return site in it (a return goes through `ret` to the ordinary copy,
/// which is correct but would leave the copy), and conditions the dispatcher computes in 64
/// bits; then the counted loops (see [`counted`]).
fn versions(
    plan: &Plan,
    insns: &[Insn],
    facts: Option<&Facts>,
) -> (Vec<Versioned>, Vec<u32>, Vec<u32>) {
    let n = plan.blocks.len();
    let (mut in_version, mut version_entry) = (vec![u32::MAX; n], vec![u32::MAX; n]);
    let mut built = Vec::new();
    let Some(facts) = facts else {
        return (built, in_version, version_entry);
    };
    let loops = facts
        .versions()
        .iter()
        .map(|v| (v.entry, &v.insns, Ok(v)))
        .chain(facts.loops().iter().map(|l| (l.entry, &l.insns, Err(l))));
    for (entry_insn, loop_insns, source) in loops {
        let inside = |i: usize| loop_insns.iter().any(|r| r.contains(&i));
        let blocks: Vec<usize> = (0..n)
            .filter(|&b| plan.blocks[b].reachable && inside(plan.blocks[b].insns.start))
            .collect();
        let entry = blocks
            .iter()
            .copied()
            .find(|&b| plan.blocks[b].insns.start == entry_insn);
        let Some(entry) = entry else { continue };
        let (conditions, accesses, counted) = match source {
            Ok(version) => {
                let computable = version.conditions.iter().all(|c| {
                    usize::from(c.reg) <= 10
                        && u64::from(c.region) < ebpf_abi::REGION_TABLE_LEN as u64
                        && c.shift < 64
                        && c.offset.unsigned_abs() < 1 << 40
                });
                if !computable {
                    continue;
                }
                (version.conditions.clone(), version.accesses.clone(), None)
            }
            // A counted loop that is a version's too: one copy, unchecked and uncharged, taken
            // when the conditions hold and the budget has the whole loop.
            Err(fact) if version_entry[entry] != u32::MAX => {
                let v = version_entry[entry] as usize;
                if let Some(version) = built.get_mut(v)
                    && version.blocks == blocks
                    && version.counted.is_none()
                {
                    version.counted = counted(plan, insns, facts, fact, &blocks, &version.accesses);
                }
                continue;
            }
            Err(fact) => match counted(plan, insns, facts, fact, &blocks, &[]) {
                Some(c) => (Vec::new(), Vec::new(), Some(c)),
                None => continue,
            },
        };
        let buildable = blocks.iter().all(|&b| {
            let block = &plan.blocks[b];
            !block.return_site
                && !matches!(block.term, Term::Call { .. })
                && !plan.crosses(entry, b)
                && in_version[b] == u32::MAX
        });
        if !buildable || version_entry[entry] != u32::MAX {
            continue;
        }
        let v = built.len() as u32;
        for &b in &blocks {
            in_version[b] = v;
        }
        version_entry[entry] = v;
        built.push(Versioned {
            entry,
            blocks,
            conditions,
            accesses,
            counted,
        });
    }
    (built, in_version, version_entry)
}

/// What the dispatcher of counted loop `fact` (whose reachable plan blocks are `blocks`)
/// charges, if charging it once at its entry is exact: its plan blocks are exactly its
/// instructions (no block half in it), and nothing in it can end the run early or leave it
/// but the exit test — every access proven in bounds (or among `versioned`, those its
/// version's conditions prove: no check that could trap or hand the run to the interpreter),
/// no helper or local call, no `exit`, no jump to a trap.
fn counted(
    plan: &Plan,
    insns: &[Insn],
    facts: &Facts,
    fact: &LoopFact,
    blocks: &[usize],
    versioned: &[(usize, u8)],
) -> Option<Counted> {
    let inside = |i: usize| fact.insns.iter().any(|r| r.contains(&i));
    let covered: usize = blocks.iter().map(|&b| plan.blocks[b].insns.len()).sum();
    let total: usize = fact.insns.iter().map(|r| r.len()).sum();
    let fits = covered == total
        && blocks
            .iter()
            .all(|&b| plan.blocks[b].insns.clone().all(inside));
    let mut after = 0u64;
    for &b in blocks {
        let block = &plan.blocks[b];
        let targets = match block.term {
            Term::Fall(t) | Term::Jump(t) => [Some(t), None],
            Term::Branch { taken, fall } => [Some(taken), Some(fall)],
            Term::Exit | Term::Call { .. } | Term::Trap { .. } => return None,
        };
        for t in targets.into_iter().flatten() {
            let Target::Block(s) = t else { return None };
            if !blocks.contains(&s) {
                let next = &plan.blocks[s];
                after = after.max(if next.tested { 0 } else { next.limit });
            }
        }
        for i in block.insns.clone() {
            let plain = match insns.get(i) {
                Some(insn) => match insn {
                    Insn::Load { .. } | Insn::Store { .. } | Insn::Atomic { .. } => {
                        matches!(facts.access(i), Access::InBounds { .. })
                            || versioned.binary_search_by_key(&i, |&(k, _)| k).is_ok()
                    }
                    Insn::LoadPacket { .. } | Insn::Call { .. } | Insn::CallX { .. } => false,
                    _ => true,
                },
                None => false,
            };
            if !plain {
                return None;
            }
        }
    }
    let charge = fact.charge();
    let fits_charge = match charge {
        Charge::Known(instructions) => instructions > 0 && instructions <= MAX_COUNTED,
        Charge::AtEntry {
            counter,
            per_iteration,
            ..
        } => {
            per_iteration <= MAX_AT_ENTRY_PER_ITERATION
                && usize::from(counter.reg) <= 10
                && !matches!(counter.bound, Bound::Reg(b) if b > 10)
        }
    };
    if !fits_charge {
        return None;
    }
    fits.then_some(Counted { charge, after })
}

impl<'p> Prepared<'p> {
    /// Plans `program` in units of about `function_size` instructions, with or without
    /// Spectre `masking` (and the clamp of accesses proven through a branch, `clamp_proven`).
    pub(crate) fn new(
        program: &'p Program,
        function_size: usize,
        shortfall: Shortfall,
        masking: bool,
        clamp_proven: bool,
        facts: Option<&'p Facts>,
        checked_facts: bool,
    ) -> Self {
        let plan = Plan::build(program, function_size, shortfall == Shortfall::Suspend);
        let insns = program.insns();
        let frame_exact = !hints::writes_r10(insns);
        let entries = hints::block_entries(&plan, insns, frame_exact);
        let live = live::live_in(&plan, insns);
        let facts = facts.filter(|f| f.is_for(program));
        let (versions, in_version, version_entry) = versions(&plan, insns, facts);
        Prepared {
            versions,
            in_version,
            version_entry,
            ret_live: live::return_reads(&plan, &live),
            live,
            plan,
            insns,
            pcs: program.iter().map(|(pc, _)| pc).collect(),
            entries,
            frame_exact,
            shortfall,
            masking,
            clamp_proven,
            facts,
            checked_facts,
            plain_selects: false,
        }
    }

    /// What the facts prove about the access at instruction `i`.
    fn access(&self, i: usize) -> Access {
        self.facts
            .map_or(Access::Checked { region: None }, |f| f.access(i))
    }

    /// What the facts prove about the division at instruction `i`.
    fn division(&self, i: usize) -> Division {
        self.facts.map_or(Division::default(), |f| f.division(i))
    }

    /// The hint of an access at instruction `i` whose base register's own hint is `hint`: the
    /// region the facts place every address in (or guess), unless `hint` already proves a
    /// frame slot; a guess only picks the check tried first.
    fn access_hint(&self, i: usize, hint: Hint, off: i16, width: u32) -> Hint {
        if self.frame_exact && hint.frame_access_is_safe(off, width) {
            return hint;
        }
        match self.facts.and_then(|f| f.likely_region(i)) {
            Some(r) => Hint::Region(r),
            None => hint,
        }
    }

    /// Static counts of what the facts removed from the code: accesses with no bounds check,
    /// and zero / `-1` tests of register divisors (for documentation and tests).
    pub(crate) fn removed(&self) -> Removed {
        let mut removed = Removed::default();
        if self.checked_facts {
            return removed;
        }
        // A version's loop may also be counted: its copy is both unchecked and uncharged.
        removed.versions = self
            .versions
            .iter()
            .filter(|v| !v.conditions.is_empty() || !v.accesses.is_empty())
            .count();
        removed.versioned = self.versions.iter().map(|v| v.accesses.len()).sum();
        removed.counted = self.versions.iter().filter(|v| v.counted.is_some()).count();
        for (i, insn) in self.insns.iter().enumerate() {
            match *insn {
                Insn::Load { .. } | Insn::Store { .. } | Insn::Atomic { .. } => {
                    removed.accesses += 1;
                    if matches!(self.access(i), Access::InBounds { .. }) {
                        removed.unchecked += 1;
                    }
                }
                Insn::Alu {
                    op: op @ (AluOp::Div | AluOp::Mod | AluOp::Sdiv | AluOp::Smod),
                    src: Operand::Reg(_),
                    ..
                } => {
                    let d = self.division(i);
                    let signed = matches!(op, AluOp::Sdiv | AluOp::Smod);
                    removed.divisor_tests += 1 + usize::from(signed);
                    removed.divisor_tests_gone +=
                        usize::from(d.nonzero) + usize::from(signed && d.no_overflow);
                }
                _ => {}
            }
        }
        removed
    }

    /// Whether the program is one function (else: units and a dispatcher).
    pub(crate) fn is_whole(&self) -> bool {
        self.plan.units.len() == 1
    }

    /// The pc each frame word of a return site stands for, sorted by word.
    pub(crate) fn return_sites(&self) -> Vec<(u64, usize)> {
        let plan = &self.plan;
        let mut sites: Vec<(u64, usize)> = plan
            .sites
            .iter()
            .filter(|&&s| plan.is_entry(s))
            .map(|&s| (plan.word(s), plan.start_pcs[s]))
            .collect();
        sites.sort_unstable();
        sites.dedup();
        sites
    }
}

/// Fills `func` (which has the [`entry_signature`]) with unit `unit` of `prep`.
///
/// `check` is the check function for cold paths: its address (in-process), or a reference to
/// it already declared in `func` (objects).
pub(crate) fn translate_unit(
    prep: &Prepared<'_>,
    unit: usize,
    check: Check,
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    frontend: TargetFrontendConfig,
) {
    let mut builder = FunctionBuilder::new(func, fctx);
    let mut tx = Tx::new(&mut builder, prep, unit, check, frontend.default_call_conv);
    tx.run();
    builder.seal_all_blocks();
    builder.finalize(frontend);
}

/// Fills `func` (which has the [`entry_signature`]) with the dispatcher of a program of
/// several units: it sets up the entry state, then calls the unit that `ctx.next` names
/// until one says the program is done, and returns `r0` (0 after a trap).
pub(crate) fn translate_dispatcher(
    prep: &Prepared<'_>,
    units: &[FuncRef],
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    frontend: TargetFrontendConfig,
) {
    let plan = &prep.plan;
    let mut b = FunctionBuilder::new(func, fctx);
    let flags = MemFlagsData::trusted();
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let ctx = b.block_params(entry)[0];
    let args = [
        b.ins().load(I64, flags, ctx, off::ARGS),
        b.ins().load(I64, flags, ctx, off::ARGS + 8),
    ];
    let stack_size = b.ins().load(I64, flags, ctx, off::STACK_SIZE);
    let zero = b.ins().iconst(I64, 0);
    let fp = frame_pointer(&mut b, stack_size, zero);
    for r in 0..11 {
        let v = match r {
            1 => args[0],
            2 => args[1],
            10 => fp,
            _ => zero,
        };
        b.ins().store(flags, v, ctx, off::STATE + 8 * r);
    }
    b.ins().store(flags, zero, ctx, off::DEPTH);
    let first = match plan.entry {
        Target::Block(e) => plan.word(e),
        Target::Trap { .. } => 0,
    };
    let first = b.ins().iconst(I64, first as i64);
    b.ins().store(flags, first, ctx, off::NEXT);
    let top = b.create_block();
    b.ins().jump(top, &[]);

    b.switch_to_block(top);
    let next = b.ins().load(I64, flags, ctx, off::NEXT);
    let unit = b.ins().ushr_imm_s(next, 32);
    let unit = b.ins().ireduce(I32, unit);
    let done = b.create_block();
    let calls: Vec<ir::Block> = units.iter().map(|_| b.create_block()).collect();
    let table: Vec<_> = calls
        .iter()
        .map(|&c| b.func.dfg.block_call(c, &[]))
        .collect();
    let default = b.func.dfg.block_call(calls[0], &[]);
    let jt = b.create_jump_table(JumpTableData::new(default, &table));
    b.ins().br_table(unit, jt);
    for (&call, &f) in calls.iter().zip(units) {
        b.switch_to_block(call);
        b.seal_block(call);
        let inst = b.ins().call(f, &[ctx]);
        let status = b.inst_results(inst)[0];
        b.ins().brif(status, top, &[], done, &[]);
    }
    b.seal_block(top);
    b.switch_to_block(done);
    b.seal_block(done);
    let kind = b.ins().load(I64, flags, ctx, off::TRAP_KIND);
    let r0 = b.ins().load(I64, flags, ctx, off::STATE);
    let zero = b.ins().iconst(I64, 0);
    let result = b.ins().select(kind, zero, r0);
    b.ins().return_(&[result]);
    b.finalize(frontend);
}

/// What a checked memory access does once its host address is known.
#[derive(Clone, Copy)]
enum MemOp {
    Load {
        size: Size,
        signed: bool,
    },
    Store {
        size: Size,
        value: Value,
    },
    Atomic {
        wide: bool,
        op: AtomicOp,
        src: Value,
        r0: Value,
    },
}

/// Memory flags of the four kinds of memory generated code touches.
#[derive(Clone, Copy)]
struct Flags {
    /// VM memory: little-endian on every host, checked before the access.
    vm: MemFlagsData,
    /// The region table: never changes during a run, always in bounds.
    table: MemFlagsData,
    /// Scalar fields of the context that generated code writes (trap, budget left) or that
    /// helpers write (their result).
    ctx: MemFlagsData,
    /// Fields of the context that never change during a run (arguments, limits, pointers).
    fixed: MemFlagsData,
    /// The saved frames of local calls.
    frames: MemFlagsData,
}

/// Where a branch goes, and what to do once the branch instruction exists.
#[derive(Clone, Copy)]
struct Dest {
    block: ir::Block,
    after: After,
}

/// What follows emitting a branch to a [`Dest`].
#[derive(Clone, Copy)]
enum After {
    /// A plan block's fast copy has one predecessor fewer to wait for.
    Arrived(usize),
    /// Nothing (a checked copy, sealed at the end).
    Nothing,
    /// A new block that leaves the unit for this block of another: fill it.
    Leave(usize),
    /// A new block that traps: fill it.
    Trap { pc: usize, reason: InvalidReason },
    /// A new block that enters version `version`'s loop at its entry block `entry`: its
    /// unchecked copy if the conditions hold (for a counted loop: if the budget has the whole
    /// loop, which it charges), else the ordinary one.
    Dispatch { version: usize, entry: usize },
    /// Checked facts: a new block on a way out of a counted loop's copy, which tests that the
    /// copy ran exactly the instructions its dispatcher charged, then continues to
    /// `Tx::leaving[index]`.
    LeaveCounted { index: usize },
}

/// The translator's state for one unit.
struct Tx<'a, 'f> {
    b: &'a mut FunctionBuilder<'f>,
    prep: &'a Prepared<'a>,
    plan: &'a Plan,
    insns: &'a [Insn],
    unit: usize,
    whole: bool,
    regs: [Variable; 11],
    remaining: Variable,
    depth: Variable,
    flags: Flags,
    ctx: Value,
    helper_sig: ir::SigRef,
    /// The check function of cold paths, and its signature.
    check: Check,
    check_sig: ir::SigRef,
    /// Registers live at each of the unit's blocks (see `live.rs`).
    live: &'a [Regs],
    /// The host address `r10` stands for (in-process, when no instruction writes `r10`),
    /// kept up to date wherever `r10` changes: frame slots are then one load or store.
    fp_host: Option<Variable>,
    /// Leaves the program (its exit), shared by every `exit` at depth 0.
    exit: Option<ir::Block>,
    /// Returns 0 after a trap (the trap is in the context).
    trapped: Option<ir::Block>,
    /// Pops a frame and continues at its return site.
    ret: Option<ir::Block>,
    /// The first block of the unit.
    base: usize,
    /// Fast and checked copies of each of the unit's plan blocks, created on first use.
    fast: Vec<Option<ir::Block>>,
    slow: Vec<Option<ir::Block>>,
    /// Branches still to come into each fast copy before it can be sealed (`u32::MAX`: at
    /// the end, with the blocks the `ret` jump table or checked copies also reach).
    pending: Vec<u32>,
    /// Checked copies still to emit.
    work_slow: Vec<usize>,
    /// Unchecked copies of versioned loops' blocks, by (version, plan block), and those still
    /// to emit.
    version_blocks: HashMap<(usize, usize), ir::Block>,
    work_version: Vec<(usize, usize)>,
    /// The version whose copy is being emitted.
    in_version: Option<usize>,
    /// Checked facts: the instructions run so far in a counted loop's copy since its
    /// dispatcher, and where the ways out of such copies continue (see
    /// [`After::LeaveCounted`]).
    loop_count: Variable,
    leaving: Vec<Dest>,
    /// Region hints while emitting a block.
    hints: hints::State,
    /// Accesses already checked in the current block: (address, width) to (host address,
    /// checked for writing).
    checked: HashMap<(Value, u32), (Value, bool)>,
    /// Per hinted region: bounds by (region, width, checked for writing), host address.
    bounds: HashMap<(u8, u32, bool), Value>,
    hosts: HashMap<u8, Value>,
    /// Per region of an access proven in bounds: its host address minus its first VM address
    /// (so the host address of a VM address `a` in it is `bias + a`).
    biases: HashMap<u8, Value>,
    /// Per (region, width) of an access proven through a branch, with the clamp on: the
    /// clamp's bound (see [`Tx::clamp`]).
    clamp_bounds: HashMap<(u8, u32), Value>,
    /// The region of `r1` at entry (see [`Tx::input_region`]), once computed.
    input: Option<(Value, Value)>,
    /// Whether the access being emitted is repeated later in the block (see
    /// [`reused_accesses`]).
    keep_address: bool,
    /// Cold blocks, moved to the end of the layout when the unit is done.
    cold: Vec<ir::Block>,
    /// The instruction being emitted (index into the program's instructions).
    current: usize,
    /// The plan block being emitted, whether its cost is already subtracted from
    /// `remaining`, and the registers live before each of its instructions.
    block: usize,
    charged: bool,
    live_here: Vec<Regs>,
    /// The run as it stood at the start of the current stretch of the plan block being
    /// emitted: its entry, or just after its latest instruction with an effect outside the
    /// registers (see [`Tx::suspend_at_resume_if`]).
    resume: Option<ResumePoint>,
    /// Per value `uextend.i64 x` of a 32-bit `x` the translation made: `x`. A 32-bit
    /// operation on a register holding one reads `x` instead of a new `ireduce`, and a
    /// `mov32` of it is the value itself: fewer values, and no zero-extending move that
    /// Cranelift emits for `uextend(ireduce(..))`. (SSA values never change, and `x`
    /// dominates every use of the value, so the map holds everywhere in the function.)
    low32: SecondaryMap<Value, PackedOption<Value>>,
}

/// Where a stretch of a plan block without effects outside the registers starts (its
/// instruction `j` of the block, at `pc`), the registers live there (`live`) and those the
/// stretch has written so far (`written`), and the shared cold block that stores the run as it
/// stood there, once made.
struct ResumePoint {
    j: usize,
    pc: usize,
    live: Regs,
    written: Regs,
    block: Option<ir::Block>,
}

impl<'a, 'f> Tx<'a, 'f> {
    fn new(
        b: &'a mut FunctionBuilder<'f>,
        prep: &'a Prepared<'a>,
        unit: usize,
        check: Check,
        call_conv: CallConv,
    ) -> Tx<'a, 'f> {
        let plan = &prep.plan;
        let region = |b: &mut FunctionBuilder<'f>, id: u32, what: &'static str| {
            Some(b.func.dfg.alias_regions.insert(AliasRegionData {
                user_id: id,
                description: what.into(),
            }))
        };
        let vm_region = region(b, 1, "vm memory");
        let table_region = region(b, 2, "region table");
        let ctx_region = region(b, 3, "context");
        let frames_region = region(b, 4, "frames");
        let flags = Flags {
            vm: MemFlagsData::new()
                .with_notrap()
                .with_endianness(Endianness::Little)
                .with_alias_region(vm_region),
            table: MemFlagsData::trusted()
                .with_readonly()
                .with_can_move()
                .with_alias_region(table_region),
            ctx: MemFlagsData::trusted().with_alias_region(ctx_region),
            fixed: MemFlagsData::trusted()
                .with_readonly()
                .with_can_move()
                .with_alias_region(ctx_region),
            frames: MemFlagsData::trusted().with_alias_region(frames_region),
        };
        let helper_sig = b.import_signature(helper_signature(call_conv));
        let check_sig = b.import_signature(check_signature());

        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let ctx = b.block_params(entry)[0];
        let load =
            |b: &mut FunctionBuilder<'f>, offset: i32| b.ins().load(I64, flags.fixed, ctx, offset);

        let whole = prep.is_whole();
        let regs = Reg::ALL.map(|_| b.declare_var(I64));
        let remaining = b.declare_var(I64);
        let depth = b.declare_var(I64);
        let zero = b.ins().iconst(I64, 0);
        let d = if whole || !plan.has_calls {
            zero
        } else {
            b.ins().load(I64, flags.ctx, ctx, off::DEPTH)
        };
        b.def_var(depth, d);
        // A unit of several starts at one of its entries, with the registers live there.
        let live_in = if whole {
            match plan.entry {
                Target::Block(e) => prep.live[e],
                Target::Trap { .. } => 0,
            }
        } else {
            plan.units[unit]
                .entries
                .iter()
                .fold(0, |set, &e| set | prep.live[e])
        };
        for (i, &r) in regs.iter().enumerate() {
            let v = if !whole {
                if i == 10 && prep.frame_exact {
                    let stack_size = load(b, off::STACK_SIZE);
                    frame_pointer(b, stack_size, d)
                } else if live_in & (1 << i) != 0 {
                    b.ins()
                        .load(I64, flags.ctx, ctx, off::STATE + 8 * (i as i32))
                } else {
                    zero
                }
            } else {
                // (`r1` and `r2` only when the code may read them before writing them: the
                // loads stayed in the code otherwise, unused.)
                match i {
                    1 if live_in & (1 << 1) != 0 => load(b, off::ARGS),
                    2 if live_in & (1 << 2) != 0 => load(b, off::ARGS + 8),
                    10 => {
                        let stack_size = load(b, off::STACK_SIZE);
                        frame_top(b, stack_size)
                    }
                    _ => zero,
                }
            };
            b.def_var(r, v);
        }
        let budget = b.ins().load(I64, flags.ctx, ctx, off::REMAINING);
        b.def_var(remaining, budget);
        let loop_count = b.declare_var(I64);
        if prep.checked_facts {
            b.def_var(loop_count, zero);
        }

        let blocks = plan.units[unit].blocks.clone();
        let base = blocks.start;
        let n = blocks.len();
        // Predecessors of each fast copy: branches from the unit's own blocks, the unit's
        // entry. Return sites (reached from `ret`, emitted last) and, with checked copies,
        // checkpoints (which checked copies jump back to) are sealed at the end.
        let mut pending = vec![0u32; n];
        let local = |t: usize| (plan.unit_of[t] as usize == unit).then(|| t - base);
        for p in blocks.clone() {
            if !plan.blocks[p].reachable {
                continue;
            }
            let mut succs: Vec<usize> = plan.intra_successors(p).into_iter().flatten().collect();
            if let Term::Call {
                target: Target::Block(t),
                ..
            } = plan.blocks[p].term
            {
                succs.push(t);
            }
            for s in succs.into_iter().filter_map(local) {
                pending[s] = pending[s].saturating_add(1);
            }
        }
        for b in blocks.clone() {
            if plan.blocks[b].return_site {
                pending[b - base] = u32::MAX;
            }
        }
        if whole {
            if let Target::Block(e) = plan.entry {
                pending[e] = pending[e].saturating_add(1);
            }
        } else {
            for (k, &e) in plan.units[unit].entries.iter().enumerate() {
                // Each jump-table slot is a predecessor; so is the default (the first entry).
                let slots = if k == 0 { 2 } else { 1 };
                pending[e - base] = pending[e - base].saturating_add(slots);
            }
        }
        if prep.shortfall == Shortfall::CheckedCopy {
            for b in blocks.clone() {
                if plan.blocks[b].checkpoint {
                    pending[b - base] = u32::MAX;
                }
            }
        }
        // A versioned loop's entry is also reached from its dispatchers, and the blocks its
        // exits lead to from its unchecked copy: sealed at the end.
        for v in &prep.versions {
            for &b in &v.blocks {
                for s in plan.intra_successors(b).into_iter().flatten() {
                    if let Some(i) = local(s) {
                        pending[i] = u32::MAX;
                    }
                }
            }
            if let Some(i) = local(v.entry) {
                pending[i] = u32::MAX;
            }
        }

        Tx {
            b,
            prep,
            plan,
            insns: prep.insns,
            unit,
            whole,
            regs,
            remaining,
            depth,
            flags,
            ctx,
            helper_sig,
            check,
            check_sig,
            live: &prep.live,
            fp_host: None,
            exit: None,
            trapped: None,
            ret: None,
            base,
            fast: vec![None; n],
            slow: vec![None; n],
            pending,
            work_slow: Vec::new(),
            version_blocks: HashMap::new(),
            work_version: Vec::new(),
            in_version: None,
            loop_count,
            leaving: Vec::new(),
            hints: [Hint::Nothing; 11],
            checked: HashMap::new(),
            bounds: HashMap::new(),
            hosts: HashMap::new(),
            biases: HashMap::new(),
            clamp_bounds: HashMap::new(),
            input: None,
            keep_address: false,
            cold: Vec::new(),
            current: 0,
            block: 0,
            charged: false,
            live_here: Vec::new(),
            resume: None,
            low32: SecondaryMap::new(),
        }
    }

    /// Emits the unit: its start, every reachable block in pc order, then the checked copies
    /// and the shared tails.
    fn run(&mut self) {
        // The current block is the function's entry block.
        self.precompute_regions();
        if self.whole {
            self.goto(self.plan.entry, false, None);
        } else {
            self.dispatch();
        }
        for b in self.plan.units[self.unit].blocks.clone() {
            if self.plan.blocks[b].reachable {
                self.emit_block(b, false);
            }
        }
        while let Some((v, b)) = self.work_version.pop() {
            self.in_version = Some(v);
            self.emit_block(b, false);
            self.in_version = None;
        }
        while let Some(b) = self.work_slow.pop() {
            self.emit_block(b, true);
        }
        self.emit_tails();
        // Cold code after all hot code in the layout: Cranelift's loop-invariant code motion
        // stops hoisting out of a loop once its walk of the dominator tree leaves the loop.
        let layout = &mut self.b.func.layout;
        let mut insts = Vec::new();
        for &block in &self.cold {
            if !layout.is_block_inserted(block) {
                continue;
            }
            insts.clear();
            insts.extend(layout.block_insts(block));
            for &inst in &insts {
                layout.remove_inst(inst);
            }
            layout.remove_block(block);
            layout.append_block(block);
            for &inst in &insts {
                layout.append_inst(inst, block);
            }
        }
    }

    /// A unit of several: continue at the entry `ctx.next` names.
    fn dispatch(&mut self) {
        let entries = &self.plan.units[self.unit].entries;
        let Some(&first) = entries.first() else {
            // No way in: never called.
            let zero = self.iconst(I64, 0);
            self.b.ins().return_(&[zero]);
            return;
        };
        let next = self.b.ins().load(I64, self.flags.ctx, self.ctx, off::NEXT);
        let index = self.b.ins().ireduce(I32, next);
        let first = self.block_for(first, false);
        let blocks: Vec<ir::Block> = entries
            .clone()
            .into_iter()
            .map(|e| self.block_for(e, false))
            .collect();
        let calls: Vec<_> = blocks
            .iter()
            .map(|&b| self.b.func.dfg.block_call(b, &[]))
            .collect();
        let default = self.b.func.dfg.block_call(first, &[]);
        let table = self
            .b
            .create_jump_table(JumpTableData::new(default, &calls));
        self.b.ins().br_table(index, table);
        let entries = self.plan.units[self.unit].entries.clone();
        self.arrived(entries[0]);
        for e in entries {
            self.arrived(e);
        }
    }

    /// A new cold block.
    fn cold_block(&mut self) -> ir::Block {
        let block = self.b.create_block();
        self.b.set_cold_block(block);
        self.cold.push(block);
        block
    }

    /// Switches to `block`, whose predecessors are all emitted.
    fn enter(&mut self, block: ir::Block) {
        self.b.switch_to_block(block);
        self.b.seal_block(block);
    }

    /// A field of the context that does not change during a run, loaded where it is used
    /// (in a register for the whole function, it would cost one everywhere).
    fn fixed(&mut self, offset: i32) -> Value {
        self.b.ins().load(I64, self.flags.fixed, self.ctx, offset)
    }

    fn reg(&mut self, r: Reg) -> Value {
        self.b.use_var(self.regs[usize::from(r.index())])
    }

    fn set(&mut self, r: Reg, v: Value) {
        self.b.def_var(self.regs[usize::from(r.index())], v);
    }

    /// `r10 = v` (at a local call or return), and its host address.
    fn set_r10(&mut self, v: Value) {
        self.set(Reg::R10, v);
        if let Some(var) = self.fp_host {
            let host = frame_host(self.b, self.flags.table, self.ctx, v);
            self.b.def_var(var, host);
        }
    }

    fn iconst(&mut self, ty: ir::Type, v: i64) -> Value {
        let v = match ty {
            I8 => v & 0xff,
            I16 => v & 0xffff,
            I32 => v & 0xffff_ffff,
            _ => v,
        };
        self.b.ins().iconst(ty, v)
    }

    /// The IR block of plan block `b` (its checked copy if `slow`), created on first use.
    fn block_for(&mut self, b: usize, slow: bool) -> ir::Block {
        let i = b - self.base;
        let slot = if slow {
            &mut self.slow[i]
        } else {
            &mut self.fast[i]
        };
        if let Some(block) = *slot {
            return block;
        }
        let block = self.b.create_block();
        *slot = Some(block);
        if slow {
            self.b.set_cold_block(block);
            self.cold.push(block);
            self.work_slow.push(b);
        }
        block
    }

    /// One more branch into the fast copy of `b` exists: seal it after the last.
    fn arrived(&mut self, b: usize) {
        let i = b - self.base;
        let Some(count) = self.pending.get_mut(i) else {
            return;
        };
        if *count == u32::MAX || *count == 0 {
            return;
        }
        *count -= 1;
        if *count == 0
            && let Some(block) = self.fast[i]
        {
            self.b.seal_block(block);
        }
    }

    /// Where an edge from block `from` (its checked copy if `slow`) to `t` goes: checkpoints
    /// always in the fast copy (they test the budget themselves), other units through a
    /// block that leaves this one, traps through a block that traps.
    fn edge(&mut self, from: usize, t: Target, slow: bool) -> Dest {
        if let Target::Block(s) = t
            && !slow
            && !self.plan.crosses(from, s)
        {
            let loop_of = |b: usize| self.prep.in_version[b];
            if let Some(v) = self.in_version
                && loop_of(s) as usize == v
            {
                return Dest {
                    block: self.version_block(v, s),
                    after: After::Nothing,
                };
            }
            // Checked facts: a way out of a counted loop's copy first tests its count.
            if let Some(v) = self.in_version
                && self.prep.versions[v].counted.is_some()
                && self.prep.checked_facts
            {
                self.in_version = None;
                let dest = self.edge(from, t, slow);
                self.in_version = Some(v);
                self.leaving.push(dest);
                return Dest {
                    block: self.b.create_block(),
                    after: After::LeaveCounted {
                        index: self.leaving.len() - 1,
                    },
                };
            }
            let v = self.prep.version_entry[s];
            if v != u32::MAX && loop_of(from) != v {
                return Dest {
                    block: self.b.create_block(),
                    after: After::Dispatch {
                        version: v as usize,
                        entry: s,
                    },
                };
            }
        }
        match t {
            Target::Block(s) if self.plan.crosses(from, s) => Dest {
                block: self.b.create_block(),
                after: After::Leave(s),
            },
            Target::Block(s) => {
                let checked = slow && !self.plan.blocks[s].checkpoint;
                Dest {
                    block: self.block_for(s, checked),
                    after: if checked {
                        After::Nothing
                    } else {
                        After::Arrived(s)
                    },
                }
            }
            Target::Trap { pc, reason } => Dest {
                block: self.cold_block(),
                after: After::Trap { pc, reason },
            },
        }
    }

    /// Completes a branch to `dest` (the current block is filled).
    fn after(&mut self, dest: Dest) {
        match dest.after {
            After::Arrived(s) => self.arrived(s),
            After::Nothing => {}
            After::Leave(s) => {
                self.enter(dest.block);
                let next = self.iconst(I64, self.plan.word(s) as i64);
                self.leave(next, self.live[s]);
            }
            After::Trap { pc, reason } => {
                self.enter(dest.block);
                self.jump_trap(pc, code::INVALID_INSTRUCTION, None, reason.code(), 0);
            }
            After::Dispatch { version, entry } => {
                self.enter(dest.block);
                let copy = self.version_block(version, entry);
                let ordinary = self.block_for(entry, false);
                if let Some(counted) = self.prep.versions[version].counted {
                    // A version's conditions first, if it is one.
                    if !self.prep.versions[version].conditions.is_empty() {
                        let holds = self.version_holds(version);
                        let tested = self.b.create_block();
                        self.b.ins().brif(holds, tested, &[], ordinary, &[]);
                        self.enter(tested);
                    }
                    // The whole loop at once, and what the code after it needs up to its next
                    // checkpoint: with less, the ordinary loop runs (and tests per iteration).
                    let rem = self.b.use_var(self.remaining);
                    let charged = self.b.create_block();
                    // The copy counts up from minus the charge (checked facts): 0 on the way
                    // out.
                    let (rem, start) = match counted.charge {
                        Charge::Known(instructions) => {
                            let need = instructions + counted.after;
                            let short =
                                self.b
                                    .ins()
                                    .icmp_imm_s(IntCC::UnsignedLessThan, rem, need as i64);
                            self.b.ins().brif(short, ordinary, &[], charged, &[]);
                            self.enter(charged);
                            let minus = -(instructions as i64);
                            let rem = self.b.ins().iadd_imm_s(rem, minus);
                            let start = self.prep.checked_facts.then(|| self.iconst(I64, minus));
                            (rem, start)
                        }
                        Charge::AtEntry {
                            counter,
                            per_iteration,
                            until_exit,
                        } => {
                            let (charge, unknown) =
                                self.charge_at_entry(counter, per_iteration, until_exit);
                            let need = self.b.ins().iadd_imm_s(charge, counted.after as i64);
                            let short = self.b.ins().icmp(IntCC::UnsignedLessThan, rem, need);
                            let short = self.b.ins().bor(short, unknown);
                            self.b.ins().brif(short, ordinary, &[], charged, &[]);
                            self.enter(charged);
                            let rem = self.b.ins().isub(rem, charge);
                            let start = self.prep.checked_facts.then(|| self.b.ins().ineg(charge));
                            (rem, start)
                        }
                    };
                    self.b.def_var(self.remaining, rem);
                    if let Some(start) = start {
                        self.b.def_var(self.loop_count, start);
                    }
                    self.b.ins().jump(copy, &[]);
                } else {
                    let holds = self.version_holds(version);
                    self.b.ins().brif(holds, copy, &[], ordinary, &[]);
                }
            }
            After::LeaveCounted { index } => {
                self.enter(dest.block);
                let count = self.b.use_var(self.loop_count);
                let wrong = self.b.ins().icmp_imm_s(IntCC::NotEqual, count, 0);
                let last = self.plan.blocks[self.block].insns.end.saturating_sub(1);
                let pc = self.prep.pcs.get(last).copied().unwrap_or(0);
                self.trap_if(wrong, pc, FACT_FAILED, None, 0);
                let next = self.leaving[index];
                self.b.ins().jump(next.block, &[]);
                self.after(next);
            }
        }
    }

    /// The charge of a loop whose trip count its registers give (`Counter::instructions`,
    /// computed the same way, without branches), and whether its closed form does not apply
    /// (then the charge is meaningless and the ordinary loop runs).
    fn charge_at_entry(
        &mut self,
        counter: Counter,
        per_iteration: u64,
        until_exit: u64,
    ) -> (Value, Value) {
        let x = self.b.use_var(self.regs[usize::from(counter.reg)]);
        let mut x = self.b.ins().iadd_imm_s(x, counter.offset as i64);
        let mut b = match counter.bound {
            Bound::Reg(r) => self.b.use_var(self.regs[usize::from(r)]),
            Bound::Imm(v) => self.iconst(I64, v as i64),
        };
        // To "goes on while x < b, x up by 2^k" (see `Counter::trips`).
        if counter.signed {
            x = self.b.ins().bxor_imm_s(x, i64::MIN);
            b = self.b.ins().bxor_imm_s(b, i64::MIN);
        }
        if counter.down {
            x = self.b.ins().bnot(x);
            b = self.b.ins().bnot(b);
        }
        let mut unknown = self.iconst(I8, 0);
        if counter.inclusive {
            let top = self.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
            unknown = self.b.ins().bor(unknown, top);
            b = self.b.ins().iadd_imm_s(b, 1);
        }
        let done = self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, x, b);
        if counter.until_equal {
            // Beyond the bound, `!=` goes on until the counter wraps around.
            let beyond = self.b.ins().icmp(IntCC::UnsignedGreaterThan, x, b);
            unknown = self.b.ins().bor(unknown, beyond);
        }
        let k = i64::from(counter.step_log2.min(6));
        let mut trips = self.b.ins().isub(b, x);
        if k > 0 {
            // The last counter tested, below b + 2^k, must not wrap.
            let room = -((1i64 << k) - 1);
            let wraps = self
                .b
                .ins()
                .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, b, room);
            let wraps = self.b.ins().band_not(wraps, done);
            unknown = self.b.ins().bor(unknown, wraps);
            trips = self.b.ins().iadd_imm_s(trips, (1 << k) - 1);
            trips = self.b.ins().ushr_imm_s(trips, k);
        }
        let zero = self.iconst(I64, 0);
        let trips = self.b.ins().select(done, zero, trips);
        // trips <= MAX_AT_ENTRY_TRIPS (2^32 - 1).
        let many = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedGreaterThan, trips, i64::from(u32::MAX));
        unknown = self.b.ins().bor(unknown, many);
        let charge = self.b.ins().imul_imm_s(trips, per_iteration as i64);
        let charge = self.b.ins().iadd_imm_s(charge, until_exit as i64);
        (charge, unknown)
    }

    /// The unchecked copy of plan block `b` in version `v`'s loop, created on first use.
    fn version_block(&mut self, v: usize, b: usize) -> ir::Block {
        if let Some(&block) = self.version_blocks.get(&(v, b)) {
            return block;
        }
        let block = self.b.create_block();
        self.version_blocks.insert((v, b), block);
        self.work_version.push((v, b));
        block
    }

    /// Whether every condition of version `v` holds now (at an edge into its loop): for each,
    /// `r[reg] <= (end(region) + offset) >> shift` as integers, where `end(region)` is
    /// `(region << 32) + len` (`ebpf_cfg::facts::Condition::holds`). In 64 bits: `len` is
    /// below 2^38 (regions are smaller than 256 GiB) and `|offset|` below 2^40 (checked when
    /// the version was chosen), so the sum cannot overflow.
    fn version_holds(&mut self, v: usize) -> Value {
        let conditions = self.prep.versions[v].conditions.clone();
        let mut all: Option<Value> = None;
        for c in conditions {
            let entry = off::REGIONS + i32::from(c.region) * (off::REGION_SIZE as i32);
            let len = self
                .b
                .ins()
                .load(I64, self.flags.table, self.ctx, entry + off::REGION_LEN);
            let start = (i64::from(c.region) << 32).wrapping_add(c.offset);
            let bound = self.b.ins().iadd_imm_s(len, start);
            let nonnegative = self
                .b
                .ins()
                .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, bound, 0);
            let limit = self.b.ins().ushr_imm_s(bound, i64::from(c.shift));
            let value = self.b.use_var(self.regs[usize::from(c.reg)]);
            let below = self
                .b
                .ins()
                .icmp(IntCC::UnsignedLessThanOrEqual, value, limit);
            let holds = self.b.ins().band(nonnegative, below);
            all = Some(match all {
                Some(a) => self.b.ins().band(a, holds),
                None => holds,
            });
        }
        match all {
            Some(all) => all,
            None => self.iconst(I8, 1),
        }
    }

    /// What is proven about the access at instruction `i` where it is being emitted: in a
    /// version's copy, its accesses too.
    fn access(&self, i: usize) -> Access {
        if let Some(v) = self.in_version {
            let accesses = &self.prep.versions[v].accesses;
            if let Ok(k) = accesses.binary_search_by_key(&i, |&(a, _)| a) {
                return Access::InBounds {
                    region: accesses[k].1,
                    // Proven by the version's entry test, a branch.
                    speculation_safe: false,
                };
            }
        }
        self.prep.access(i)
    }

    /// Ends the current block with a jump to `t`; `from` is the plan block it belongs to
    /// (`None`: the function's entry).
    fn goto(&mut self, t: Target, slow: bool, from: Option<usize>) {
        let dest = match (t, from) {
            (Target::Trap { pc, reason }, _) => {
                self.jump_trap(pc, code::INVALID_INSTRUCTION, None, reason.code(), 0);
                return;
            }
            (Target::Block(s), None) => Dest {
                block: self.block_for(s, false),
                after: After::Arrived(s),
            },
            (t, Some(from)) => self.edge(from, t, slow),
        };
        self.b.ins().jump(dest.block, &[]);
        self.after(dest);
    }

    /// Stores the registers, depth and budget in the context (for another unit or the
    /// interpreter).
    /// Only the registers of `live`: the others are never read again before being written.
    fn save_state(&mut self, live: Regs) {
        for r in (0..11).filter(|r| live & (1 << r) != 0) {
            let v = self.b.use_var(self.regs[r]);
            self.b
                .ins()
                .store(self.flags.ctx, v, self.ctx, off::STATE + 8 * r as i32);
        }
        if self.plan.has_calls {
            let depth = self.b.use_var(self.depth);
            self.b
                .ins()
                .store(self.flags.ctx, depth, self.ctx, off::DEPTH);
        }
        let rem = self.b.use_var(self.remaining);
        self.b
            .ins()
            .store(self.flags.ctx, rem, self.ctx, off::REMAINING);
    }

    /// Ends the current block by leaving the unit for the entry word `next`, where the
    /// registers of `live` are live.
    fn leave(&mut self, next: Value, live: Regs) {
        self.save_state(live);
        self.b
            .ins()
            .store(self.flags.ctx, next, self.ctx, off::NEXT);
        let status = self.iconst(I64, CONTINUE);
        self.b.ins().return_(&[status]);
    }

    /// Ends the current block by handing the run, as it stands before the instruction being
    /// emitted, to the host (in-process): its live registers, the budget before it, its pc.
    /// The interpreter then runs that instruction and the rest of the run exactly. This is how
    /// the in-process JIT handles what has no cheap exact answer in generated code: a budget
    /// about to run out, and an access outside its region guess (outside memory, or in
    /// another region).
    fn suspend(&mut self) {
        let block = &self.plan.blocks[self.block];
        let j = self.current - block.insns.start;
        let live = self
            .live_here
            .get(j)
            .copied()
            .unwrap_or(self.live[self.block]);
        self.suspend_with(live);
    }

    /// [`Tx::suspend`] with every register saved, live or not: for a local call, whose
    /// frame the interpreter pushes with `r6`–`r10` whatever the liveness says of them.
    fn suspend_whole(&mut self) {
        self.suspend_with(crate::live::ALL);
    }

    /// [`Tx::suspend`] saving the registers of `live`.
    fn suspend_with(&mut self, live: crate::live::Regs) {
        let block = &self.plan.blocks[self.block];
        let j = self.current - block.insns.start;
        if self.charged {
            // The whole block was charged on entry; the instructions from this one on have
            // not run.
            let rem = self.b.use_var(self.remaining);
            let rem = self
                .b
                .ins()
                .iadd_imm_s(rem, (block.cost() - j as u64) as i64);
            self.b.def_var(self.remaining, rem);
        }
        let pc = self.prep.pcs.get(self.current).copied();
        let pc = pc.unwrap_or(self.plan.start_pcs[self.block]);
        self.save_state(live);
        let pc = self.iconst(I64, pc as i64);
        let kind = self.iconst(I64, SUSPENDED as i64);
        let f = self.flags.ctx;
        self.b.ins().store(f, pc, self.ctx, off::TRAP_PC);
        self.b.ins().store(f, kind, self.ctx, off::TRAP_KIND);
        let zero = self.iconst(I64, 0);
        self.b.ins().return_(&[zero]);
    }

    /// `if cond { suspend at the resume point }`, through one cold block per resume point
    /// that every such test shares (made at the first). Handing the run over at the start of
    /// its stretch (the plan block's entry, or just after an effect) instead of at the
    /// instruction is exact: nothing run since has an effect outside the registers, so the
    /// interpreter runs those instructions again from the same registers and budget and gets
    /// the same values. One shared block instead of one per access gives the register
    /// allocator fewer blocks and no copy of the stores per access (issue 14).
    ///
    /// The shared block stores the registers' values where it is made, so only while no
    /// register live at the resume point has been written since: otherwise the access starts
    /// a new stretch. (Keeping the old values alive for the shared block instead lengthens
    /// live ranges in hot code.)
    fn suspend_at_resume_if(&mut self, cond: Value) {
        let Some(point) = &self.resume else {
            return self.cold_if(cond, Tx::suspend);
        };
        if point.written & point.live != 0 {
            let j = self.current - self.plan.blocks[self.block].insns.start;
            self.restart_resume(Some(j));
        }
        let Some(point) = &self.resume else {
            return self.cold_if(cond, Tx::suspend);
        };
        let cont = self.b.create_block();
        if let Some(shared) = point.block {
            self.b.ins().brif(cond, shared, &[], cont, &[]);
            self.enter(cont);
            return;
        }
        let (j, pc, live) = (point.j, point.pc, point.live);
        // The values here, where the test is (unchanged since the resume point: nothing live
        // was written), read before the shared block is entered: read in it, the frontend
        // would join them over its later predecessors.
        let regs: Vec<(usize, Value)> = (0..11)
            .filter(|r| live & (1 << r) != 0)
            .map(|r| (r, self.b.use_var(self.regs[r])))
            .collect();
        let depth = self.plan.has_calls.then(|| self.b.use_var(self.depth));
        let rem = self.b.use_var(self.remaining);
        // The block is charged whole on entry; the stretch's instructions have not run.
        let unrun = if self.charged {
            let cost = self.plan.blocks[self.block].cost();
            cost.saturating_sub(j as u64) as i64
        } else {
            0
        };
        let shared = self.cold_block();
        self.b.ins().brif(cond, shared, &[], cont, &[]);
        // Not sealed until the stretch ends: later tests of it jump here too.
        self.b.switch_to_block(shared);
        if let Some(point) = self.resume.as_mut() {
            point.block = Some(shared);
        }
        let f = self.flags.ctx;
        for (r, v) in regs {
            self.b
                .ins()
                .store(f, v, self.ctx, off::STATE + 8 * r as i32);
        }
        if let Some(depth) = depth {
            self.b.ins().store(f, depth, self.ctx, off::DEPTH);
        }
        let rem = if unrun == 0 {
            rem
        } else {
            self.b.ins().iadd_imm_s(rem, unrun)
        };
        self.b.ins().store(f, rem, self.ctx, off::REMAINING);
        let pc = self.iconst(I64, pc as i64);
        let kind = self.iconst(I64, SUSPENDED as i64);
        self.b.ins().store(f, pc, self.ctx, off::TRAP_PC);
        self.b.ins().store(f, kind, self.ctx, off::TRAP_KIND);
        let zero = self.iconst(I64, 0);
        self.b.ins().return_(&[zero]);
        self.enter(cont);
    }

    /// Starts a new stretch of the plan block being emitted before its instruction `j`
    /// (`None`: no more suspensions share a block), sealing the shared block of the stretch
    /// that ends, whose predecessors are now all known.
    fn restart_resume(&mut self, j: Option<usize>) {
        if let Some(ResumePoint {
            block: Some(shared),
            ..
        }) = self.resume.take()
        {
            self.b.seal_block(shared);
        }
        let Some(j) = j else {
            return;
        };
        if self.prep.shortfall != Shortfall::Suspend {
            return;
        }
        let i = self.plan.blocks[self.block].insns.start + j;
        let live = self
            .live_here
            .get(j)
            .copied()
            .unwrap_or(self.live[self.block]);
        let pc = self.prep.pcs.get(i).copied();
        self.resume = Some(ResumePoint {
            j,
            pc: pc.unwrap_or(self.plan.start_pcs[self.block]),
            live,
            written: 0,
            block: None,
        });
    }

    /// Ends the current block with a jump to the trap exit; `dynamic_a` overrides `a`.
    fn jump_trap(&mut self, pc: usize, kind: u64, dynamic_a: Option<Value>, a: u64, b: u64) {
        let pc = self.iconst(I64, pc as i64);
        let kind = self.iconst(I64, kind as i64);
        let a = match dynamic_a {
            Some(v) => v,
            None => self.iconst(I64, a as i64),
        };
        let b = self.iconst(I64, b as i64);
        self.trap_here(pc, kind, Some(a), Some(b));
    }

    /// Stores in the context the budget left just after the instruction being emitted (a
    /// helper call that failed), as the interpreter counts it: the block was charged whole on
    /// entry, and the instructions after this one have not run. The host reports the count
    /// (`MemoryMap::instructions_at_helper_trap`), which a chain of tail calls adds up.
    fn store_budget_after_current(&mut self) {
        let block = &self.plan.blocks[self.block];
        let j = (self.current - block.insns.start) as u64;
        let rem = self.b.use_var(self.remaining);
        let unrun = if self.charged {
            block.cost().saturating_sub(j + 1)
        } else {
            0
        };
        let rem = self.b.ins().iadd_imm_s(rem, unrun as i64);
        self.b
            .ins()
            .store(self.flags.ctx, rem, self.ctx, off::REMAINING);
    }

    /// Ends the current block with a trap exit: stores the trap in the context (`a` and `b`
    /// unless the helper entry point already did) and jumps to the shared `return 0`. (The
    /// stores happen at each site: one shared exit block taking the trap as block
    /// parameters from thousands of predecessors makes register allocation super-linear.)
    fn trap_here(&mut self, pc: Value, kind: Value, a: Option<Value>, b: Option<Value>) {
        let f = self.flags.ctx;
        self.b.ins().store(f, pc, self.ctx, off::TRAP_PC);
        self.b.ins().store(f, kind, self.ctx, off::TRAP_KIND);
        if let Some(a) = a {
            self.b.ins().store(f, a, self.ctx, off::TRAP_A);
        }
        if let Some(b) = b {
            self.b.ins().store(f, b, self.ctx, off::TRAP_B);
        }
        self.jump_trapped();
    }

    /// The shared block that returns 0 after a trap.
    fn trapped_block(&mut self) -> ir::Block {
        match self.trapped {
            Some(t) => t,
            None => {
                let t = self.cold_block();
                self.trapped = Some(t);
                t
            }
        }
    }

    /// Ends the current block with a jump to the shared `return 0` (the trap is stored).
    fn jump_trapped(&mut self) {
        let trapped = self.trapped_block();
        self.b.ins().jump(trapped, &[]);
    }

    /// `if cond { trap }`: the trap's constants live in a cold block of their own, so the
    /// fast path only pays for the compare and branch.
    fn trap_if(&mut self, cond: Value, pc: usize, kind: u64, a: Option<Value>, b: u64) {
        self.cold_if(cond, |tx| tx.jump_trap(pc, kind, a, 0, b));
    }

    /// `if cond { cold }`: `cold` fills a new cold block (ending it); translation continues
    /// in a fresh block on the fall-through side.
    fn cold_if(&mut self, cond: Value, cold: impl FnOnce(&mut Self)) {
        let block = self.cold_block();
        let cont = self.b.create_block();
        self.b.ins().brif(cond, block, &[], cont, &[]);
        self.enter(block);
        cold(self);
        self.enter(cont);
    }

    /// In a checked copy: the budget trap if `remaining` (at block entry, `rem0`) does not
    /// cover the block's instruction `j`. Earlier checks passed, so the budget ran out at
    /// instruction `rem0` of the block, with no effect in between.
    fn budget_check(&mut self, rem0: Value, j: usize, block: usize) {
        let insns = self.plan.blocks[block].insns.clone();
        let start_pc = self.plan.start_pcs[block];
        let cond = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThanOrEqual, rem0, j as i64);
        let mut pc = self.b.ins().iadd_imm_s(rem0, start_pc as i64);
        for (k, i) in insns.enumerate().take(j) {
            if self.insns[i].slots() == 2 {
                let after = self
                    .b
                    .ins()
                    .icmp_imm_s(IntCC::UnsignedGreaterThan, rem0, k as i64);
                let one = self.b.ins().uextend(I64, after);
                pc = self.b.ins().iadd(pc, one);
            }
        }
        self.cold_if(cond, |tx| {
            let kind = tx.iconst(I64, code::BUDGET_EXHAUSTED as i64);
            let zero = tx.iconst(I64, 0);
            tx.trap_here(pc, kind, Some(zero), Some(zero));
        });
    }

    fn emit_block(&mut self, bi: usize, slow: bool) {
        let plan = self.plan;
        let block = &plan.blocks[bi];
        let ir_block = match self.in_version {
            Some(v) => self.version_block(v, bi),
            None => self.block_for(bi, slow),
        };
        self.b.switch_to_block(ir_block);
        let cost = block.cost();
        self.block = bi;
        self.current = block.insns.start;
        self.charged = false;
        if self.prep.shortfall == Shortfall::Suspend {
            let ret_live = self.prep.ret_live;
            self.live_here = live::before_each(plan, self.insns, self.live, ret_live, bi);
        }
        // A counted loop's copy: its dispatcher charged the whole loop.
        let counted = self.in_version.and_then(|v| self.prep.versions[v].counted);
        if counted.is_some() && self.prep.checked_facts {
            let count = self.b.use_var(self.loop_count);
            let count = self.b.ins().iadd_imm_s(count, cost as i64);
            self.b.def_var(self.loop_count, count);
            // Counted up from minus the charge: past 0 is past the loop's total.
            let over = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, count, 0);
            self.trap_if(over, plan.start_pcs[bi], FACT_FAILED, None, 0);
        }
        self.restart_resume((!slow).then_some(0));
        if !slow && block.tested && block.limit > 0 && counted.is_none() {
            let rem = self.b.use_var(self.remaining);
            let short = self.b.ins().icmp_imm_s(
                IntCC::UnsignedLessThan,
                rem,
                i64::try_from(block.limit).unwrap_or(i64::MAX),
            );
            match self.prep.shortfall {
                Shortfall::Suspend => self.suspend_at_resume_if(short),
                Shortfall::CheckedCopy => {
                    let checked = self.block_for(bi, true);
                    let body = self.b.create_block();
                    self.b.ins().brif(short, checked, &[], body, &[]);
                    self.enter(body);
                }
            }
        }
        let rem0 = self.b.use_var(self.remaining);
        if cost > 0 && counted.is_none() {
            // `isub`, not `iadd` of `-cost`: x64's lowering folds an `iadd` of a constant whose
            // other operand is itself an `iadd` of a constant (the previous block's charge)
            // into one `lea` with the outer constant in a register of its own, an extra `mov`
            // per block.
            let cost = self.b.ins().iconst(I64, cost as i64);
            let rem = self.b.ins().isub(rem0, cost);
            self.b.def_var(self.remaining, rem);
        }
        self.charged = true;
        let controls = !matches!(block.term, Term::Fall(_) | Term::Trap { .. });
        let body_end = if controls {
            block.insns.end - 1
        } else {
            block.insns.end
        };
        let mut last_checked = None;
        self.hints = self.prep.entries[bi];
        self.checked.clear();
        let reused = reused_accesses(&self.insns[block.insns.start..body_end]);
        for (j, i) in (block.insns.start..body_end).enumerate() {
            let insn = self.insns[i];
            self.current = i;
            self.keep_address = reused.get(j).copied().unwrap_or(false);
            if slow && has_effect(&insn) {
                self.budget_check(rem0, j, bi);
                last_checked = Some(j);
            }
            self.emit_insn(&insn, self.prep.pcs[i]);
            hints::transfer(&mut self.hints, &insn);
            if leaves_effect(&insn) {
                self.restart_resume((!slow && i + 1 < body_end).then_some(j + 1));
            } else if let Some(point) = self.resume.as_mut() {
                point.written |= live::writes(&insn);
            }
        }
        self.restart_resume(None);
        if slow && cost > 0 && last_checked != Some(cost as usize - 1) {
            self.budget_check(rem0, cost as usize - 1, bi);
        }
        match block.term {
            Term::Fall(t) | Term::Jump(t) => self.goto(t, slow, Some(bi)),
            Term::Branch { taken, fall } => {
                let insn = self.insns[block.insns.end - 1];
                let cond = self.condition(&insn);
                let taken = self.edge(bi, taken, slow);
                let fall = self.edge(bi, fall, slow);
                self.b.ins().brif(cond, taken.block, &[], fall.block, &[]);
                self.after(taken);
                self.after(fall);
            }
            Term::Exit => {
                let exit = self.exit_block();
                if !plan.has_calls {
                    self.b.ins().jump(exit, &[]);
                } else {
                    let ret = self.ret_block();
                    let depth = self.b.use_var(self.depth);
                    self.b.ins().brif(depth, ret, &[], exit, &[]);
                }
            }
            Term::Call { target, site } => {
                self.current = block.insns.end - 1;
                let return_site = plan.site(site);
                self.local_call(self.prep.pcs[block.insns.end - 1], return_site);
                if !plan.crosses(bi, return_site) {
                    // Reached through `ret`'s jump table.
                    self.block_for(return_site, false);
                }
                self.goto(target, slow, Some(bi));
            }
            Term::Trap { pc, reason } => {
                self.jump_trap(pc, code::INVALID_INSTRUCTION, None, reason.code(), 0);
            }
        }
    }

    /// The call-depth check, the frame push and the new `r10` of a local call returning to
    /// block `return_site`.
    fn local_call(&mut self, pc: usize, return_site: usize) {
        let depth = self.b.use_var(self.depth);
        let max_depth = self.fixed(off::MAX_DEPTH);
        let over = self
            .b
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, depth, max_depth);
        if self.prep.shortfall == Shortfall::Suspend {
            // In-process, `max_depth` is the frames the context has, which a session grows
            // on demand (up to the limit): a call that finds them all used is for the
            // interpreter, which pushes the frame or traps with the depth exceeded, exactly.
            self.cold_if(over, Tx::suspend_whole);
        } else {
            self.trap_if(over, pc, code::CALL_DEPTH_EXCEEDED, None, 0);
        }
        let offset = self.b.ins().imul_imm_s(depth, off::FRAME_WORDS * 8);
        let frames = self.fixed(off::FRAMES);
        let frame = self.b.ins().iadd(frames, offset);
        let word = self.iconst(I64, self.plan.word(return_site) as i64);
        self.b.ins().store(self.flags.frames, word, frame, 0);
        // Only what the return site reads comes back: the other words may keep stale values,
        // which nothing reads before writing (the interpreter's pop restores them too).
        let kept = self.live[return_site] | bit(Reg::R10);
        for (k, r) in [Reg::R6, Reg::R7, Reg::R8, Reg::R9, Reg::R10]
            .into_iter()
            .enumerate()
        {
            if kept & bit(r) == 0 {
                continue;
            }
            let v = self.reg(r);
            self.b
                .ins()
                .store(self.flags.frames, v, frame, 8 * (k as i32 + 1));
        }
        let depth = self.b.ins().iadd_imm_s(depth, 1);
        self.b.def_var(self.depth, depth);
        let stack_size = self.fixed(off::STACK_SIZE);
        let fp = frame_pointer(self.b, stack_size, depth);
        self.set_r10(fp);
    }

    /// The shared block that leaves the program (`exit` at depth 0).
    fn exit_block(&mut self) -> ir::Block {
        *self.exit.get_or_insert_with(|| self.b.create_block())
    }

    /// The shared block that pops a frame (`exit` deeper).
    fn ret_block(&mut self) -> ir::Block {
        *self.ret.get_or_insert_with(|| self.b.create_block())
    }

    /// The shared blocks: program exit, trap exit, frame pop.
    fn emit_tails(&mut self) {
        if let Some(trapped) = self.trapped {
            self.enter(trapped);
            let zero = self.iconst(I64, 0);
            self.b.ins().return_(&[zero]);
        }
        if let Some(exit) = self.exit {
            // Store the budget left, return r0 (a unit: leave it in the context).
            self.enter(exit);
            let f = self.flags.ctx;
            let rem = self.b.use_var(self.remaining);
            self.b.ins().store(f, rem, self.ctx, off::REMAINING);
            let zero = self.iconst(I64, 0);
            self.b.ins().store(f, zero, self.ctx, off::TRAP_KIND);
            let r0 = self.reg(Reg::R0);
            if self.whole {
                self.b.ins().return_(&[r0]);
            } else {
                self.b.ins().store(f, r0, self.ctx, off::STATE);
                self.b.ins().return_(&[zero]);
            }
        }
        if let Some(ret) = self.ret {
            self.emit_ret(ret);
        }
    }

    /// `ret`: pop a frame, continue at its return site, here or in another unit.
    fn emit_ret(&mut self, ret: ir::Block) {
        self.enter(ret);
        let depth = self.b.use_var(self.depth);
        let depth = self.b.ins().iadd_imm_s(depth, -1);
        self.b.def_var(self.depth, depth);
        let offset = self.b.ins().imul_imm_s(depth, off::FRAME_WORDS * 8);
        let frames = self.fixed(off::FRAMES);
        let frame = self.b.ins().iadd(frames, offset);
        let word = self.b.ins().load(I64, self.flags.frames, frame, 0);
        // What any return site reads; `r10` always, for the frame's host address.
        let ret_live = self.prep.ret_live;
        for (k, r) in [Reg::R6, Reg::R7, Reg::R8, Reg::R9, Reg::R10]
            .into_iter()
            .enumerate()
        {
            if (ret_live | bit(Reg::R10)) & bit(r) == 0 {
                continue;
            }
            let v = self
                .b
                .ins()
                .load(I64, self.flags.frames, frame, 8 * (k as i32 + 1));
            if r == Reg::R10 {
                self.set_r10(v);
            } else {
                self.set(r, v);
            }
        }
        let plan = self.plan;
        if self.prep.shortfall == Shortfall::Suspend && plan.return_limit > 0 {
            // The budget test of the return sites (see `Plan::return_limit`): too little left
            // and the run goes to the interpreter at the return site, which the host finds
            // from the frame's word.
            let rem = self.b.use_var(self.remaining);
            let short = self.b.ins().icmp_imm_s(
                IntCC::UnsignedLessThan,
                rem,
                i64::try_from(plan.return_limit).unwrap_or(i64::MAX),
            );
            self.cold_if(short, |tx| {
                tx.save_state(ret_live);
                let f = tx.flags.ctx;
                tx.b.ins().store(f, word, tx.ctx, off::NEXT);
                let at_return = tx.iconst(I64, -1);
                let kind = tx.iconst(I64, SUSPENDED as i64);
                tx.b.ins().store(f, at_return, tx.ctx, off::TRAP_PC);
                tx.b.ins().store(f, kind, tx.ctx, off::TRAP_KIND);
                let zero = tx.iconst(I64, 0);
                tx.b.ins().return_(&[zero]);
            });
        }
        // This unit's return sites, by entry index; other slots never occur.
        let entries = &plan.units[self.unit].entries;
        let sites: Vec<Option<usize>> = entries
            .iter()
            .map(|&e| plan.blocks[e].return_site.then_some(e))
            .collect();
        let Some(default) = sites.iter().flatten().next().copied() else {
            // Every return site is in another unit (or no call returns).
            self.leave(word, ret_live);
            return;
        };
        if !self.whole {
            let unit = self.b.ins().ushr_imm_s(word, 32);
            let here = self
                .b
                .ins()
                .icmp_imm_s(IntCC::Equal, unit, self.unit as i64);
            let local = self.b.create_block();
            let away = self.b.create_block();
            self.b.ins().brif(here, local, &[], away, &[]);
            self.enter(away);
            self.leave(word, ret_live);
            self.enter(local);
        }
        let default = self.block_for(default, false);
        let blocks: Vec<ir::Block> = sites
            .into_iter()
            .map(|s| s.map_or(default, |s| self.block_for(s, false)))
            .collect();
        // Every entry needs its own `BlockCall`: the SSA builder appends arguments to each.
        let calls: Vec<_> = blocks
            .into_iter()
            .map(|b| self.b.func.dfg.block_call(b, &[]))
            .collect();
        let default = self.b.func.dfg.block_call(default, &[]);
        let index = self.b.ins().ireduce(I32, word);
        let table = self
            .b
            .create_jump_table(JumpTableData::new(default, &calls));
        self.b.ins().br_table(index, table);
    }

    /// Emits one instruction that does not end a block.
    fn emit_insn(&mut self, insn: &Insn, pc: usize) {
        match *insn {
            Insn::Alu {
                width,
                op,
                dst,
                src,
            } => self.alu(width, op, dst, src),
            Insn::Neg { width, dst } => {
                let d = self.reg(dst);
                let v = match width {
                    Width::W64 => self.b.ins().ineg(d),
                    Width::W32 => {
                        let d = self.narrow(d);
                        let n = self.b.ins().ineg(d);
                        self.widen(n)
                    }
                };
                self.set(dst, v);
            }
            Insn::MovSx {
                width,
                from,
                dst,
                src,
            } => {
                let s = self.reg(src);
                let ty = match from {
                    SignExtend::From8 => I8,
                    SignExtend::From16 => I16,
                    SignExtend::From32 => I32,
                };
                let narrow = self.b.ins().ireduce(ty, s);
                let v = if width == Width::W64 {
                    self.b.ins().sextend(I64, narrow)
                } else if ty == I32 {
                    self.b.ins().uextend(I64, narrow)
                } else {
                    let w = self.b.ins().sextend(I32, narrow);
                    self.b.ins().uextend(I64, w)
                };
                self.set(dst, v);
            }
            Insn::Endian { order, width, dst } => {
                let d = self.reg(dst);
                let ty = match width {
                    SwapWidth::W16 => I16,
                    SwapWidth::W32 => I32,
                    SwapWidth::W64 => I64,
                };
                let v = match (order, ty) {
                    (ByteOrder::Le, I64) => d,
                    (ByteOrder::Le, _) => {
                        let n = self.b.ins().ireduce(ty, d);
                        self.b.ins().uextend(I64, n)
                    }
                    (_, I64) => self.b.ins().bswap(d),
                    _ => {
                        let n = self.b.ins().ireduce(ty, d);
                        let s = self.b.ins().bswap(n);
                        self.b.ins().uextend(I64, s)
                    }
                };
                self.set(dst, v);
            }
            Insn::LoadImm64 { dst, imm, .. } => {
                let v = self.iconst(I64, imm as i64);
                self.set(dst, v);
            }
            Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                let op = MemOp::Load { size, signed };
                if let Some(v) = self.memory(src, off, size.bytes(), false, pc, op) {
                    self.set(dst, v);
                }
            }
            Insn::Store {
                size,
                dst,
                off,
                src,
            } => {
                let value = match src {
                    Operand::Reg(r) => self.reg(r),
                    Operand::Imm(imm) => self.iconst(I64, i64::from(imm)),
                };
                self.memory(
                    dst,
                    off,
                    size.bytes(),
                    true,
                    pc,
                    MemOp::Store { size, value },
                );
            }
            Insn::Atomic {
                width,
                op,
                dst,
                src,
                off,
            } => self.atomic(width, op, dst, src, off, pc),
            Insn::LoadPacket { size, addr, imm } => self.load_packet(size, addr, imm, pc),
            Insn::Call {
                kind: CallKind::Helper,
                imm,
            } => {
                let id = self.iconst(I64, i64::from(imm as u32));
                self.helper_call(id, pc);
            }
            Insn::CallX { reg } => {
                let id = self.reg(reg);
                self.helper_call(id, pc);
            }
            // Control flow and what cannot execute end blocks (see `Plan`); never here.
            Insn::Ja { .. }
            | Insn::Ja32 { .. }
            | Insn::Jump { .. }
            | Insn::Exit
            | Insn::Call { .. } => {}
        }
    }

    fn alu(&mut self, width: Width, op: AluOp, dst: Reg, src: Operand) {
        let v = match width {
            Width::W64 => {
                let d = self.reg(dst);
                let (s, k) = match src {
                    Operand::Reg(r) => (self.reg(r), None),
                    Operand::Imm(imm) => (self.iconst(I64, i64::from(imm)), Some(i64::from(imm))),
                };
                self.binary(op, I64, d, s, k)
            }
            Width::W32 => {
                if let (AluOp::Mov, Operand::Imm(imm)) = (op, src) {
                    // The zero extension is known here: one 64-bit constant, which x64 moves
                    // as an immediate, where `uextend` of an `iconst.i32` is a load from the
                    // constant pool. Its low half stays at hand for a 32-bit use.
                    let v = self.iconst(I64, i64::from(imm as u32));
                    self.low32[v] = self.iconst(I32, i64::from(imm)).into();
                    return self.set(dst, v);
                }
                if let (AluOp::Mov, Operand::Reg(r)) = (op, src) {
                    let s = self.reg(r);
                    if self.low32[s].is_some() {
                        // Already the zero extension of its low half.
                        return self.set(dst, s);
                    }
                }
                let (s, k) = match src {
                    Operand::Reg(r) => {
                        let s = self.reg(r);
                        (self.narrow(s), None)
                    }
                    Operand::Imm(imm) => (self.iconst(I32, i64::from(imm)), Some(i64::from(imm))),
                };
                // (A move does not read its destination.)
                let d = if op == AluOp::Mov {
                    s
                } else {
                    let d = self.reg(dst);
                    self.narrow(d)
                };
                let v = self.binary(op, I32, d, s, k);
                self.widen(v)
            }
        };
        self.set(dst, v);
    }

    /// `d op s` in type `ty`; `k` is `s` when it is a constant (as a signed value of `ty`).
    /// Division and modulo never trap: by zero they give 0 and `d`, `MIN / -1` is `MIN` and
    /// `MIN % -1` is 0.
    /// The low 32 bits of `v` (see [`Tx::low32`]).
    fn narrow(&mut self, v: Value) -> Value {
        match self.low32[v].expand() {
            Some(x) => x,
            None => self.b.ins().ireduce(I32, v),
        }
    }

    /// The zero extension of the 32-bit `x`, remembered for [`Tx::narrow`].
    fn widen(&mut self, x: Value) -> Value {
        let v = self.b.ins().uextend(I64, x);
        self.low32[v] = x.into();
        v
    }

    fn binary(&mut self, op: AluOp, ty: ir::Type, d: Value, s: Value, k: Option<i64>) -> Value {
        match op {
            AluOp::Add => self.b.ins().iadd(d, s),
            AluOp::Sub => self.b.ins().isub(d, s),
            AluOp::Mul => self.b.ins().imul(d, s),
            AluOp::Or => self.b.ins().bor(d, s),
            AluOp::And => self.b.ins().band(d, s),
            AluOp::Xor => self.b.ins().bxor(d, s),
            AluOp::Mov => s,
            // Cranelift masks shift counts to the width, as eBPF does.
            AluOp::Lsh => self.b.ins().ishl(d, s),
            AluOp::Rsh => self.b.ins().ushr(d, s),
            AluOp::Arsh => self.b.ins().sshr(d, s),
            AluOp::Div | AluOp::Mod | AluOp::Sdiv | AluOp::Smod => self.division(op, ty, d, s, k),
        }
    }

    fn division(&mut self, op: AluOp, ty: ir::Type, d: Value, s: Value, k: Option<i64>) -> Value {
        if let Some(k) = k {
            let zero = self.iconst(ty, 0);
            return match (op, k) {
                (AluOp::Div | AluOp::Sdiv, 0) => zero,
                (AluOp::Mod | AluOp::Smod, 0) => d,
                (AluOp::Sdiv, -1) => self.b.ins().ineg(d),
                (AluOp::Smod, -1) => zero,
                (AluOp::Div, _) => self.udiv_const(ty, d, k),
                (AluOp::Mod, _) => {
                    let q = self.udiv_const(ty, d, k);
                    let product = self.b.ins().imul_imm_s(q, k);
                    self.b.ins().isub(d, product)
                }
                (AluOp::Sdiv, _) => self.b.ins().sdiv(d, s),
                _ => self.b.ins().srem(d, s),
            };
        }
        // A register divisor: branch around the division when it is 0 (or, signed, -1), so
        // that the common case has no selects on its dependency chain — unless the facts
        // prove the divisor nonzero (and the signed overflow impossible): then no test.
        let signed = matches!(op, AluOp::Sdiv | AluOp::Smod);
        let fact = self.prep.division(self.current);
        let zero_test = !fact.nonzero;
        let minus_test = signed && !fact.no_overflow;
        if !zero_test && !minus_test && !self.prep.checked_facts {
            // Never 0, never `MIN / -1`: the plain instruction cannot trap.
            return match op {
                AluOp::Div => self.b.ins().udiv(d, s),
                AluOp::Mod => self.b.ins().urem(d, s),
                AluOp::Sdiv => self.b.ins().sdiv(d, s),
                _ => self.b.ins().srem(d, s),
            };
        }
        let is_zero = self.b.ins().icmp_imm_s(IntCC::Equal, s, 0);
        let minus_one = self.iconst(ty, -1);
        let is_minus_one = self.b.ins().icmp(IntCC::Equal, s, minus_one);
        if self.prep.checked_facts && (!zero_test || (signed && !minus_test)) {
            // Checked facts: the tests the facts removed, failing loudly if one ever fires.
            let pc = self.prep.pcs[self.current];
            let mut fired = None;
            if !zero_test {
                fired = Some(is_zero);
            }
            if signed && !minus_test {
                let min = self.iconst(
                    ty,
                    if ty == I32 {
                        i64::from(i32::MIN)
                    } else {
                        i64::MIN
                    },
                );
                let is_min = self.b.ins().icmp(IntCC::Equal, d, min);
                let overflow = self.b.ins().band(is_minus_one, is_min);
                fired = Some(match fired {
                    Some(z) => self.b.ins().bor(z, overflow),
                    None => overflow,
                });
            }
            if let Some(fired) = fired {
                self.trap_if(fired, pc, FACT_FAILED, None, 0);
            }
        }
        let special = match (zero_test, minus_test) {
            (false, false) => {
                // Never 0, never `MIN / -1`: the plain instruction cannot trap.
                return match op {
                    AluOp::Div => self.b.ins().udiv(d, s),
                    AluOp::Mod => self.b.ins().urem(d, s),
                    AluOp::Sdiv => self.b.ins().sdiv(d, s),
                    _ => self.b.ins().srem(d, s),
                };
            }
            (true, false) => is_zero,
            (false, true) => is_minus_one,
            (true, true) => self.b.ins().bor(is_zero, is_minus_one),
        };
        let normal = self.b.create_block();
        let odd = self.cold_block();
        let join = self.b.create_block();
        let result = self.b.append_block_param(join, ty);
        self.b.ins().brif(special, odd, &[], normal, &[]);

        self.enter(normal);
        let v = match op {
            AluOp::Div => self.b.ins().udiv(d, s),
            AluOp::Mod => self.b.ins().urem(d, s),
            AluOp::Sdiv => self.b.ins().sdiv(d, s),
            _ => self.b.ins().srem(d, s),
        };
        self.b.ins().jump(join, &[BlockArg::Value(v)]);

        // x / 0 = 0, x % 0 = x, x / -1 = -x (MIN / -1 = MIN), x % -1 = 0.
        self.enter(odd);
        let zero = self.iconst(ty, 0);
        let v = match op {
            AluOp::Div => zero,
            AluOp::Mod => d,
            AluOp::Sdiv => {
                let neg = self.b.ins().ineg(d);
                self.b.ins().select(is_zero, zero, neg)
            }
            _ => self.b.ins().select(is_zero, d, zero),
        };
        self.b.ins().jump(join, &[BlockArg::Value(v)]);
        self.enter(join);
        result
    }

    /// `x / k` for a nonzero constant `k` (unsigned, of `ty`'s width), with a multiplication
    /// instead of a divide instruction (which costs tens of cycles): a shift for a power of
    /// two, else Granlund and Montgomery's round-up method, exact for every `x`:
    /// `t = mulhi(x, m)`, `q = (t + ((x - t) >> 1)) >> (l - 1)` (see [`udiv_magic`]).
    fn udiv_const(&mut self, ty: ir::Type, x: Value, k: i64) -> Value {
        let bits = ty.bits();
        let d = if bits == 32 {
            u64::from(k as u32)
        } else {
            k as u64
        };
        if d.is_power_of_two() {
            return self.b.ins().ushr_imm_s(x, i64::from(d.trailing_zeros()));
        }
        let (m, l) = udiv_magic(d, bits);
        let m = self.iconst(ty, m as i64);
        let t = self.b.ins().umulhi(x, m);
        let diff = self.b.ins().isub(x, t);
        let half = self.b.ins().ushr_imm_s(diff, 1);
        let sum = self.b.ins().iadd(t, half);
        self.b.ins().ushr_imm_s(sum, i64::from(l - 1))
    }

    /// The branch condition of a conditional jump.
    fn condition(&mut self, insn: &Insn) -> Value {
        let Insn::Jump {
            width,
            cond,
            dst,
            src,
            ..
        } = *insn
        else {
            return self.iconst(I8, 0);
        };
        let ty = if width == Width::W64 { I64 } else { I32 };
        let mut a = self.reg(dst);
        let b = match src {
            Operand::Reg(r) => {
                let v = self.reg(r);
                if ty == I32 { self.narrow(v) } else { v }
            }
            Operand::Imm(imm) => self.iconst(ty, i64::from(imm)),
        };
        if ty == I32 {
            a = self.narrow(a);
        }
        let cc = match cond {
            Cond::Set => {
                let and = self.b.ins().band(a, b);
                return self.b.ins().icmp_imm_s(IntCC::NotEqual, and, 0);
            }
            Cond::Eq => IntCC::Equal,
            Cond::Ne => IntCC::NotEqual,
            Cond::Gt => IntCC::UnsignedGreaterThan,
            Cond::Ge => IntCC::UnsignedGreaterThanOrEqual,
            Cond::Lt => IntCC::UnsignedLessThan,
            Cond::Le => IntCC::UnsignedLessThanOrEqual,
            Cond::Sgt => IntCC::SignedGreaterThan,
            Cond::Sge => IntCC::SignedGreaterThanOrEqual,
            Cond::Slt => IntCC::SignedLessThan,
            Cond::Sle => IntCC::SignedLessThanOrEqual,
        };
        self.b.ins().icmp(cc, a, b)
    }

    /// A checked memory access of `width` bytes at `base + off` doing `op`; returns what `op`
    /// returns (the loaded or old value).
    ///
    /// When `base` has a region hint, the access is first checked against that region alone
    /// ([`Tx::hinted_check`]) with loop-invariant bounds; when the guess fails, a cold block
    /// runs the full check ([`Tx::checked_address`]) and rejoins with its host address. Within
    /// a block, an access repeating an earlier one (same address value and width, no stronger
    /// permission needed) is not checked again.
    fn memory(
        &mut self,
        base: Reg,
        off: i16,
        width: u32,
        write: bool,
        pc: usize,
        op: MemOp,
    ) -> Option<Value> {
        let hint = self.hints[usize::from(base.index())];
        let base = self.reg(base);
        if let (Some(fp_host), Some(k)) = (self.fp_host, hint.exact_frame_offset())
            && self.prep.frame_exact
            && hint.frame_access_is_safe(off, width)
        {
            // At a known offset inside the current frame: no check, and no arithmetic either,
            // the host address of `r10` being at hand.
            let p = self.b.use_var(fp_host);
            let addr = match op {
                MemOp::Atomic { .. } => self.b.ins().iadd_imm_s(base, i64::from(off)),
                _ => base,
            };
            return self.mem_op(op, p, k + i32::from(off), addr, pc);
        }
        let addr = if off == 0 {
            base
        } else {
            self.b.ins().iadd_imm_s(base, i64::from(off))
        };
        if let Some(&(p, writable)) = self.checked.get(&(addr, width))
            && (writable || !write)
        {
            return self.mem_op(op, p, 0, addr, pc);
        }
        let keep = self.keep_address;
        let i = self.current;
        if let Access::InBounds {
            region,
            speculation_safe,
        } = self.access(i)
        {
            // Proven in bounds (and writable, aligned): no check, the host address is one
            // add — unless checked facts keep the check, to fail loudly if it ever fires.
            let p = if self.prep.checked_facts {
                let atomic = matches!(op, MemOp::Atomic { .. });
                self.fact_checked_address(addr, width, write, atomic, pc)
            } else {
                let bias = self.bias(region);
                let p = self.b.ins().iadd(bias, addr);
                if self.prep.clamp_proven && !speculation_safe {
                    self.clamp(addr, region, width, p)
                } else {
                    p
                }
            };
            if keep {
                self.checked.insert((addr, width), (p, write));
            }
            return self.mem_op(op, p, 0, addr, pc);
        }
        let hint = match self.prep.access_hint(i, hint, off, width) {
            Hint::Frame { .. }
                if self.prep.frame_exact && hint.frame_access_is_safe(off, width) =>
            {
                // Inside the current frame: no check. (The mask keeps the host address inside
                // an object caller's stack even if one over 4 GiB made frame pointers wrap.)
                let host = match self.hosts.get(&(layout::STACK as u8)) {
                    Some(&host) => host,
                    None => self.region_values(layout::STACK as u8, width, write).1,
                };
                let offset = self.b.ins().band_imm_s(addr, 0xffff_ffff);
                let p = self.b.ins().iadd(host, offset);
                let result = self.mem_op(op, p, 0, addr, pc);
                if keep {
                    self.checked.insert((addr, width), (p, true));
                }
                return result;
            }
            Hint::Frame { .. } => Hint::Region(layout::STACK as u8),
            h => h,
        };
        let p = match hint {
            Hint::Region(region) if self.prep.shortfall == Shortfall::Suspend => {
                // A wrong guess (or memory outside any region): the interpreter takes over.
                let (outside, p_fast) = self.hinted_check(addr, region, width, write);
                self.suspend_at_resume_if(outside);
                p_fast
            }
            Hint::Region(region) => {
                let (outside, p_fast) = self.hinted_check(addr, region, width, write);
                let ok = self.b.create_block();
                let p = self.b.append_block_param(ok, I64);
                let miss = self.cold_block();
                self.b
                    .ins()
                    .brif(outside, miss, &[], ok, &[BlockArg::Value(p_fast)]);
                self.enter(miss);
                let p_full = self.call_check(addr, width, write, pc);
                let trapped = self.trapped_block();
                self.b
                    .ins()
                    .brif(p_full, ok, &[BlockArg::Value(p_full)], trapped, &[]);
                self.enter(ok);
                p
            }
            _ => self.checked_address(addr, width, write, pc),
        };
        if keep {
            self.checked.insert((addr, width), (p, write));
        }
        self.mem_op(op, p, 0, addr, pc)
    }

    /// The check of an access to a hinted region: `(outside, host address)`. With `rel = addr -
    /// (region << 32)`, the access is inside the region iff `rel < bound`, where `bound` is
    /// `limit - width + 1` (0 when the region is shorter than `width`) and `limit` the
    /// region's length (0 for a store to a read-only region). Everything but `rel` is
    /// loop-invariant, and the host address is `host + rel`.
    fn hinted_check(&mut self, addr: Value, region: u8, width: u32, write: bool) -> (Value, Value) {
        let (bound, host) = self.region_values(region, width, write);
        let base = self.region_base(region);
        let rel = self.b.ins().isub(addr, base);
        let outside = self
            .b
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, rel, bound);
        let p = self.b.ins().iadd(host, rel);
        (outside, self.guard(outside, p))
    }

    /// With Spectre masking, `p` — the host address of an access whose check is `out` — or
    /// 0 (the null page) when `out` holds: a `select_spectre_guard`, which Cranelift lowers to
    /// a compare and a conditional move and never to a branch, so an access behind a
    /// mispredicted check cannot use the refused address even speculatively. Without
    /// masking, `p`.
    fn guard(&mut self, out: Value, p: Value) -> Value {
        if !self.prep.masking {
            return p;
        }
        let zero = self.iconst(I64, 0);
        self.b.ins().select_spectre_guard(out, zero, p)
    }

    /// The clamp of an access proven in bounds through a branch (a guard, a loop bound, a
    /// version's dispatcher), at host address `p`: on the path a mispredicted branch leads to,
    /// the access would run with the address the branch excluded, so `p` is 0 (the null page)
    /// unless `addr - (region << 32)` is below the region's length less `width` (plus one):
    /// a `select_spectre_guard`, a compare and a conditional move, never a branch. The proof
    /// holds architecturally, so the clamp never changes a result. Write permission is not
    /// compared: the proof covers it, and the clamp is about where the address points.
    fn clamp(&mut self, addr: Value, region: u8, width: u32, p: Value) -> Value {
        let bound = match self.clamp_bounds.get(&(region, width)) {
            Some(&bound) => bound,
            // (Not precomputed — not expected: computed here, for this access only.)
            None => self.clamp_bound(region, width, false),
        };
        let start = self.iconst(I64, (u64::from(region) << 32) as i64);
        let rel = self.b.ins().isub(addr, start);
        let out = self
            .b
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, rel, bound);
        let zero = self.iconst(I64, 0);
        self.b.ins().select_spectre_guard(out, zero, p)
    }

    /// The bound of [`Tx::clamp`] for `width`-byte accesses to `region`: its length from the
    /// region table less `width - 1`, 0 when shorter than `width`. `opaque`: as a block
    /// parameter (in the entry block, so that it is not recomputed in loops).
    fn clamp_bound(&mut self, region: u8, width: u32, opaque: bool) -> Value {
        let entry = off::REGIONS + i32::from(region) * (off::REGION_SIZE as i32);
        let table = MemFlagsData::trusted().with_readonly();
        let len = self
            .b
            .ins()
            .load(I64, table, self.ctx, entry + off::REGION_LEN);
        let fits =
            self.b
                .ins()
                .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, len, i64::from(width));
        let bound = self.b.ins().iadd_imm_s(len, 1 - i64::from(width));
        let zero = self.iconst(I64, 0);
        if opaque {
            self.opaque_select(fits, bound, zero)
        } else {
            self.b.ins().select(fits, bound, zero)
        }
    }

    /// The first VM address of a hinted region. The input hint stands for wherever `r1`
    /// pointed at entry (the input, or a metadata buffer when the host maps one there), so
    /// its base is computed from the run's `r1`: see [`Tx::input_region`].
    fn region_base(&mut self, region: u8) -> Value {
        if u64::from(region) == layout::INPUT {
            self.input_region().0
        } else {
            self.iconst(I64, (u64::from(region) << 32) as i64)
        }
    }

    /// The region `r1` points into at the program's entry, as `(its first VM address, the
    /// address of its entry in the region table)`; an id of 64 or more has no entry, and
    /// gets entry 0 (always unmapped), so that no access passes its check. Computed once, in
    /// the entry block.
    fn input_region(&mut self) -> (Value, Value) {
        if let Some(r) = self.input {
            return r;
        }
        let r1 = self
            .b
            .ins()
            .load(I64, self.flags.fixed, self.ctx, off::ARGS);
        let id = self.b.ins().ushr_imm_s(r1, 32);
        let valid = self.b.ins().icmp_imm_s(
            IntCC::UnsignedLessThan,
            id,
            ebpf_abi::REGION_TABLE_LEN as i64,
        );
        let zero = self.iconst(I64, 0);
        let index = self.b.ins().select(valid, id, zero);
        let offset = self.b.ins().imul_imm_s(index, off::REGION_SIZE);
        let entry = self.b.ins().iadd(self.ctx, offset);
        let base = self.b.ins().ishl_imm_s(id, 32);
        self.input = Some((base, entry));
        (base, entry)
    }

    /// `(bound, host address)` of a hinted access (see [`Tx::hinted_check`]), computed once
    /// in the entry block: the region table does not change during a run.
    fn region_values(&mut self, region: u8, width: u32, write: bool) -> (Value, Value) {
        // The stack is always writable (the run allocates it; objects' hosts must too).
        let write = write && u64::from(region) != layout::STACK;
        if let (Some(&bound), Some(&host)) = (
            self.bounds.get(&(region, width, write)),
            self.hosts.get(&region),
        ) {
            return (bound, host);
        }
        let (base, entry) = if u64::from(region) == layout::INPUT {
            (self.input_region().1, 0)
        } else {
            let entry = off::REGIONS + i32::from(region) * (off::REGION_SIZE as i32);
            (self.ctx, entry)
        };
        // Not `can_move`: as pure values Cranelift would place these loads at their uses
        // (inside loops); as ordinary loads they stay in the entry block, run once per run.
        let table = MemFlagsData::trusted().with_readonly();
        let len = self.b.ins().load(I64, table, base, entry + off::REGION_LEN);
        let zero = self.iconst(I64, 0);
        let limit = if write {
            let writable = self
                .b
                .ins()
                .load(I64, table, base, entry + off::REGION_WRITABLE);
            self.entry_select(writable, len, zero)
        } else {
            len
        };
        let fits =
            self.b
                .ins()
                .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, limit, i64::from(width));
        let bound = self.b.ins().iadd_imm_s(limit, 1 - i64::from(width));
        let bound = self.entry_select(fits, bound, zero);
        // (Not biased by the region's base: Cranelift rematerialises `x - constant` at every
        // use.)
        let host = self.b.ins().load(I64, table, base, entry);
        (bound, host)
    }

    /// The host address of region `region`'s first byte minus its first VM address, for
    /// accesses proven in bounds of it: computed once in the entry block (see
    /// [`Tx::precompute_regions`]), as the region table does not change during a run.
    fn bias(&mut self, region: u8) -> Value {
        if let Some(&bias) = self.biases.get(&region) {
            return bias;
        }
        let entry = off::REGIONS + i32::from(region) * (off::REGION_SIZE as i32);
        let table = MemFlagsData::trusted().with_readonly();
        let host = self.b.ins().load(I64, table, self.ctx, entry);
        let start = self.iconst(I64, (u64::from(region) << 32) as i64);
        let bias = self.b.ins().isub(host, start);
        self.biases.insert(region, bias);
        bias
    }

    /// `if cond { a } else { b }` as control flow, so that the result is a block parameter:
    /// Cranelift's optimiser cannot rematerialise it at its uses (a `select` of invariants
    /// would be recomputed inside loops whenever its loop-invariant code motion does not
    /// apply).
    fn opaque_select(&mut self, cond: Value, a: Value, b: Value) -> Value {
        let yes = self.b.create_block();
        let no = self.b.create_block();
        let join = self.b.create_block();
        let v = self.b.append_block_param(join, I64);
        self.b.ins().brif(cond, yes, &[], no, &[]);
        self.enter(yes);
        self.b.ins().jump(join, &[BlockArg::Value(a)]);
        self.enter(no);
        self.b.ins().jump(join, &[BlockArg::Value(b)]);
        self.enter(join);
        v
    }

    /// [`Tx::opaque_select`] for the bounds of hinted checks, or a plain `select` without
    /// Cranelift's optimiser ([`Prepared::plain_selects`]): a conditional move in the entry
    /// block, where nothing moves it from, instead of three blocks.
    fn entry_select(&mut self, cond: Value, a: Value, b: Value) -> Value {
        if self.prep.plain_selects {
            self.b.ins().select(cond, a, b)
        } else {
            self.opaque_select(cond, a, b)
        }
    }

    /// In the entry block: the bounds and hosts of every hinted access of the program.
    fn precompute_regions(&mut self) {
        let plan = self.plan;
        let mut wanted = Vec::new();
        let mut proven_regions = Vec::new();
        let mut clamped = Vec::new();
        let mut frame_slots = false;
        for b in plan.units[self.unit].blocks.clone() {
            let block = &plan.blocks[b];
            if !block.reachable {
                continue;
            }
            let mut state = self.prep.entries[b];
            for (i, insn) in self.insns[block.insns.clone()]
                .iter()
                .enumerate()
                .map(|(k, insn)| (block.insns.start + k, insn))
            {
                if let Some((base, off, width, write)) = memory_access(insn) {
                    let hint = state[usize::from(base.index())];
                    let unchecked = self.prep.frame_exact && hint.frame_access_is_safe(off, width);
                    let proven = match self.prep.access(i) {
                        Access::InBounds {
                            region,
                            speculation_safe,
                        } if !self.prep.checked_facts => {
                            if self.prep.clamp_proven
                                && !speculation_safe
                                && !clamped.contains(&(region, width))
                            {
                                clamped.push((region, width));
                            }
                            Some(region)
                        }
                        _ => None,
                    };
                    let hint = self.prep.access_hint(i, hint, off, width);
                    if unchecked {
                        frame_slots = true;
                    } else if let Some(region) = proven {
                        if !proven_regions.contains(&region) {
                            proven_regions.push(region);
                        }
                    } else if let Some(region) = hint.region() {
                        let write = write && u64::from(region) != layout::STACK;
                        if !wanted.contains(&(region, width, write)) {
                            wanted.push((region, width, write));
                        }
                    }
                }
                hints::transfer(&mut state, insn);
            }
        }
        if !self.prep.checked_facts {
            for v in &self.prep.versions {
                if self.plan.unit_of[v.entry] as usize != self.unit {
                    continue;
                }
                for &(i, region) in &v.accesses {
                    if !proven_regions.contains(&region) {
                        proven_regions.push(region);
                    }
                    // Every access of a version's copy rests on its dispatcher, a branch.
                    if let Some((_, _, width, _)) = memory_access(&self.insns[i])
                        && self.prep.clamp_proven
                        && !clamped.contains(&(region, width))
                    {
                        clamped.push((region, width));
                    }
                }
            }
        }
        for region in proven_regions {
            self.bias(region);
        }
        for (region, width) in clamped {
            let bound = self.clamp_bound(region, width, true);
            self.clamp_bounds.insert((region, width), bound);
        }
        for (region, width, write) in wanted {
            let (bound, host) = self.region_values(region, width, write);
            self.bounds.insert((region, width, write), bound);
            self.hosts.insert(region, host);
        }
        if frame_slots && self.prep.shortfall == Shortfall::Suspend {
            // In-process: the host address of `r10`, kept up to date where it changes.
            let var = self.b.declare_var(I64);
            let r10 = self.b.use_var(self.regs[10]);
            let host = frame_host(self.b, self.flags.table, self.ctx, r10);
            self.b.def_var(var, host);
            self.fp_host = Some(var);
        } else if frame_slots && !self.hosts.contains_key(&(layout::STACK as u8)) {
            let entry = off::REGIONS + (layout::STACK as i32) * (off::REGION_SIZE as i32);
            let table = MemFlagsData::trusted().with_readonly();
            let host = self.b.ins().load(I64, table, self.ctx, entry);
            self.hosts.insert(layout::STACK as u8, host);
        }
    }

    /// Emits `op` on host address `p + offset` (already checked); `addr` (the VM address)
    /// and `pc` are for the alignment check of atomics.
    fn mem_op(
        &mut self,
        op: MemOp,
        p: Value,
        offset: i32,
        addr: Value,
        pc: usize,
    ) -> Option<Value> {
        let f = self.flags.vm;
        match op {
            MemOp::Load { size, signed } => {
                let ins = self.b.ins();
                Some(match (size, signed) {
                    (Size::B, false) => ins.uload8(I64, f, p, offset),
                    (Size::H, false) => ins.uload16(I64, f, p, offset),
                    (Size::W, false) => ins.uload32(f, p, offset),
                    (Size::DW, _) => ins.load(I64, f, p, offset),
                    (Size::B, true) => ins.sload8(I64, f, p, offset),
                    (Size::H, true) => ins.sload16(I64, f, p, offset),
                    (Size::W, true) => ins.sload32(f, p, offset),
                })
            }
            MemOp::Store { size, value } => {
                let ins = self.b.ins();
                match size {
                    Size::B => ins.istore8(f, value, p, offset),
                    Size::H => ins.istore16(f, value, p, offset),
                    Size::W => ins.istore32(f, value, p, offset),
                    Size::DW => ins.store(f, value, p, offset),
                };
                None
            }
            MemOp::Atomic { wide, op, src, r0 } => {
                let bytes: u32 = if wide { 8 } else { 4 };
                let misaligned = self.b.ins().band_imm_s(addr, i64::from(bytes - 1));
                self.trap_if(
                    misaligned,
                    pc,
                    code::MISALIGNED_ATOMIC,
                    Some(addr),
                    u64::from(bytes),
                );
                let ty = if wide { I64 } else { I32 };
                // The atomic instructions take no offset.
                let p = if offset == 0 {
                    p
                } else {
                    self.b.ins().iadd_imm_s(p, i64::from(offset))
                };
                let (v, expected) = if wide {
                    (src, r0)
                } else {
                    // The comparand with its upper half cleared first: AArch64's 32-bit
                    // `atomic_cas` compares a whole host register, and `ireduce` alone leaves
                    // r0's upper bits there (cmpxchg32 then failed on an equal low half).
                    let low = self.b.ins().band_imm_s(r0, 0xffff_ffff);
                    (
                        self.b.ins().ireduce(I32, src),
                        self.b.ins().ireduce(I32, low),
                    )
                };
                // Real host atomics: a shared region (a map value) is written by other runs
                // at the same time, so a load and a store would lose updates.
                let f = f.with_aligned();
                let rmw = match op {
                    AtomicOp::Add { .. } => Some(AtomicRmwOp::Add),
                    AtomicOp::Or { .. } => Some(AtomicRmwOp::Or),
                    AtomicOp::And { .. } => Some(AtomicRmwOp::And),
                    AtomicOp::Xor { .. } => Some(AtomicRmwOp::Xor),
                    AtomicOp::Xchg => Some(AtomicRmwOp::Xchg),
                    AtomicOp::Cmpxchg => None,
                };
                Some(match rmw {
                    Some(rmw) => self.b.ins().atomic_rmw(ty, f, rmw, p, v),
                    None => self.b.ins().atomic_cas(f, p, expected, v),
                })
            }
        }
    }

    fn checked_address(&mut self, addr: Value, width: u32, write: bool, pc: usize) -> Value {
        self.full_check(addr, width, write, pc, false)
    }

    /// Checked facts: the full check of an access the facts prove in bounds (and, for an
    /// atomic, aligned), failing with [`FACT_FAILED`] at `pc` instead of a trap.
    fn fact_checked_address(
        &mut self,
        addr: Value,
        width: u32,
        write: bool,
        atomic: bool,
        pc: usize,
    ) -> Value {
        if atomic {
            let misaligned = self.b.ins().band_imm_s(addr, i64::from(width - 1));
            self.trap_if(misaligned, pc, FACT_FAILED, None, 0);
        }
        self.full_check(addr, width, write, pc, true)
    }

    /// The full check of an access (any address), and its host address; when it fails, the
    /// run traps out of bounds (or, for an access the facts prove, `fact`, fails with
    /// [`FACT_FAILED`]).
    fn full_check(&mut self, addr: Value, width: u32, write: bool, pc: usize, fact: bool) -> Value {
        let hi = self.b.ins().band_imm_s(addr, 0x3f_0000_0000);
        let rel = self.b.ins().isub(addr, hi);
        // (hi >> 32) * 24 as (hi >> 29) * 3: a shift and a lea on x86-64.
        let eight = self.b.ins().ushr_imm_s(hi, 29);
        let sixteen = self.b.ins().ishl_imm_s(eight, 1);
        let offset = self.b.ins().iadd(eight, sixteen);
        let entry = self.b.ins().iadd(self.ctx, offset);
        let len = self
            .b
            .ins()
            .load(I64, self.flags.table, entry, off::REGION_LEN);
        let limit = if write {
            let writable = self
                .b
                .ins()
                .load(I64, self.flags.table, entry, off::REGION_WRITABLE);
            let zero = self.iconst(I64, 0);
            self.b.ins().select(writable, len, zero)
        } else {
            len
        };
        let end = self.b.ins().iadd_imm_s(rel, i64::from(width));
        let out = self.b.ins().icmp(IntCC::UnsignedGreaterThan, end, limit);
        if fact {
            self.trap_if(out, pc, FACT_FAILED, None, 0);
        } else {
            // The trap: the check function fails the same way and stores it.
            self.cold_if(out, |tx| {
                tx.call_check(addr, width, write, pc);
                tx.jump_trapped();
            });
        }
        let host = self.b.ins().load(I64, self.flags.table, entry, 0);
        let p = self.b.ins().iadd(host, rel);
        self.guard(out, p)
    }

    /// Calls the check function (see [`translate_check`]): the host address of the access, or
    /// 0 after storing its trap.
    fn call_check(&mut self, addr: Value, width: u32, write: bool, pc: usize) -> Value {
        let site = u64::from(width) | (u64::from(write) << 8) | ((pc as u64) << 16);
        let site = self.iconst(I64, site as i64);
        let args = [self.ctx, addr, site];
        match self.check {
            Check::Address(address) => {
                let f = self.iconst(I64, address as i64);
                let sig = self.check_sig;
                self.b.ins().call_indirect(sig, f, &args);
            }
            Check::Func(f) => {
                self.b.ins().call(f, &args);
            }
        }
        self.b.ins().load(I64, self.flags.ctx, self.ctx, off::HOST)
    }

    /// Atomic read-modify-write: bounds (as a write) first, then alignment.
    fn atomic(&mut self, width: Width, op: AtomicOp, dst: Reg, src: Reg, off: i16, pc: usize) {
        let wide = width == Width::W64;
        let mem = MemOp::Atomic {
            wide,
            op,
            src: self.reg(src),
            r0: self.reg(Reg::R0),
        };
        let bytes = if wide { 8 } else { 4 };
        let Some(old) = self.memory(dst, off, bytes, true, pc, mem) else {
            return;
        };
        if op.fetches() {
            let old = if wide {
                old
            } else {
                self.b.ins().uextend(I64, old)
            };
            let to = if op == AtomicOp::Cmpxchg {
                Reg::R0
            } else {
                src
            };
            self.set(to, old);
        }
    }

    /// Legacy `LD_ABS`/`LD_IND`: a big-endian load from the input region into `r0`.
    fn load_packet(&mut self, size: Size, addr: PacketAddr, imm: i32, pc: usize) {
        let base = match addr {
            PacketAddr::Abs => self.iconst(I64, 0),
            PacketAddr::Ind(r) => self.reg(r),
        };
        let sum = self.b.ins().iadd_imm_s(base, i64::from(imm as u32));
        let offset = self.b.ins().band_imm_s(sum, 0xffff_ffff);
        let width = size.bytes();
        let entry = off::REGIONS + (layout::INPUT as i32) * (off::REGION_SIZE as i32);
        let len = self
            .b
            .ins()
            .load(I64, self.flags.table, self.ctx, entry + off::REGION_LEN);
        let end = self.b.ins().iadd_imm_s(offset, i64::from(width));
        let out = self.b.ins().icmp(IntCC::UnsignedGreaterThan, end, len);
        let vm_addr = self.b.ins().bor_imm_s(offset, (layout::INPUT << 32) as i64);
        self.trap_if(
            out,
            pc,
            code::OUT_OF_BOUNDS_READ,
            Some(vm_addr),
            u64::from(width),
        );
        let host = self.b.ins().load(I64, self.flags.table, self.ctx, entry);
        let p = self.b.ins().iadd(host, offset);
        // The offset is the program's (any 32-bit value): masked like any checked access.
        let p = self.guard(out, p);
        let f = self.flags.vm;
        let v = match size {
            Size::B => self.b.ins().uload8(I64, f, p, 0),
            Size::H => {
                let v = self.b.ins().load(I16, f, p, 0);
                let v = self.b.ins().bswap(v);
                self.b.ins().uextend(I64, v)
            }
            _ => {
                let v = self.b.ins().load(I32, f, p, 0);
                let v = self.b.ins().bswap(v);
                self.b.ins().uextend(I64, v)
            }
        };
        self.set(Reg::R0, v);
    }

    /// A helper call through the context: status 0 sets `r0` and zeroes `r1`–`r5`.
    fn helper_call(&mut self, id: Value, pc: usize) {
        let mut args = vec![self.ctx, id];
        for r in [Reg::R1, Reg::R2, Reg::R3, Reg::R4, Reg::R5] {
            args.push(self.reg(r));
        }
        let helper_fn = self.fixed(off::HELPER);
        let call = self
            .b
            .ins()
            .call_indirect(self.helper_sig, helper_fn, &args);
        let status = self.b.inst_results(call)[0];
        // A failed call: the helper entry point stored the trap's operands.
        self.cold_if(status, |tx| {
            tx.store_budget_after_current();
            let pc = tx.iconst(I64, pc as i64);
            tx.trap_here(pc, status, None, None);
        });
        let r0 = self
            .b
            .ins()
            .load(I64, self.flags.ctx, self.ctx, off::HELPER_R0);
        self.set(Reg::R0, r0);
        let zero = self.iconst(I64, 0);
        for r in [Reg::R1, Reg::R2, Reg::R3, Reg::R4, Reg::R5] {
            self.set(r, zero);
        }
    }
}

/// The multiplier `m` and `l = ceil(log2 d)` of unsigned division by `d` (not a power of two,
/// at least 3) for `bits`-bit operands: `m = floor(2^bits * (2^l - d) / d) + 1`, which fits in
/// `bits` bits (Granlund and Montgomery, "Division by invariant integers using
/// multiplication", 1994, figure 4.1).
fn udiv_magic(d: u64, bits: u32) -> (u64, u32) {
    let l = 64 - (d - 1).leading_zeros();
    let m = (1u128 << bits) * ((1u128 << l) - u128::from(d)) / u128::from(d) + 1;
    (m as u64, l)
}

/// The host address of the frame pointer `r10` (in the stack region, below 4 GiB).
fn frame_host(b: &mut FunctionBuilder<'_>, table: MemFlagsData, ctx: Value, r10: Value) -> Value {
    let entry = off::REGIONS + (layout::STACK as i32) * (off::REGION_SIZE as i32);
    let stack = b.ins().load(I64, table, ctx, entry);
    let offset = b.ins().band_imm_s(r10, 0xffff_ffff);
    b.ins().iadd(stack, offset)
}

/// `r10` at depth 0: the top of the stack region.
fn frame_top(b: &mut FunctionBuilder<'_>, stack_size: Value) -> Value {
    let top = b.ins().band_imm_s(stack_size, 0xffff_ffff);
    b.ins().bor_imm_s(top, (layout::STACK << 32) as i64)
}

/// `r10` at call depth `depth`: the top of that frame in the stack region.
fn frame_pointer(b: &mut FunctionBuilder<'_>, stack_size: Value, depth: Value) -> Value {
    let below = b.ins().imul_imm_s(depth, ebpf_abi::STACK_FRAME_SIZE as i64);
    let top = b.ins().isub(stack_size, below);
    let offset = b.ins().band_imm_s(top, 0xffff_ffff);
    b.ins().bor_imm_s(offset, (layout::STACK << 32) as i64)
}

/// For each instruction of a block body: whether it is a memory access whose address (base
/// register, offset) and width a later instruction of the body accesses again before the base
/// register changes, so that the later one can skip its check.
fn reused_accesses(body: &[Insn]) -> Vec<bool> {
    fn access(insn: &Insn) -> Option<(Reg, i16, u32)> {
        match *insn {
            Insn::Load { size, src, off, .. } => Some((src, off, size.bytes())),
            Insn::Store { size, dst, off, .. } => Some((dst, off, size.bytes())),
            Insn::Atomic {
                width, dst, off, ..
            } => Some((dst, off, if width == Width::W64 { 8 } else { 4 })),
            _ => None,
        }
    }
    let mut reused = vec![false; body.len()];
    for (i, insn) in body.iter().enumerate() {
        let Some(a) = access(insn) else { continue };
        if pointers::insn_writes(insn, a.0) {
            continue;
        }
        for later in &body[i + 1..] {
            if access(later) == Some(a) {
                reused[i] = true;
                break;
            }
            if pointers::insn_writes(later, a.0) {
                break;
            }
        }
    }
    reused
}

/// The memory access `insn` makes, if any: `(base register, offset, width, write)`.
fn memory_access(insn: &Insn) -> Option<(Reg, i16, u32, bool)> {
    match *insn {
        Insn::Load { size, src, off, .. } => Some((src, off, size.bytes(), false)),
        Insn::Store { size, dst, off, .. } => Some((dst, off, size.bytes(), true)),
        Insn::Atomic {
            width, dst, off, ..
        } => Some((dst, off, if width == Width::W64 { 8 } else { 4 }, true)),
        _ => None,
    }
}

/// Whether an instruction that does not end a block can trap or change anything outside the
/// registers: the checked copy tests the budget before each.
/// Whether running `insn` may change something besides the registers and the budget (memory,
/// a helper's state, the end of the run): after it, a plan block's run cannot be handed over
/// from the block's entry (see [`Tx::suspend_at_resume_if`]).
fn leaves_effect(insn: &Insn) -> bool {
    matches!(
        insn,
        Insn::Store { .. }
            | Insn::Atomic { .. }
            | Insn::LoadPacket { .. }
            | Insn::Call { .. }
            | Insn::CallX { .. }
    )
}

fn has_effect(insn: &Insn) -> bool {
    matches!(
        insn,
        Insn::Load { .. }
            | Insn::Store { .. }
            | Insn::Atomic { .. }
            | Insn::LoadPacket { .. }
            | Insn::Call { .. }
            | Insn::CallX { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IR of `src` (as translated, or as machine code) with Spectre masking on or off.
    fn ir(src: &str, stage: crate::IrStage, masking: bool) -> String {
        let program = ebpf_isa::assemble(src).unwrap();
        let options = crate::JitOptions::default().with_spectre_masking(masking);
        crate::ir_text_with(&program, stage, &options).unwrap()
    }

    /// Spectre v1: every access checked at run time — the full check, a region guess, a
    /// packet load — takes its host address through one `select_spectre_guard` of its own
    /// check, which becomes a conditional move on x86-64 (never a branch); frame slots proven
    /// inside the frame have no check and no guard; with masking off there is none at all.
    /// A chain of 32-bit operations reads each result's low half where it was made: one
    /// `ireduce` (of `r1`, a 64-bit value), and a `mov32` of a 32-bit result adds nothing.
    #[test]
    fn chains_of_32_bit_operations_reuse_their_low_halves() {
        let src = "mov32 %r0, %r1\nadd32 %r0, 3\nlsh32 %r0, 2\nmov32 %r2, %r0\n\
                   xor32 %r0, %r2\njgt32 %r0, %r2, +1\nneg32 %r0\nexit";
        let text = ir(src, crate::IrStage::Translated, false);
        assert_eq!(text.matches("ireduce").count(), 1, "{text}");
        // mov32 r0, r1; add32; lsh32; xor32; neg32 (mov32 r2, r0 reuses r0's value).
        assert_eq!(text.matches("uextend").count(), 5, "{text}");
    }

    /// A `mov32` of an immediate is the zero-extended 64-bit constant, moved as an immediate
    /// (x64 loaded `uextend` of an `iconst.i32` from the constant pool), and a 32-bit
    /// operation on it still reads a 32-bit constant, not an `ireduce`.
    #[test]
    fn a_32_bit_move_of_an_immediate_is_a_64_bit_constant() {
        if !crate::host_supported() {
            eprintln!("skipping: cranelift does not support this host");
            return;
        }
        let src = "mov32 %r0, -3\nmov32 %r2, 45\nadd32 %r2, %r1\nxor %r0, %r2\nexit";
        let text = ir(src, crate::IrStage::Translated, false);
        assert!(text.contains("iconst.i64 0xffff_fffd"), "{text}");
        assert!(text.contains("iconst.i64 45"), "{text}");
        // add32 r2, r1: r1's low half only, the result widened once.
        assert_eq!(text.matches("ireduce").count(), 1, "{text}");
        assert_eq!(text.matches("uextend").count(), 1, "{text}");
        // The machine code is the host's: x64's is the one that read the constant pool.
        if cfg!(target_arch = "x86_64") {
            let machine = ir(src, crate::IrStage::Machine, false);
            assert!(
                machine.contains("$0xfffffffd,"),
                "an immediate move:\n{machine}"
            );
            assert!(
                !machine.contains("const("),
                "no constant from memory:\n{machine}"
            );
        }
    }

    #[test]
    fn checked_accesses_are_guarded_against_speculation() {
        if !crate::host_supported() {
            eprintln!("skipping: cranelift does not support this host");
            return;
        }
        let cases = [
            // (program, accesses checked at run time)
            ("ldxw %r0, [%r2+8]\nexit", 1),
            ("ldxw %r0, [%r1+0]\nstxb [%r1+7], %r0\nexit", 2),
            ("lock add [%r2], %r0\nexit", 1),
            ("ldabsb 3\nldindh %r2, 1\nexit", 2),
            ("stxdw [%r10-8], %r1\nldxdw %r0, [%r10-8]\nexit", 0),
        ];
        for (src, checked) in cases {
            let guards = |masking| {
                ir(src, crate::IrStage::Translated, masking)
                    .matches("select_spectre_guard")
                    .count()
            };
            assert_eq!(guards(true), checked, "{src}");
            assert_eq!(guards(false), 0, "{src}");
            if cfg!(target_arch = "x86_64") {
                let cmovs = |masking| {
                    ir(src, crate::IrStage::Machine, masking)
                        .lines()
                        .filter(|l| l.trim_start().starts_with("cmov"))
                        .count()
                };
                assert_eq!(
                    cmovs(true),
                    cmovs(false) + checked,
                    "{src}: one conditional move per guard\n{}",
                    ir(src, crate::IrStage::Machine, true)
                );
            }
        }
    }

    /// The IR of `src` (as translated) under `options`.
    fn ir_with(src: &str, options: &crate::JitOptions) -> String {
        let program = ebpf_isa::assemble(src).unwrap();
        crate::ir_text_with(&program, crate::IrStage::Translated, options).unwrap()
    }

    /// A guarded parser: `if r1 + 14 > r1 + r2 goto out`, then three loads the guard proves.
    const GUARDED: &str = "mov %r3, %r1\nadd %r3, 14\nmov %r4, %r1\nadd %r4, %r2\n\
                           jgt %r3, %r4, out\nldxb %r0, [%r1+0]\nldxh %r5, [%r1+12]\n\
                           add %r0, %r5\nldxw %r5, [%r1+8]\nadd %r0, %r5\nexit\n\
                           out:\nmov %r0, 0\nexit";

    /// With the facts of the plain input, the accesses a guard proves compile with no check
    /// at all (with masking on, every check has its guard: none are left); from the stack's
    /// facts alone, or with checked facts, each keeps its check.
    #[test]
    fn accesses_proven_in_bounds_have_no_check() {
        if !crate::host_supported() {
            eprintln!("skipping: cranelift does not support this host");
            return;
        }
        let masked = crate::JitOptions::default().with_spectre_masking(true);
        let input = Some(ebpf_cfg::facts::Entry::input());
        let guards = |options: &crate::JitOptions| {
            ir_with(GUARDED, options)
                .matches("select_spectre_guard")
                .count()
        };
        let facts = masked.clone().with_entry(input.clone());
        assert_eq!(guards(&facts.clone().with_checked_facts(false)), 0);
        assert_eq!(guards(&masked.clone().with_checked_facts(false)), 3);
        // Checked facts keep the full check of each (masked like any other).
        assert_eq!(guards(&facts.with_checked_facts(true)), 3);
        let program = ebpf_isa::assemble(GUARDED).unwrap();
        let options = crate::JitOptions::default()
            .with_entry(input)
            .with_checked_facts(false);
        let jit = crate::compile(&program, &options).unwrap();
        assert_eq!(
            jit.removed(),
            Removed {
                accesses: 3,
                unchecked: 3,
                versions: 0,
                versioned: 0,
                counted: 0,
                divisor_tests: 0,
                divisor_tests_gone: 0,
            }
        );
    }

    /// Spectre v1 through the program's own guards: with masking and `spectre_clamp_proven`,
    /// every access proven by a branch (a guard, a loop bound, a version's copy) takes its
    /// host address through one more `select_spectre_guard` (a conditional move on x86-64);
    /// proofs that need no branch get none; with masking or the clamp off, nothing changes;
    /// and the clamped code returns what the interpreter does.
    #[test]
    fn branch_proven_accesses_are_clamped_without_a_branch() {
        if !crate::host_supported() {
            eprintln!("skipping: cranelift does not support this host");
            return;
        }
        let cases = [
            // (program, accesses proven by a branch)
            // A guarded header: `if (p + 14 > end) return`.
            (
                "mov %r3, %r1\nadd %r3, %r2\nmov %r4, %r1\nadd %r4, 14\njgt %r4, %r3, +4\n\
                 ldxh %r0, [%r1+12]\nldxb %r5, [%r1+13]\nstxb [%r1], %r5\nexit\nmov %r0, 0\nexit",
                3,
            ),
            // A loop index below the length (twice: the loop and its copy, charged at its
            // entry).
            (
                "mov %r0, 0\njeq %r2, 0, +6\nmov %r3, 0\nmov %r5, %r1\nadd %r5, %r3\n\
                 ldxb %r5, [%r5]\nadd %r3, 1\njlt %r3, %r2, -5\nexit",
                2,
            ),
            // A claimed length: the version's copy of the loop (its ordinary copy is
            // checked, and masked either way).
            (
                "ldxdw %r2, [%r1]\nmov %r3, %r1\nadd %r3, %r2\nadd %r1, 8\nmov %r0, 0\n\
                 jge %r1, %r3, +4\nldxb %r4, [%r1]\nadd %r0, %r4\nadd %r1, 1\nja -5\nexit",
                1,
            ),
            // Frame slots at constant offsets, behind a branch that proves nothing of them.
            (
                "stxdw [%r10-8], %r1\njeq %r2, 0, +1\nldxdw %r0, [%r10-8]\nexit",
                0,
            ),
        ];
        let options = |masking, clamp| {
            crate::JitOptions::default()
                .with_entry(Some(ebpf_cfg::facts::Entry::input()))
                .with_checked_facts(false)
                .with_spectre_masking(masking)
                .with_spectre_clamp_proven(clamp)
        };
        let guards = |src: &str, stage, masking, clamp| {
            let program = ebpf_isa::assemble(src).unwrap();
            let ir = crate::ir_text_with(&program, stage, &options(masking, clamp)).unwrap();
            match stage {
                crate::IrStage::Translated => ir.matches("select_spectre_guard").count(),
                _ => ir
                    .lines()
                    .filter(|l| l.trim_start().starts_with("cmov"))
                    .count(),
            }
        };
        for (src, by_branch) in cases {
            let translated =
                |masking, clamp| guards(src, crate::IrStage::Translated, masking, clamp);
            assert_eq!(
                translated(true, true),
                translated(true, false) + by_branch,
                "{src}"
            );
            assert_eq!(translated(false, true), 0, "{src}");
            assert_eq!(translated(false, false), 0, "{src}");
            if cfg!(target_arch = "x86_64") {
                let cmovs = |masking, clamp| guards(src, crate::IrStage::Machine, masking, clamp);
                assert_eq!(cmovs(true, true), cmovs(true, false) + by_branch, "{src}");
            }
            // Behaviour: as the interpreter's, on inputs the guards admit and refuse (the
            // first 8 bytes claim 16 more, which the shorter input does not have).
            let program = ebpf_isa::assemble(src).unwrap();
            let jit = crate::compile(&program, &options(true, true)).unwrap();
            let interp = ebpf_interp::Interpreter::new(&program);
            let mut full = 16u64.to_le_bytes().to_vec();
            full.extend((1..=16u8).map(|b| b * 3));
            for input in [full.clone(), full[..10].to_vec()] {
                let run = |engine: &dyn Fn(ebpf_abi::MemoryMap<'_>, [u64; 2]) -> _| {
                    let mut data = input.clone();
                    let len = data.len() as u64;
                    let mut memory = ebpf_abi::MemoryMap::new();
                    memory.insert(layout::INPUT, ebpf_abi::Region::Writable(&mut data));
                    let result = engine(memory, layout::input_args(len));
                    (result, data)
                };
                let (h, l) = (ebpf_abi::Helpers::new(), ebpf_abi::Limits::default());
                let got = run(&|m, a| jit.run(m, a, &h, &l));
                let want = run(&|m, a| interp.run(m, a, &h, &l));
                assert_eq!(got, want, "{src} on {} bytes", input.len());
            }
        }
    }

    /// A divisor the facts prove nonzero (and, signed, not `-1`) is divided with no test: the
    /// IR has no compare with 0 or -1 and no branch around the division.
    #[test]
    fn divisors_proven_nonzero_are_not_tested() {
        if !crate::host_supported() {
            return;
        }
        // r2 | 1 is odd: never 0; r3 = (r1 & 7) + 2 is 2..9: never 0, never -1.
        let src = "mov %r2, %r1\nor %r2, 1\nmov %r0, %r1\ndiv %r0, %r2\n\
                   mov %r3, %r1\nand %r3, 7\nadd %r3, 2\nsdiv %r0, %r3\nsmod %r0, %r3\nexit";
        let unchecked = crate::JitOptions::default().with_checked_facts(false);
        let ir = ir_with(src, &unchecked);
        assert_eq!(ir.matches("udiv").count(), 1, "{ir}");
        assert!(!ir.contains("icmp eq"), "a divisor test is left:\n{ir}");
        // No branch but the entry's budget checkpoint: the same as with additions.
        let adds = src
            .replace("sdiv", "add")
            .replace("smod", "add")
            .replace("div", "add");
        let branches = |ir: &str| ir.matches("brif").count();
        assert_eq!(branches(&ir), branches(&ir_with(&adds, &unchecked)), "{ir}");
        let program = ebpf_isa::assemble(src).unwrap();
        let jit = crate::compile(&program, &unchecked).unwrap();
        assert_eq!(
            (
                jit.removed().divisor_tests,
                jit.removed().divisor_tests_gone
            ),
            (5, 5)
        );
        // Checked facts keep a test of each (a branch to the failure), which fails loudly.
        let checked_options = unchecked.clone().with_checked_facts(true);
        let checked = ir_with(src, &checked_options);
        assert_eq!(branches(&checked), branches(&ir) + 3, "{checked}");
        let checked = crate::compile(&program, &checked_options).unwrap();
        let interp = ebpf_interp::Interpreter::new(&program);
        let (helpers, limits) = (ebpf_abi::Helpers::new(), ebpf_abi::Limits::default());
        let run = |engine: &dyn Fn(ebpf_abi::MemoryMap<'_>, [u64; 2]) -> _, r1| {
            engine(ebpf_abi::MemoryMap::new(), [r1, 0])
        };
        for r1 in [0u64, 5, 7, u64::MAX, 1 << 63, 0xffff_fff9] {
            let want = run(&|m, a| interp.run(m, a, &helpers, &limits), r1);
            assert_eq!(
                run(&|m, a| jit.run(m, a, &helpers, &limits), r1),
                want,
                "{r1}"
            );
            assert_eq!(
                run(&|m, a| checked.run(m, a, &helpers, &limits), r1),
                want,
                "{r1}"
            );
        }
    }

    /// The engines bench's loops bounded by lengths read from the input: every version the
    /// facts find is built (its accesses unchecked in the copy), so is every counted loop (the
    /// histogram's clearing of its stack table), and each program gives its expected result
    /// with the copy taken (its own input), with the ordinary loop (the input one byte short:
    /// the conditions fail, the run traps or ends as the interpreter's), and with checked
    /// facts.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_bench_loops_are_versioned() {
        use ebpf_abi::{Helpers, Limits, MemoryMap, Region, layout};
        if !crate::host_supported() {
            return;
        }
        let entry = ebpf_cfg::facts::Entry::input();
        let (mut versions, mut counted) = (0, 0);
        for p in ebpf_bench::PROGRAMS {
            let program = p.assemble();
            let facts = ebpf_cfg::facts::Facts::analyse(&program, &entry);
            let wanted: usize = facts.versions().iter().map(|v| v.accesses.len()).sum();
            let options = crate::JitOptions::default().with_entry(Some(entry.clone()));
            for checked in [false, true] {
                let jit =
                    crate::compile(&program, &options.clone().with_checked_facts(checked)).unwrap();
                if !checked {
                    assert_eq!(jit.removed().versions, facts.versions().len(), "{}", p.name);
                    assert_eq!(jit.removed().versioned, wanted, "{}", p.name);
                    assert_eq!(jit.removed().counted, facts.loops().len(), "{}", p.name);
                    counted += jit.removed().counted;
                    versions += jit.removed().versions;
                }
                let interp = ebpf_interp::Interpreter::new(&program);
                let full = p.input();
                for input in [full.clone(), full[..full.len() - 1].to_vec()] {
                    let run = |engine: &dyn Fn(MemoryMap<'_>, [u64; 2]) -> _| {
                        let mut data = input.clone();
                        let len = data.len() as u64;
                        let mut memory = MemoryMap::new();
                        memory.insert(layout::INPUT, Region::Writable(&mut data));
                        let result = engine(memory, layout::input_args(len));
                        (result, data)
                    };
                    let (h, l) = (Helpers::new(), Limits::default());
                    let got = run(&|m, a| jit.run(m, a, &h, &l));
                    let want = run(&|m, a| interp.run(m, a, &h, &l));
                    assert_eq!(got, want, "{} on {} bytes", p.name, input.len());
                    if input.len() == full.len() {
                        assert_eq!(got.0.unwrap().r0, p.expected(), "{}", p.name);
                    }
                }
            }
        }
        assert!(versions >= 4, "{versions} versions built");
        assert!(counted >= 1, "{counted} counted loops built");
    }

    /// A loop of 3 instructions run 100 times, which the facts count: 300 instructions per
    /// entry, then the `exit` after it.
    const COUNTED: &str = "mov %r0, 0\nmov %r1, 0\nloop:\nadd %r0, %r1\nadd %r1, 1\n\
                           jlt %r1, 100, loop\nexit";

    /// A counted loop gets a copy that charges nothing, entered through a dispatcher that
    /// charges the whole loop at once when the budget has it and the `exit` after it (which
    /// the loop's head would have covered); the ordinary loop still charges its 3
    /// instructions per iteration. Checked facts: the copy counts its instructions and
    /// compares them with the fact on the way out. Every budget around the loop's end
    /// agrees with the interpreter.
    #[test]
    fn a_counted_loop_is_charged_once_at_its_entry() {
        use ebpf_abi::{Helpers, Limits, MemoryMap};
        if !crate::host_supported() {
            eprintln!("skipping: cranelift does not support this host");
            return;
        }
        let program = ebpf_isa::assemble(COUNTED).unwrap();
        let facts = Facts::analyse(&program, &ebpf_cfg::facts::Entry::unknown());
        let counts: Vec<_> = facts
            .loops()
            .iter()
            .map(|l| l.instructions(&[0; 11]))
            .collect();
        assert_eq!(counts, [Some(300)]);
        let options = crate::JitOptions::default().with_checked_facts(false);
        let text = ir_with(COUNTED, &options);
        let constants = |text: &str, k: i64| {
            text.lines()
                .filter(|l| l.ends_with(&format!("iconst.i64 {k}")))
                .count()
        };
        // The dispatcher's test (the loop and the exit after it) and its charge; the
        // per-iteration charge once (the ordinary loop), not in the copy; two loop tests.
        assert_eq!(constants(&text, 301), 1, "{text}");
        assert_eq!(constants(&text, -300), 1, "{text}");
        let charges = |text: &str, k: i64| {
            text.lines()
                .filter(|l| l.contains(" = isub") && l.ends_with(&format!(" = {k}")))
                .count()
        };
        assert_eq!(charges(&text, 3), 1, "{text}");
        assert_eq!(constants(&text, 100), 2, "two copies of the body:\n{text}");
        let jit = crate::compile(&program, &options).unwrap();
        assert_eq!(jit.removed().counted, 1);
        // Checked facts: the copy's count, from minus the charge, tested in each of its blocks
        // (not past 0) and on the way out (0).
        let checked = ir_with(COUNTED, &options.clone().with_checked_facts(true));
        assert_eq!(constants(&checked, -300), 2, "{checked}");
        assert!(checked.contains(" sgt "), "{checked}");
        assert!(checked.contains(" ne "), "{checked}");
        let interp = ebpf_interp::Interpreter::new(&program);
        let checked_jit =
            crate::compile(&program, &options.clone().with_checked_facts(true)).unwrap();
        let h = Helpers::new();
        for budget in (290..=310).map(Some).chain([None]) {
            let limits = Limits {
                budget,
                ..Limits::default()
            };
            let want = interp.run(MemoryMap::new(), [0, 0], &h, &limits);
            for jit in [&jit, &checked_jit] {
                assert_eq!(
                    jit.run(MemoryMap::new(), [0, 0], &h, &limits),
                    want,
                    "{budget:?}"
                );
            }
        }
    }

    /// A loop bounded by `r2` gets the same copy, its dispatcher computing the charge from the
    /// registers (`(r2 - (r1 + 1)) * 3 + 3`, a multiply the ordinary loop does not have);
    /// every budget around each run's end, for bounds from zero trips to ones no closed form
    /// covers, agrees with the interpreter, checked facts or not.
    #[test]
    fn a_loop_bounded_at_run_time_is_charged_at_its_entry_from_registers() {
        use ebpf_abi::{Helpers, Limits, MemoryMap};
        if !crate::host_supported() {
            eprintln!("skipping: cranelift does not support this host");
            return;
        }
        let src = COUNTED.replace("jlt %r1, 100, loop", "jlt %r1, %r2, loop");
        let program = ebpf_isa::assemble(&src).unwrap();
        let options = crate::JitOptions::default().with_checked_facts(false);
        let text = ir_with(&src, &options);
        assert_eq!(text.matches(" imul").count(), 1, "{text}");
        let jit = crate::compile(&program, &options).unwrap();
        assert_eq!(jit.removed().counted, 1);
        let checked = crate::compile(&program, &options.clone().with_checked_facts(true)).unwrap();
        let interp = ebpf_interp::Interpreter::new(&program);
        let h = Helpers::new();
        for bound in [0u64, 1, 2, 50, 1 << 40, u64::MAX] {
            let args = [0, bound];
            let total = 3 * bound.clamp(1, 1000) + 3;
            for budget in (0..=10)
                .chain(total.saturating_sub(8)..=total + 2)
                .map(Some)
            {
                let limits = Limits {
                    budget,
                    ..Limits::default()
                };
                let want = interp.run(MemoryMap::new(), args, &h, &limits);
                for jit in [&jit, &checked] {
                    let got = jit.run(MemoryMap::new(), args, &h, &limits);
                    assert_eq!(got, want, "{bound} {budget:?}");
                }
            }
        }
    }

    /// What the generated code computes with [`udiv_magic`]'s numbers.
    fn divide(x: u64, d: u64, bits: u32) -> u64 {
        if d.is_power_of_two() {
            return x >> d.trailing_zeros();
        }
        let (m, l) = udiv_magic(d, bits);
        let t = ((u128::from(x) * u128::from(m)) >> bits) as u64;
        (t + ((x - t) >> 1)) >> (l - 1)
    }

    #[test]
    fn division_by_constants_is_exact() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut divisors: Vec<u64> = (1..=1000).collect();
        divisors.extend([
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            (1 << 63) + 1,
            0xffff_ffff,
            7 << 40,
        ]);
        divisors.extend((0..200).map(|_| next()));
        for &d in &divisors {
            for bits in [32u32, 64] {
                let d = if bits == 32 { d & 0xffff_ffff } else { d };
                let max = if bits == 32 {
                    u64::from(u32::MAX)
                } else {
                    u64::MAX
                };
                if d == 0 {
                    continue;
                }
                let mut xs = vec![0, 1, d - 1, d, d.wrapping_add(1) & max, max, max - 1];
                xs.extend((0..50).map(|_| next() & max));
                for x in xs {
                    assert_eq!(divide(x, d, bits), x / d, "{x} / {d} ({bits} bits)");
                }
            }
        }
    }
}
