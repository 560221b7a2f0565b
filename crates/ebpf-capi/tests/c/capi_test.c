/*
 * The C API from C: every entry point as a C embedder calls it, built by the crate's tests with
 * the system compiler under AddressSanitizer (leaks included), linked with libebpf.a.
 *
 * Usage: capi_test ELF_OBJECT FRAME_HEX GLOBALS_OBJECT
 *   (tests/elf/ip_filter.o, an IPv4/TCP frame, and tests/elf/globals.o, whose `histogram`
 *   keeps state in .data and .bss)
 * Prints one line per failed check and a summary; exits with 1 if any check failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ebpf.h"

/* 1 when the library was built with debug assertions (tests/capi/c_program.rs says which). */
#ifndef EBPF_DEBUG_ASSERTIONS
#define EBPF_DEBUG_ASSERTIONS 0
#endif

static int passed, failed;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (cond) {                                                                   \
            passed++;                                                                 \
        } else {                                                                      \
            failed++;                                                                 \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                    \
            printf(__VA_ARGS__);                                                      \
            printf("\n");                                                             \
        }                                                                             \
    } while (0)

/* Loads assembly text with a builder; returns the status, the VM in *vm (or NULL). */
static ebpf_status load_asm(const ebpf_builder *b, const char *text, ebpf_vm **vm, ebpf_error **err)
{
    return ebpf_builder_load_asm(b, text, vm, err);
}

/* Runs `text` on `mem` with builder `b` and checks the status, pc and message of the result.
 * `want_pc` -1 means success (and `want_r0` is checked). */
static void expect_run(const char *name, const ebpf_builder *b, const char *text, uint8_t *mem,
                       size_t len, ebpf_status want, int64_t want_pc, uint64_t want_r0,
                       const char *want_message)
{
    ebpf_vm *vm = NULL;
    ebpf_error *err = NULL;
    ebpf_status s = load_asm(b, text, &vm, &err);
    CHECK(s == EBPF_STATUS_OK, "%s: load: %d %s", name, s, err ? ebpf_error_message(err) : "");
    ebpf_error_free(err);
    if (s != EBPF_STATUS_OK)
        return;
    uint64_t r0 = 0xdead;
    err = (ebpf_error *)1; /* must be overwritten */
    s = ebpf_vm_run(vm, mem, len, &r0, &err);
    CHECK(s == want, "%s: status %d, want %d (%s)", name, s, want, err ? ebpf_error_message(err) : "");
    if (want == EBPF_STATUS_OK) {
        CHECK(err == NULL, "%s: an error object on success", name);
        CHECK(r0 == want_r0, "%s: r0 %#llx, want %#llx", name, (unsigned long long)r0,
              (unsigned long long)want_r0);
    } else if (err != NULL) {
        CHECK(ebpf_error_status(err) == want, "%s: error status %d", name, ebpf_error_status(err));
        CHECK(ebpf_error_pc(err) == want_pc, "%s: pc %lld, want %lld", name,
              (long long)ebpf_error_pc(err), (long long)want_pc);
        if (want_message)
            CHECK(strcmp(ebpf_error_message(err), want_message) == 0, "%s: message `%s`, want `%s`",
                  name, ebpf_error_message(err), want_message);
    } else {
        CHECK(0, "%s: no error object", name);
    }
    ebpf_error_free(err);
    ebpf_vm_free(vm);
}

/* --- Helpers -------------------------------------------------------------------------------- */

/* State a helper keeps between calls, and how often its user data was released. */
struct counter {
    uint64_t calls;
    int drops;
};

/* Helper 1: counts its calls and returns the count plus r1. */
static int32_t count_calls(void *user_data, const uint64_t *args, uint64_t *result, ebpf_call *call)
{
    (void)call;
    struct counter *c = user_data;
    c->calls++;
    *result = c->calls + args[0];
    return 0;
}

static void drop_counter(void *user_data)
{
    ((struct counter *)user_data)->drops++;
}

/* Helper 2: refuses r1 > 100 with a message. */
static int32_t refuse_large(void *user_data, const uint64_t *args, uint64_t *result, ebpf_call *call)
{
    (void)user_data;
    if (args[0] > 100) {
        ebpf_call_fail(call, "argument too large");
        return 7;
    }
    *result = args[0] * 10;
    return 0;
}

/* Helper 3: fails without a message. */
static int32_t fail_silently(void *user_data, const uint64_t *args, uint64_t *result, ebpf_call *call)
{
    (void)user_data, (void)args, (void)result, (void)call;
    return -3;
}

