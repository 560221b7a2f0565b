//! The context block generated code runs against: its C layout and the helper entry point.
//! This is the whole interface between compiled eBPF and its host, the same for the in-process
//! JIT and for ahead-of-time objects (`c/ebpf_jit.h` is its C twin, and a test checks that
//! both agree). The trap codes it reports are the contract's (`ebpf_abi::trap_code`).
//!
//! Every field is 8 bytes wide and naturally aligned, so the layout is identical on every
//! 64-bit target; generated code uses the `OFF_*` constants below, never the host's
//! `offset_of!`, so that an object compiled for another architecture has the right offsets.

use core::ffi::c_void;

use ebpf_abi::{REGION_TABLE_LEN, RawRegion};

/// The signature of the helper entry point: `(ctx, id, r1, r2, r3, r4, r5) -> status`.
///
/// Status 0: the helper returned normally and stored its result in [`Context::helper_r0`].
/// Any other status is a trap code (`ebpf_abi::trap_code`): the run traps at the call's pc
/// with that kind and the operands the function stored in [`Context::trap_a`] and
/// [`Context::trap_b`].
pub(crate) type HelperEntry =
    unsafe extern "C" fn(*mut Context, u64, u64, u64, u64, u64, u64) -> u64;

/// The run-time context of one run (`struct ebpf_ctx` in C).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Context {
    /// Region table: entry `id` describes VM addresses `id << 32 ..`.
    pub(crate) regions: [RawRegion; REGION_TABLE_LEN],
    /// `r1` and `r2` at entry.
    pub(crate) args: [u64; 2],
    /// In: the instruction budget (`u64::MAX`: none). Out: what is left of it.
    pub(crate) remaining: u64,
    /// Size of the stack region in bytes; `r10` at depth `d` is
    /// `(2 << 32) | ((stack_size - 512 * d) & 0xffff_ffff)`.
    pub(crate) stack_size: u64,
    /// Deepest allowed local-call nesting.
    pub(crate) max_depth: u64,
    /// Scratch space for `6 * max_depth` words: the saved frames of local calls.
    pub(crate) frames: *mut u64,
    /// Called for `call imm` and `callx`.
    pub(crate) helper: HelperEntry,
    /// For the host's helper entry point; generated code never touches it.
    pub(crate) user: *mut c_void,
    /// Out of the helper entry point: the helper's result.
    pub(crate) helper_r0: u64,
    /// Out: 0 when the program exited, else a trap code (`ebpf_abi::trap_code`).
    pub(crate) trap_kind: u64,
    /// Out: the pc of the trapping instruction.
    pub(crate) trap_pc: u64,
    /// Out: first operand of the trap (address, helper id or reason).
    pub(crate) trap_a: u64,
    /// Out: second operand of the trap (access width).
    pub(crate) trap_b: u64,
    /// Scratch: `r0`–`r10` when control passes from one unit of a large program to another
    /// (and, in-process, when a run is handed to the interpreter).
    pub(crate) state: [u64; 11],
    /// Scratch: the call depth, likewise.
    pub(crate) depth: u64,
    /// Scratch: the entry the next unit starts at (`plan::Plan::word`).
    pub(crate) next: u64,
    /// Scratch: the check function's result (a host address, or 0).
    pub(crate) host: u64,
}

/// Byte offsets of [`Context`]'s fields, as generated code uses them.
pub(crate) mod off {
    /// `regions` (24 bytes per entry: host, len, writable).
    pub(crate) const REGIONS: i32 = 0;
    /// Size of one region entry.
    pub(crate) const REGION_SIZE: i64 = 24;
    /// Offset of `len` inside a region entry.
    pub(crate) const REGION_LEN: i32 = 8;
    /// Offset of `writable` inside a region entry.
    pub(crate) const REGION_WRITABLE: i32 = 16;
    pub(crate) const ARGS: i32 = 24 * 64;
    pub(crate) const REMAINING: i32 = ARGS + 16;
    pub(crate) const STACK_SIZE: i32 = REMAINING + 8;
    pub(crate) const MAX_DEPTH: i32 = STACK_SIZE + 8;
    pub(crate) const FRAMES: i32 = MAX_DEPTH + 8;
    pub(crate) const HELPER: i32 = FRAMES + 8;
    pub(crate) const USER: i32 = HELPER + 8;
    pub(crate) const HELPER_R0: i32 = USER + 8;
    pub(crate) const TRAP_KIND: i32 = HELPER_R0 + 8;
    pub(crate) const TRAP_PC: i32 = TRAP_KIND + 8;
    pub(crate) const TRAP_A: i32 = TRAP_PC + 8;
    pub(crate) const TRAP_B: i32 = TRAP_A + 8;
    pub(crate) const STATE: i32 = TRAP_B + 8;
    pub(crate) const DEPTH: i32 = STATE + 8 * 11;
    pub(crate) const NEXT: i32 = DEPTH + 8;
    pub(crate) const HOST: i32 = NEXT + 8;
    #[cfg(test)]
    pub(crate) const SIZE: i32 = HOST + 8;
    /// Words per saved frame: return site, r6, r7, r8, r9, r10.
    pub(crate) const FRAME_WORDS: i64 = 6;
}

