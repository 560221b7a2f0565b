// xdp_bss_counter: packet and byte counters kept in global variables rather than in a map,
// as a libbpf skeleton program keeps them (`skel->bss->packets` on the host side): they
// persist from packet to packet. Every `drop_every`-th packet (a `.rodata` setting, 5) is
// dropped; the length of the last IPv4 packet is kept in `.data` (starting at 0xffff).
#include "common.h"

__u64 packets;                           // .bss
__u64 bytes;                             // .bss
__u32 last_ipv4_len = 0xffff;            // .data
static volatile const __u32 drop_every = 5; // .rodata

SEC("xdp")
int xdp_bss_counter(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u64 n = __sync_fetch_and_add(&packets, 1) + 1;
    bytes += data_end - data;
    struct iphdr *ip = ipv4_header(data, data_end);
    if (ip)
        last_ipv4_len = bpf_ntohs(ip->tot_len);
    if (drop_every && n % drop_every == 0)
        return XDP_DROP;
    return XDP_PASS;
}
