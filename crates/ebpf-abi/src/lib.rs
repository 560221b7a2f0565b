//! `ebpf-abi`: the runtime contract every engine shares, defined once.
//!
//! What it is for: the types, constants and rules that the interpreter and both JITs must agree
//! on, each written once —
//!
//! - the engine interface: [`Executable`], a prepared program that runs with a [`MemoryMap`],
//!   `r1`/`r2`, [`Helpers`] and [`Limits`] and returns an [`Exit`] or a [`Trap`];
//! - the VM address space ([`layout`]), the region table ([`MemoryMap`]), the reusable
//!   stack of a run ([`Stack`]), memory that
//!   concurrent runs share ([`SharedMemory`]), call frames and the instruction budget
//!   ([`Limits`]);
//! - the arithmetic ([`semantics`], atomics included) and the reference meaning of one
//!   straight-line instruction ([`step`]);
//! - control flow as every engine resolves it: which instructions can only trap, and where a
//!   jump, call or fall-through lands ([`ProgramView`]);
//! - run-time errors ([`Trap`], [`TrapKind`]) and how generated code reports them
//!   ([`trap_code`], [`RawTrap`]);
//! - the helper interface ([`Helper`], [`HelperError`], [`VmMemory`]) and its dispatch
//!   ([`Helpers::call`]);
//! - the workspace's pseudo-random generator ([`SplitMix64`]).
//!
//! An engine that returns a different `Trap` than the interpreter for the same program and
//! input is wrong, by definition.
//!
//! What it is not for: running programs fast (that is each engine's business), or deciding
//! which programs are acceptable (that is `ebpf-verifier`). It depends only on `ebpf-isa`.
//!
//! # The address space
//!
//! Programs see virtual addresses, not host pointers: each memory region lives in its own
//! 4 GiB window, `region_id << 32`, so a VM address splits into a region id (high 32 bits) and
//! an offset (low 32 bits). Results are therefore the same on every run and every host, a
//! program can never learn or forge a host address, and a bounds check is a table lookup and
//! one compare. Address 0 is in no region, so a program that dereferences a null `r1` (no
//! input) traps.
//!
//! A region therefore holds at most 4 GiB ([`layout::MAX_REGION_LEN`]): the bytes of a longer
//! slice past its first 4 GiB would have the addresses of the next region. [`MemoryMap::insert`]
//! maps only the first 4 GiB of such a slice, so those bytes are unaddressable on every engine
//! and every check is exact; the facade refuses such a region before a run starts
//! ([`TrapKind::RegionTooLarge`]).

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod buffers;
mod engine;
mod helper;
mod memory;
mod rand;
pub mod registers;
pub mod semantics;
mod shared;
mod stack;
pub mod step;
mod trap;
mod view;

pub use buffers::RunBuffers;
pub use engine::{
    Binding, Executable, PlainBinding, Session, has_fixed_regions, lower_stack_mark, map_buffers,
    map_run,
};
pub use helper::{Helper, HelperError, HelperFn, Helpers, VmMemory, conformance_helper};
pub use memory::{MapSpill, MemoryMap, REGION_TABLE_LEN, RawRegion, Region};
pub use rand::SplitMix64;
pub use shared::SharedMemory;
pub use stack::{CallFrame, Stack};
pub use trap::{InvalidReason, RawTrap, Trap, TrapKind, reason_code, trap_code};
pub use view::{Flow, ProgramView, Target};

/// Bytes of stack each call frame gets (RFC 9669 §3: 512 bytes).
pub const STACK_FRAME_SIZE: u64 = 512;

/// How deeply local calls may nest by default: the entry function is depth 0, and a call chain
/// may reach depth 8.
pub const DEFAULT_MAX_CALL_DEPTH: usize = 8;

/// The deepest call nesting any engine supports: 65,536 frames, 32 MiB of stack. Engines clamp
/// `Limits::max_call_depth` to it; the facade refuses larger settings.
pub const MAX_CALL_DEPTH: usize = 1 << 16;

/// The longest program the facade loads, in slots (an `lddw` takes two): 1,000,000, the
/// verifier's default maximum and the kernel's limit for privileged programs. Longer programs
/// are refused at load, verified or not, before anything is allocated for them.
pub const MAX_PROGRAM_SLOTS: usize = 1_000_000;

/// The helper id that bpf_conformance programs call (uBPF's "unwind"): our binaries register
/// [`conformance_helper`] (which returns its first argument) under it.
pub const CONFORMANCE_HELPER_ID: u32 = 5;