/* Helper 4: sums r2 bytes of VM memory at r1 and writes the sum's low byte after them. */
static int32_t sum_bytes(void *user_data, const uint64_t *args, uint64_t *result, ebpf_call *call)
{
    (void)user_data;
    uint8_t buf[64];
    if (args[1] > sizeof buf)
        return 1;
    if (ebpf_call_read(call, args[0], buf, args[1]) != EBPF_STATUS_OK)
        return 1;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < args[1]; i++)
        sum += buf[i];
    uint8_t low = (uint8_t)sum;
    if (ebpf_call_write(call, args[0] + args[1], &low, 1) != EBPF_STATUS_OK)
        return 1;
    *result = sum;
    return 0;
}

/* --- Cases ---------------------------------------------------------------------------------- */

static void test_success_and_bytecode(void)
{
    ebpf_builder *b = ebpf_builder_new();
    CHECK(b != NULL, "ebpf_builder_new");
    uint8_t mem[4] = {1, 2, 3, 4};
    expect_run("ldxw", b, "ldxw %r0, [%r1]\nexit", mem, sizeof mem, EBPF_STATUS_OK, -1,
               0x04030201, NULL);
    expect_run("no input: r1 and r2 are 0", b, "mov %r0, %r1\nadd %r0, %r2\nadd %r0, 5\nexit",
               NULL, 0, EBPF_STATUS_OK, -1, 5, NULL);
    expect_run("r2 is the length", b, "mov %r0, %r2\nexit", mem, sizeof mem, EBPF_STATUS_OK, -1, 4,
               NULL);

    /* mov r0, 42; exit — as raw bytecode. */
    const uint8_t code[16] = {0xb7, 0x00, 0, 0, 42, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0};
    for (uint32_t engine = EBPF_ENGINE_INTERPRETER; engine <= EBPF_ENGINE_CRANELIFT; engine++) {
        CHECK(ebpf_builder_set_engine(b, engine) == EBPF_STATUS_OK, "set engine %u", engine);
        ebpf_vm *vm = NULL;
        ebpf_error *err = NULL;
        ebpf_status s = ebpf_builder_load(b, code, sizeof code, &vm, &err);
        if (!ebpf_engine_available(engine)) {
            CHECK(s == EBPF_STATUS_ENGINE_UNAVAILABLE && vm == NULL, "engine %u: %d", engine, s);
            ebpf_error_free(err);
            continue;
        }
        CHECK(s == EBPF_STATUS_OK && err == NULL, "engine %u: load %d", engine, s);
        uint64_t r0 = 0;
        CHECK(ebpf_vm_run(vm, NULL, 0, &r0, NULL) == EBPF_STATUS_OK && r0 == 42, "engine %u: r0 %llu",
              engine, (unsigned long long)r0);
        /* r0 may be NULL when the caller only wants the status. */
        CHECK(ebpf_vm_run(vm, NULL, 0, NULL, NULL) == EBPF_STATUS_OK, "engine %u: NULL r0", engine);
        ebpf_vm_free(vm);
    }
    CHECK(ebpf_engine_available(EBPF_ENGINE_INTERPRETER), "the interpreter is always there");
    CHECK(!ebpf_engine_available(77), "engine 77");
    CHECK(ebpf_builder_set_engine(b, 77) == EBPF_STATUS_INVALID_ARGUMENT, "set engine 77");
    ebpf_builder_free(b);
}

/* Spectre v1 masking reaches both JITs: masked code is larger (a mask on every access checked at
 * run time), results are the same either way, in bounds and trapping; the interpreter has no
 * code. */
static void test_spectre_masking(void)
{
    const char *text = "ldxw %r0, [%r1]\nldxb %r2, [%r1+4]\nadd %r0, %r2\nexit";
    for (uint32_t engine = EBPF_ENGINE_INTERPRETER; engine <= EBPF_ENGINE_CRANELIFT; engine++) {
        if (!ebpf_engine_available(engine))
            continue;
        size_t size[2] = {0, 0};
        for (int on = 0; on <= 1; on++) {
            ebpf_builder *b = ebpf_builder_new();
            ebpf_builder_set_engine(b, engine);
            CHECK(ebpf_builder_set_spectre_masking(b, on) == EBPF_STATUS_OK, "engine %u: set %d",
                  engine, on);
            ebpf_vm *vm = NULL;
            CHECK(load_asm(b, text, &vm, NULL) == EBPF_STATUS_OK, "engine %u: load", engine);
            size[on] = ebpf_vm_code_size(vm);
            uint8_t mem[5] = {1, 2, 3, 4, 5};
            uint64_t r0 = 0;
            CHECK(ebpf_vm_run(vm, mem, sizeof mem, &r0, NULL) == EBPF_STATUS_OK && r0 == 0x04030206,
                  "engine %u, masking %d: r0 %#llx", engine, on, (unsigned long long)r0);
            ebpf_error *err = NULL;
            CHECK(ebpf_vm_run(vm, mem, 4, &r0, &err) == EBPF_STATUS_TRAP_OUT_OF_BOUNDS &&
                      err && ebpf_error_pc(err) == 1,
                  "engine %u, masking %d: 4 bytes", engine, on);
            ebpf_error_free(err);
            ebpf_vm_free(vm);
            ebpf_builder_free(b);
        }
        if (engine == EBPF_ENGINE_INTERPRETER)
            CHECK(size[0] == 0 && size[1] == 0, "the interpreter has no code: %zu %zu", size[0],
                  size[1]);
        else
            CHECK(size[1] > size[0], "engine %u: masked %zu bytes, unmasked %zu", engine, size[1],
                  size[0]);
    }
    CHECK(ebpf_builder_set_spectre_masking(NULL, 1) == EBPF_STATUS_INVALID_ARGUMENT, "NULL builder");
    CHECK(ebpf_vm_code_size(NULL) == 0, "code size of NULL");
}

