//! A typed builder for writing eBPF programs in Rust (placeholder, being written).
