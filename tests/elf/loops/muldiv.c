// build: -O2 -mcpu=v3
// inputs: loops/words
//
// mul_div (section "tc"): 64- and 32-bit multiplications, divisions and remainders by divisors
// that come from the input (never zero: each is forced odd or offset), over every
// little-endian u32 word of the input.
#include "../fixture.h"

SEC("tc") u64 mul_div(u8 *data, u64 len) {
    const u32 *words = (const u32 *)data;
    u64 n = len / 4;
    u64 acc = 0x9e3779b97f4a7c15ull, out = 0;
    for (u64 i = 0; i < n; i++) {
        u32 w = words[i];
        acc = acc * 6364136223846793005ull + w;
        u64 q = acc / ((u64)w | 1);
        u64 r = acc % (i + 3);
        u32 q32 = (u32)(acc >> 32) / ((w >> 7) | 1);
        u32 r32 = (u32)acc % ((w & 0xfff) + 10);
        out = (out ^ q) * 31 + r + q32 + r32;
    }
    return out ^ acc;
}

NATIVE_MAIN(PROGRAM(mul_div))
