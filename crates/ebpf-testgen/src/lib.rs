//! `ebpf-testgen`: proptest strategies for eBPF instructions and programs (being written).
