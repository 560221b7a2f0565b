// build: -O2 -mcpu=v3
// inputs: checksum
//
// checksum: two checksums over the whole input, both in section "tc" (so selecting by section
// is ambiguous and the loader must be told the function):
//   - inet_checksum: the Internet checksum of RFC 1071 (one's-complement sum of big-endian
//     16-bit words, an odd last byte padded with zero, folded, complemented). Over an IPv4
//     header with a correct checksum field it is 0.
//   - adler32: Adler-32 (RFC 1950), with the sums reduced modulo 65521 at every byte.
// At most 4096 bytes are summed.
//
// Example: inputs/checksum/ipv4_header_ok.hex (a 20-byte IPv4 header with a correct
// checksum): inet_checksum = 0x0; inputs/checksum/wikipedia.hex ("Wikipedia"):
// adler32 = 0x11e60398.
#include "fixture.h"

#define MAX_LEN 4096

SEC("tc") u64 inet_checksum(u8 *data, u64 len) {
    u64 sum = 0;
    u64 n = len < MAX_LEN ? len : MAX_LEN;
    u64 i = 0;
    for (; i + 1 < n; i += 2) sum += ((u64)data[i] << 8) | data[i + 1];
    if (i < n) sum += (u64)data[i] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return ~sum & 0xffff;
}

SEC("tc") u64 adler32(u8 *data, u64 len) {
    u32 a = 1, b = 0;
    u64 n = len < MAX_LEN ? len : MAX_LEN;
    for (u64 i = 0; i < n; i++) {
        a = (a + data[i]) % 65521;
        b = (b + a) % 65521;
    }
    return ((u64)b << 16) | a;
}

NATIVE_MAIN(PROGRAM(inet_checksum) PROGRAM(adler32))