/* The clamp of accesses proven through a branch reaches both JITs: with masking on, a guarded
 * header's loads (proven in bounds by the guard) are clamped, so the code is larger (in builds
 * without debug assertions: with them the JITs keep every proven check and clamp nothing);
 * results are the same either way, on inputs the guard accepts and refuses. */
static void test_spectre_clamp_proven(void)
{
    const char *text = "mov %r3, %r1\nadd %r3, %r2\nmov %r4, %r1\nadd %r4, 8\n"
                       "jgt %r4, %r3, +3\nldxdw %r0, [%r1]\nldxb %r2, [%r1+7]\nexit\n"
                       "mov %r0, 1\nexit";
    for (uint32_t engine = EBPF_ENGINE_X86; engine <= EBPF_ENGINE_CRANELIFT; engine++) {
        if (!ebpf_engine_available(engine))
            continue;
        size_t size[2] = {0, 0};
        for (int on = 0; on <= 1; on++) {
            ebpf_builder *b = ebpf_builder_new();
            ebpf_builder_set_engine(b, engine);
            ebpf_builder_set_spectre_masking(b, 1);
            CHECK(ebpf_builder_set_spectre_clamp_proven(b, on) == EBPF_STATUS_OK,
                  "engine %u: set %d", engine, on);
            ebpf_vm *vm = NULL;
            CHECK(load_asm(b, text, &vm, NULL) == EBPF_STATUS_OK, "engine %u: load", engine);
            size[on] = ebpf_vm_code_size(vm);
            uint8_t mem[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
            uint64_t r0 = 0;
            CHECK(ebpf_vm_run(vm, mem, sizeof mem, &r0, NULL) == EBPF_STATUS_OK &&
                      r0 == 0x0807060504030201ull,
                  "engine %u, clamp %d: r0 %#llx", engine, on, (unsigned long long)r0);
            CHECK(ebpf_vm_run(vm, mem, 7, &r0, NULL) == EBPF_STATUS_OK && r0 == 1,
                  "engine %u, clamp %d: 7 bytes, r0 %#llx", engine, on, (unsigned long long)r0);
            ebpf_vm_free(vm);
            ebpf_builder_free(b);
        }
        CHECK(EBPF_DEBUG_ASSERTIONS || size[1] > size[0],
              "engine %u: clamped %zu bytes, plain %zu", engine, size[1], size[0]);
    }
    CHECK(ebpf_builder_set_spectre_clamp_proven(NULL, 1) == EBPF_STATUS_INVALID_ARGUMENT,
          "NULL builder");
}

static void test_traps(void)
{
    ebpf_builder *b = ebpf_builder_new();
    ebpf_builder_skip_verification(b);
    ebpf_builder_set_budget(b, 100);
    ebpf_builder_set_max_call_depth(b, 3);
    ebpf_builder_register_helper(b, 2, refuse_large, NULL, NULL);
    ebpf_builder_register_helper(b, 3, fail_silently, NULL, NULL);
    uint8_t mem[4] = {0};
    expect_run("out of bounds", b, "ldxw %r0, [%r1+2]\nexit", mem, sizeof mem,
               EBPF_STATUS_TRAP_OUT_OF_BOUNDS, 0, 0,
               "out-of-bounds read of 4 bytes at 0x400000002 at pc 0");
    uint8_t mem8[8] = {0};
    expect_run("misaligned atomic", b, "mov %r2, 1\nlock add32 [%r1+1], %r2\nexit", mem8,
               sizeof mem8, EBPF_STATUS_TRAP_MISALIGNED_ATOMIC, 1, 0,
               "misaligned 4-byte atomic at 0x400000001 at pc 1");
    expect_run("budget", b, "mov %r0, 0\nloop:\nadd %r0, 1\nja loop\nexit", mem, sizeof mem,
               EBPF_STATUS_TRAP_BUDGET_EXHAUSTED, 2,
               0, "instruction budget of 100 exhausted at pc 2");
    expect_run("call depth", b, "call local f\nexit\nf:\ncall local f\nexit", mem, sizeof mem,
               EBPF_STATUS_TRAP_CALL_DEPTH_EXCEEDED, 2, 0, NULL);
    expect_run("unknown helper", b, "mov %r0, 0\ncall 99\nexit", mem, sizeof mem,
               EBPF_STATUS_TRAP_UNKNOWN_HELPER, 1, 0, "unknown helper 99 at pc 1");
    expect_run("helper fails with a message", b, "mov %r1, 200\ncall 2\nexit", mem, sizeof mem,
               EBPF_STATUS_TRAP_HELPER_FAILED, 1, 0,
               "helper 2 failed: argument too large at pc 1");
    expect_run("helper succeeds", b, "mov %r1, 20\ncall 2\nexit", mem, sizeof mem, EBPF_STATUS_OK,
               -1, 200, NULL);
    expect_run("helper fails without a message", b, "call 3\nexit", mem, sizeof mem,
               EBPF_STATUS_TRAP_HELPER_FAILED, 0, 0, "helper 3 failed: returned -3 at pc 0");
    expect_run("jump out of the program", b, "ja +5\nexit", mem, sizeof mem,
               EBPF_STATUS_TRAP_INVALID_INSTRUCTION, 0, 0, NULL);
    ebpf_builder_free(b);
}

static void test_helper_state_and_memory(void)
{
    struct counter counter = {0, 0};
    ebpf_builder *b = ebpf_builder_new();
    CHECK(ebpf_builder_register_helper(b, 1, count_calls, &counter, drop_counter) == EBPF_STATUS_OK,
          "register");
    CHECK(ebpf_builder_register_helper(b, 4, sum_bytes, NULL, NULL) == EBPF_STATUS_OK, "register");
    ebpf_vm *vm = NULL;
    CHECK(load_asm(b, "mov %r1, 1000\ncall 1\nexit", &vm, NULL) == EBPF_STATUS_OK, "load");
    for (uint64_t i = 1; i <= 3; i++) {
        uint64_t r0 = 0;
        CHECK(ebpf_vm_run(vm, NULL, 0, &r0, NULL) == EBPF_STATUS_OK && r0 == 1000 + i,
              "call %llu: r0 %llu", (unsigned long long)i, (unsigned long long)r0);
    }
    CHECK(counter.calls == 3, "calls %llu", (unsigned long long)counter.calls);

    /* A helper reads and writes VM memory through the checked accessors. */
    ebpf_vm *sum = NULL;
    CHECK(load_asm(b, "mov %r2, 3\ncall 4\nexit", &sum, NULL) == EBPF_STATUS_OK, "load sum");
    uint8_t mem[4] = {100, 50, 120, 0};
    uint64_t r0 = 0;
    CHECK(ebpf_vm_run(sum, mem, sizeof mem, &r0, NULL) == EBPF_STATUS_OK && r0 == 270, "sum %llu",
          (unsigned long long)r0);
    CHECK(mem[3] == (uint8_t)270, "the helper wrote %u", mem[3]);
    /* Three bytes after the input's end: the helper's read fails, and so does the run, with the
     * memory trap at the call's pc. */
    ebpf_vm *past = NULL;
    CHECK(load_asm(b, "add %r1, 2\nmov %r2, 3\ncall 4\nexit", &past, NULL) == EBPF_STATUS_OK, "load");
    ebpf_error *err = NULL;
    CHECK(ebpf_vm_run(past, mem, sizeof mem, &r0, &err) == EBPF_STATUS_TRAP_OUT_OF_BOUNDS, "past");
    CHECK(err && ebpf_error_pc(err) == 2, "pc %lld", (long long)ebpf_error_pc(err));
    ebpf_error_free(err);
    ebpf_vm_free(past);
    ebpf_vm_free(sum);

    /* The user data outlives the builder while a VM uses it, and is dropped exactly once. */
    ebpf_builder_free(b);
    CHECK(counter.drops == 0, "dropped while a VM uses it");
    CHECK(ebpf_vm_run(vm, NULL, 0, &r0, NULL) == EBPF_STATUS_OK && r0 == 1004, "after builder_free");
    ebpf_vm_free(vm);
    CHECK(counter.drops == 1, "drops %d", counter.drops);
}

/* A VM and a worker thread that ran it once and now idles (a pool thread). */
struct shared {
    ebpf_vm *vm;
    sem_t ran, go;
};

static void *run_once_then_idle(void *p)
{
    struct shared *s = p;
    uint64_t r0 = 0;
    ebpf_vm_run(s->vm, NULL, 0, &r0, NULL); /* the thread keeps a preparation of the VM */
    sem_post(&s->ran);
    sem_wait(&s->go);
    return NULL;
}

/* `drop` runs in the free of the last owner, on the caller's thread, even when another thread
 * ran the VM and still keeps what it prepared for its next run (before, it ran on that thread
 * at its next run of another VM or at its exit). */
static void test_drop_runs_when_the_last_owner_is_freed(void)
{
    struct counter counter = {0, 0};
    struct shared s;
    sem_init(&s.ran, 0, 0);
    sem_init(&s.go, 0, 0);
    ebpf_builder *b = ebpf_builder_new();
    CHECK(ebpf_builder_register_helper(b, 1, count_calls, &counter, drop_counter) == EBPF_STATUS_OK,
          "register");
    CHECK(load_asm(b, "call 1\nexit", &s.vm, NULL) == EBPF_STATUS_OK, "load");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run_once_then_idle, &s) == 0, "thread");
    sem_wait(&s.ran);
    CHECK(counter.calls == 1, "calls %llu", (unsigned long long)counter.calls);
    ebpf_vm_free(s.vm);
    CHECK(counter.drops == 0, "dropped while the builder has it");
    ebpf_builder_free(b);
    CHECK(counter.drops == 1, "drops %d after the VM and the builder are freed", counter.drops);
    sem_post(&s.go);
    pthread_join(t, NULL);
    CHECK(counter.drops == 1, "drops %d after the worker exited", counter.drops);

    /* Replacing a registration no VM uses releases it there. */
    struct counter first = {0, 0}, second = {0, 0};
    b = ebpf_builder_new();
    ebpf_builder_register_helper(b, 1, count_calls, &first, drop_counter);
    ebpf_builder_register_helper(b, 1, count_calls, &second, drop_counter);
    CHECK(first.drops == 1 && second.drops == 0, "drops %d %d", first.drops, second.drops);
    ebpf_builder_free(b);
    CHECK(second.drops == 1, "drops %d", second.drops);
    sem_destroy(&s.ran);
    sem_destroy(&s.go);
}

