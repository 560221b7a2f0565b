//! The dataflow analysis: which registers are written on every path, which values are known
//! (constants, and `r10` plus a constant), and which bytes of the stack frame are written on
//! every path. A forward "must" analysis per function, iterated to a fixed point over reverse
//! post-order, then one reporting pass.
//!
//! It is also conditional constant propagation (Wegman–Zadeck): a conditional jump whose
//! operands are known constants follows only the edge it takes, the edge it never takes
//! carries nothing, and a block no edge reaches is dead — as in the kernel, which explores
//! only the paths a run can take. `jeq`/`jne` refine the register they compare with a
//! constant on their equal edge. A function is live when a live block calls it. Findings are
//! reported for live code only; [`Analysis::live`] says which blocks are live, for the
//! structural checks and for reporting code that never runs.
//!
//! Values follow the ISA exactly — a 32-bit operation truncates and zero-extends (so
//! `r10 + 8` computed with `add32` is not a frame pointer), `movsx` sign-extends, a 32-bit
//! divisor is its low half — using the same arithmetic as the interpreter
//! (`ebpf_abi::semantics`).

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use ebpf_abi::semantics;
use ebpf_cfg::{BlockId, Cfg, FuncId, Terminator};
use ebpf_isa::{
    AluOp, AtomicOp, CallKind, Cond, Imm64Kind, Insn, Operand, PacketAddr, Program, Reg, Width,
};

use crate::{Finding, FindingKind, MapLookup};

const FRAME: i64 = ebpf_abi::STACK_FRAME_SIZE as i64;

/// What is known about a register's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Val {
    Unknown,
    Const(u64),
    /// `r10 + offset` of the current frame.
    Frame(i64),
    /// A pointer `offset` bytes into a value of map `map` (an index into
    /// [`MapLookup::maps`]), returned by the lookup at pc `lookup`; `or_null` until a
    /// `jeq`/`jne` against 0 tells that it is not NULL. Copies share `lookup`, so one check
    /// refines them all, as the kernel's register ids do.
    MapValue {
        map: u16,
        offset: i64,
        lookup: u32,
        or_null: bool,
    },
    /// A map held in a slot of map of maps `outer` (an index into
    /// [`MapLookup::outer_maps`]), or NULL: a lookup's result, passed to map helpers only.
    InnerMap {
        outer: u16,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    /// Bit `r` set: register `r` is written on every path.
    init: u16,
    vals: [Val; 11],
    /// Bit `i` set: byte `r10 - 512 + i` is written on every path.
    stack: [u64; 8],
}

impl State {
    /// The state at a function's entry: `init` says which registers are written there.
    fn entry(init: u16) -> State {
        let mut vals = [Val::Unknown; 11];
        vals[10] = Val::Frame(0);
        State {
            init,
            vals,
            stack: [0; 8],
        }
    }

    fn join(&self, other: &State) -> State {
        let mut vals = self.vals;
        for (v, o) in vals.iter_mut().zip(other.vals) {
            if *v != o {
                *v = Val::Unknown;
            }
        }
        let mut stack = self.stack;
        for (s, o) in stack.iter_mut().zip(other.stack) {
            *s &= o;
        }
        State {
            init: self.init & other.init,
            vals,
            stack,
        }
    }

    fn is_init(&self, r: Reg) -> bool {
        self.init & (1 << r.index()) != 0
    }

    fn val(&self, r: Reg) -> Val {
        self.vals[usize::from(r.index())]
    }

    fn set(&mut self, r: Reg, v: Val) {
        self.init |= 1 << r.index();
        self.vals[usize::from(r.index())] = v;
    }

    fn clobber(&mut self, r: Reg) {
        self.init &= !(1 << r.index());
        self.vals[usize::from(r.index())] = Val::Unknown;
    }

