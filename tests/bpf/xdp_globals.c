// xdp_globals: a tail call between programs that share the object's global variables
// (`.data`, `.rodata`). `first` sets `counter` to 2 and tail-calls `second`, which returns
// counter * 100 + table[counter] (230 when the write carried over; 120 if `second` saw a
// fresh `.data`). Not in the kernel corpus: ebpf-kernel loads no global data maps, so the
// kernel cannot be asked; tests/kernel in ebpf-vm checks the values the source implies.
#include "../common.h"

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
