//! Writes a generated program of one of the four scaling shapes as bytecode, for timing a
//! compile from the command line.
//!
//! `cargo run --release -p ebpf-bench --example shape -- SHAPE N OUT.bin` with SHAPE one of
//! `straight`, `branchy`, `loops`, `calls`; then e.g.
//! `/usr/bin/time -v ebpf run OUT.bin --engine cranelift`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> = ebpf_bench::shapes::SHAPES.iter().map(|(n, _)| *n).collect();
    let [shape, n, out] = args.as_slice() else {
        eprintln!("usage: shape SHAPE N OUT.bin (SHAPE: {names:?})");
        std::process::exit(2);
    };
    let Ok(n) = n.parse::<usize>() else {
        eprintln!("N must be a number, not {n:?}");
        std::process::exit(2);
    };
    let Some(program) = ebpf_bench::shapes::shape(shape, n) else {
        eprintln!("unknown shape {shape:?}; one of {names:?}");
        std::process::exit(2);
    };
    if let Err(e) = std::fs::write(out, program.to_bytes()) {
        eprintln!("{out}: {e}");
        std::process::exit(1);
    }
}
