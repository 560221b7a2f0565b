// build: -O2 -mcpu=v3
//
// kfunc: a program that calls a kernel function (kfunc) and one that reads an extern
// `.kconfig` variable; both need a kernel, so the loader must refuse them with an
// `Unsupported` error naming `bpf_ktime_get_coarse_ns` / `LINUX_KERNEL_VERSION`.
// BPF only: there is no native build.
typedef unsigned long long u64;
#define SEC(name) __attribute__((section(name), used))

extern u64 bpf_ktime_get_coarse_ns(void) __attribute__((section(".ksyms")));
extern unsigned int LINUX_KERNEL_VERSION __attribute__((section(".kconfig")));

SEC("xdp") u64 uses_kfunc(void *data, u64 len) { return bpf_ktime_get_coarse_ns() + len; }

SEC("tc") u64 uses_kconfig(void *data, u64 len) { return LINUX_KERNEL_VERSION + len; }
