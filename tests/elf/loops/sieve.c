// build: -O2 -mcpu=v3
// inputs: loops/words
//
// sieve (section "xdp"): the sieve of Eratosthenes in a .bss array, up to a limit taken from
// the input's length (4 * len, at most 8192). Globals persist between runs, so every run first
// initialises the part it uses (even numbers above 2 marked, which also keeps clang from
// turning the loop into a memset call, which BPF does not have), then sieves by odd primes.
// Returns the number of primes below the limit and a hash of all of them.
// Example: a 2048-byte input sieves below 8192: 1028 primes.
#include "../fixture.h"

#define SIEVE_MAX 8192
static u8 composite[SIEVE_MAX];

SEC("xdp") u64 sieve(u8 *data, u64 len) {
    (void)data;
    u64 limit = len < SIEVE_MAX / 4 ? len * 4 : SIEVE_MAX;
    for (u64 i = 0; i < limit; i++) composite[i] = i > 2 && (i & 1) == 0;
    u64 count = 0, tail = 0;
    for (u64 p = 2; p < limit; p++) {
        if (composite[p]) continue;
        count++;
        tail = tail * 31 + p;
        if (p == 2) continue;
        for (u64 m = p * p; m < limit; m += 2 * p) composite[m] = 1;
    }
    return (count << 48) ^ tail;
}

NATIVE_MAIN(PROGRAM(sieve))
