/*
 * harness.c: runs eBPF programs compiled ahead of time by ebpf-jit-cranelift, as the object
 * test (tests/object.rs) and `cargo xtask test-cross` use it. It is also the reference for
 * embedding such an object in C: see ebpf_jit.h and docs/jit-cranelift.md.
 *
 * The test generates `programs.c`, which defines `ebpf_programs` and `ebpf_program_count`
 * (one entry per compiled function, with its input memory and budget), and links it with this
 * file and the object. For each program the harness maps a copy of the input at region 4
 * (r1 = its address and r2 = its length when there is input, else both 0), a zeroed stack at
 * region 2, and prints one line:
 *
 *     <index> <trap_kind> <trap_pc> <r0> <trap_a> <trap_b> <instructions>
 *
 * Helper 5 (the conformance suite's) returns r1; every other id is unknown.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ebpf_jit.h"

struct ebpf_program {
    ebpf_program_fn run;
    const uint8_t *mem;
    uint64_t mem_len;
    int has_mem;
    uint64_t budget;
    uint64_t max_depth;
};

extern const struct ebpf_program ebpf_programs[];
extern const unsigned ebpf_program_count;

static uint64_t helper(struct ebpf_ctx *ctx, uint64_t id, uint64_t r1, uint64_t r2,
                       uint64_t r3, uint64_t r4, uint64_t r5) {
    (void)r2;
    (void)r3;
    (void)r4;
    (void)r5;
    if (id == 5) {
        ctx->helper_r0 = r1;
        return EBPF_EXIT;
    }
    ctx->trap_a = id;
    ctx->trap_b = 0;
    return EBPF_TRAP_UNKNOWN_HELPER;
}

int main(void) {
    for (unsigned i = 0; i < ebpf_program_count; i++) {
        const struct ebpf_program *p = &ebpf_programs[i];
        struct ebpf_ctx ctx;
        memset(&ctx, 0, sizeof ctx);

        uint8_t *mem = malloc(p->mem_len ? p->mem_len : 1);
        uint64_t stack_size = (p->max_depth + 1) * EBPF_STACK_FRAME_SIZE;
        uint8_t *stack = calloc(stack_size, 1);
        uint64_t *frames = calloc(p->max_depth ? 6 * p->max_depth : 1, sizeof(uint64_t));
        if (!mem || !stack || !frames) {
            fprintf(stderr, "out of memory\n");
            return 2;
        }
        if (p->mem_len) {
            memcpy(mem, p->mem, p->mem_len);
        }

        ctx.regions[EBPF_REGION_INPUT].host = mem;
        ctx.regions[EBPF_REGION_INPUT].len = p->mem_len;
        ctx.regions[EBPF_REGION_INPUT].writable = 1;
        ctx.regions[EBPF_REGION_STACK].host = stack;
        ctx.regions[EBPF_REGION_STACK].len = stack_size;
        ctx.regions[EBPF_REGION_STACK].writable = 1;
        if (p->has_mem) {
            ctx.args[0] = (uint64_t)EBPF_REGION_INPUT << 32;
            ctx.args[1] = p->mem_len;
        }
        ctx.remaining = p->budget;
        ctx.stack_size = stack_size;
        ctx.max_depth = p->max_depth;
        ctx.frames = frames;
        ctx.helper = helper;

        uint64_t r0 = p->run(&ctx);
        printf("%u %llu %llu %llu %llu %llu %llu\n", i, (unsigned long long)ctx.trap_kind,
               (unsigned long long)ctx.trap_pc, (unsigned long long)r0,
               (unsigned long long)ctx.trap_a, (unsigned long long)ctx.trap_b,
               (unsigned long long)(p->budget - ctx.remaining));
        free(mem);
        free(stack);
        free(frames);
    }
    return 0;
}
