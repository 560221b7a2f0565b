// xdp_tcp_options: parses the options of TCP segments with bpf_loop (a callback per
// option), counting each option kind in an array and dropping segments whose options are
// malformed (a length below 2, or running past the header).
#include "common.h"

#define MAX_OPT_LEN 40

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 16);
    __type(key, __u32);
    __type(value, __u64);
} kinds SEC(".maps");

struct parse_state {
    __u8 opts[MAX_OPT_LEN];
    __u32 len;
    __u32 pos;
    __u32 bad;
};

static long parse_option(__u64 index, void *arg) {
    struct parse_state *st = arg;
    __u32 pos = st->pos;
    if (pos >= st->len || pos >= MAX_OPT_LEN)
        return 1; /* done */
    __u8 kind = st->opts[pos];
    if (kind == 0) /* end of options */
        return 1;
    __u32 slot = kind & 15;
    __u64 *n = bpf_map_lookup_elem(&kinds, &slot);
    if (n)
        __sync_fetch_and_add(n, 1);
    if (kind == 1) { /* no-op */
        st->pos = pos + 1;
        return 0;
    }
    if (pos + 1 >= MAX_OPT_LEN || pos + 1 >= st->len) {
        st->bad = 1;
        return 1;
    }
    __u8 len = st->opts[pos + 1];
    if (len < 2 || pos + len > st->len) {
        st->bad = 1;
        return 1;
    }
    st->pos = pos + len;
    return 0;
}

SEC("xdp")
int xdp_tcp_options(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct iphdr *ip = ipv4_header(data, data_end);
    if (!ip || ip->protocol != IPPROTO_TCP)
        return XDP_PASS;
    struct tcphdr *tcp = l4_header(ip, data_end);
    if (!tcp || (void *)(tcp + 1) > data_end)
        return XDP_DROP;
    struct parse_state st = {};
    __u32 doff = tcp->doff * 4;
    if (doff < sizeof *tcp)
        return XDP_DROP;
    st.len = doff - sizeof *tcp;
    __u8 *opt = (void *)(tcp + 1);
    for (int i = 0; i < MAX_OPT_LEN; i++) {
        if (i >= st.len)
            break;
        if ((void *)(opt + i + 1) > data_end)
            return XDP_DROP;
        st.opts[i] = opt[i];
    }
    bpf_loop(MAX_OPT_LEN, parse_option, &st, 0);
    return st.bad ? XDP_DROP : XDP_PASS;
}
