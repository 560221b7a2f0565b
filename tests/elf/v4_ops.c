// build: -O2 -mcpu=v4
// inputs: v4
//
// v4_ops: built for cpu v4, so clang uses its new instructions: sign-extending loads
// (ldxsb/ldxsh/ldxsw), sign-extending moves (movsx), signed division and modulo (sdiv/smod)
// and unconditional byte swaps (bswap16/32/64).
//
// signed_stats (section "xdp") reads the input as signed bytes, as signed little-endian
// 16-bit words and as a signed 32-bit word, and returns a mix of: the sum of the signed
// bytes, its signed quotient and remainder by the count and by -7, the sign-extended first
// word, and byte-swapped words. Example: inputs/v4/mixed_signs.hex: 0xadffffadaa8719cf.
#include "fixture.h"

static inline s64 sdiv_or_zero(s64 a, s64 b) { return b == 0 ? 0 : a / b; }
static inline s64 smod_or_zero(s64 a, s64 b) { return b == 0 ? 0 : a % b; }

SEC("xdp") u64 signed_stats(u8 *data, u64 len) {
    const s8 *bytes = (const s8 *)data;
    s64 sum = 0;
    s64 n = 0;
    for (u64 i = 0; i < len && i < 512; i++) {
        sum += bytes[i];
        n++;
    }
    s64 words = 0;
    for (u64 i = 0; i + 2 <= len && i < 512; i += 2) {
        s16 w;
        __builtin_memcpy(&w, data + i, 2);
        words += w;
    }
    s32 first32 = 0;
    if (len >= 4) __builtin_memcpy(&first32, data, 4);
    s64 q = sdiv_or_zero(sum, n);
    s64 r = smod_or_zero(sum, n);
    s64 q7 = sum / -7;
    s64 r7 = sum % -7;
    s32 narrow = (s32)(s8)(u8)sum; // movsx from 8 bits
    u64 ext16 = (u64)(s64)(s16)(u16)(words * 3 + 1);  // movsx from 16 bits
    u64 ext32 = (u64)(s64)(s32)(u32)(sum * 5 + words); // movsx from 32 bits
    u64 swapped = __builtin_bswap64((u64)sum) ^ __builtin_bswap32((u32)words) ^
                  __builtin_bswap16((u16)q);
    return (u64)q ^ ((u64)r << 8) ^ ((u64)q7 << 16) ^ ((u64)r7 << 24) ^ ((u64)(s64)narrow << 32) ^
           swapped ^ (u64)(s64)first32 ^ ((u64)words << 3) ^ (ext16 * 0x10001) ^ (ext32 + 17);
}

NATIVE_MAIN(PROGRAM(signed_stats))
