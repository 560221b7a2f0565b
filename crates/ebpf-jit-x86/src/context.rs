//! The run-time context that generated code works against: a `#[repr(C)]` struct whose address
//! lives in `rbx` for the whole run, and the frame records of local calls.
//!
//! The JIT reads and writes the context only at the offsets exported here (`OFF_*`, computed
//! with `offset_of!`, so the emitter and the struct cannot drift apart). The first part is a
//! struct-of-arrays view of the region table, derived from `MemoryMap::raw_entry` so that a
//! bounds check is one compare against a precomputed limit:
//!
//! - `bias[r] = host(r) - (r << 32)`: adding it to a VM address in region `r` gives the host
//!   address;
//! - `load_lim[w][r]` / `store_lim[w][r]`: an access of `1 << w` bytes at VM address `a`, whose
//!   region is `r = (a >> 32) & 63`, is in bounds exactly when `a < lim`. The limit is
//!   `(r << 32) + len - width + 1` (0 when the region is unmapped, shorter than the access, or —
//!   for stores — read-only). `len` is clamped to the region's 4 GiB window
//!   (`layout::MAX_REGION_LEN`, as `MemoryMap` already does), so the limit never reaches into
//!   the next region's addresses and the guessed-region check (`a - base < span`) is exact too.
//!   Masking the region id with 63 instead of checking it is exact for the same reason: an
//!   address whose real region id is 64 or more is at least 2^38 above its aliased region's
//!   base, so it is never below the limit.

use alloc::boxed::Box;
use core::any::Any;
use core::marker::PhantomData;
use core::mem::offset_of;

use ebpf_abi::{
    Helpers, MemoryMap, REGION_TABLE_LEN, RawRegion, RawTrap, RunBuffers, TrapKind, layout,
    trap_code,
};

/// Access widths in bytes, indexed by `w` (`1 << w`).
pub(crate) const WIDTHS: [u64; 4] = [1, 2, 4, 8];

/// Lengths above this are clamped in the limits (see the module docs): a region addresses at
/// most its 4 GiB window.
const LEN_CLAMP: u64 = layout::MAX_REGION_LEN;

/// What generated code returns in `eax`.
pub(crate) mod status {
    /// `exit` from the entry function: `r0` in `regs[0]`, `remaining` up to date.
    pub(crate) const EXIT: u32 = 0;
    /// A trap: `trap_pc`, `trap_code`, `trap_addr` (and `helper_trap` for helpers).
    pub(crate) const TRAP: u32 = 1;
    /// The budget ran short at the entry of block `block`: registers in `regs`, `remaining`
    /// is what was left before the block.
    pub(crate) const BUDGET: u32 = 2;
    /// A helper panicked: the payload is in `panic`.
    pub(crate) const PANIC: u32 = 3;
    /// A check the facts declared impossible failed (checked-facts mode): the pc is in
    /// `trap_pc`.
    pub(crate) const FACT: u32 = 4;
}

/// What generated code stores in `trap_code`: the contract's trap code
/// (`ebpf_abi::trap_code`) in the low byte and, from bit 8, the operand known when the code is
/// emitted — the width of a memory access, the code of an invalid instruction's reason — so
/// that one 32-bit immediate says it all. A memory trap's address is in `trap_addr`.
pub(crate) const fn packed(code: u64, operand: u64) -> u32 {
    (code | operand << 8) as u32
}

/// The contract's report of a trap whose `trap_code` is `code` (see [`packed`]) and whose
/// `trap_addr` is `addr`.
pub(crate) fn unpacked(code: u64, addr: u64) -> RawTrap {
    let (code, operand) = (code & 0xff, code >> 8);
    match code {
        trap_code::INVALID_INSTRUCTION => RawTrap {
            code,
            a: operand,
            b: 0,
        },
        _ => RawTrap {
            code,
            a: addr,
            b: operand,
        },
    }
}

/// One saved caller frame of a local call (a slot of the shadow stack), 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Frame {
    /// The caller's `r6`–`r9` and `r10`.
    pub(crate) saved: [u64; 5],
    /// Host address the callee's `exit` jumps back to.
    pub(crate) ret: u64,
    /// `r10` of the callee (precomputed: `limits.frame_pointer(depth + 1)`).
    pub(crate) callee_fp: u64,
    pub(crate) _pad: u64,
}

