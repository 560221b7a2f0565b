// build: -O2 -mcpu=v3 -g
// inputs: frames
//
// ip_filter: an XDP-style filter over a raw Ethernet frame that drops or passes by IPv4
// address. It skips one optional 802.1Q VLAN tag, checks the IPv4 header (version 4, IHL >= 5,
// the whole header inside the frame) and returns XDP_DROP (1) for
//   - frames shorter than an Ethernet header,
//   - IPv4 packets from 10.0.0.0/8 or 192.168.66.0/24,
//   - IPv4 packets to the limited broadcast 255.255.255.255,
//   - IPv4 packets whose header does not fit in the frame;
// every other frame (other IPv4 traffic, IPv6, ARP, ...) gets XDP_PASS (2).
// Built with -g, so the object carries BTF and DWARF sections that the loader must ignore.
//
// Example (inputs/frames/ipv4_tcp_http.hex, 192.168.1.10 -> 93.184.216.34, TCP port 80):
// XDP_PASS, 0x2. inputs/frames/ipv4_from_10net.hex (10.1.2.3 -> 8.8.8.8): XDP_DROP, 0x1.
#include "fixture.h"

#define XDP_DROP 1
#define XDP_PASS 2
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_8021Q 0x8100

static inline u16 load_be16(const u8 *p) { return (u16)((p[0] << 8) | p[1]); }

static inline u32 load_be32(const u8 *p) {
    return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | (u32)p[3];
}

// The offset of the IPv4 header, 0 for a frame that carries no IPv4 packet, or -1 for an IPv4
// packet whose header is cut short.
static __attribute__((noinline)) s64 ipv4_offset(const u8 *data, u64 len) {
    u64 off = 12;
    u16 proto = load_be16(data + off);
    if (proto == ETH_P_8021Q) {
        if (len < ETH_HLEN + 4) return 0;
        off += 4;
        proto = load_be16(data + off);
    }
    off += 2;
    if (proto != ETH_P_IP) return 0;
    if (len < off + 20) return -1;
    if ((data[off] >> 4) != 4) return -1;
    u64 ihl = (u64)(data[off] & 0xf) * 4;
    if (ihl < 20 || len < off + ihl) return -1;
    return (s64)off;
}

SEC("xdp") u64 xdp_ip_filter(u8 *data, u64 len) {
    if (len < ETH_HLEN) return XDP_DROP;
    s64 off = ipv4_offset(data, len);
    if (off < 0) return XDP_DROP;
    if (off == 0) return XDP_PASS;
    u32 src = load_be32(data + off + 12);
    u32 dst = load_be32(data + off + 16);
    if ((src >> 24) == 10) return XDP_DROP;
    if ((src & 0xffffff00u) == 0xc0a84200u) return XDP_DROP;
    if (dst == 0xffffffffu) return XDP_DROP;
    return XDP_PASS;
}

NATIVE_MAIN(PROGRAM(xdp_ip_filter))
