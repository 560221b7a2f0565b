// xdp_redirect: an XDP forwarder as xdp-tools and load balancers write them, redirecting
// through every kind of redirect map with bpf_redirect_map, and counting each action:
// - not IPv4: to the AF_XDP socket of the receive queue (xskmap), else XDP_PASS;
// - IPv4 UDP: to the interface the devmap hash keys by destination port % 8, else XDP_DROP;
// - IPv4 TCP: to the CPU the cpumap holds for the source address % 4, else XDP_PASS;
// - IPv4 ICMP: broadcast to every interface of the devmap but the ingress one;
// - IPv4 with a TOS: BPF_F_BROADCAST on a cpumap, which takes no such flag (XDP_ABORTED);
// - other IPv4: to devmap slot TTL % 4, else XDP_TX.
// The host fills the maps (kernel-diff seeds the devmaps and the cpumap).
#include "common.h"

struct {
    __uint(type, BPF_MAP_TYPE_DEVMAP);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u32);
} tx_ports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
    __uint(max_entries, 8);
    __type(key, __u32);
    __type(value, struct bpf_devmap_val);
} by_port SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_CPUMAP);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, struct bpf_cpumap_val);
} cpus SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u32);
} xsks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 5);
    __type(key, __u32);
    __type(value, __u64);
} actions SEC(".maps");

static __always_inline int count(long action) {
    __u32 key = action;
    __u64 *n = bpf_map_lookup_elem(&actions, &key);
    if (n)
        __sync_fetch_and_add(n, 1);
    return action;
}

SEC("xdp")
int xdp_redirect(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct iphdr *ip = ipv4_header(data, data_end);
    if (!ip)
        return count(bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS));
    if (ip->protocol == IPPROTO_UDP) {
        struct udphdr *udp = l4_header(ip, data_end);
        if (!udp || (void *)(udp + 1) > data_end)
            return count(XDP_DROP);
        return count(bpf_redirect_map(&by_port, bpf_ntohs(udp->dest) % 8, XDP_DROP));
    }
    if (ip->protocol == IPPROTO_TCP)
        return count(bpf_redirect_map(&cpus, bpf_ntohl(ip->saddr) % 4, XDP_PASS));
    if (ip->protocol == IPPROTO_ICMP)
        return count(bpf_redirect_map(&tx_ports, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS));
    if (ip->tos)
        return count(bpf_redirect_map(&cpus, 0, BPF_F_BROADCAST));
    return count(bpf_redirect_map(&tx_ports, ip->ttl % 4, XDP_TX));
}
