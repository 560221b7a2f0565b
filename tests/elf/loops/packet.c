// build: -O2 -mcpu=v3
// inputs: loops/records
//
// packet_stats (section "xdp"): walks a capture of length-prefixed Ethernet frames (each a
// little-endian u16 length, then that many bytes) and parses each one as a packet filter
// would, with the usual guards (`if (p + 14 > end)`): an optional VLAN tag, IPv4 with its
// header length, then TCP or UDP ports. Returns the frame count, the TCP and UDP byte counts
// and a hash of the ports seen. A truncated last record ends the walk.
#include "../fixture.h"

SEC("xdp") u64 packet_stats(u8 *data, u64 len) {
    u8 *p = data, *end = data + len;
    u64 frames = 0, tcp = 0, udp = 0, other = 0, ports = 0;
    while (p + 2 <= end) {
        u64 size = p[0] | ((u64)p[1] << 8);
        u8 *frame = p + 2, *frame_end = frame + size;
        if (frame_end > end) break;
        p = frame_end;
        frames++;
        if (frame + 14 > frame_end) {
            other++;
            continue;
        }
        u16 proto = ((u16)frame[12] << 8) | frame[13];
        u8 *ip = frame + 14;
        if (proto == 0x8100) {
            if (ip + 4 > frame_end) {
                other++;
                continue;
            }
            proto = ((u16)ip[2] << 8) | ip[3];
            ip += 4;
        }
        if (proto != 0x0800 || ip + 20 > frame_end) {
            other++;
            continue;
        }
        u64 header = (u64)(ip[0] & 0x0f) * 4;
        u8 *l4 = ip + header;
        if (header < 20 || l4 + 4 > frame_end) {
            other++;
            continue;
        }
        u16 sport = ((u16)l4[0] << 8) | l4[1];
        u16 dport = ((u16)l4[2] << 8) | l4[3];
        if (ip[9] == 6) {
            tcp += size;
        } else if (ip[9] == 17) {
            udp += size;
        } else {
            other++;
            continue;
        }
        ports = ports * 31 + ((u64)sport << 16 | dport);
    }
    return (frames << 56) ^ (tcp << 40) ^ (udp << 24) ^ (other << 16) ^ ports;
}

NATIVE_MAIN(PROGRAM(packet_stats))