    fn byte_range(offset: i64, size: u32) -> Option<core::ops::Range<usize>> {
        let start = offset.checked_add(FRAME)?;
        let end = start.checked_add(i64::from(size))?;
        if start < 0 || end > FRAME {
            return None;
        }
        Some(start as usize..end as usize)
    }

    fn mark(&mut self, bytes: core::ops::Range<usize>) {
        for i in bytes {
            self.stack[i / 64] |= 1 << (i % 64);
        }
    }

    fn all_written(&self, bytes: core::ops::Range<usize>) -> bool {
        bytes
            .into_iter()
            .all(|i| self.stack[i / 64] & (1 << (i % 64)) != 0)
    }
}

/// Collects findings during the reporting pass; does nothing during the
/// fixed-point iteration.
struct Sink<'a> {
    report: bool,
    findings: &'a mut Vec<Finding>,
    cfg: &'a Cfg,
    helpers: Option<&'a [u32]>,
    maps: Option<&'a MapLookup>,
    /// Per function: the registers r1–r5 written at every live call site seen so far (the
    /// AND of the callers' states), `ALL_ARGS` until a call is seen.
    arg_masks: &'a mut [u16],
    /// Per function: whether a live block calls it.
    called: &'a mut [bool],
    /// Per function: whether it has been analysed in this round; a call that changes what an
    /// analysed function starts with (only possible with recursion) asks for another round.
    analysed: &'a [bool],
    again: &'a mut bool,
    /// Whether the function analysed is the entry: only its `exit` returns `r0` to the
    /// embedder. A sub-program may return nothing (a C `void` function); the caller's `r0`
    /// after the call counts as written, which this analysis cannot refine.
    main: bool,
}