/// In-process only, beside the contract's trap codes (`ebpf_abi::trap_code`; objects never
/// stop so): the run, as it stands before the instruction at `trap_pc` (registers and depth in
/// the context's scratch, the budget in `remaining`), is for the interpreter to finish.
/// `trap_pc == u64::MAX`: at the return site whose frame word is in `next`.
pub(crate) const SUSPENDED: u64 = 10;

/// In-process only, with `JitOptions::checked_facts`: a check that the facts declared
/// impossible failed at `trap_pc` — a bug in the facts, which the host turns into a panic.
pub(crate) const FACT_FAILED: u64 = 11;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    use ebpf_abi::{reason_code as reason, trap_code as code};

    #[test]
    fn the_constants_match_the_rust_layout() {
        assert_eq!(offset_of!(Context, regions) as i32, off::REGIONS);
        assert_eq!(size_of::<RawRegion>() as i64, off::REGION_SIZE);
        assert_eq!(offset_of!(RawRegion, len) as i32, off::REGION_LEN);
        assert_eq!(offset_of!(RawRegion, writable) as i32, off::REGION_WRITABLE);
        assert_eq!(offset_of!(Context, args) as i32, off::ARGS);
        assert_eq!(offset_of!(Context, remaining) as i32, off::REMAINING);
        assert_eq!(offset_of!(Context, stack_size) as i32, off::STACK_SIZE);
        assert_eq!(offset_of!(Context, max_depth) as i32, off::MAX_DEPTH);
        assert_eq!(offset_of!(Context, frames) as i32, off::FRAMES);
        assert_eq!(offset_of!(Context, helper) as i32, off::HELPER);
        assert_eq!(offset_of!(Context, user) as i32, off::USER);
        assert_eq!(offset_of!(Context, helper_r0) as i32, off::HELPER_R0);
        assert_eq!(offset_of!(Context, trap_kind) as i32, off::TRAP_KIND);
        assert_eq!(offset_of!(Context, trap_pc) as i32, off::TRAP_PC);
        assert_eq!(offset_of!(Context, trap_a) as i32, off::TRAP_A);
        assert_eq!(offset_of!(Context, trap_b) as i32, off::TRAP_B);
        assert_eq!(offset_of!(Context, state) as i32, off::STATE);
        assert_eq!(offset_of!(Context, depth) as i32, off::DEPTH);
        assert_eq!(offset_of!(Context, next) as i32, off::NEXT);
        assert_eq!(offset_of!(Context, host) as i32, off::HOST);
        assert_eq!(size_of::<Context>() as i32, off::SIZE);
    }

    #[test]
    fn the_c_header_says_the_same() {
        let header = include_str!("../c/ebpf_jit.h");
        for (name, value) in [
            ("EBPF_EXIT", code::EXIT),
            ("EBPF_TRAP_OUT_OF_BOUNDS_READ", code::OUT_OF_BOUNDS_READ),
            ("EBPF_TRAP_OUT_OF_BOUNDS_WRITE", code::OUT_OF_BOUNDS_WRITE),
            ("EBPF_TRAP_MISALIGNED_ATOMIC", code::MISALIGNED_ATOMIC),
            ("EBPF_TRAP_BUDGET_EXHAUSTED", code::BUDGET_EXHAUSTED),
            ("EBPF_TRAP_CALL_DEPTH_EXCEEDED", code::CALL_DEPTH_EXCEEDED),
            ("EBPF_TRAP_UNKNOWN_HELPER", code::UNKNOWN_HELPER),
            ("EBPF_TRAP_HELPER_FAILED", code::HELPER_FAILED),
            ("EBPF_TRAP_INVALID_INSTRUCTION", code::INVALID_INSTRUCTION),
            ("EBPF_TRAP_HOST", code::HOST),
            ("EBPF_TRAP_SUSPENDED", SUSPENDED),
            ("EBPF_REASON_FELL_OFF_END", reason::FELL_OFF_END),
            (
                "EBPF_REASON_TARGET_OUT_OF_RANGE",
                reason::TARGET_OUT_OF_RANGE,
            ),
            ("EBPF_REASON_LDDW_TAIL", reason::LDDW_TAIL),
            ("EBPF_REASON_UNSUPPORTED_LDDW", reason::UNSUPPORTED_LDDW),
            ("EBPF_REASON_UNSUPPORTED_CALL", reason::UNSUPPORTED_CALL),
            ("EBPF_REASON_OTHER", reason::OTHER),
            ("EBPF_CTX_SIZE", off::SIZE as u64),
        ] {
            let line = format!("#define {name} {value}");
            assert!(header.contains(&line), "ebpf_jit.h lacks `{line}`");
        }
        for field in [
            "struct ebpf_region regions[EBPF_REGION_TABLE_LEN];",
            "uint64_t args[2];",
            "uint64_t remaining;",
            "uint64_t stack_size;",
            "uint64_t max_depth;",
            "uint64_t *frames;",
            "ebpf_helper_fn helper;",
            "void *user;",
            "uint64_t helper_r0;",
            "uint64_t trap_kind;",
            "uint64_t trap_pc;",
            "uint64_t trap_a;",
            "uint64_t trap_b;",
            "uint64_t state[11];",
            "uint64_t depth;",
            "uint64_t next;",
            "uint64_t host;",
        ] {
            assert!(header.contains(field), "ebpf_jit.h lacks `{field}`");
        }
        assert!(header.contains(&format!("#define EBPF_REGION_TABLE_LEN {REGION_TABLE_LEN}")));
    }
}