static void test_bad_input(void)
{
    ebpf_builder *b = ebpf_builder_new();
    ebpf_vm *vm = (ebpf_vm *)1;
    ebpf_error *err = NULL;

    /* Seven bytes are not a whole instruction. */
    const uint8_t seven[7] = {0x95, 0, 0, 0, 0, 0, 0};
    CHECK(ebpf_builder_load(b, seven, sizeof seven, &vm, &err) == EBPF_STATUS_REJECTED, "seven bytes");
    CHECK(vm == NULL, "a failed load leaves *vm NULL");
    CHECK(err && ebpf_error_status(err) == EBPF_STATUS_REJECTED, "status");
    ebpf_error_free(err);

    /* An unknown opcode at pc 1: the verifier reports where. */
    const uint8_t bad[16] = {0xb7, 0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0};
    CHECK(ebpf_builder_load(b, bad, sizeof bad, &vm, &err) == EBPF_STATUS_REJECTED, "bad opcode");
    CHECK(err && ebpf_error_pc(err) == 1, "pc %lld", (long long)ebpf_error_pc(err));
    ebpf_error_free(err);

    /* Without verification, decoding finds it. */
    ebpf_builder *raw = ebpf_builder_new();
    ebpf_builder_skip_verification(raw);
    CHECK(ebpf_builder_load(raw, bad, sizeof bad, &vm, &err) == EBPF_STATUS_DECODE, "decode");
    CHECK(err && ebpf_error_pc(err) == 1, "pc %lld", (long long)ebpf_error_pc(err));
    ebpf_error_free(err);
    ebpf_builder_free(raw);

    CHECK(load_asm(b, "mov %r50, 1\nexit", &vm, &err) == EBPF_STATUS_ASM, "asm");
    CHECK(err && ebpf_error_pc(err) == -1, "asm errors have no pc");
    ebpf_error_free(err);

    /* A loop needs a budget. */
    CHECK(load_asm(b, "mov %r0, 0\nl:\nadd %r0, 1\njne %r0, 9, l\nexit", &vm, NULL) == EBPF_STATUS_NEEDS_BUDGET, "needs budget");
    ebpf_builder_set_max_call_depth(b, 1000000);
    CHECK(load_asm(b, "exit", &vm, NULL) == EBPF_STATUS_INVALID_CONFIG, "call depth");
    ebpf_builder_set_max_call_depth(b, 8);

    const uint8_t not_elf[8] = "garbage";
    CHECK(ebpf_builder_load_elf(b, not_elf, sizeof not_elf, NULL, NULL, &vm, &err) == EBPF_STATUS_ELF,
          "not ELF");
    CHECK(err && strstr(ebpf_error_message(err), "ELF") != NULL, "message %s",
          err ? ebpf_error_message(err) : "");
    ebpf_error_free(err);

    /* Misuse: NULL pointers and impossible lengths are refused, never dereferenced. */
    const uint8_t code[8] = {0x95};
    CHECK(ebpf_builder_load(NULL, code, 8, &vm, &err) == EBPF_STATUS_INVALID_ARGUMENT, "NULL builder");
    CHECK(err && strcmp(ebpf_error_message(err), "builder is NULL") == 0, "%s",
          err ? ebpf_error_message(err) : "");
    ebpf_error_free(err);
    CHECK(ebpf_builder_load(b, NULL, 8, &vm, NULL) == EBPF_STATUS_INVALID_ARGUMENT, "NULL code");
    CHECK(ebpf_builder_load(b, code, 8, NULL, NULL) == EBPF_STATUS_INVALID_ARGUMENT, "NULL out");
    CHECK(ebpf_builder_load(b, code, SIZE_MAX, &vm, NULL) == EBPF_STATUS_INVALID_ARGUMENT, "huge len");
    CHECK(ebpf_builder_load_asm(b, NULL, &vm, NULL) == EBPF_STATUS_INVALID_ARGUMENT, "NULL text");
    CHECK(ebpf_builder_load_asm(b, "exit\xff", &vm, NULL) == EBPF_STATUS_INVALID_ARGUMENT, "not UTF-8");
    CHECK(ebpf_builder_set_budget(NULL, 1) == EBPF_STATUS_INVALID_ARGUMENT, "NULL builder");
    CHECK(ebpf_builder_register_helper(b, 1, NULL, NULL, NULL) == EBPF_STATUS_INVALID_ARGUMENT,
          "NULL helper");
    CHECK(ebpf_vm_run(NULL, NULL, 0, NULL, NULL) == EBPF_STATUS_INVALID_ARGUMENT, "NULL vm");
    CHECK(load_asm(b, "mov %r0, 1\nexit", &vm, NULL) == EBPF_STATUS_OK, "load");
    CHECK(ebpf_vm_run(vm, NULL, 4, NULL, &err) == EBPF_STATUS_INVALID_ARGUMENT, "NULL mem, length 4");
    CHECK(err && strcmp(ebpf_error_message(err), "mem is NULL but its length is 4") == 0, "%s",
          err ? ebpf_error_message(err) : "");
    ebpf_error_free(err);
    ebpf_vm_free(vm);
    CHECK(ebpf_error_status(NULL) == EBPF_STATUS_INVALID_ARGUMENT, "status of NULL");
    CHECK(ebpf_error_pc(NULL) == -1, "pc of NULL");
    CHECK(ebpf_error_message(NULL) == NULL, "message of NULL");
    ebpf_call_fail(NULL, "x");
    CHECK(ebpf_call_read(NULL, 0, NULL, 0) == EBPF_STATUS_INVALID_ARGUMENT, "NULL call");
    ebpf_vm_free(NULL);
    ebpf_builder_free(NULL);
    ebpf_error_free(NULL);
    ebpf_builder_free(b);
}