/// Byte size of a [`Frame`].
pub(crate) const FRAME_SIZE: i32 = core::mem::size_of::<Frame>() as i32;
/// Offset of `Frame::ret`.
pub(crate) const FRAME_RET: i32 = offset_of!(Frame, ret) as i32;
/// Offset of `Frame::callee_fp`.
pub(crate) const FRAME_CALLEE_FP: i32 = offset_of!(Frame, callee_fp) as i32;

/// The part of the context that generated code uses besides the region arrays, and that every
/// run starts afresh (a reused context only resets this, not the arrays).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RunState {
    /// `r0`..`r10`: entry values, the spill area of the budget path, `r0` at exit.
    pub(crate) regs: [u64; 11],
    /// Instructions that may still execute.
    pub(crate) remaining: u64,
    /// Next free shadow-stack slot (a `*mut Frame`).
    pub(crate) frame_sp: u64,
    /// First shadow-stack slot: `frame_sp == frame_base` means depth 0.
    pub(crate) frame_base: u64,
    /// One past the last slot: a call with `frame_sp == frame_end` nests too deep.
    pub(crate) frame_end: u64,
    /// `rsp` after the prologue, restored by the epilogue.
    pub(crate) saved_rsp: u64,
    /// Address of the helper trampoline.
    pub(crate) trampoline: u64,
    /// The helper id of the current call (the full register for `callx`).
    pub(crate) helper_id: u64,
    /// What a trap reports.
    pub(crate) trap_pc: u64,
    /// See [`packed`].
    pub(crate) trap_code: u64,
    /// The VM address of a memory trap.
    pub(crate) trap_addr: u64,
    /// The block whose budget ran short.
    pub(crate) block: u64,
    /// Where the resume entry jumps: the host address of a block's code.
    pub(crate) resume: u64,
    /// Checked-facts mode: instructions run so far in the copy of a counted loop, which
    /// charges its budget once at entry (compared with the loop's fact when it is left).
    pub(crate) loop_count: u64,
}

impl RunState {
    /// Makes the state an earlier run left ready for a run from the entry, writing only what
    /// generated code can read before writing it; [`crate::run`]'s `start_state` then sets
    /// `r1`, `r2`, `r10`, the budget, the shadow stack's words and the trampoline. The rest
    /// is written before it is read on every path (emit.rs): the other registers by the
    /// entry's prologue, which zeroes those the code may read before writing them (the rest
    /// it never reads before writing: `live.rs`), and by the budget path before
    /// `status::BUDGET` (the resume entry loads them; Rust reads only `regs[0]`, which the
    /// exit stores); `saved_rsp` by the prologue;
    /// `helper_id` before each helper call; `trap_code` and `trap_addr` by every
    /// trap (`trap_common`, the trampoline), before the status that makes Rust read them;
    /// `block` by the budget path, before `status::BUDGET`; `resume` by Rust, before the
    /// resume entry. `trap_pc` is written by every trap, fact stub and helper call too, and
    /// cleared here all the same (one store), so that a report of an internal error never
    /// depends on an earlier run; `loop_count` (checked-facts mode) likewise.
    #[inline(always)]
    pub(crate) fn clear_for_entry(&mut self) {
        self.trap_pc = 0;
        self.loop_count = 0;
    }
}

