// xdp_tailcall: a dispatcher that tail-calls a program per IP protocol through a prog array
// initialised in the object (libbpf's `.values`); each handler counts its packets and
// decides. Protocols without a handler fall through the failed tail call and pass.
#include "common.h"

enum { SLOT_TCP, SLOT_UDP, SLOT_ICMP, SLOTS };

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, SLOTS + 1);
    __type(key, __u32);
    __type(value, __u64);
} handled SEC(".maps");

static __always_inline void bump(__u32 slot) {
    __u64 *n = bpf_map_lookup_elem(&handled, &slot);
    if (n)
        __sync_fetch_and_add(n, 1);
}

SEC("xdp")
int handle_tcp(struct xdp_md *ctx) {
    bump(SLOT_TCP);
    return XDP_PASS;
}

SEC("xdp")
int handle_udp(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    bump(SLOT_UDP);
    struct iphdr *ip = ipv4_header(data, data_end);
    if (!ip)
        return XDP_ABORTED;
    struct udphdr *udp = l4_header(ip, data_end);
    if (!udp || (void *)(udp + 1) > data_end)
        return XDP_DROP;
    /* Drop UDP to the discard port. */
    return udp->dest == bpf_htons(9) ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int handle_icmp(struct xdp_md *ctx) {
    bump(SLOT_ICMP);
    return XDP_DROP;
}

struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, SLOTS);
    __uint(key_size, sizeof(__u32));
    __array(values, int(void *));
} dispatch SEC(".maps") = {
    .values =
        {
            [SLOT_TCP] = (void *)&handle_tcp,
            [SLOT_UDP] = (void *)&handle_udp,
            [SLOT_ICMP] = (void *)&handle_icmp,
        },
};

SEC("xdp")
int xdp_dispatch(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct iphdr *ip = ipv4_header(data, data_end);
    if (!ip)
        return XDP_PASS;
    __u32 slot = ip->protocol == IPPROTO_TCP    ? SLOT_TCP
                 : ip->protocol == IPPROTO_UDP  ? SLOT_UDP
                 : ip->protocol == IPPROTO_ICMP ? SLOT_ICMP
                                                : SLOTS;
    bpf_tail_call(ctx, &dispatch, slot);
    bump(SLOTS); /* no handler */
    return XDP_PASS;
}