/* Reads a whole file; NULL on failure. */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t n = fread(buf + *len, 1, cap - *len, f);
        if (n == 0)
            break;
        *len += n;
    }
    fclose(f);
    return buf;
}

/* Hex text (two digits per byte, `#` comments) to bytes, in place; returns the byte count. */
static size_t parse_hex(uint8_t *text, size_t len)
{
    size_t out = 0;
    int high = -1, comment = 0;
    for (size_t i = 0; i < len; i++) {
        int c = text[i], v;
        if (c == '\n')
            comment = 0;
        if (c == '#')
            comment = 1;
        if (comment)
            continue;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v = c - 'A' + 10;
        else
            continue;
        if (high < 0) {
            high = v;
        } else {
            text[out++] = (uint8_t)(high << 4 | v);
            high = -1;
        }
    }
    return out;
}

static void test_elf(const char *object_path, const char *frame_path)
{
    size_t elf_len = 0, frame_len = 0;
    uint8_t *elf = read_file(object_path, &elf_len);
    uint8_t *frame = read_file(frame_path, &frame_len);
    CHECK(elf && frame, "cannot read %s or %s", object_path, frame_path);
    if (elf && frame) {
        frame_len = parse_hex(frame, frame_len);
        ebpf_builder *b = ebpf_builder_new();
        ebpf_builder_set_budget(b, 1000000);
        ebpf_vm *vm = NULL;
        ebpf_error *err = NULL;
        ebpf_status s = ebpf_builder_load_elf(b, elf, elf_len, "xdp", NULL, &vm, &err);
        CHECK(s == EBPF_STATUS_OK, "load xdp: %s", err ? ebpf_error_message(err) : "");
        ebpf_error_free(err);
        uint64_t r0 = 0;
        CHECK(ebpf_vm_run(vm, frame, frame_len, &r0, NULL) == EBPF_STATUS_OK && r0 == 2,
              "XDP_PASS, got %llu", (unsigned long long)r0);
        ebpf_vm_free(vm);
        s = ebpf_builder_load_elf(b, elf, elf_len, "no_such_section", NULL, &vm, &err);
        CHECK(s == EBPF_STATUS_ELF && vm == NULL, "missing section: %d", s);
        CHECK(err && strstr(ebpf_error_message(err), "no_such_section") != NULL, "message %s",
              err ? ebpf_error_message(err) : "");
        ebpf_error_free(err);
        ebpf_builder_free(b);
    }
    free(elf);
    free(frame);
}

