/* fixture.h: what every ELF fixture includes.
 *
 * Each fixture is one C file whose programs have the signature
 *     u64 name(u8 *data, u64 len)
 * so that they run the same way in two worlds:
 *
 *  - compiled with `clang-19 -target bpf` (__bpf__ is defined): SEC() puts each program in its
 *    ELF section, and our VM calls it with r1 = the input's VM address, r2 = its length;
 *  - compiled natively with gcc: SEC() vanishes and NATIVE_MAIN() adds a main() that runs one
 *    program on one input file and prints its result, which `cargo xtask fixtures` records in
 *    expected.txt.
 *
 * Usage of the native binary:  ./fixture --list          (one program name per line)
 *                              ./fixture NAME INPUT.bin  (prints the result in hex)
 *
 * Compiled natively with -DFIXTURE_NO_MAIN, a fixture is only its programs (no main()), to link
 * into a benchmark that calls them in the same process (crates/ebpf-bench/build.rs does this
 * for the C files of loops/).
 *
 * Programs must not depend on pointer values, only on the bytes they read, so that both
 * worlds compute the same result.
 */
#ifndef EBPF_ELF_FIXTURE_H
#define EBPF_ELF_FIXTURE_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed char s8;
typedef short s16;
typedef int s32;
typedef long long s64;

/* The conformance helper (id 5): returns its first argument. Our tests register it. */
#ifdef __bpf__
#define helper_identity(x) (((u64(*)(u64))5)(x))
#else
#define helper_identity(x) ((u64)(x))
#endif

#ifdef __bpf__

#define SEC(name) __attribute__((section(name), used))
#define NATIVE_MAIN(...)

#elif defined(FIXTURE_NO_MAIN)

#define SEC(name)
#define NATIVE_MAIN(...)

#else /* native */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC(name)

struct fixture_program {
    const char *name;
    u64 (*run)(u8 *data, u64 len);
};

#define PROGRAM(f) {#f, f},

#define NATIVE_MAIN(...)                                                                   \
    static const struct fixture_program fixture_programs[] = {__VA_ARGS__};                \
    int main(int argc, char **argv) {                                                      \
        size_t count = sizeof fixture_programs / sizeof fixture_programs[0];               \
        if (argc == 2 && strcmp(argv[1], "--list") == 0) {                                 \
            for (size_t i = 0; i < count; i++) printf("%s\n", fixture_programs[i].name);   \
            return 0;                                                                      \
        }                                                                                  \
        if (argc != 3) {                                                                   \
            fprintf(stderr, "usage: %s --list | NAME INPUT.bin\n", argv[0]);               \
            return 2;                                                                      \
        }                                                                                  \
        FILE *f = fopen(argv[2], "rb");                                                    \
        if (!f) {                                                                          \
            perror(argv[2]);                                                               \
            return 2;                                                                      \
        }                                                                                  \
        static u8 buf[1 << 16];                                                            \
        size_t len = fread(buf, 1, sizeof buf, f);                                         \
        fclose(f);                                                                         \
        /* A private copy of exactly len bytes, as the VM's input region. */               \
        u8 *data = malloc(len ? len : 1);                                                  \
        if (!data) return 2;                                                               \
        memcpy(data, buf, len);                                                            \
        for (size_t i = 0; i < count; i++) {                                               \
            if (strcmp(argv[1], fixture_programs[i].name) == 0) {                          \
                printf("0x%llx\n", fixture_programs[i].run(data, (u64)len));               \
                return 0;                                                                  \
            }                                                                              \
        }                                                                                  \
        fprintf(stderr, "no program %s\n", argv[1]);                                       \
        return 2;                                                                          \
    }

#endif /* __bpf__ */

#endif /* EBPF_ELF_FIXTURE_H */
