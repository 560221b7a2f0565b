//! The `ebpf` command (being written).

fn main() {}
