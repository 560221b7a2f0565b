// build: -O2 -mcpu=v3
// inputs: loops/base64
//
// base64_decode (section "socket"): decodes base64 text through a 256-entry table in .rodata
// (a table lookup per input byte), skipping whitespace and stopping at '=' or at the first
// byte outside the alphabet. Returns the FNV-1a hash of the decoded bytes (not stored, folded
// as they are produced) with their count in the top 16 bits.
// Example: inputs/loops/base64/man.hex ("TWFu", "Man"): 3 bytes.
#include "../fixture.h"

#define BAD 0xff
#define SKIP 0xfe
#define END 0xfd

static const u8 decode[256] = {
    BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  SKIP, SKIP, BAD,  BAD,  SKIP, BAD,  BAD,
    BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,
    SKIP, BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  62,   BAD,  BAD,  BAD,  63,
    52,   53,   54,   55,   56,   57,   58,   59,   60,   61,   BAD,  BAD,  BAD,  END,  BAD,  BAD,
    BAD,  0,    1,    2,    3,    4,    5,    6,    7,    8,    9,    10,   11,   12,   13,   14,
    15,   16,   17,   18,   19,   20,   21,   22,   23,   24,   25,   BAD,  BAD,  BAD,  BAD,  BAD,
    BAD,  26,   27,   28,   29,   30,   31,   32,   33,   34,   35,   36,   37,   38,   39,   40,
    41,   42,   43,   44,   45,   46,   47,   48,   49,   50,   51,   BAD,  BAD,  BAD,  BAD,  BAD,
    BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,
    BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,
    BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,
    BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,
    BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,
    BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,
    BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,
    BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,  BAD,
};

SEC("socket") u64 base64_decode(u8 *data, u64 len) {
    u64 h = 0xcbf29ce484222325ull, out = 0;
    u32 bits = 0, have = 0;
    for (u64 i = 0; i < len; i++) {
        u8 v = decode[data[i]];
        if (v == SKIP) continue;
        if (v == BAD || v == END) break;
        bits = (bits << 6) | v;
        have += 6;
        if (have >= 8) {
            have -= 8;
            h = (h ^ ((bits >> have) & 0xff)) * 0x100000001b3ull;
            out++;
        }
    }
    return (out << 48) ^ (h & 0xffffffffffffull);
}

NATIVE_MAIN(PROGRAM(base64_decode))
