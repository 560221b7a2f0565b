// xdp_firewall: drops IPv4 packets from blocked source addresses (a hash map the host fills)
// and counts what it did per verdict; blocked entries count their own drops atomically.
#include "common.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __u32);   /* source address, network order */
    __type(value, __u64); /* packets dropped */
} blocked SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u64);
} verdicts SEC(".maps");

static __always_inline int count(__u32 verdict) {
    __u64 *n = bpf_map_lookup_elem(&verdicts, &verdict);
    if (n)
        __sync_fetch_and_add(n, 1);
    return verdict;
}

SEC("xdp")
int xdp_firewall(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return count(XDP_DROP);
    struct iphdr *ip = ipv4_header(data, data_end);
    if (!ip)
        return count(XDP_PASS);
    __u32 saddr = ip->saddr;
    __u64 *drops = bpf_map_lookup_elem(&blocked, &saddr);
    if (drops) {
        __sync_fetch_and_add(drops, 1);
        return count(XDP_DROP);
    }
    return count(XDP_PASS);
}
