// build: -O2 -mcpu=v3
//
// program_types: programs of kernel program types this VM has no context for (a kprobe, a
// tracepoint that also reads an extern `.kconfig` variable, an fentry program). Loaded with
// the kernel helpers, each must be refused with a message naming its section and program
// type — the type first, before what else it lacks. BPF only: there is no native build.
typedef unsigned long long u64;
#define SEC(name) __attribute__((section(name), used))

extern unsigned int LINUX_KERNEL_VERSION __attribute__((section(".kconfig")));

SEC("kprobe/do_sys_open") u64 probe(void *ctx) { return 0; }

SEC("tracepoint/syscalls/sys_enter_openat") u64 trace(void *ctx) { return LINUX_KERNEL_VERSION; }

SEC("fentry/tcp_connect") u64 entry(void *ctx) { return 1; }
