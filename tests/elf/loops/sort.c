// build: -O2 -mcpu=v3
// inputs: loops/words
//
// insertion_sort (section "tc"): sorts the first min(len / 2, 256) little-endian u16 words of
// the input in place (the VM's input region is writable), then returns the FNV-1a hash of the
// sorted words with the smallest and largest word in the top bits.
#include "../fixture.h"

SEC("tc") u64 insertion_sort(u8 *data, u64 len) {
    u16 *v = (u16 *)data;
    u64 n = len / 2 < 256 ? len / 2 : 256;
    for (u64 i = 1; i < n; i++) {
        u16 key = v[i];
        u64 j = i;
        while (j > 0 && v[j - 1] > key) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = key;
    }
    u64 h = 0xcbf29ce484222325ull;
    for (u64 i = 0; i < n; i++) h = (h ^ v[i]) * 0x100000001b3ull;
    if (n == 0) return h;
    return (h & 0xffffffffull) ^ ((u64)v[0] << 32) ^ ((u64)v[n - 1] << 48);
}

NATIVE_MAIN(PROGRAM(insertion_sort))