impl Sink<'_> {
    fn error(&mut self, pc: usize, kind: FindingKind) {
        if self.report {
            self.findings.push(Finding::error(pc, kind));
        }
    }

    fn warning(&mut self, pc: usize, kind: FindingKind) {
        if self.report {
            self.findings.push(Finding::warning(pc, kind));
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Access {
    Read,
    Write,
    ReadWrite,
}

/// r1–r5: the argument registers.
const ALL_ARGS: u16 = 0b11_1110;
const R10: u16 = 1 << 10;

/// Reachable functions, callers before callees (reverse DFS post-order of the call graph from
/// the entry; with recursion, which is reported elsewhere, some callee comes first). Which of
/// them can run is for the analysis to find.
fn callers_first(cfg: &Cfg) -> Vec<usize> {
    let n = cfg.functions().len();
    let mut seen = vec![false; n];
    let mut post = Vec::new();
    let mut stack = vec![(0usize, false)];
    while let Some((f, expanded)) = stack.pop() {
        if expanded {
            post.push(f);
            continue;
        }
        if n == 0 || core::mem::replace(&mut seen[f], true) {
            continue;
        }
        stack.push((f, true));
        for &(pc, callee) in &cfg.functions()[f].call_sites {
            let live = cfg.block_at(pc).is_some_and(|b| cfg.is_reachable(b));
            if live && !seen[callee.index()] {
                stack.push((callee.index(), false));
            }
        }
    }
    post.reverse();
    post
}

/// What the analysis found besides its findings.
pub(crate) struct Analysis {
    /// The live blocks and functions.
    pub(crate) live: Live,
}

/// Which code can run: blocks some run can reach, given what the analysis knows about values.
pub(crate) struct Live {
    blocks: Vec<bool>,
    functions: Vec<bool>,
}

impl Live {
    /// Whether the block can run.
    pub(crate) fn block(&self, b: BlockId) -> bool {
        self.blocks.get(b.index()).copied().unwrap_or(false)
    }

    /// Whether the function can run (the entry, or a function a live block calls).
    pub(crate) fn function(&self, f: FuncId) -> bool {
        self.functions.get(f.index()).copied().unwrap_or(false)
    }

    /// Whether the instruction at `pc` can run.
    pub(crate) fn pc(&self, cfg: &Cfg, pc: usize) -> bool {
        cfg.block_at(pc).is_some_and(|b| self.block(b))
    }
}

pub(crate) fn check(
    program: &Program,
    cfg: &Cfg,
    helpers: Option<&[u32]>,
    maps: Option<&MapLookup>,
    findings: &mut Vec<Finding>,
) -> Analysis {
    let insns = program.insns();
    let pcs: Vec<usize> = program.iter().map(|(pc, _)| pc).collect();
    let nf = cfg.functions().len();
    let order = callers_first(cfg);
    // Each block's position in its function's reverse post-order (`usize::MAX`: in none).
    let mut rpo_pos = vec![usize::MAX; cfg.blocks().len()];
    for func in cfg.functions() {
        for (i, b) in func.rpo.iter().enumerate() {
            rpo_pos[b.index()] = i;
        }
    }
    let mut arg_masks = vec![ALL_ARGS; nf];
    let mut called = vec![false; nf];
    if let Some(main) = called.first_mut() {
        *main = true;
    }
    // Callers come before callees, so one round settles every function's entry state —
    // unless functions call each other in a cycle (reported as recursion elsewhere): then
    // rounds repeat until no call site changes an analysed function's entry.
    loop {
        let mut again = false;
        let mut analysed = vec![false; nf];
        let start = findings.len();
        // Out-states by block; functions own disjoint block ranges, so one array serves all.
        let mut outs: Vec<Option<State>> = vec![None; cfg.blocks().len()];
        for &f in &order {
            if called[f] {
                let mut sink = Sink {
                    report: false,
                    findings: &mut *findings,
                    cfg,
                    helpers,
                    maps,
                    arg_masks: &mut arg_masks,
                    called: &mut called,
                    analysed: &analysed,
                    again: &mut again,
                    main: f == 0,
                };
                analyse_function(f, insns, &pcs, &rpo_pos, &mut outs, &mut sink);
            }
            analysed[f] = true;
        }
        if again {
            findings.truncate(start);
            continue;
        }
        // A block is live when some live edge reached it, i.e. it was given a state.
        let blocks = outs.iter().map(Option::is_some).collect();
        return Analysis {
            live: Live {
                blocks,
                functions: called,
            },
        };
    }
}

/// Iterates function `f` to its fixed point, then walks it once more to report.
fn analyse_function(
    f: usize,
    insns: &[Insn],
    pcs: &[usize],
    rpo_pos: &[usize],
    outs: &mut [Option<State>],
    sink: &mut Sink<'_>,
) {
    let cfg = sink.cfg;
    let func = &cfg.functions()[f];
    // The entry function gets r1 and r2 from the embedder; a sub-program gets the arguments
    // every caller wrote (r0 and r6–r9 are not passed).
    let init = if f == 0 {
        0b110
    } else {
        sink.arg_masks[f] & ALL_ARGS
    };
    let entry = (func.entry_block(), State::entry(init | R10));
    // One pass over block `b` from its in-state (`None`: no live edge reaches it yet).
    let walk = |b: BlockId, outs: &[Option<State>], sink: &mut Sink<'_>| {
        let mut state = in_state(cfg, insns, b, outs, &entry)?;
        for i in cfg.block(b).insns.clone() {
            transfer(pcs[i], &insns[i], &mut state, sink);
        }
        Some(state)
    };
    // A worklist in reverse post-order: a block is walked again only when a predecessor's
    // out-state changed. (Sweeping the whole function until nothing changes would cost a
    // sweep per loop in a row: each loop's exit edge comes alive only once its head's
    // constant is found to vary.)
    let mut pending = BTreeSet::new();
    pending.insert(0usize);
    // Termination: a block's out-state only ever climbs — each walk's result is joined with
    // the previous one. The edge refinements are not monotone on their own: `jne r10, r0`
    // makes an unknown `r10` equal to `r0`'s constant on its fall-through edge but leaves a
    // frame pointer as it is, so a value that climbs from `Frame` to unknown can come back
    // as a constant, decide a later jump the other way, kill the edge that made it unknown,
    // and cycle (the property tests found such loops: a load that never ended,
    // `tests/verifier/termination.txt` keeps one). Joined out-states climb a lattice of
    // finite height (each value: none, one value, unknown; init and stack bits only clear),
    // so the worklist ends; and the fixed point it reaches is still a post-fixed point of the
    // transfer, i.e. sound: every state a run can reach is covered.
    while let Some(i) = pending.pop_first() {
        let Some(&b) = func.rpo.get(i) else { continue };
        let climbed = walk(b, outs, sink).map(|state| match &outs[b.index()] {
            Some(previous) => previous.join(&state),
            None => state,
        });
        if let Some(state) = climbed
            && outs[b.index()].as_ref() != Some(&state)
        {
            outs[b.index()] = Some(state);
            for (succ, _) in cfg.block(b).successors() {
                if let Some(&p) = rpo_pos.get(succ.index())
                    && p != usize::MAX
                {
                    pending.insert(p);
                }
            }
        }
    }
    // Findings are recorded only now that the states are final.
    sink.report = true;
    for &b in &func.rpo {
        walk(b, outs, sink);
    }
}

/// The state at the start of block `b`: the join of what flows along every edge into it that
/// can be taken (and the function's entry state, for its entry block). `None`: dead so far.
fn in_state(
    cfg: &Cfg,
    insns: &[Insn],
    b: BlockId,
    outs: &[Option<State>],
    entry: &(BlockId, State),
) -> Option<State> {
    let mut acc = (entry.0 == b).then(|| entry.1.clone());
    for &p in &cfg.block(b).preds {
        let Some(out) = &outs[p.index()] else {
            continue;
        };
        if let Some(flow) = edge_state(cfg, insns, p, b, out) {
            acc = Some(match acc {
                None => flow,
                Some(a) => a.join(&flow),
            });
        }
    }
    acc
}

/// What flows from block `from` (whose out-state is `out`) into its successor `to`: `None` if
/// that edge is never taken — a conditional jump on known constants goes one way only.
fn edge_state(cfg: &Cfg, insns: &[Insn], from: BlockId, to: BlockId, out: &State) -> Option<State> {
    let block = cfg.block(from);
    let Terminator::Branch { taken, fallthrough } = block.terminator else {
        return Some(out.clone());
    };
    let jump = block.insns.end.checked_sub(1).and_then(|i| insns.get(i));
    let Some(&Insn::Jump {
        width,
        cond,
        dst,
        src,
        ..
    }) = jump
    else {
        return Some(out.clone());
    };
    let src_val = match src {
        Operand::Reg(r) => out.val(r),
        Operand::Imm(i) => Val::Const(i64::from(i) as u64),
    };
    let decided = match (out.val(dst), src_val) {
        (Val::Const(a), Val::Const(b)) => Some(match width {
            Width::W64 => semantics::cond64(cond, a, b),
            Width::W32 => semantics::cond32(cond, a, b),
        }),
        _ => None,
    };
    let via_taken = taken == Some(to) && decided != Some(false);
    let via_fallthrough = fallthrough == Some(to) && decided != Some(true);
    if !(via_taken || via_fallthrough) {
        return None;
    }
    // A jump whose two edges reach this block (`jeq r0, 0, +0`) tells it nothing: both
    // outcomes arrive, so neither refinement may be applied (the NULL check's once was, and
    // made a live branch look decided and an unchecked lookup result look checked).
    if via_taken && via_fallthrough {
        return Some(out.clone());
    }
    if let Some(flow) = null_check(out, width, cond, dst, src_val, taken == Some(to)) {
        return Some(flow);
    }
    match (via_taken, via_fallthrough) {
        (false, false) => None,
        (true, true) => Some(out.clone()),
        // On the edge where a 64-bit `jeq`/`jne` found its operands equal, an unknown operand
        // equals the known one.
        (taken_edge, _) => {
            let mut flow = out.clone();
            let equal = match cond {
                Cond::Eq => taken_edge,
                Cond::Ne => !taken_edge,
                _ => false,
            };
            if equal && width == Width::W64 {
                match (out.val(dst), src, src_val) {
                    (Val::Unknown, _, Val::Const(c)) if out.is_init(dst) => {
                        flow.vals[usize::from(dst.index())] = Val::Const(c);
                    }
                    (Val::Const(c), Operand::Reg(r), Val::Unknown) if out.is_init(r) => {
                        flow.vals[usize::from(r.index())] = Val::Const(c);
                    }
                    _ => {}
                }
            }
            Some(flow)
        }
    }
}

/// What a conditional jump that compares a lookup's result tells on one edge
/// (`taken_edge`). A 64-bit `jeq`/`jne` of the result itself against 0 makes every copy of it
/// a pointer that is not NULL on the not-equal edge, and on the equal edge the constant the
/// copy then holds (its offset: the result was 0) — so an array value the kernel knows is not
/// NULL is not checked on a path the kernel proves dead. Any other comparison of a result
/// that may be NULL tells nothing this analysis follows: its copies become unknown on both
/// edges (the kernel would refuse a dereference after such a check; this analysis only never
/// refuses what the kernel loads). `None`: nothing to change.
fn null_check(
    out: &State,
    width: Width,
    cond: Cond,
    dst: Reg,
    src_val: Val,
    taken_edge: bool,
) -> Option<State> {
    let pointer = |v: Val| match v {
        Val::MapValue {
            offset,
            lookup,
            or_null,
            ..
        } => Some((offset, lookup, or_null)),
        _ => None,
    };
    let ((offset, lookup, or_null), other) = match (pointer(out.val(dst)), pointer(src_val)) {
        (Some(p), _) => (p, src_val),
        (None, Some(p)) => (p, out.val(dst)),
        (None, None) => return None,
    };
    let against_zero = width == Width::W64 && offset == 0 && other == Val::Const(0);
    let equal = match cond {
        Cond::Eq if against_zero => Some(taken_edge),
        Cond::Ne if against_zero => Some(!taken_edge),
        _ if or_null => None,
        _ => return None,
    };
    let mut flow = out.clone();
    for v in &mut flow.vals {
        if let Val::MapValue {
            map,
            offset,
            lookup: l,
            or_null,
        } = *v
            && l == lookup
        {
            *v = match equal {
                Some(true) => Val::Const(offset as u64),
                Some(false) => Val::MapValue {
                    map,
                    offset,
                    lookup,
                    or_null: false,
                },
                None if or_null => Val::Unknown,
                None => continue,
            };
        }
    }
    Some(flow)
}

/// Checks an access of `size` bytes at `base + off` when `base` is a lookup's result.
fn map_access(pc: usize, base: Val, off: i16, size: u32, sink: &mut Sink<'_>) {
    if let Val::InnerMap { outer } = base {
        let map = sink
            .maps
            .and_then(|m| m.outer_maps.get(usize::from(outer)))
            .map_or_else(String::new, |(_, name)| name.clone());
        sink.error(pc, FindingKind::InnerMapAccess { map });
        return;
    }
    let Val::MapValue {
        map,
        offset,
        or_null,
        ..
    } = base
    else {
        return;
    };
    let Some(values) = sink.maps.and_then(|m| m.maps.get(usize::from(map))) else {
        return;
    };
    let kind = if or_null {
        FindingKind::MapValueOrNull {
            map: values.name.clone(),
        }
    } else {
        let start = offset.saturating_add(i64::from(off));
        if start >= 0 && start.saturating_add(i64::from(size)) <= i64::from(values.value_size) {
            return;
        }
        FindingKind::MapValueOutOfBounds {
            map: values.name.clone(),
            offset: start,
            size,
            value_size: values.value_size,
        }
    };
    sink.error(pc, kind);
}

/// A helper call with a known map constant in `r1` (`map`), given maps to know it by: the
/// maps, the helper's id and the handle.
fn map_call<'m>(
    insn: &Insn,
    map: Val,
    maps: Option<&'m MapLookup>,
) -> Option<(&'m MapLookup, u32, u64)> {
    match (maps, *insn, map) {
        (
            Some(lookup),
            Insn::Call {
                kind: CallKind::Helper,
                imm,
            },
            Val::Const(handle),
        ) => Some((lookup, imm as u32, handle)),
        _ => None,
    }
}

