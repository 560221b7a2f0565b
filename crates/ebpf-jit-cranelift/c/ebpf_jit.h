/*
 * ebpf_jit.h: the C ABI of eBPF programs compiled ahead of time by ebpf-jit-cranelift
 * (`compile_object`). See docs/jit-cranelift.md.
 *
 * An object defines one function per program:
 *
 *     uint64_t <symbol>(struct ebpf_ctx *ctx);
 *
 * It returns r0 when the program exits (ctx->trap_kind == EBPF_EXIT) and 0 when it traps
 * (ctx->trap_kind != EBPF_EXIT, with trap_pc/trap_a/trap_b set). The object imports nothing:
 * helpers are called through ctx->helper. All VM memory is little-endian, on every host.
 *
 * Before the call, fill in every field marked "in"; the rest may be left zero.
 */
#ifndef EBPF_JIT_H
#define EBPF_JIT_H

#include <stdint.h>

#define EBPF_REGION_TABLE_LEN 64
#define EBPF_STACK_FRAME_SIZE 512

/* VM addresses are (region id << 32) | offset. Region ids: */
#define EBPF_REGION_RODATA 1
#define EBPF_REGION_STACK 2
#define EBPF_REGION_DATA 3
#define EBPF_REGION_INPUT 4
#define EBPF_REGION_METADATA 5

/* ctx->trap_kind (and nonzero helper statuses) */
#define EBPF_EXIT 0
#define EBPF_TRAP_OUT_OF_BOUNDS_READ 1   /* a = address, b = width */
#define EBPF_TRAP_OUT_OF_BOUNDS_WRITE 2  /* a = address, b = width */
#define EBPF_TRAP_MISALIGNED_ATOMIC 3    /* a = address, b = width */
#define EBPF_TRAP_BUDGET_EXHAUSTED 4
#define EBPF_TRAP_CALL_DEPTH_EXCEEDED 5
#define EBPF_TRAP_UNKNOWN_HELPER 6       /* a = helper id */
#define EBPF_TRAP_HELPER_FAILED 7        /* a = helper id */
#define EBPF_TRAP_INVALID_INSTRUCTION 8  /* a = EBPF_REASON_* */
#define EBPF_TRAP_HOST 9                 /* reserved for the Rust host */
#define EBPF_TRAP_SUSPENDED 10           /* in-process JIT only; objects never return it */

/* ctx->trap_a of EBPF_TRAP_INVALID_INSTRUCTION */
#define EBPF_REASON_FELL_OFF_END 0
#define EBPF_REASON_TARGET_OUT_OF_RANGE 1
#define EBPF_REASON_LDDW_TAIL 2
#define EBPF_REASON_UNSUPPORTED_LDDW 3
#define EBPF_REASON_UNSUPPORTED_CALL 4
#define EBPF_REASON_OTHER 5

/*
 * One region: VM addresses (id << 32) + [0, len) map to host[0, len). Unmapped: len = 0.
 * len must not exceed 4 GiB (1 << 32), the region's window: the bytes of a longer buffer past
 * its first 4 GiB would have the next region's addresses. Give the first 4 GiB only.
 */
struct ebpf_region {
    uint8_t *host;
    uint64_t len;
    uint64_t writable; /* 1: stores and atomics allowed, 0: read-only */
};

struct ebpf_ctx;

/*
 * Helper entry point, called for `call imm` (id = imm as u32) and `callx reg` (id = the full
 * 64-bit register). Return 0 after storing the result in ctx->helper_r0, or a trap code
 * (EBPF_TRAP_*) after storing its operands in ctx->trap_a / ctx->trap_b; the program then
 * traps at the call's pc. After a successful call the program sees r0 = helper_r0 and
 * r1..r5 = 0. A helper may read and write the regions' bytes but must not change the table.
 */
typedef uint64_t (*ebpf_helper_fn)(struct ebpf_ctx *ctx, uint64_t id, uint64_t r1, uint64_t r2,
                                   uint64_t r3, uint64_t r4, uint64_t r5);

struct ebpf_ctx {
    struct ebpf_region regions[EBPF_REGION_TABLE_LEN]; /* in; entry 0 must stay unmapped */
    uint64_t args[2];     /* in: r1, r2 at entry */
    uint64_t remaining;   /* in: instruction budget (UINT64_MAX: none); out: what is left */
    uint64_t stack_size;  /* in: bytes of the stack region = (max_depth + 1) * 512 */
    uint64_t max_depth;   /* in: deepest local-call nesting (the entry is depth 0) */
    uint64_t *frames;     /* in: scratch of 6 * max_depth words, for saved frames */
    ebpf_helper_fn helper; /* in */
    void *user;           /* for the helper; never touched by generated code */
    uint64_t helper_r0;   /* out of the helper */
    uint64_t trap_kind;   /* out: EBPF_EXIT or EBPF_TRAP_* */
    uint64_t trap_pc;     /* out: pc (slot index) of the trapping instruction */
    uint64_t trap_a;      /* out: address, helper id or reason */
    uint64_t trap_b;      /* out: access width */
    /* Scratch of the generated code (registers, call depth and the next part to run, when a
     * large program is split into several functions; a bounds check's result); leave it
     * alone. */
    uint64_t state[11];
    uint64_t depth;
    uint64_t next;
    uint64_t host;
};

#define EBPF_CTX_SIZE 1752

/* r10 at entry is (EBPF_REGION_STACK << 32) | stack_size, the top of region 2, which must be
 * stack_size zeroed, writable bytes. */

typedef uint64_t (*ebpf_program_fn)(struct ebpf_ctx *ctx);

#endif
