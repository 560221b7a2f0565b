//! The ahead-of-time path: every conformance program (plus a few that trap) compiled into one
//! relocatable object, linked with `c/harness.c` by a C compiler, run, and compared with the
//! interpreter (r0, trap kind and pc with its operands, instruction count).
//!
//! By default the object is for the host and linked with `cc`. `cargo xtask test-cross` runs
//! this test on the host for each foreign target with
//! `EBPF_OBJECT_TARGET=<triple>`, `EBPF_OBJECT_CC=<cross gcc>` and
//! `EBPF_OBJECT_RUNNER="qemu-<arch> -L /usr/<triple>"`; the test binaries it runs *under*
//! emulation set `EBPF_CROSS_EMULATED=1` and skip this test (it needs the host's tools).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use ebpf_abi::{InvalidReason, Limits, MemoryMap, Region, Trap, TrapKind, layout};
use ebpf_interp::Interpreter;
use ebpf_isa::Program;
use ebpf_jit_cranelift::{invalid_reason, trap_code};

/// One program of the batch.
struct Case {
    name: String,
    program: Program,
    mem: Option<Vec<u8>>,
    limits: Limits,
}

/// What the harness prints for a run.
#[derive(Debug, PartialEq, Eq)]
struct Line {
    kind: u64,
    pc: u64,
    r0: u64,
    a: u64,
    b: u64,
    instructions: u64,
}