/// What `r0` holds after a call to `map_lookup_elem` whose `r1` is `map`: a pointer to a
/// value of a known map, NULL or not; unknown for any other call.
fn lookup_result(pc: usize, insn: &Insn, map: Val, sink: &Sink<'_>) -> Val {
    let Some((lookup, helper, handle)) = map_call(insn, map, sink.maps) else {
        return Val::Unknown;
    };
    if helper != lookup.helper {
        return Val::Unknown;
    }
    if let Some(outer) = lookup.outer_maps.iter().position(|(h, _)| *h == handle) {
        return u16::try_from(outer).map_or(Val::Unknown, |outer| Val::InnerMap { outer });
    }
    let found = lookup.maps.iter().position(|m| m.handle == handle);
    match (found.and_then(|i| u16::try_from(i).ok()), u32::try_from(pc)) {
        (Some(index), Ok(pc)) => Val::MapValue {
            map: index,
            offset: 0,
            lookup: pc,
            or_null: lookup.maps[usize::from(index)].may_be_null,
        },
        _ => Val::Unknown,
    }
}

/// Refuses a map helper other than the lookup called on a map of maps (`r1` its handle).
fn outer_map_helper(pc: usize, insn: &Insn, map: Val, sink: &mut Sink<'_>) {
    let Some((lookup, helper, handle)) = map_call(insn, map, sink.maps) else {
        return;
    };
    if helper == lookup.helper || !lookup.map_helpers.contains(&helper) {
        return;
    }
    if let Some((_, name)) = lookup.outer_maps.iter().find(|(h, _)| *h == handle) {
        let map = name.clone();
        sink.error(pc, FindingKind::OuterMapHelper { map, helper });
    }
}

