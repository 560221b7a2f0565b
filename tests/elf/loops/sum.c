// build: -O2 -mcpu=v3
// inputs: loops/words
//
// array_sum (section "tc"): the input as little-endian u32 words (a trailing partial word is
// ignored); returns the plain sum in the low 32 bits folded with the index-weighted sum, so
// that every word is read once per run and the order matters.
#include "../fixture.h"

SEC("tc") u64 array_sum(u8 *data, u64 len) {
    const u32 *words = (const u32 *)data;
    u64 n = len / 4;
    u64 sum = 0, weighted = 0;
    for (u64 i = 0; i < n; i++) {
        sum += words[i];
        weighted += (i + 1) * words[i];
    }
    return sum ^ (weighted << 17) ^ n;
}

NATIVE_MAIN(PROGRAM(array_sum))