/// The context of one run. Generated code addresses it through `rbx`.
#[repr(C)]
pub(crate) struct Ctx<'a> {
    /// Host address minus VM base, per region.
    pub(crate) bias: [u64; REGION_TABLE_LEN],
    /// Limits for loads of 1, 2, 4 and 8 bytes.
    pub(crate) load_lim: [[u64; REGION_TABLE_LEN]; 4],
    /// Limits for stores (and atomics) of 1, 2, 4 and 8 bytes.
    pub(crate) store_lim: [[u64; REGION_TABLE_LEN]; 4],
    /// VM base address of each region, `r << 32`.
    pub(crate) start: [u64; REGION_TABLE_LEN],
    /// Host address of each region's first byte.
    pub(crate) host: [u64; REGION_TABLE_LEN],
    /// `load_lim` minus `start` (0 where the limit is 0).
    pub(crate) load_span: [[u64; REGION_TABLE_LEN]; 4],
    /// `store_lim` minus `start` (0 where the limit is 0).
    pub(crate) store_span: [[u64; REGION_TABLE_LEN]; 4],
    /// Always 0, never written: what Spectre masking moves into a host address that failed
    /// its check (`cmovae rdx, [rbx + OFF_NULL]`: a conditional move has no immediate form).
    pub(crate) null: u64,
    /// Registers, budget, shadow stack, helper call and trap report: fresh for every run.
    pub(crate) run: RunState,
    // Below: used by Rust only.
    /// The run's memory, as helpers see it: a `MemoryMap`, or a session's `RunBuffers` —
    /// the type the trampoline whose address is in `run.trampoline` was made for.
    pub(crate) memory: *mut (),
    /// The lifetime of the memory `memory` points to.
    pub(crate) _memory: PhantomData<&'a mut MemoryMap<'a>>,
    /// The run's helpers.
    pub(crate) helpers: *const Helpers,
    /// The raw table of the contract, refreshed after every helper call.
    pub(crate) raw: [RawRegion; REGION_TABLE_LEN],
    /// Rows `0..rows` of the region arrays may be non-zero (regions `0..rows` may be mapped);
    /// the rest are zero, and their `raw` entries unmapped.
    pub(crate) rows: usize,
    /// The rows that may be non-zero, as a bit set (bit `r` for row `r`): the regions the last
    /// refresh found mapped.
    pub(crate) mapped: u64,
    /// The map's [generation](MemoryMap::generation) when the table was last refreshed: while
    /// it stays the same, nothing reached the regions through `&mut`, and the table's
    /// pointers need no re-deriving.
    pub(crate) generation: u64,
    /// How a helper call failed.
    pub(crate) helper_trap: Option<TrapKind>,
    /// A helper's panic, resumed once generated code has returned.
    pub(crate) panic: Option<Box<dyn Any + Send + 'static>>,
}

