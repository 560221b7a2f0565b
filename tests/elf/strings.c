// build: -O2 -mcpu=v3
// inputs: strings
//
// strings: a string function in plain `.text` (no SEC): str_to_u64 reads the input as a
// NUL-terminated (or length-bounded) string, skips leading blanks, accepts an optional '+',
// and parses decimal digits up to the first non-digit, saturating at 2^64 - 1. No digits: 0.
// Its helpers (strnlen, isspace, isdigit, a saturating multiply-add) are static functions
// the loader links in.
//
// Example: inputs/strings/spaces_number.hex ("  \t12345 apples\0junk"): 0x3039 (12345).
// inputs/strings/overflow.hex ("99999999999999999999"): 0xffffffffffffffff.
#include "fixture.h"

static __attribute__((noinline)) u64 my_strnlen(const u8 *s, u64 max) {
    u64 n = 0;
    while (n < max && n < 256 && s[n] != 0) n++;
    return n;
}

static inline int my_isspace(u8 c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static inline int my_isdigit(u8 c) { return c >= '0' && c <= '9'; }

// value * 10 + digit, or u64 max if that overflows.
static __attribute__((noinline)) u64 mul10_add(u64 value, u64 digit) {
    const u64 max = ~0ull;
    if (value > (max - digit) / 10) return max;
    return value * 10 + digit;
}

u64 str_to_u64(u8 *data, u64 len) {
    u64 n = my_strnlen(data, len);
    u64 i = 0;
    while (i < n && my_isspace(data[i])) i++;
    if (i < n && data[i] == '+') i++;
    u64 value = 0;
    while (i < n && my_isdigit(data[i])) {
        value = mul10_add(value, (u64)(data[i] - '0'));
        i++;
    }
    return value;
}

NATIVE_MAIN(PROGRAM(str_to_u64))
