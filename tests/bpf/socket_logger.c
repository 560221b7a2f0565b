// socket_logger: a socket filter that logs every IPv4 packet into a ring buffer (reserve,
// fill, submit; records of fragments are discarded), logs other frames with
// bpf_ringbuf_output, and counts records the ring had no room for. It keeps whole packets,
// except frames shorter than an Ethernet header, which it drops (returns 0).
#include "common.h"

struct event {
    __u32 len;
    __u32 protocol;
    __u32 saddr;
    __u32 daddr;
    __u8 ip_proto;
    __u8 ttl;
    __u16 frag;
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} lost SEC(".maps");

static __always_inline void count_lost(void) {
    __u32 zero = 0;
    __u64 *n = bpf_map_lookup_elem(&lost, &zero);
    if (n)
        __sync_fetch_and_add(n, 1);
}

SEC("socket")
int socket_logger(struct __sk_buff *skb) {
    if (skb->len < ETH_HLEN)
        return 0;
    __u16 proto;
    if (bpf_skb_load_bytes(skb, 12, &proto, 2) < 0)
        return 0;
    if (proto != bpf_htons(ETH_P_IP)) {
        __u32 len = skb->len;
        if (bpf_ringbuf_output(&events, &len, sizeof len, 0) < 0)
            count_lost();
        return skb->len;
    }
    struct iphdr ip;
    if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof ip) < 0)
        return skb->len;
    struct event *e = bpf_ringbuf_reserve(&events, sizeof *e, 0);
    if (!e) {
        count_lost();
        return skb->len;
    }
    e->len = skb->len;
    e->protocol = skb->protocol;
    e->saddr = ip.saddr;
    e->daddr = ip.daddr;
    e->ip_proto = ip.protocol;
    e->ttl = ip.ttl;
    e->frag = ip.frag_off;
    if (ip.frag_off & bpf_htons(0x3fff))
        bpf_ringbuf_discard(e, 0);
    else
        bpf_ringbuf_submit(e, 0);
    return skb->len;
}