fn use_reg(pc: usize, r: Reg, s: &State, sink: &mut Sink<'_>) {
    if !s.is_init(r) {
        sink.error(pc, FindingKind::UninitializedRegister { reg: r });
    }
}

fn stack_access(
    pc: usize,
    base: Val,
    off: i16,
    size: u32,
    access: Access,
    s: &mut State,
    sink: &mut Sink<'_>,
) {
    let Val::Frame(k) = base else { return };
    let offset = k.saturating_add(i64::from(off));
    let Some(bytes) = State::byte_range(offset, size) else {
        sink.error(pc, FindingKind::StackOutOfBounds { offset, size });
        return;
    };
    if offset.rem_euclid(i64::from(size)) != 0 {
        sink.error(pc, FindingKind::MisalignedStack { offset, size });
    }
    // A warning, as the kernel allows it to privileged loaders: every engine reads zero (the
    // stack buffer is zero between runs, docs/per-run.md) or what this run wrote there before.
    if access != Access::Write && !s.all_written(bytes.clone()) {
        sink.warning(pc, FindingKind::UninitializedStack { offset, size });
    }
    if access != Access::Read {
        s.mark(bytes);
    }
}

fn map_value(map: u16, offset: i64, lookup: u32) -> Val {
    Val::MapValue {
        map,
        offset,
        lookup,
        or_null: false,
    }
}