/* Globals persist from run to run; the host reads them, and writing back the initial ones makes
 * the next run give the first run's result again. */
static void test_globals(const char *object_path, const char *frame_path)
{
    size_t elf_len = 0, frame_len = 0;
    uint8_t *elf = read_file(object_path, &elf_len);
    uint8_t *frame = read_file(frame_path, &frame_len);
    CHECK(elf && frame, "cannot read %s or %s", object_path, frame_path);
    if (elf && frame) {
        frame_len = parse_hex(frame, frame_len);
        ebpf_builder *b = ebpf_builder_new();
        ebpf_builder_set_budget(b, 1000000);
        ebpf_vm *vm = NULL;
        ebpf_error *err = NULL;
        ebpf_status s = ebpf_builder_load_elf(b, elf, elf_len, NULL, "histogram", &vm, &err);
        CHECK(s == EBPF_STATUS_OK, "load histogram: %s", err ? ebpf_error_message(err) : "");
        ebpf_error_free(err);
        size_t size = ebpf_vm_globals_size(vm);
        CHECK(size >= 8, "globals of %zu bytes", size);
        uint8_t *initial = calloc(size, 1), *after = calloc(size, 1);
        CHECK(ebpf_vm_globals_read(vm, initial, size, NULL) == EBPF_STATUS_OK, "read");
        uint64_t first = 0, second = 0, again = 0;
        CHECK(ebpf_vm_run(vm, frame, frame_len, &first, NULL) == EBPF_STATUS_OK, "first run");
        CHECK(ebpf_vm_globals_read(vm, after, size, NULL) == EBPF_STATUS_OK, "read after");
        CHECK(memcmp(initial, after, size) != 0, "the run changed no global");
        CHECK(ebpf_vm_run(vm, frame, frame_len, &second, NULL) == EBPF_STATUS_OK &&
                  second != first,
              "the second run starts from the first's globals");
        CHECK(ebpf_vm_globals_write(vm, initial, size, NULL) == EBPF_STATUS_OK, "write");
        CHECK(ebpf_vm_run(vm, frame, frame_len, &again, NULL) == EBPF_STATUS_OK && again == first,
              "after restoring the globals: %llx, want %llx", (unsigned long long)again,
              (unsigned long long)first);
        /* A wrong length is refused and names the size. */
        CHECK(ebpf_vm_globals_write(vm, initial, size - 1, &err) == EBPF_STATUS_INVALID_ARGUMENT,
              "short write");
        CHECK(err && strstr(ebpf_error_message(err), "bytes") != NULL, "message %s",
              err ? ebpf_error_message(err) : "");
        ebpf_error_free(err);
        CHECK(ebpf_vm_globals_size(NULL) == 0, "NULL has no globals");
        /* A VM without globals has 0 bytes of them: reading or writing all 0 succeeds. */
        ebpf_vm *bare = NULL;
        CHECK(load_asm(b, "mov %r0, 0\nexit", &bare, NULL) == EBPF_STATUS_OK, "load bare");
        CHECK(ebpf_vm_globals_size(bare) == 0, "bare globals");
        CHECK(ebpf_vm_globals_read(bare, NULL, 0, &err) == EBPF_STATUS_OK, "read 0: %s",
              err ? ebpf_error_message(err) : "");
        ebpf_error_free(err);
        err = NULL;
        CHECK(ebpf_vm_globals_write(bare, NULL, 0, &err) == EBPF_STATUS_OK, "write 0: %s",
              err ? ebpf_error_message(err) : "");
        ebpf_error_free(err);
        err = NULL;
        CHECK(ebpf_vm_globals_read(bare, initial, 1, &err) == EBPF_STATUS_INVALID_ARGUMENT,
              "read 1 of 0");
        ebpf_error_free(err);
        ebpf_vm_free(bare);
        free(initial);
        free(after);
        ebpf_vm_free(vm);
        ebpf_builder_free(b);
    }
    free(elf);
    free(frame);
}

