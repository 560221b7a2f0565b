// build: -O2 -mcpu=v3
//
// maps: programs that use BPF maps, built without -g (so without BTF):
//   - count_packets (section "xdp") uses the BTF-style map `packet_counts` (section ".maps"),
//     which cannot be described without the .BTF section: a clear error;
//   - legacy_lookup (section "socket") uses the legacy map `legacy_table` (section "maps"),
//     which is described and relocated;
//   - no_maps (section "tc") uses no map and loads fine.
// BPF only: there is no native build.
typedef unsigned long long u64;
typedef unsigned int u32;
#define SEC(name) __attribute__((section(name), used))

struct {
    int (*type)[2];
    int (*max_entries)[16];
    u32 *key;
    u64 *value;
} packet_counts SEC(".maps");

struct bpf_map_def {
    unsigned int type, key_size, value_size, max_entries;
} legacy_table SEC("maps") = {2, 4, 8, 16};

static void *(*map_lookup_elem)(void *map, const void *key) = (void *)1;

SEC("xdp") u64 count_packets(void *data, u64 len) {
    u32 key = 0;
    u64 *count = map_lookup_elem(&packet_counts, &key);
    if (count) __sync_fetch_and_add(count, 1);
    return 2;
}

SEC("socket") u64 legacy_lookup(void *data, u64 len) {
    u32 key = (u32)len & 15;
    u64 *v = map_lookup_elem(&legacy_table, &key);
    return v ? *v : 0;
}

SEC("tc") u64 no_maps(void *data, u64 len) { return len + 1; }