/// The VM address space: where each region lives.
pub mod layout {
    /// A VM address is `region id << REGION_SHIFT | offset`.
    pub const REGION_SHIFT: u32 = 32;
    /// Mask of the offset part of a VM address.
    pub const OFFSET_MASK: u64 = (1 << REGION_SHIFT) - 1;
    /// Region 0 is never mapped, so that null pointers trap.
    pub const NULL_REGION: u64 = 0;
    /// Read-only data (an ELF object's `.rodata`).
    pub const RODATA: u64 = 1;
    /// The stack: every call frame, contiguously; frame `d` (depth `d`) is the 512 bytes below
    /// `STACK_START + (max_depth + 1 - d) * 512`.
    pub const STACK: u64 = 2;
    /// Writable data (an ELF object's `.data` and `.bss`), fresh for every run.
    pub const DATA: u64 = 3;
    /// The input memory: the packet or buffer the embedder passes (`r1` at entry, unless a
    /// metadata buffer is used).
    pub const INPUT: u64 = 4;
    /// The metadata buffer, when the embedder uses one (`r1` at entry then points here).
    pub const METADATA: u64 = 5;
    /// Extra regions the embedder adds are numbered from here.
    pub const FIRST_EXTRA: u64 = 6;
    /// The highest region id an engine supports.
    pub const MAX_REGION: u64 = 63;
    /// The most bytes a region can hold: its 4 GiB window. Offsets `0..MAX_REGION_LEN` are
    /// the region's; an access that would reach past it is out of bounds on every engine.
    pub const MAX_REGION_LEN: u64 = 1 << REGION_SHIFT;

    /// `bytes` cut to the [`MAX_REGION_LEN`] its region's window can address (every map of a
    /// region maps only these).
    #[inline]
    pub fn within_window(bytes: &mut [u8]) -> &mut [u8] {
        let max = usize::try_from(MAX_REGION_LEN).unwrap_or(usize::MAX);
        if bytes.len() > max {
            bytes.split_at_mut(max).0
        } else {
            bytes
        }
    }

    /// The VM address of `offset` in region `region`.
    pub const fn vm_addr(region: u64, offset: u64) -> u64 {
        (region << REGION_SHIFT) | (offset & OFFSET_MASK)
    }

    /// The region id of a VM address.
    pub const fn region_of(addr: u64) -> u64 {
        addr >> REGION_SHIFT
    }

    /// The offset within its region of a VM address.
    pub const fn offset_of(addr: u64) -> u64 {
        addr & OFFSET_MASK
    }

    /// `r1` and `r2` at entry for a run on an input alone (no metadata buffer): the input's
    /// start and its length in bytes.
    pub const fn input_args(len: u64) -> [u64; 2] {
        [vm_addr(INPUT, 0), len]
    }
}

/// Limits every engine enforces the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// At most this many instructions execute (an `lddw` counts once, a call counts once, the
    /// final `exit` counts). Executing one more is `TrapKind::BudgetExhausted` at its pc.
    /// `None`: no limit.
    pub budget: Option<u64>,
    /// Deepest allowed local-call nesting (entry function = depth 0).
    pub max_call_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            budget: None,
            max_call_depth: DEFAULT_MAX_CALL_DEPTH,
        }
    }
}

impl Limits {
    /// The call depth engines enforce: `max_call_depth`, clamped to [`MAX_CALL_DEPTH`].
    pub const fn max_depth(&self) -> usize {
        if self.max_call_depth < MAX_CALL_DEPTH {
            self.max_call_depth
        } else {
            MAX_CALL_DEPTH
        }
    }

    /// Bytes of stack a run needs: one frame per possible depth (at most 32 MiB).
    pub const fn stack_size(&self) -> u64 {
        (self.max_depth() as u64 + 1) * STACK_FRAME_SIZE
    }

    /// `r10` at depth `depth`: the top of that frame.
    pub const fn frame_pointer(&self, depth: usize) -> u64 {
        let top = self.stack_size();
        let below = (depth as u64).saturating_mul(STACK_FRAME_SIZE);
        layout::vm_addr(layout::STACK, top.saturating_sub(below))
    }
}

/// How a run ended without a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// `r0` at the top-level `exit`.
    pub r0: u64,
    /// How many instructions executed (as the budget counts them).
    pub instructions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_tile_the_stack_region_from_the_top() {
        let limits = Limits {
            budget: None,
            max_call_depth: 2,
        };
        assert_eq!(limits.stack_size(), 3 * 512);
        assert_eq!(limits.frame_pointer(0), 0x2_0000_0000 + 3 * 512);
        assert_eq!(limits.frame_pointer(2), 0x2_0000_0000 + 512);
        assert_eq!(
            layout::region_of(limits.frame_pointer(0) - 1),
            layout::STACK
        );
    }

    #[test]
    fn addresses_split_into_region_and_offset() {
        let a = layout::vm_addr(layout::INPUT, 0x1234);
        assert_eq!(a, 0x4_0000_1234);
        assert_eq!(layout::region_of(a), 4);
        assert_eq!(layout::offset_of(a), 0x1234);
    }
}