fn fold(width: Width, op: AluOp, dst: Val, src: Val) -> Val {
    match (width, dst, src) {
        (Width::W64, Val::Const(a), Val::Const(b)) => Val::Const(semantics::alu64(op, a, b)),
        (Width::W32, Val::Const(a), Val::Const(b)) => Val::Const(semantics::alu32(op, a, b)),
        (Width::W64, Val::Const(c), Val::Frame(k)) if op == AluOp::Add => {
            Val::Frame(k.wrapping_add(c as i64))
        }
        (Width::W64, Val::Frame(k), Val::Const(c)) => match op {
            AluOp::Add => Val::Frame(k.wrapping_add(c as i64)),
            AluOp::Sub => Val::Frame(k.wrapping_sub(c as i64)),
            _ => Val::Unknown,
        },
        // Arithmetic on a lookup's result not yet checked against NULL is unknown (the
        // kernel refuses it; this analysis never refuses what the kernel might load).
        (
            Width::W64,
            Val::MapValue {
                map,
                offset,
                lookup,
                or_null: false,
            },
            Val::Const(c),
        ) => match op {
            AluOp::Add => map_value(map, offset.wrapping_add(c as i64), lookup),
            AluOp::Sub => map_value(map, offset.wrapping_sub(c as i64), lookup),
            _ => Val::Unknown,
        },
        (
            Width::W64,
            Val::Const(c),
            Val::MapValue {
                map,
                offset,
                lookup,
                or_null: false,
            },
        ) if op == AluOp::Add => map_value(map, offset.wrapping_add(c as i64), lookup),
        _ => Val::Unknown,
    }
}

