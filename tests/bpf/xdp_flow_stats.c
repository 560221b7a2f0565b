// xdp_flow_stats: per-source packet counts in a hash and bytes per protocol in an array, both
// walked on every packet with bpf_for_each_map_elem (callbacks, as the kernel runs them):
// - the array walk sums the bytes and stops at the first protocol that takes the sum past a
//   limit (its return value and where it stopped are recorded);
// - the hash walk counts the sources and their packets and evicts every source seen four
//   times or more (a delete from inside the callback).
// Results go to the `totals` array. Non-IPv4 frames pass untouched and uncounted.
#include "common.h"

struct bpf_map;

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u64);
} sources SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u64);
} bytes_by_proto SEC(".maps");

/* 0: bytes summed, 1: array elements visited, 2: where the array walk stopped (+1), 3:
 * sources, 4: their packets, 5: hash elements visited, 6: evicted so far. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 7);
    __type(key, __u32);
    __type(value, __u64);
} totals SEC(".maps");

struct sum {
    __u64 bytes;
    __u64 limit;
    __u64 stopped_at;
};

struct scan {
    __u64 sources;
    __u64 packets;
    __u64 evicted;
};

static long sum_bytes(struct bpf_map *map, __u32 *key, __u64 *value, struct sum *s) {
    s->bytes += *value;
    if (s->bytes > s->limit) {
        s->stopped_at = *key + 1;
        return 1;
    }
    return 0;
}

static long scan_sources(struct bpf_map *map, __u32 *key, __u64 *value, struct scan *s) {
    s->sources += 1;
    s->packets += *value;
    if (*value >= 4) {
        bpf_map_delete_elem(map, key);
        s->evicted += 1;
    }
    return 0;
}

static __always_inline void put(__u32 key, __u64 value) {
    bpf_map_update_elem(&totals, &key, &value, BPF_ANY);
}

SEC("xdp")
int xdp_flow_stats(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct iphdr *ip = ipv4_header(data, data_end);
    if (!ip)
        return XDP_PASS;
    __u32 src = ip->saddr;
    __u64 one = 1;
    __u64 *seen = bpf_map_lookup_elem(&sources, &src);
    if (seen)
        __sync_fetch_and_add(seen, 1);
    else
        bpf_map_update_elem(&sources, &src, &one, BPF_NOEXIST);
    __u32 proto = ip->protocol == IPPROTO_TCP ? 0 : ip->protocol == IPPROTO_UDP ? 1
                : ip->protocol == IPPROTO_ICMP ? 2 : 3;
    __u64 *bytes = bpf_map_lookup_elem(&bytes_by_proto, &proto);
    if (bytes)
        __sync_fetch_and_add(bytes, data_end - data);

    struct sum sum = {.limit = 4096};
    long visited = bpf_for_each_map_elem(&bytes_by_proto, sum_bytes, &sum, 0);
    put(0, sum.bytes);
    put(1, visited);
    put(2, sum.stopped_at);

    struct scan scan = {};
    visited = bpf_for_each_map_elem(&sources, scan_sources, &scan, 0);
    put(3, scan.sources);
    put(4, scan.packets);
    put(5, visited);
    __u32 evicted = 6;
    __u64 *total = bpf_map_lookup_elem(&totals, &evicted);
    if (total)
        *total += scan.evicted;
    return XDP_PASS;
}
