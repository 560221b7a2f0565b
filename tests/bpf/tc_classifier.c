// tc_classifier: a TC ingress classifier as people write them (direct packet access from the
// Ethernet header, `__sk_buff` fields read and written, checksums fixed with the kernel's
// helpers). It records what it saw of the last packet (the `__sk_buff` fields a classifier
// reads), counts packets per TC action, and:
// - IPv4 TCP to port 22: priority 6 and class 1:10, TC_ACT_OK;
// - IPv4 UDP: TTL decremented (bpf_skb_store_bytes + bpf_l3_csum_replace), then redirected
//   to interface 2 (bpf_redirect: TC_ACT_REDIRECT); TTL 1 or less is TC_ACT_SHOT;
// - IPv4 ICMP: TC_ACT_SHOT;
// - IPv6: mark 0x6, TC_ACT_PIPE;
// - anything else: TC_ACT_UNSPEC.
#include "common.h"
#include <linux/pkt_cls.h>
#include <stddef.h>

struct seen {
    __u32 len;
    __u32 protocol;
    __u32 ifindex;
    __u32 ingress_ifindex;
    __u32 mark;
    __u32 priority;
    __u32 tc_index;
    __u32 tc_classid;
    __u32 queue_mapping;
    __u32 wire_len;
    __u32 data_len; /* data_end - data */
    __u32 cb0;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct seen);
} last SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 10);
    __type(key, __u32);
    __type(value, __u64);
} actions SEC(".maps");

static __always_inline int count(int action) {
    __u32 key = action + 1; /* TC_ACT_UNSPEC is -1 */
    __u64 *n = bpf_map_lookup_elem(&actions, &key);
    if (n)
        *n += 1;
    return action;
}

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_TTL_OFF (ETH_HLEN + offsetof(struct iphdr, ttl))

SEC("tc")
int tc_classifier(struct __sk_buff *skb) {
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    __u32 zero = 0;
    struct seen *s = bpf_map_lookup_elem(&last, &zero);
    if (s) {
        s->len = skb->len;
        s->protocol = skb->protocol;
        s->ifindex = skb->ifindex;
        s->ingress_ifindex = skb->ingress_ifindex;
        s->mark = skb->mark;
        s->priority = skb->priority;
        s->tc_index = skb->tc_index;
        s->tc_classid = skb->tc_classid;
        s->queue_mapping = skb->queue_mapping;
        s->wire_len = skb->wire_len;
        s->data_len = data_end - data;
        s->cb0 = skb->cb[0];
    }
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return count(TC_ACT_UNSPEC);
    if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        skb->mark = 0x6;
        return count(TC_ACT_PIPE);
    }
    struct iphdr *ip = ipv4_header(data, data_end);
    if (!ip)
        return count(TC_ACT_UNSPEC);
    if (ip->protocol == IPPROTO_ICMP)
        return count(TC_ACT_SHOT);
    if (ip->protocol == IPPROTO_TCP) {
        struct tcphdr *tcp = l4_header(ip, data_end);
        if (!tcp || (void *)(tcp + 1) > data_end)
            return count(TC_ACT_UNSPEC);
        if (tcp->dest == bpf_htons(22)) {
            skb->priority = 6;
            skb->tc_classid = TC_H_MAKE(1 << 16, 0x10);
        }
        return count(TC_ACT_OK);
    }
    if (ip->protocol != IPPROTO_UDP)
        return count(TC_ACT_UNSPEC);
    __u8 ttl = ip->ttl;
    if (ttl <= 1)
        return count(TC_ACT_SHOT);
    __u8 new_ttl = ttl - 1;
    /* The TTL shares a 16-bit checksum word with the protocol byte. */
    __u16 old_word = bpf_htons((__u16)ttl << 8 | ip->protocol);
    __u16 new_word = bpf_htons((__u16)new_ttl << 8 | ip->protocol);
    if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_word, new_word, 2) < 0)
        return count(TC_ACT_SHOT);
    if (bpf_skb_store_bytes(skb, IP_TTL_OFF, &new_ttl, 1, 0) < 0)
        return count(TC_ACT_SHOT);
    return count(bpf_redirect(2, 0));
}
