// xdp_globals: a tail call between programs that share the object's global variables
// (`.data`, `.rodata`: maps of the object, as libbpf makes them). `first` sets `counter` to 2
// and tail-calls `second`, which returns counter * 100 + table[counter]: 230 when the write
// carried over (120 if `second` saw the initial `.data`, which it does only before `first`
// ever ran: globals persist from run to run).
#include "common.h"

static volatile const __u32 table[4] = {10, 20, 30, 40};
__u32 counter = 1;

SEC("xdp")
int second(struct xdp_md *ctx) {
    return counter * 100 + table[counter & 3];
}

struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __array(values, int(void *));
} jumps SEC(".maps") = {
    .values = {[0] = (void *)&second},
};

SEC("xdp")
int first(struct xdp_md *ctx) {
    counter = 2;
    bpf_tail_call(ctx, &jumps, 0);
    return XDP_ABORTED;
}
