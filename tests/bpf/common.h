/* common.h: what the corpus programs share — packet parsing as real XDP and socket-filter
 * programs write it, against the kernel's UAPI headers and libbpf's bpf_helpers.h. */
#ifndef CORPUS_COMMON_H
#define CORPUS_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

/* The IPv4 header of an Ethernet frame, or NULL (not IPv4, or cut short). */
static __always_inline struct iphdr *ipv4_header(void *data, void *data_end) {
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return 0;
    if (eth->h_proto != bpf_htons(ETH_P_IP))
        return 0;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return 0;
    if (ip->ihl < 5 || ip->version != 4)
        return 0;
    return ip;
}

/* The transport header after an IPv4 header whose options are inside the packet, or NULL. */
static __always_inline void *l4_header(struct iphdr *ip, void *data_end) {
    void *l4 = (void *)ip + ip->ihl * 4;
    if (l4 > data_end)
        return 0;
    return l4;
}

#endif
