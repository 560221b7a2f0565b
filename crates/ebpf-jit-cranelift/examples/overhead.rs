//! Scratch: runs one benchmark program N times (for `perf stat`).
use ebpf_abi::{Helpers, Limits, MemoryMap, Region, layout};
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("histogram", String::as_str);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let h = Helpers::new();
    let l = Limits::default();
    let bp = ebpf_bench::by_name(name).unwrap();
    let prog = bp.assemble();
    let jit = ebpf_jit_cranelift::compile(&prog, &Default::default()).unwrap();
    let input = bp.input();
    let mut buf = input.clone();
    let t = Instant::now();
    for _ in 0..n {
        buf.copy_from_slice(&input);
        let len = buf.len() as u64;
        let mut m = MemoryMap::new();
        m.insert(layout::INPUT, Region::Writable(&mut buf));
        std::hint::black_box(
            jit.run(m, [layout::vm_addr(layout::INPUT, 0), len], &h, &l)
                .unwrap(),
        );
    }
    println!(
        "{name}: {:.2} us per run, {} insns, code {} bytes",
        t.elapsed().as_nanos() as f64 / n as f64 / 1000.0,
        bp.instructions,
        jit.code_size()
    );
}