/// Offsets generated code uses.
pub(crate) const OFF_BIAS: i32 = offset_of!(Ctx<'static>, bias) as i32;
pub(crate) const OFF_LOAD_LIM: i32 = offset_of!(Ctx<'static>, load_lim) as i32;
pub(crate) const OFF_STORE_LIM: i32 = offset_of!(Ctx<'static>, store_lim) as i32;
pub(crate) const OFF_START: i32 = offset_of!(Ctx<'static>, start) as i32;
pub(crate) const OFF_HOST: i32 = offset_of!(Ctx<'static>, host) as i32;
pub(crate) const OFF_LOAD_SPAN: i32 = offset_of!(Ctx<'static>, load_span) as i32;
pub(crate) const OFF_STORE_SPAN: i32 = offset_of!(Ctx<'static>, store_span) as i32;
pub(crate) const OFF_NULL: i32 = offset_of!(Ctx<'static>, null) as i32;
pub(crate) const OFF_REGS: i32 = offset_of!(Ctx<'static>, run.regs) as i32;
pub(crate) const OFF_REMAINING: i32 = offset_of!(Ctx<'static>, run.remaining) as i32;
pub(crate) const OFF_FRAME_SP: i32 = offset_of!(Ctx<'static>, run.frame_sp) as i32;
pub(crate) const OFF_FRAME_BASE: i32 = offset_of!(Ctx<'static>, run.frame_base) as i32;
pub(crate) const OFF_FRAME_END: i32 = offset_of!(Ctx<'static>, run.frame_end) as i32;
pub(crate) const OFF_SAVED_RSP: i32 = offset_of!(Ctx<'static>, run.saved_rsp) as i32;
pub(crate) const OFF_TRAMPOLINE: i32 = offset_of!(Ctx<'static>, run.trampoline) as i32;
pub(crate) const OFF_HELPER_ID: i32 = offset_of!(Ctx<'static>, run.helper_id) as i32;
pub(crate) const OFF_TRAP_PC: i32 = offset_of!(Ctx<'static>, run.trap_pc) as i32;
pub(crate) const OFF_TRAP_CODE: i32 = offset_of!(Ctx<'static>, run.trap_code) as i32;
pub(crate) const OFF_TRAP_ADDR: i32 = offset_of!(Ctx<'static>, run.trap_addr) as i32;
pub(crate) const OFF_BLOCK: i32 = offset_of!(Ctx<'static>, run.block) as i32;
pub(crate) const OFF_RESUME: i32 = offset_of!(Ctx<'static>, run.resume) as i32;
pub(crate) const OFF_LOOP_COUNT: i32 = offset_of!(Ctx<'static>, run.loop_count) as i32;

/// Offset of `load_lim[w][region]` (or `store_lim`).
pub(crate) const fn lim_offset(write: bool, w: usize, region: u64) -> i32 {
    let base = if write { OFF_STORE_LIM } else { OFF_LOAD_LIM };
    base + (w as i32) * (REGION_TABLE_LEN as i32 * 8) + (region as i32) * 8
}

/// Offset of `load_span[w][region]` (or `store_span`).
pub(crate) const fn span_offset(write: bool, w: usize, region: u64) -> i32 {
    let base = if write { OFF_STORE_SPAN } else { OFF_LOAD_SPAN };
    base + (w as i32) * (REGION_TABLE_LEN as i32 * 8) + (region as i32) * 8
}

impl<'a> Ctx<'a> {
    /// A context with every region unmapped; a run sets `memory` and `helpers` (which must
    /// outlive every use of the context) and calls [`Ctx::refresh`].
    pub(crate) fn new() -> Ctx<'a> {
        Ctx {
            bias: [0; REGION_TABLE_LEN],
            load_lim: [[0; REGION_TABLE_LEN]; 4],
            store_lim: [[0; REGION_TABLE_LEN]; 4],
            start: core::array::from_fn(|r| (r as u64) << 32),
            host: [0; REGION_TABLE_LEN],
            load_span: [[0; REGION_TABLE_LEN]; 4],
            store_span: [[0; REGION_TABLE_LEN]; 4],
            null: 0,
            run: RunState::default(),
            memory: core::ptr::null_mut(),
            _memory: PhantomData,
            helpers: core::ptr::null(),
            raw: [RawRegion::UNMAPPED; REGION_TABLE_LEN],
            rows: 0,
            mapped: 0,
            generation: 0,
            helper_trap: None,
            panic: None,
        }
    }

    /// Makes a context left by an earlier run ready for a new one, as [`Ctx::new`] would
    /// make it, without rewriting the region arrays: [`Ctx::refresh`] rewrites the rows the
    /// new run maps and zeroes the rows only the earlier run used.
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.run = RunState::default();
        self.memory = core::ptr::null_mut();
        self.helpers = core::ptr::null();
        self.helper_trap = None;
        self.panic = None;
    }

    /// Brings the region arrays up to date with `memory` (which must be the map this context
    /// was made for): only the rows whose entry changed since the last refresh are
    /// recomputed, and only the rows that can be mapped are looked at (the rest are unmapped
    /// and stay zero). The entries are the map's kept rows (`MemoryMap::raw_rows`: a load
    /// each, derived afresh only when the map's generation moved since they were made).
    #[inline]
    pub(crate) fn refresh(&mut self, memory: &mut MemoryMap<'_>) {
        // The rows mapped now, and those the last refresh left non-zero (to be zeroed if they
        // are unmapped now): every other row is zero and stays so.
        let now = memory.mapped_ids();
        memory.raw_rows(now | self.mapped, |r, entry| {
            // An embedder that runs again over the same buffers (or a helper that changed only
            // bytes) leaves the row as it was: nothing to recompute.
            if self.raw.get(r) != Some(&entry) {
                self.set_row(r, entry);
            }
        });
        self.rows = memory.id_bound();
        self.mapped = now;
        self.generation = memory.generation();
    }

    /// Writes the rows of a run's own buffers, their pointers derived from `buffers`' borrows
    /// now (a row that already holds the same buffer costs a compare: see
    /// [`Ctx::set_run_row`]), and records the generation they are current for.
    #[inline(always)]
    pub(crate) fn write_buffer_rows(&mut self, buffers: &mut RunBuffers<'_>) {
        let generation = buffers.generation();
        let (stack, input, metadata) = buffers.buffers_mut();
        self.set_run_row(layout::STACK, RawRegion::writable(stack));
        match input {
            Some(input) => self.set_buffer_row(layout::INPUT, input),
            None => self.unmap_run_row(layout::INPUT),
        }
        match metadata {
            Some(metadata) => self.set_buffer_row(layout::METADATA, metadata),
            None => self.unmap_run_row(layout::METADATA),
        }
        self.generation = generation;
    }

    /// Makes row `r` (a run's own buffer: the stack, the input, the metadata buffer) describe
    /// `entry`, without a map: a session's fast path, on a table that otherwise holds only
    /// rows it keeps from run to run.
    ///
    /// A buffer reused from the last run (same address, length and writability) costs a
    /// compare: the row already holds its address. That address is the one generated code
    /// accesses the buffer through, and this run's borrow is the freshest pointer to it:
    /// exposing it (a no-op for the machine) makes it the pointer the code's accesses are
    /// derived from, as rewriting the row would (`set_row` exposes what it stores), so no
    /// access uses a pointer an earlier `&mut` (the caller's, the stack's scrub) invalidated.
    /// (`entry` must be derived from this run's borrow of the buffer: `RawRegion::writable`
    /// of it, or `Stack::raw_region`.)
    #[inline(always)]
    pub(crate) fn set_run_row(&mut self, r: u64, entry: RawRegion) {
        let r = r as usize;
        let _ = entry.host.expose_provenance();
        // (Field by field: comparing the structs made the entry a temporary in memory.)
        let kept = self.raw.get(r).is_some_and(|raw| {
            raw.host == entry.host && raw.len == entry.len && raw.writable == entry.writable
        });
        if !kept {
            self.replace_run_row(r, entry.host, entry.len, entry.writable);
        }
    }

    /// [`Ctx::set_run_row`] of a row that changed. (The entry's words as arguments, in
    /// registers: a `RawRegion` argument made every run store it in memory first.)
    #[cold]
    #[inline(never)]
    fn replace_run_row(&mut self, r: usize, host: *mut u8, len: u64, writable: u64) {
        self.set_row(
            r,
            RawRegion {
                host,
                len,
                writable,
            },
        );
        // (A superset of the rows mapped is harmless: a refresh zeroes those no longer
        // mapped.)
        self.mapped |= 1 << r;
        self.rows = self.rows.max(r + 1);
    }

    /// [`Ctx::set_run_row`] of `RawRegion::writable(bytes)`, compared with the buffer itself:
    /// the region's length clamp costs a run more than the compare does. A buffer longer
    /// than a region can be never compares equal, and takes the path that clamps.
    #[inline(always)]
    pub(crate) fn set_buffer_row(&mut self, r: u64, bytes: &mut [u8]) {
        let kept = self.raw.get(r as usize).is_some_and(|raw| {
            raw.host == bytes.as_mut_ptr() && raw.len == bytes.len() as u64 && raw.writable == 1
        });
        if kept {
            let _ = bytes.as_mut_ptr().expose_provenance();
        } else {
            self.set_run_row(r, RawRegion::writable(bytes));
        }
    }

    /// Makes row `r` (a run's own buffer, see [`Ctx::set_run_row`]) unmapped: a test of its
    /// address when it is already (a row with a null host address describes nothing).
    #[inline(always)]
    pub(crate) fn unmap_run_row(&mut self, r: u64) {
        let r = r as usize;
        if self.raw.get(r).is_some_and(|raw| !raw.host.is_null()) {
            self.set_row(r, RawRegion::UNMAPPED);
        }
    }

    /// Writes row `r` of the region arrays for `entry` (all zero when it is unmapped).
    #[inline(never)]
    fn set_row(&mut self, r: usize, entry: RawRegion) {
        let Some(raw) = self.raw.get_mut(r) else {
            return;
        };
        *raw = entry;
        let base = (r as u64) << 32;
        let len = if entry.host.is_null() {
            0
        } else {
            entry.len.min(LEN_CLAMP)
        };
        self.host[r] = entry.host as usize as u64;
        self.bias[r] = if entry.host.is_null() {
            0
        } else {
            self.host[r].wrapping_sub(base)
        };
        for (w, width) in WIDTHS.iter().enumerate() {
            let lim = if len >= *width {
                base + len - width + 1
            } else {
                0
            };
            let store = if entry.writable != 0 { lim } else { 0 };
            self.load_lim[w][r] = lim;
            self.store_lim[w][r] = store;
            self.load_span[w][r] = if lim == 0 { 0 } else { lim - base };
            self.store_span[w][r] = if store == 0 { 0 } else { store - base };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use ebpf_abi::{Region, VmMemory};

    #[test]
    fn limits_encode_the_bounds_check() {
        let rodata = [0u8; 10];
        let mut input = [0u8; 3];
        let mut map = MemoryMap::new();
        map.insert(layout::RODATA, Region::ReadOnly(&rodata));
        map.insert(layout::INPUT, Region::Writable(&mut input));
        let mut ctx = Ctx::new();
        ctx.refresh(&mut map);
        assert_eq!(ctx.rows, 5);
        // An 8-byte load at rodata offset 2 is the last that fits.
        let lim = ctx.load_lim[3][1];
        assert!(layout::vm_addr(1, 2) < lim && layout::vm_addr(1, 3) >= lim);
        assert_eq!(ctx.store_lim[0][1], 0, "read-only");
        assert_eq!(ctx.load_lim[2][4], 0, "shorter than the access");
        assert_eq!(ctx.store_lim[1][4], layout::vm_addr(4, 2));
        assert_eq!(ctx.load_lim[0][2], 0, "unmapped");
        // The guessed-region view agrees with the limits.
        for r in 0..REGION_TABLE_LEN {
            for w in 0..4 {
                for (lim, span) in [
                    (ctx.load_lim[w][r], ctx.load_span[w][r]),
                    (ctx.store_lim[w][r], ctx.store_span[w][r]),
                ] {
                    for offset in [0u64, 1, 2, 3, 9, 10, 1 << 32] {
                        let addr = layout::vm_addr(r as u64, 0) + offset;
                        assert_eq!(addr < lim, addr - ctx.start[r] < span, "{r} {w} {offset}");
                    }
                }
            }
        }
        assert_eq!(ctx.host[1], rodata.as_ptr() as u64);
        assert_eq!(ctx.load_span[3][1], 3);

        // Reused for a run that maps less: the rows only the first run used are zero again,
        // so the context equals a fresh one made for the second run's map.
        let mut small = MemoryMap::new();
        small.insert(layout::RODATA, Region::ReadOnly(&rodata));
        ctx.reset();
        ctx.refresh(&mut small);
        let mut fresh = Ctx::new();
        fresh.refresh(&mut small);
        assert_eq!(ctx.rows, 2);
        assert_eq!(
            (ctx.bias, ctx.host, ctx.load_lim, ctx.store_lim),
            (fresh.bias, fresh.host, fresh.load_lim, fresh.store_lim)
        );
        assert_eq!(
            (ctx.load_span, ctx.store_span),
            (fresh.load_span, fresh.store_span)
        );
        // And again over the same map: nothing to recompute, nothing changes.
        ctx.reset();
        ctx.refresh(&mut small);
        assert_eq!(ctx.rows, 2);
        assert_eq!(
            (ctx.bias, ctx.load_lim, ctx.store_span),
            (fresh.bias, fresh.load_lim, fresh.store_span)
        );
        // Back to the first map: its rows are recomputed.
        ctx.reset();
        ctx.refresh(&mut map);
        assert_eq!((ctx.rows, ctx.store_lim[1][4]), (5, layout::vm_addr(4, 2)));
    }

    /// The rows a session's run writes from its own buffers are those `refresh` derives from
    /// the map of the same buffers (`RunBuffers::raw_rows`, held to that map in ebpf-abi):
    /// the same region arrays, on a fresh context and on one that held another run's rows
    /// (a buffer now absent is unmapped again); and the generation is the buffers'.
    #[test]
    fn buffer_rows_are_the_rows_of_their_map() {
        let cases: [(Option<usize>, Option<usize>); 5] = [
            (Some(64), None),
            (Some(0), Some(8)),
            (None, None),
            (Some(5), Some(24)),
            (None, Some(0)),
        ];
        let mut reused = Ctx::new();
        for (input_len, metadata_len) in cases {
            let mut stack = [0u8; 1024];
            let mut input = input_len.map(|len| Vec::from_iter(0..len as u8));
            let mut metadata = metadata_len.map(|len| Vec::from_iter(0..len as u8));
            let case = alloc::format!("input {input_len:?}, metadata {metadata_len:?}");
            let arrays = |ctx: &Ctx<'_>| {
                (
                    (ctx.bias, ctx.host, ctx.load_lim, ctx.store_lim),
                    (ctx.start, ctx.load_span, ctx.store_span),
                )
            };
            let mut buffers =
                RunBuffers::new(input.as_deref_mut(), metadata.as_deref_mut(), &mut stack);
            let _ = buffers.write(layout::vm_addr(layout::STACK, 8), &[1]);
            let mut fresh = Ctx::new();
            fresh.write_buffer_rows(&mut buffers);
            reused.write_buffer_rows(&mut buffers);
            assert_eq!(fresh.generation, buffers.generation(), "{case}");
            let mut rows = [RawRegion::UNMAPPED; REGION_TABLE_LEN];
            buffers.raw_rows(|id, row| rows[id] = row);
            assert_eq!(fresh.raw, rows, "{case}");
            assert_eq!(reused.raw, rows, "{case}");
            let (fresh_arrays, reused_arrays) = (arrays(&fresh), arrays(&reused));
            let mut map = MemoryMap::new();
            map.insert_buffers(input.as_deref_mut(), metadata.as_deref_mut(), &mut stack);
            let mut of_map = Ctx::new();
            of_map.refresh(&mut map);
            assert_eq!(fresh_arrays, arrays(&of_map), "{case}");
            assert_eq!(reused_arrays, arrays(&of_map), "{case}");
        }
    }
}
