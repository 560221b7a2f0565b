//! Which memory accesses of the C loop programs of `tests/elf/loops/` the facts leave checked,
//! and how often each runs on the program's `bench` input: per program, its accesses, those
//! proven, and the executions per run of those left checked (counted by a traced run, which
//! executes what every engine executes). docs/facts.md ("The C loop programs: what is left")
//! has the tables.
//!
//! `cargo run --release -p ebpf-vm --example loops_facts [PROGRAM…]` (default: `sort`,
//! `sieve`, `packet`, `base64`); with `-v` first, also every executed instruction with its
//! count per run and the fact of each access, and the versioned and counted loops, on
//! standard error.

use std::path::PathBuf;

use ebpf_vm::cfg::facts::{Access, Facts};
use ebpf_vm::isa::Insn;
use ebpf_vm::{Input, Selector, Step, Vm};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.first().is_some_and(|a| a == "-v");
    if verbose {
        args.remove(0);
    }
    if args.is_empty() {
        args = ["sort", "sieve", "packet", "base64"]
            .map(String::from)
            .to_vec();
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/elf");
    let expected = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
    println!("| program | accesses | proven | checked | executed per run | of which checked |");
    println!("|---|---:|---:|---:|---:|---:|");
    for name in args {
        let object = format!("loops/{name}");
        let line = expected
            .lines()
            .find(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() == 4 && f[0] == object && f[2].ends_with("/bench")
            })
            .unwrap_or_else(|| panic!("no {object} with a bench input in expected.txt"));
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex = std::fs::read_to_string(dir.join(format!("inputs/{}.hex", f[2]))).expect("in");
        let mut input: Vec<u8> = hex
            .lines()
            .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
            .map(|t| u8::from_str_radix(t, 16).expect("hex byte"))
            .collect();
        let bytes = std::fs::read(dir.join(format!("{object}.o"))).expect("the object");
        let vm = Vm::builder()
            .budget(1 << 40)
            .load_elf(&bytes, Selector::Function(f[1]))
            .unwrap_or_else(|e| panic!("{object}: {e}"));
        let program = vm.program();
        let facts = Facts::analyse(program, vm.facts_entry());
        let insns = program.insns();
        // The trace names pcs (slots); the facts, instruction indices (an `lddw` counts once).
        let mut index_of = vec![0usize; program.slot_count()];
        for (k, (pc, _)) in program.iter().enumerate() {
            index_of[pc] = k;
        }
        let mut counts = vec![0u64; insns.len()];
        vm.run_traced(Input::new(&mut input), &mut |s: &Step| {
            counts[index_of[s.pc]] += 1
        })
        .unwrap_or_else(|e| panic!("{object}: {e}"));
        let is_access = |i: &Insn| {
            matches!(
                i,
                Insn::Load { .. } | Insn::Store { .. } | Insn::Atomic { .. }
            )
        };
        let accesses: Vec<usize> = (0..insns.len()).filter(|&k| is_access(&insns[k])).collect();
        let checked: Vec<usize> = accesses
            .iter()
            .copied()
            .filter(|&k| matches!(facts.access(k), Access::Checked { .. }))
            .collect();
        let executed: u64 = accesses.iter().map(|&k| counts[k]).sum();
        let executed_checked: u64 = checked.iter().map(|&k| counts[k]).sum();
        println!(
            "| {name} | {} | {} | {} | {executed} | {executed_checked} |",
            accesses.len(),
            accesses.len() - checked.len(),
            checked.len()
        );
        if verbose {
            eprintln!(
                "== {name}: {} instructions executed",
                counts.iter().sum::<u64>()
            );
            for (k, insn) in insns.iter().enumerate() {
                let fact = is_access(insn).then(|| format!("{:?}", facts.access(k)));
                eprintln!(
                    "{k:4} {:>7} {insn:?} {}",
                    counts[k],
                    fact.unwrap_or_default()
                );
            }
            // The loops a JIT copies: versions (unchecked) and counted loops (uncharged).
            for v in facts.versions() {
                eprintln!(
                    "version at {}: {:?}, accesses {:?}",
                    v.entry, v.conditions, v.accesses
                );
            }
            for l in facts.loops() {
                eprintln!("counted loop at {}: {:?}", l.entry, l.count);
            }
        }
    }
}
