// build: -O2 -mcpu=v3
// build calls_O0: -O0 -mcpu=v1
// inputs: calls
//
// calls: a program made of several functions in three sections, joined by local calls:
//   - call_chain (section "xdp") calls
//   - sum_bytes and fill_squares (static, section ".text.helpers"),
//   - gcd (static, ".text") and fib (static, ".text", recursive: depth <= 7),
//   - mix_words (global, ".text": a program of its own too, called through its symbol),
//   - and the helper with id 5 (identity), which must stay a helper call.
// Callees receive pointers to the caller's stack frame (fill_squares writes into it).
// The object is also built at -O0 for cpu v1 (calls_O0.o), where every call is kept.
//
// call_chain returns a mix of all their results; mix_words alone folds the input 8 bytes at
// a time. Example: inputs/calls/hello.hex ("hello, world"): call_chain = 0x3c4857c24cbff5f7,
// mix_words = 0x38c057c34fbff17f.
#include "fixture.h"

static __attribute__((noinline, section(".text.helpers"))) u64 sum_bytes(const u8 *data,
                                                                          u64 len) {
    u64 sum = 0;
    for (u64 i = 0; i < len && i < 512; i++) sum += data[i];
    return sum;
}

static __attribute__((noinline, section(".text.helpers"))) void fill_squares(u64 *out, u64 n,
                                                                              u64 seed) {
    for (u64 i = 0; i < n && i < 8; i++) out[i] = (seed + i) * (seed + i);
}

static __attribute__((noinline)) u64 gcd(u64 a, u64 b) {
    while (b != 0) {
        u64 t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static __attribute__((noinline)) u64 fib(u64 n) {
    if (n < 2) return n;
    return fib(n - 1) + fib(n - 2);
}

__attribute__((noinline)) u64 mix_words(u8 *data, u64 len) {
    u64 h = 0x9e3779b97f4a7c15ull;
    for (u64 i = 0; i + 8 <= len && i < 512; i += 8) {
        u64 w = 0;
        for (int j = 7; j >= 0; j--) w = (w << 8) | data[i + j];
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    return h ^ len;
}

SEC("xdp") u64 call_chain(u8 *data, u64 len) {
    u64 squares[8];
    u64 a = sum_bytes(data, len);
    u64 b = gcd(a + 1, len * 6 + 4);
    u64 c = fib(len % 8);
    fill_squares(squares, 8, len);
    u64 d = 0;
    for (int i = 0; i < 8; i++) d = d * 31 + squares[i];
    u64 e = mix_words(data, len);
    u64 f = helper_identity(a ^ d);
    return (a << 48) ^ (b << 32) ^ (c << 24) ^ d ^ e ^ f;
}

NATIVE_MAIN(PROGRAM(call_chain) PROGRAM(mix_words))
