// build: -O2 -mcpu=v3
// inputs: sort
//
// sort: sorts the input in place (insertion sort of at most 64 bytes; the VM's input region
// is writable), then returns the median byte in the top byte and the FNV-1a hash of the sorted
// bytes (low 56 bits) below it. Its section name has a slash ("tc/sort"), as libbpf's
// section names do.
// Example: inputs/sort/word.hex ("sorting" -> "ginorst"): 0x6ff1699537698ca7 (median 'o').
#include "fixture.h"

SEC("tc/sort") u64 sort_bytes(u8 *data, u64 len) {
    u64 n = len < 64 ? len : 64;
    for (u64 i = 1; i < n; i++) {
        u8 key = data[i];
        u64 j = i;
        while (j > 0 && data[j - 1] > key) {
            data[j] = data[j - 1];
            j--;
        }
        data[j] = key;
    }
    u64 h = 0xcbf29ce484222325ull;
    for (u64 i = 0; i < n; i++) h = (h ^ data[i]) * 0x100000001b3ull;
    u64 median = n ? data[n / 2] : 0;
    return (median << 56) | (h & 0x00ffffffffffffffull);
}

NATIVE_MAIN(PROGRAM(sort_bytes))
