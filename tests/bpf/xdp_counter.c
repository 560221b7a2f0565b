// xdp_counter: per-CPU packet and byte counters by IP protocol (TCP, UDP, ICMP, other IPv4,
// IPv6, other), as a monitoring program keeps them; every packet passes.
#include "common.h"

struct counters {
    __u64 packets;
    __u64 bytes;
};

enum { SLOT_TCP, SLOT_UDP, SLOT_ICMP, SLOT_IPV4, SLOT_IPV6, SLOT_OTHER, SLOTS };

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, SLOTS);
    __type(key, __u32);
    __type(value, struct counters);
} stats SEC(".maps");

SEC("xdp")
int xdp_counter(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 slot = SLOT_OTHER;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) <= data_end) {
        if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
            slot = SLOT_IPV6;
        } else {
            struct iphdr *ip = ipv4_header(data, data_end);
            if (ip) {
                if (ip->protocol == IPPROTO_TCP)
                    slot = SLOT_TCP;
                else if (ip->protocol == IPPROTO_UDP)
                    slot = SLOT_UDP;
                else if (ip->protocol == IPPROTO_ICMP)
                    slot = SLOT_ICMP;
                else
                    slot = SLOT_IPV4;
            }
        }
    }
    struct counters *c = bpf_map_lookup_elem(&stats, &slot);
    if (!c)
        return XDP_ABORTED;
    c->packets += 1;
    c->bytes += data_end - data;
    return XDP_PASS;
}
