// build: -O2 -mcpu=v3
// inputs: loops/words
//
// fnv1a_64 (section "tc"): the 64-bit FNV-1a hash of every input byte.
// Example: FNV-1a 64 of no bytes is its offset basis, 0xcbf29ce484222325.
#include "../fixture.h"

SEC("tc") u64 fnv1a_64(u8 *data, u64 len) {
    u64 h = 0xcbf29ce484222325ull;
    for (u64 i = 0; i < len; i++) h = (h ^ data[i]) * 0x100000001b3ull;
    return h;
}

NATIVE_MAIN(PROGRAM(fnv1a_64))
