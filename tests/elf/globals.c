// build: -O2 -mcpu=v3
// inputs: globals
//
// globals: global variables in .data and .bss, updated during the run (with an atomic
// fetch-and-add among the updates), and a const table in .rodata. Non-static globals are
// relocated against their own symbols; static ones against the section symbol with the
// offset in the lddw's immediate. Every run must start from the object's initial values
// (a fresh copy of .data/.bss), so running twice gives the same result.
//
// histogram (section "xdp"): counts the input's bytes by high nibble into a .bss histogram,
// tracks the largest byte (static .bss), folds each byte into a static .data seed, and adds
// the length to a .data counter that starts at 1000; returns a mix of all of them.
// Example: inputs/globals/ascending.hex (bytes 00..3f): 0x2dc609f5129f8c41, on every run.
#include "fixture.h"

u64 total_bytes = 1000;            // .data, global symbol
static u32 seed = 0x12345678;      // .data, section symbol + offset
u32 histogram_counts[16];          // .bss, global symbol
static u64 largest;                // .bss, section symbol + offset
static u64 calls;                  // .bss
const u64 weights[4] = {1, 3, 5, 7}; // .rodata

SEC("xdp") u64 histogram(u8 *data, u64 len) {
    u64 n = len < 1024 ? len : 1024;
    for (u64 i = 0; i < n; i++) {
        u8 b = data[i];
        histogram_counts[b >> 4]++;
        seed = (seed * 1103515245u + 12345u) ^ b;
        if (b > largest) largest = b;
    }
    u64 before = __sync_fetch_and_add(&total_bytes, n);
    calls++;
    u64 r = 0;
    for (int j = 0; j < 16; j++) r = r * 31 + (u64)histogram_counts[j] * weights[j & 3];
    return r ^ ((u64)seed << 16) ^ (largest << 48) ^ (before << 20) ^ (total_bytes << 8) ^ calls;
}

NATIVE_MAIN(PROGRAM(histogram))