/// The harness's line for an interpreter result (fields the C side leaves alone are 0).
fn expected(result: &Result<ebpf_abi::Exit, Trap>) -> Line {
    let line = |kind, pc: usize, a, b| Line {
        kind,
        pc: pc as u64,
        r0: 0,
        a,
        b,
        instructions: 0,
    };
    match result {
        Ok(exit) => Line {
            kind: trap_code::EXIT,
            pc: 0,
            r0: exit.r0,
            a: 0,
            b: 0,
            instructions: exit.instructions,
        },
        Err(Trap { pc, kind }) => match kind {
            TrapKind::OutOfBounds { addr, len, write } => line(
                if *write {
                    trap_code::OUT_OF_BOUNDS_WRITE
                } else {
                    trap_code::OUT_OF_BOUNDS_READ
                },
                *pc,
                *addr,
                *len,
            ),
            TrapKind::MisalignedAtomic { addr, len } => {
                line(trap_code::MISALIGNED_ATOMIC, *pc, *addr, *len)
            }
            TrapKind::BudgetExhausted { .. } => line(trap_code::BUDGET_EXHAUSTED, *pc, 0, 0),
            TrapKind::CallDepthExceeded { .. } => line(trap_code::CALL_DEPTH_EXCEEDED, *pc, 0, 0),
            TrapKind::UnknownHelper { id } => line(trap_code::UNKNOWN_HELPER, *pc, *id, 0),
            TrapKind::InvalidInstruction { reason } => {
                let r = match reason {
                    InvalidReason::FellOffEnd => invalid_reason::FELL_OFF_END,
                    InvalidReason::TargetOutOfRange => invalid_reason::TARGET_OUT_OF_RANGE,
                    InvalidReason::LddwTail => invalid_reason::LDDW_TAIL,
                    InvalidReason::UnsupportedLddw => invalid_reason::UNSUPPORTED_LDDW,
                    InvalidReason::UnsupportedCall => invalid_reason::UNSUPPORTED_CALL,
                    _ => invalid_reason::OTHER,
                };
                line(trap_code::INVALID_INSTRUCTION, *pc, r, 0)
            }
            other => panic!("no C code for {other:?}"),
        },
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for v in ebpf_contract::conformance::vectors().unwrap_or_default() {
        cases.push(Case {
            name: v.name,
            program: v.program,
            mem: v.input,
            limits: Limits {
                budget: Some(ebpf_contract::conformance::BUDGET),
                ..Limits::default()
            },
        });
    }
    // Traps, which the conformance programs never do.
    let extra: [(&str, &str, Option<u64>, usize); 9] = [
        ("oob", "ldxdw %r0, [%r1+4]\nexit", None, 8),
        (
            "misaligned",
            "mov %r2, 1\nlock add [%r10-12], %r2\nexit",
            None,
            8,
        ),
        (
            "budget",
            "mov %r0, 0\nloop:\nadd %r0, 1\nja loop",
            Some(1001),
            8,
        ),
        (
            "depth",
            "call local f\nexit\nf:\ncall local f\nexit",
            Some(100),
            3,
        ),
        ("unknown-helper", "mov %r1, 3\ncall 77\nexit", None, 8),
        ("lddw-tail", "ja +1\nlddw %r0, 1\nexit", None, 8),
        ("fell-off", "mov %r0, 1", None, 8),
        ("bad-target", "jeq %r1, 0, +9\nexit", None, 8),
        (
            "calls-and-stack",
            "stdw [%r10-8], 5\nmov %r6, 9\ncall local f\nldxdw %r1, [%r10-8]\nadd %r0, %r1\n\
             add %r0, %r6\nexit\nf:\nstdw [%r10-8], 7\nmov %r6, 1\nmov %r1, 30\ncall 5\nexit",
            None,
            8,
        ),
    ];
    for (name, src, budget, depth) in extra {
        cases.push(Case {
            name: name.to_string(),
            program: ebpf_isa::assemble(src).unwrap(),
            mem: (name == "oob").then(|| vec![0; 8]),
            limits: Limits {
                budget,
                max_call_depth: depth,
            },
        });
    }
    cases
}

/// `programs.c`: the table of compiled functions with their inputs.
fn programs_c(cases: &[Case]) -> String {
    let mut c = String::from(
        "#include \"ebpf_jit.h\"\n\nstruct ebpf_program {\n    ebpf_program_fn run;\n    const uint8_t *mem;\n    uint64_t mem_len;\n    int has_mem;\n    uint64_t budget;\n    uint64_t max_depth;\n};\n\n",
    );
    for (i, case) in cases.iter().enumerate() {
        let _ = writeln!(c, "uint64_t prog_{i}(struct ebpf_ctx *ctx);");
        let bytes = case.mem.clone().unwrap_or_default();
        let list: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
        let _ = writeln!(
            c,
            "static const uint8_t mem_{i}[{}] = {{{}}};",
            bytes.len().max(1),
            if list.is_empty() {
                "0".to_string()
            } else {
                list.join(",")
            }
        );
    }
    c.push_str("\nconst struct ebpf_program ebpf_programs[] = {\n");
    for (i, case) in cases.iter().enumerate() {
        let _ = writeln!(
            c,
            "    {{prog_{i}, mem_{i}, {}, {}, {}ull, {}}}, /* {} */",
            case.mem.as_ref().map_or(0, Vec::len),
            u8::from(case.mem.as_ref().is_some_and(|m| !m.is_empty())),
            case.limits.budget.unwrap_or(u64::MAX),
            case.limits.max_call_depth,
            case.name.replace("*/", "")
        );
    }
    let _ = writeln!(
        c,
        "}};\nconst unsigned ebpf_program_count = {};",
        cases.len()
    );
    c
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn objects_linked_with_c_agree_with_the_interpreter() {
    if std::env::var_os("EBPF_CROSS_EMULATED").is_some() {
        eprintln!("skipping: the object path is tested from the host by `cargo xtask test-cross`");
        return;
    }
    let target = std::env::var("EBPF_OBJECT_TARGET")
        .unwrap_or_else(|_| target_lexicon::Triple::host().to_string());
    let cc = std::env::var("EBPF_OBJECT_CC").unwrap_or_else(|_| "cc".to_string());
    let runner = std::env::var("EBPF_OBJECT_RUNNER").unwrap_or_default();

    let cases = cases();
    let names: Vec<String> = (0..cases.len()).map(|i| format!("prog_{i}")).collect();
    let batch: Vec<(&str, &Program)> = names
        .iter()
        .zip(&cases)
        .map(|(n, c)| (n.as_str(), &c.program))
        .collect();
    // Objects are for a device: baseline ISA flags unless the environment says otherwise.
    let options = ebpf_jit_cranelift::JitOptions::default().with_isa_flags(
        ebpf_jit_cranelift::IsaFlags::from_env().unwrap_or(ebpf_jit_cranelift::IsaFlags::Baseline),
    );
    let object = ebpf_jit_cranelift::compile_objects(&batch, &target, &options)
        .unwrap_or_else(|e| panic!("{target}: {e}"));

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("object-{target}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("programs.o"), &object).unwrap();
    std::fs::write(dir.join("programs.c"), programs_c(&cases)).unwrap();
    let c_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("c");
    let exe = dir.join("harness");
    run(Command::new(&cc)
        .arg("-O1")
        .arg("-I")
        .arg(&c_dir)
        .arg("-o")
        .arg(&exe)
        .arg(c_dir.join("harness.c"))
        .arg(dir.join("programs.c"))
        .arg(dir.join("programs.o")));
    let mut words = runner.split_whitespace();
    let output = match words.next() {
        Some(emulator) => run(Command::new(emulator).args(words).arg(&exe)),
        None => run(&mut Command::new(&exe)),
    };

    let helpers = ebpf_abi::Helpers::conformance();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), cases.len(), "{output}");
    let mut failures = Vec::new();
    for (i, (case, line)) in cases.iter().zip(lines).enumerate() {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect();
        assert_eq!(f.first(), Some(&(i as u64)), "{line}");
        let got = Line {
            kind: f[1],
            pc: f[2],
            r0: f[3],
            a: f[4],
            b: f[5],
            instructions: f[6],
        };
        // The harness's memory: the input always mapped, r1/r2 zero when it is empty.
        let mut mem = case.mem.clone().unwrap_or_default();
        let args = if mem.is_empty() {
            [0, 0]
        } else {
            layout::input_args(mem.len() as u64)
        };
        let mut map = MemoryMap::new();
        map.insert(layout::INPUT, Region::Writable(&mut mem));
        let want = Interpreter::new(&case.program).run(map, args, &helpers, &case.limits);
        let mut want = expected(&want);
        if want.kind != trap_code::EXIT {
            // A trap's r0 and count are not part of the result.
            want.r0 = got.r0;
            want.instructions = got.instructions;
        }
        if got != want {
            failures.push(format!("{}: got {got:?}, want {want:?}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{target}: {} programs agree", cases.len());
}
