// build: -O2 -mcpu=v3
// inputs: frames
//
// port_filter: a socket filter over a raw Ethernet frame that keeps or drops by TCP/UDP port.
// Like a classic socket filter it returns how many bytes of the frame to keep:
//   - 0 (drop) for frames that carry no IPv4 TCP/UDP packet, and for traffic to the blocked
//     ports 23 (telnet), 135 to 139 (NetBIOS) and 445 (SMB);
//   - at most 64 bytes for DNS (UDP port 53 either way), to keep only the headers;
//   - the whole frame otherwise.
// The IPv4 header may carry options (IHL > 5) and follow one 802.1Q tag.
//
// Example (inputs/frames/ipv4_tcp_http.hex, TCP to port 80, 79 bytes): 0x4f (keep all).
// inputs/frames/ipv4_telnet.hex (TCP to port 23): 0x0.
#include "fixture.h"

#define ETH_P_IP 0x0800
#define ETH_P_8021Q 0x8100
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

static inline u16 load_be16(const u8 *p) { return (u16)((p[0] << 8) | p[1]); }

static inline int blocked(u16 port) {
    return port == 23 || (port >= 135 && port <= 139) || port == 445;
}

SEC("socket") u64 socket_port_filter(u8 *data, u64 len) {
    if (len < 14) return 0;
    u64 off = 12;
    u16 proto = load_be16(data + off);
    if (proto == ETH_P_8021Q) {
        if (len < 18) return 0;
        off += 4;
        proto = load_be16(data + off);
    }
    off += 2;
    if (proto != ETH_P_IP || len < off + 20) return 0;
    u8 version_ihl = data[off];
    if ((version_ihl >> 4) != 4) return 0;
    u64 ihl = (u64)(version_ihl & 0xf) * 4;
    if (ihl < 20) return 0;
    u8 l4 = data[off + 9];
    if (l4 != IPPROTO_TCP && l4 != IPPROTO_UDP) return 0;
    off += ihl;
    if (len < off + 4) return 0;
    u16 sport = load_be16(data + off);
    u16 dport = load_be16(data + off + 2);
    if (blocked(dport)) return 0;
    if (l4 == IPPROTO_UDP && (sport == 53 || dport == 53)) return len < 64 ? len : 64;
    return len;
}

NATIVE_MAIN(PROGRAM(socket_port_filter))
