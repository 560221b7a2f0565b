// build: -O2 -mcpu=v3
// inputs: loops/numbers
//
// parse_ints (section "socket"): a small parser. Reads signed decimal integers separated by
// any non-digit bytes ("12,-5 7\n"), with a '-' right before the digits for a negative
// number and overflow wrapping as unsigned arithmetic does; returns their sum, their count
// and the largest value, mixed.
// Example: inputs/loops/numbers/small.hex ("12,-5 7"): sum 14, count 3, largest 12.
#include "../fixture.h"

SEC("socket") u64 parse_ints(u8 *data, u64 len) {
    u64 sum = 0, count = 0;
    s64 largest = 0;
    u64 i = 0;
    while (i < len) {
        u8 c = data[i];
        int negative = 0;
        if (c == '-' && i + 1 < len && data[i + 1] >= '0' && data[i + 1] <= '9') {
            negative = 1;
            i++;
            c = data[i];
        }
        if (c < '0' || c > '9') {
            i++;
            continue;
        }
        u64 value = 0;
        while (i < len && data[i] >= '0' && data[i] <= '9') {
            value = value * 10 + (data[i] - '0');
            i++;
        }
        s64 v = negative ? -(s64)value : (s64)value;
        if (count == 0 || v > largest) largest = v;
        sum += (u64)v;
        count++;
    }
    return sum ^ (count << 40) ^ ((u64)largest << 20);
}

NATIVE_MAIN(PROGRAM(parse_ints))