fn transfer(pc: usize, insn: &Insn, s: &mut State, sink: &mut Sink<'_>) {
    match *insn {
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => {
            if op != AluOp::Mov {
                use_reg(pc, dst, s, sink);
            }
            let src_val = match src {
                Operand::Reg(r) => {
                    use_reg(pc, r, s, sink);
                    s.val(r)
                }
                Operand::Imm(i) => Val::Const(i64::from(i) as u64),
            };
            if matches!(op, AluOp::Div | AluOp::Mod | AluOp::Sdiv | AluOp::Smod) {
                let zero = match (width, src_val) {
                    (Width::W64, Val::Const(c)) => c == 0,
                    // A 32-bit division divides by the low half only.
                    (Width::W32, Val::Const(c)) => c as u32 == 0,
                    _ => false,
                };
                if zero {
                    sink.warning(pc, FindingKind::DivisionByZero);
                }
            }
            let v = match (op, width) {
                (AluOp::Mov, Width::W64) => src_val,
                (AluOp::Mov, Width::W32) => match src_val {
                    Val::Const(c) => Val::Const(u64::from(c as u32)),
                    _ => Val::Unknown,
                },
                _ => fold(width, op, s.val(dst), src_val),
            };
            s.set(dst, v);
        }
        Insn::Neg { width, dst } => {
            use_reg(pc, dst, s, sink);
            let v = match s.val(dst) {
                Val::Const(c) => Val::Const(semantics::neg(width == Width::W64, c)),
                _ => Val::Unknown,
            };
            s.set(dst, v);
        }
        Insn::MovSx {
            width,
            from,
            dst,
            src,
        } => {
            use_reg(pc, src, s, sink);
            let v = match s.val(src) {
                Val::Const(c) => Val::Const(semantics::movsx(width == Width::W64, from, c)),
                _ => Val::Unknown,
            };
            s.set(dst, v);
        }
        Insn::Endian { order, width, dst } => {
            use_reg(pc, dst, s, sink);
            let v = match s.val(dst) {
                Val::Const(c) => Val::Const(semantics::endian(order, width, c)),
                _ => Val::Unknown,
            };
            s.set(dst, v);
        }
        Insn::Ja { .. } | Insn::Ja32 { .. } => {}
        Insn::Jump { dst, src, .. } => {
            use_reg(pc, dst, s, sink);
            if let Operand::Reg(r) = src {
                use_reg(pc, r, s, sink);
            }
        }
        Insn::Call { .. } | Insn::CallX { .. } => {
            if let Insn::CallX { reg } = *insn {
                use_reg(pc, reg, s, sink);
                // A helper id known as a constant is checked like `call id`.
                if let (Val::Const(id), Some(helpers)) = (s.val(reg), sink.helpers) {
                    let known = u32::try_from(id).is_ok_and(|id| helpers.contains(&id));
                    if !known {
                        sink.error(pc, FindingKind::UnknownHelper { id });
                    }
                }
            }
            if sink.report
                && let Some(callee) = insn.call_target(pc).and_then(|t| sink.cfg.function_at(t))
                && let Some(mask) = sink.arg_masks.get_mut(callee.index())
            {
                let c = callee.index();
                let before = (*mask, sink.called[c]);
                *mask &= s.init;
                sink.called[c] = true;
                if sink.analysed[c] && before != (*mask, true) {
                    *sink.again = true;
                }
            }
            // The callee may write the caller's stack through a pointer argument: count the
            // frame from that pointer up as written rather than report false positives.
            for r in &Reg::ALL[1..=5] {
                if let (true, Val::Frame(k)) = (s.is_init(*r), s.val(*r)) {
                    let from = k.clamp(-FRAME, 0);
                    if let Some(bytes) = State::byte_range(from, (-from) as u32) {
                        s.mark(bytes);
                    }
                }
            }
            outer_map_helper(pc, insn, s.val(Reg::R1), sink);
            let r0 = lookup_result(pc, insn, s.val(Reg::R1), sink);
            for r in &Reg::ALL[1..=5] {
                s.clobber(*r);
            }
            s.set(Reg::R0, r0);
        }
        Insn::Exit => {
            if sink.main {
                use_reg(pc, Reg::R0, s, sink);
            }
        }
        Insn::LoadImm64 { dst, kind, imm } => {
            let v = if kind == Imm64Kind::Value {
                Val::Const(imm)
            } else {
                Val::Unknown
            };
            s.set(dst, v);
        }
        Insn::Load {
            size,
            dst,
            src,
            off,
            ..
        } => {
            use_reg(pc, src, s, sink);
            stack_access(pc, s.val(src), off, size.bytes(), Access::Read, s, sink);
            map_access(pc, s.val(src), off, size.bytes(), sink);
            s.set(dst, Val::Unknown);
        }
        Insn::Store {
            size,
            dst,
            off,
            src,
        } => {
            use_reg(pc, dst, s, sink);
            if let Operand::Reg(r) = src {
                use_reg(pc, r, s, sink);
            }
            stack_access(pc, s.val(dst), off, size.bytes(), Access::Write, s, sink);
            map_access(pc, s.val(dst), off, size.bytes(), sink);
        }
        Insn::Atomic {
            width,
            op,
            dst,
            src,
            off,
        } => {
            use_reg(pc, dst, s, sink);
            use_reg(pc, src, s, sink);
            if op == AtomicOp::Cmpxchg {
                use_reg(pc, Reg::R0, s, sink);
            }
            let size = if width == Width::W64 { 8 } else { 4 };
            stack_access(pc, s.val(dst), off, size, Access::ReadWrite, s, sink);
            map_access(pc, s.val(dst), off, size, sink);
            match op {
                AtomicOp::Cmpxchg => s.set(Reg::R0, Val::Unknown),
                op if op.fetches() => s.set(src, Val::Unknown),
                _ => {}
            }
        }
        Insn::LoadPacket { addr, .. } => {
            if let PacketAddr::Ind(r) = addr {
                use_reg(pc, r, s, sink);
            }
            s.set(Reg::R0, Val::Unknown);
        }
    }
}