/* --- Tracing -------------------------------------------------------------------------------- */

/* What a trace callback saw. */
struct trace {
    uint64_t steps;
    uint64_t pcs[32];
    int ordered;          /* every step's number is the count so far, its pc the last next */
    uint64_t expected_pc; /* the last step's next */
    uint64_t store_addr, store_value;
    uint32_t store_len;
    uint64_t helper_id, helper_result;
    char last_insn[64];
};

static void record_step(void *user_data, const ebpf_step *step)
{
    struct trace *t = user_data;
    t->steps++;
    if (step->executed != t->steps || step->pc != t->expected_pc)
        t->ordered = 0;
    if (t->steps <= 32)
        t->pcs[t->steps - 1] = step->pc;
    t->expected_pc = step->next;
    if (step->effect == EBPF_EFFECT_WRITE) {
        t->store_addr = step->addr;
        t->store_value = step->value;
        t->store_len = step->len;
    }
    if (step->effect == EBPF_EFFECT_HELPER) {
        t->helper_id = step->helper_id;
        t->helper_result = step->result;
    }
    snprintf(t->last_insn, sizeof t->last_insn, "%s", step->insn);
}

static void test_trace(void)
{
    /* r0 = 3 + 2 + 1, stored on the stack, helper 2 called with r1 = 0 (it returns 10 * r1,
     * so 0), then r0 restored: mov, mov, three rounds of (add, sub, jne), stxdw, mov, mov,
     * call, ldxdw, exit — 17 instructions. */
    const char *text = "mov %r0, 0\nmov %r1, 3\nloop:\nadd %r0, %r1\nsub %r1, 1\n"
                       "jne %r1, 0, loop\nstxdw [%r10-8], %r0\nmov %r1, 0\nmov %r2, 0\n"
                       "call 2\nldxdw %r0, [%r10-8]\nexit";
    const uint64_t pcs[17] = {0, 1, 2, 3, 4, 2, 3, 4, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    for (uint32_t engine = EBPF_ENGINE_INTERPRETER; engine <= EBPF_ENGINE_CRANELIFT; engine++) {
        if (!ebpf_engine_available(engine))
            continue;
        ebpf_builder *b = ebpf_builder_new();
        ebpf_builder_set_engine(b, engine);
        ebpf_builder_set_budget(b, 1000);
        ebpf_builder_register_helper(b, 2, refuse_large, NULL, NULL);
        ebpf_vm *vm = NULL;
        CHECK(load_asm(b, text, &vm, NULL) == EBPF_STATUS_OK, "trace: load on engine %u", engine);
        struct trace t = {.ordered = 1};
        uint64_t r0 = 0;
        ebpf_error *err = NULL;
        ebpf_status s = ebpf_vm_run_traced(vm, NULL, 0, record_step, &t, &r0, &err);
        CHECK(s == EBPF_STATUS_OK && err == NULL && r0 == 6, "trace: %d, r0 %llu", s,
              (unsigned long long)r0);
        CHECK(t.steps == 17 && t.ordered && t.expected_pc == UINT64_MAX, "trace: %llu steps",
              (unsigned long long)t.steps);
        CHECK(memcmp(t.pcs, pcs, sizeof pcs) == 0, "trace: pcs");
        /* The stack's top frame ends at 0x200001200 (9 frames of 512 bytes). */
        CHECK(t.store_addr == 0x2000011f8 && t.store_len == 8 && t.store_value == 6,
              "trace: store %#llx", (unsigned long long)t.store_addr);
        CHECK(t.helper_id == 2 && t.helper_result == 0, "trace: helper %llu",
              (unsigned long long)t.helper_id);
        CHECK(strcmp(t.last_insn, "exit") == 0, "trace: last insn `%s`", t.last_insn);

        /* A trap: the trace stops before the trapping instruction; the error is the run's. */
        ebpf_vm *oob = NULL;
        CHECK(load_asm(b, "mov %r0, 1\nldxw %r0, [%r1+2]\nexit", &oob, NULL) == EBPF_STATUS_OK,
              "trace: load oob");
        uint8_t mem[4] = {0};
        struct trace u = {.ordered = 1};
        s = ebpf_vm_run_traced(oob, mem, sizeof mem, record_step, &u, &r0, &err);
        CHECK(s == EBPF_STATUS_TRAP_OUT_OF_BOUNDS && err && ebpf_error_pc(err) == 1,
              "trace: oob %d", s);
        CHECK(u.steps == 1 && u.ordered && u.expected_pc == 1, "trace: oob steps %llu",
              (unsigned long long)u.steps);
        ebpf_error_free(err);

        /* No callback is a bad argument, and nothing runs. */
        CHECK(ebpf_vm_run_traced(vm, NULL, 0, NULL, NULL, &r0, &err) ==
                  EBPF_STATUS_INVALID_ARGUMENT,
              "trace: NULL callback");
        CHECK(err && strstr(ebpf_error_message(err), "on_step") != NULL, "trace: message");
        ebpf_error_free(err);
        ebpf_vm_free(oob);
        ebpf_vm_free(vm);
        ebpf_builder_free(b);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ELF_OBJECT FRAME_HEX GLOBALS_OBJECT\n", argv[0]);
        return 2;
    }
    test_success_and_bytecode();
    test_traps();
    test_spectre_masking();
    test_spectre_clamp_proven();
    test_helper_state_and_memory();
    test_drop_runs_when_the_last_owner_is_freed();
    test_bad_input();
    test_trace();
    test_elf(argv[1], argv[2]);
    test_globals(argv[3], argv[2]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
