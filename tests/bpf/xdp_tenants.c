// xdp_tenants: per-tenant source counters through an array of maps. The tenant is the low two
// bits of the IPv4 destination address; slot N of `tenants` holds that tenant's hash of
// per-source packet counts (the object fills slots 0 and 2; the host may fill the others).
// A source seen more than three times in its tenant's map is dropped; a tenant without a
// map passes uncounted. `outcomes` counts each path.
#include "common.h"

struct tenant_counts {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);   /* source address, network order */
    __type(value, __u64); /* packets */
};

struct tenant_counts tenant_a SEC(".maps"), tenant_b SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 4);
    __type(key, __u32);
    __array(values, struct tenant_counts);
} tenants SEC(".maps") = {
    .values = { [0] = &tenant_a, [2] = &tenant_b },
};

/* 0: not IPv4, 1: no map for the tenant, 2: counted, 3: dropped, 4: the tenant's map full */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 5);
    __type(key, __u32);
    __type(value, __u64);
} outcomes SEC(".maps");

static __always_inline int outcome(__u32 which, int action) {
    __u64 *n = bpf_map_lookup_elem(&outcomes, &which);
    if (n)
        __sync_fetch_and_add(n, 1);
    return action;
}

SEC("xdp")
int xdp_tenants(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct iphdr *ip = ipv4_header(data, data_end);
    if (!ip)
        return outcome(0, XDP_PASS);
    __u32 tenant = bpf_ntohl(ip->daddr) & 3;
    void *counts = bpf_map_lookup_elem(&tenants, &tenant);
    if (!counts)
        return outcome(1, XDP_PASS);
    __u32 saddr = ip->saddr;
    __u64 *n = bpf_map_lookup_elem(counts, &saddr);
    if (n) {
        __u64 seen = __sync_fetch_and_add(n, 1);
        if (seen >= 3)
            return outcome(3, XDP_DROP);
        return outcome(2, XDP_PASS);
    }
    __u64 one = 1;
    if (bpf_map_update_elem(counts, &saddr, &one, BPF_NOEXIST))
        return outcome(4, XDP_PASS);
    return outcome(2, XDP_PASS);
}
