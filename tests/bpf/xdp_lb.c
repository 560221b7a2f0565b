// xdp_lb: a layer-4 load balancer. Packets to the virtual address 10.0.0.100 (TCP or UDP)
// go to one of four backends chosen by a hash of the client's address and port: the
// destination address and MAC are rewritten, the IPv4 and TCP/UDP checksums fixed
// incrementally with bpf_csum_diff, and the frame sent back out (XDP_TX). Each backend
// counts its packets.
#include "common.h"

#define VIP 0x0a000064 /* 10.0.0.100 */
#define BACKENDS 4

struct backend {
    __u32 addr; /* network order */
    __u8 mac[6];
    __u16 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, BACKENDS);
    __type(key, __u32);
    __type(value, struct backend);
} backends SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, BACKENDS);
    __type(key, __u32);
    __type(value, __u64);
} hits SEC(".maps");

static __always_inline __u16 csum_fold(__u32 csum) {
    csum = (csum & 0xffff) + (csum >> 16);
    csum = (csum & 0xffff) + (csum >> 16);
    return (__u16)~csum;
}

/* The checksum *sum after 4 covered bytes change from `from` to `to`. */
static __always_inline void csum_replace4(__u16 *sum, __u32 from, __u32 to) {
    __u32 diff = bpf_csum_diff(&from, 4, &to, 4, ~(__u32)*sum);
    *sum = csum_fold(diff);
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = ipv4_header(data, data_end);
    if (!ip || ip->daddr != bpf_htonl(VIP))
        return XDP_PASS;
    if (ip->ihl != 5)
        return XDP_DROP; /* no options on the virtual service */
    __u16 *l4_csum = 0;
    __u16 sport = 0;
    if (ip->protocol == IPPROTO_TCP) {
        struct tcphdr *tcp = (void *)(ip + 1);
        if ((void *)(tcp + 1) > data_end)
            return XDP_DROP;
        l4_csum = &tcp->check;
        sport = tcp->source;
    } else if (ip->protocol == IPPROTO_UDP) {
        struct udphdr *udp = (void *)(ip + 1);
        if ((void *)(udp + 1) > data_end)
            return XDP_DROP;
        if (udp->check)
            l4_csum = &udp->check;
        sport = udp->source;
    } else {
        return XDP_PASS;
    }
    __u32 h = bpf_ntohl(ip->saddr) * 2654435761u ^ bpf_ntohs(sport);
    __u32 index = (h >> 16) % BACKENDS;
    struct backend *b = bpf_map_lookup_elem(&backends, &index);
    if (!b || !b->addr)
        return XDP_ABORTED;
    __u32 old = ip->daddr;
    ip->daddr = b->addr;
    csum_replace4(&ip->check, old, b->addr);
    if (l4_csum)
        csum_replace4(l4_csum, old, b->addr); /* the pseudo-header changed */
    __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, b->mac, ETH_ALEN);
    __u64 *n = bpf_map_lookup_elem(&hits, &index);
    if (n)
        __sync_fetch_and_add(n, 1);
    return XDP_TX;
}
