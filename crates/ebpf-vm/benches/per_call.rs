//! The fixed cost of one run: short programs through `Vm::run` and through a `Runner`
//! (`Vm::runner`, the per-thread prepared runner), where the per-run overhead
//! (stack, region table, context, the call into the engine) is most of the time, on every
//! engine of `Engine::ALL`, side by side with rbpf 0.4.1's interpreter and x86 JIT in the same
//! run (issue 12: ≤ 10 ns on the JITs, ≤ 20 ns on the interpreter for the empty program).
//!
//! Programs: `empty` (`mov r0, 0; exit`), `load` (one byte load from the input), `ip_filter`
//! (`tests/elf/ip_filter.o` on an IPv4/TCP frame: a local call and a dozen loads) and
//! `port_filter` (`tests/elf/port_filter.o`, clang -O2, on a VLAN-tagged IPv4/TCP frame: the
//! deepest parse of the fixtures). Each run reuses one input buffer (the programs do not write
//! it), and each sample times a whole batch of runs with one clock read at each end, so the
//! clock's own cost is not in the figures. Every engine's result is checked against the
//! interpreter's before timing.
//!
//! Then the runs `Vm::run` of an input alone does not make, on the empty program: `with_none`
//! (`run_with(Input::none())`, next to rbpf's `EbpfVmNoData`) and `with_meta` (`run_with` of
//! the input and a caller's 16-byte metadata buffer, next to rbpf's `EbpfVmMbuff`); and
//! `helper1`, a program that calls a helper once, through `Vm::run` (next to rbpf's raw VM
//! with the same helper), whose figure less the empty program's is what calling helpers at
//! all costs a run (the summary prints that difference, the call itself included).
//!
//! Then `helper/*`: the cost of one helper call through each engine's trampoline — a program
//! that calls helper 1 ten times against one that calls it once, per extra call — next to a
//! direct Rust call of the same closure through `&dyn Helper` (the issue asks ≤ 5 ns more).
//!
//! Last, the same loaded `Vm` run by one thread and by two threads at once, throughput in
//! runs per second (the issue asks ≥ 1.9× with two threads; on a shared machine the second
//! core may not be free, so read it with the load in mind).
//!
//! `cargo bench -p ebpf-vm --features jit-cranelift --bench per_call -- --warm-up-time 1
//! --measurement-time 2` (without the feature, Cranelift is left out).

use std::cell::RefCell;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ebpf_bench::timing::{SAMPLE_SIZE, Samples, record};
use ebpf_vm::{Engine, Helper, HelperError, Input, Selector, Trap, Vm, VmBuilder, VmMemory};

/// One program of the bench.
struct Case {
    name: &'static str,
    load: fn(VmBuilder) -> Vm,
    input: Vec<u8>,
}

fn elf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/elf")
}

/// A `.hex` input of the ELF fixtures: two-digit hex bytes, `#` comments.
fn frame(name: &str) -> Vec<u8> {
    let path = elf_dir().join(format!("inputs/frames/{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
        .map(|t| u8::from_str_radix(t, 16).expect("hex byte"))
        .collect()
}

fn elf(builder: VmBuilder, file: &str) -> Vm {
    let path = elf_dir().join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    builder
        .load_elf(&bytes, Selector::Only)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "empty",
            load: |b| b.load_asm("mov %r0, 0\nexit").expect("empty program"),
            input: vec![0; 64],
        },
        Case {
            name: "load",
            load: |b| b.load_asm("ldxb %r0, [%r1]\nexit").expect("load program"),
            input: vec![7; 64],
        },
        Case {
            name: "ip_filter",
            load: |b| elf(b, "ip_filter.o"),
            input: frame("ipv4_tcp_http"),
        },
        Case {
            name: "port_filter",
            load: |b| elf(b, "port_filter.o"),
            input: frame("vlan_ipv4_https"),
        },
    ]
}

/// Times `iters` calls of `run` with one clock read at each end.
fn batch(iters: u64, samples: &RefCell<Samples>, mut run: impl FnMut() -> u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(run());
    }
    record(samples, start.elapsed(), iters)
}

/// The program as rbpf 0.4.1 runs it: rbpf's raw VM sets `r1` to the input but leaves `r2` at
/// 0, so a `mov r2, <input length>` goes first (one instruction more than ours execute; jump
/// and call offsets are relative, so nothing else moves).
#[cfg(target_arch = "x86_64")]
fn rbpf_bytes(vm: &Vm, input_len: usize) -> Vec<u8> {
    let mut bytes = vec![0xb7, 0x02, 0, 0];
    bytes.extend_from_slice(&(input_len as u32).to_le_bytes());
    bytes.extend_from_slice(&vm.program().to_bytes());
    bytes
}

/// rbpf 0.4.1's raw VM on `bytes`, and whether its interpreter and its x86 JIT get
/// `expected`.
#[cfg(target_arch = "x86_64")]
fn rbpf_vm<'a>(
    bytes: &'a [u8],
    input: &[u8],
    expected: u64,
) -> Option<(rbpf::EbpfVmRaw<'a>, bool, bool)> {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let mut vm = rbpf::EbpfVmRaw::new(Some(bytes)).ok()?;
    // (Helper 1 is ours, for the `helper1` program; the others call none.)
    vm.register_helper(1, rbpf_helper).ok()?;
    let interp = vm.execute_program(&mut input.to_vec()).ok() == Some(expected);
    let jit = catch_unwind(AssertUnwindSafe(|| vm.jit_compile().is_ok())).unwrap_or(false)
        // SAFETY: rbpf's contract for its JIT code; these programs stay inside their input.
        && unsafe { vm.execute_program_jit(&mut input.to_vec()) }.ok() == Some(expected);
    Some((vm, interp, jit))
}

struct Row {
    name: &'static str,
    instructions: u64,
    /// Per engine of `Engine::ALL`, then rbpf's interpreter and JIT: ns per run.
    ns: Vec<Option<f64>>,
}

fn bench_case(c: &mut Criterion, case: &Case) -> Row {
    let reference = (case.load)(Vm::builder());
    let mut input = case.input.clone();
    let exit = reference
        .run_with(ebpf_vm::Input::new(&mut input))
        .unwrap_or_else(|t| panic!("{}: {t}", case.name));
    let vms: Vec<Option<Vm>> = Engine::ALL
        .iter()
        .map(|&e| {
            let vm = (case.load)(Vm::builder().engine(e));
            match vm.run(&mut case.input.clone()) {
                Ok(r0) if r0 == exit.r0 => Some(vm),
                other => {
                    eprintln!("per_call/{}: {e} returned {other:?}, not timed", case.name);
                    None
                }
            }
        })
        .collect();
    // Per engine: `Vm::run`, then a `Runner`'s `run`; then rbpf's two.
    let n = 2 * Engine::ALL.len() + 2;
    let samples: Vec<RefCell<Samples>> = (0..n).map(|_| RefCell::default()).collect();
    let mut group = c.benchmark_group(format!("per_call/{}", case.name));
    for (i, &engine) in Engine::ALL.iter().enumerate() {
        let Some(vm) = &vms[i] else { continue };
        let mut buf = case.input.clone();
        group.bench_function(engine.name(), |b| {
            b.iter_custom(|iters| {
                batch(iters, &samples[2 * i], || {
                    match vm.run(black_box(&mut buf)) {
                        Ok(r0) => r0,
                        Err(t) => panic!("{t}"),
                    }
                })
            });
        });
        let mut runner = vm.runner();
        assert_eq!(runner.run(&mut buf), Ok(exit.r0), "{engine} runner");
        group.bench_function(format!("{}+runner", engine.name()), |b| {
            b.iter_custom(|iters| {
                batch(iters, &samples[2 * i + 1], || {
                    match runner.run(black_box(&mut buf)) {
                        Ok(r0) => r0,
                        Err(t) => panic!("{t}"),
                    }
                })
            });
        });
    }
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = rbpf_bytes(&reference, case.input.len());
        let rbpf = rbpf_vm(&bytes, &case.input, exit.r0);
        let (interp_ok, jit_ok) = rbpf.as_ref().map_or((false, false), |r| (r.1, r.2));
        if !interp_ok || !jit_ok {
            eprintln!(
                "per_call/{}: rbpf's interpreter ok: {interp_ok}, JIT ok: {jit_ok}",
                case.name
            );
        }
        if let Some((vm, _, _)) = &rbpf {
            let mut buf = case.input.clone();
            if interp_ok {
                group.bench_function("rbpf-interp", |b| {
                    b.iter_custom(|iters| {
                        batch(iters, &samples[n - 2], || {
                            match vm.execute_program(black_box(&mut buf)) {
                                Ok(r0) => r0,
                                Err(e) => panic!("{e}"),
                            }
                        })
                    });
                });
            }
            if jit_ok {
                group.bench_function("rbpf-x86", |b| {
                    b.iter_custom(|iters| {
                        batch(iters, &samples[n - 1], || {
                            // SAFETY: as in `rbpf_vm`.
                            match unsafe { vm.execute_program_jit(black_box(&mut buf)) } {
                                Ok(r0) => r0,
                                Err(e) => panic!("{e}"),
                            }
                        })
                    });
                });
            }
        }
    }
    group.finish();
    Row {
        name: case.name,
        instructions: exit.instructions,
        ns: samples.iter().map(|s| s.borrow().median_ns()).collect(),
    }
}

/// The helper the `helper/*` programs call: returns its first argument plus one.
fn helper(args: [u64; 5], _memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Ok(args[0].wrapping_add(1))
}

/// [`helper`] as rbpf calls a helper.
#[cfg(target_arch = "x86_64")]
fn rbpf_helper(a: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    a.wrapping_add(1)
}

/// The runs of [`bench_shapes`].
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// `run_with(Input::none())` of the empty program.
    WithNone,
    /// `run_with` of the input and a caller's metadata buffer, the empty program.
    WithMeta,
    /// `Vm::run` of a program that calls helper 1 once.
    Helper1,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::WithNone => "with_none",
            Shape::WithMeta => "with_meta",
            Shape::Helper1 => "helper1",
        }
    }
}

/// A run of `shape` through `vm` (`Vm::run` or `Vm::run_with`) or `runner`.
fn run_shape(
    shape: Shape,
    vm: &Vm,
    runner: Option<&mut ebpf_vm::Runner<'_>>,
    data: &mut [u8],
    metadata: &mut [u8],
) -> Result<u64, Trap> {
    let input = match shape {
        Shape::WithNone => Input::none(),
        Shape::WithMeta => Input::new(data).metadata(metadata),
        Shape::Helper1 => {
            return match runner {
                Some(runner) => runner.run(data),
                None => vm.run(data),
            };
        }
    };
    match runner {
        Some(runner) => runner.run_with(input),
        None => vm.run_with(input),
    }
    .map(|exit| exit.r0)
}

/// One row of the summary for the runs of `shape`, on every engine (through `Vm::run` or
/// `run_with`, and a runner), with rbpf's VM of the same kind of run.
fn bench_shape(c: &mut Criterion, shape: Shape) -> Row {
    let text = match shape {
        Shape::Helper1 => calling(1),
        _ => "mov %r0, 0\nexit".to_string(),
    };
    let load = |engine| {
        Vm::builder()
            .engine(engine)
            .helper(1, helper)
            .load_asm(&text)
            .expect("shape program")
    };
    let (mut data, mut metadata) = (vec![0u8; 64], vec![0u8; 16]);
    let expected = u64::from(shape == Shape::Helper1);
    let n = 2 * Engine::ALL.len() + 2;
    let samples: Vec<RefCell<Samples>> = (0..n).map(|_| RefCell::default()).collect();
    let mut group = c.benchmark_group(format!("per_call/{}", shape.name()));
    let mut instructions = 0;
    for (i, &engine) in Engine::ALL.iter().enumerate() {
        let vm = load(engine);
        let exit = vm.run_with(Input::new(&mut data)).expect("shape run");
        instructions = exit.instructions;
        assert_eq!(
            run_shape(shape, &vm, None, &mut data, &mut metadata),
            Ok(expected),
            "{engine}"
        );
        group.bench_function(engine.name(), |b| {
            b.iter_custom(|iters| {
                batch(iters, &samples[2 * i], || {
                    let got = run_shape(shape, black_box(&vm), None, &mut data, &mut metadata);
                    got.unwrap_or_else(|t| panic!("{t}"))
                })
            });
        });
        let mut runner = vm.runner();
        group.bench_function(format!("{}+runner", engine.name()), |b| {
            b.iter_custom(|iters| {
                batch(iters, &samples[2 * i + 1], || {
                    let got = run_shape(shape, &vm, Some(&mut runner), &mut data, &mut metadata);
                    got.unwrap_or_else(|t| panic!("{t}"))
                })
            });
        });
    }
    #[cfg(target_arch = "x86_64")]
    rbpf_shape(
        &mut group,
        shape,
        &load(Engine::Interpreter),
        &samples[n - 2..],
    );
    group.finish();
    Row {
        name: shape.name(),
        instructions,
        ns: samples.iter().map(|s| s.borrow().median_ns()).collect(),
    }
}

/// rbpf's interpreter and JIT (into `samples[0]` and `[1]`) on the runs of `shape`: its
/// `EbpfVmNoData`, `EbpfVmMbuff` or raw VM.
#[cfg(target_arch = "x86_64")]
fn rbpf_shape(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    shape: Shape,
    vm: &Vm,
    samples: &[RefCell<Samples>],
) {
    // SAFETY (each `execute_program_jit` below): rbpf's contract for its JIT code; the empty
    // program touches no memory, and the helper program none but its helper's arguments.
    let expected = u64::from(shape == Shape::Helper1);
    let bytes = vm.program().to_bytes();
    let mut data = vec![0u8; 64];
    let mut metadata = vec![0u8; 16];
    match shape {
        Shape::WithNone => {
            let Ok(mut rbpf) = rbpf::EbpfVmNoData::new(Some(&bytes)) else {
                return;
            };
            assert_eq!(rbpf.execute_program().ok(), Some(expected));
            group.bench_function("rbpf-interp", |b| {
                b.iter_custom(|iters| {
                    batch(iters, &samples[0], || {
                        black_box(&rbpf).execute_program().unwrap_or(0)
                    })
                })
            });
            if rbpf.jit_compile().is_ok() {
                group.bench_function("rbpf-x86", |b| {
                    b.iter_custom(|iters| {
                        batch(iters, &samples[1], || {
                            // SAFETY: see above.
                            unsafe { black_box(&rbpf).execute_program_jit() }.unwrap_or(0)
                        })
                    })
                });
            }
        }
        Shape::WithMeta => {
            let Ok(mut rbpf) = rbpf::EbpfVmMbuff::new(Some(&bytes)) else {
                return;
            };
            assert_eq!(rbpf.execute_program(&data, &metadata).ok(), Some(expected));
            group.bench_function("rbpf-interp", |b| {
                b.iter_custom(|iters| {
                    batch(iters, &samples[0], || {
                        let rbpf = black_box(&rbpf);
                        rbpf.execute_program(black_box(&data), black_box(&metadata))
                            .unwrap_or(0)
                    })
                })
            });
            if rbpf.jit_compile().is_ok() {
                group.bench_function("rbpf-x86", |b| {
                    b.iter_custom(|iters| {
                        batch(iters, &samples[1], || {
                            let rbpf = black_box(&rbpf);
                            // SAFETY: see above.
                            unsafe { rbpf.execute_program_jit(&mut data, &mut metadata) }
                                .unwrap_or(0)
                        })
                    })
                });
            }
        }
        Shape::Helper1 => {
            let bytes = rbpf_bytes(vm, data.len());
            let Some((rbpf, interp, jit)) = rbpf_vm(&bytes, &data, expected) else {
                return;
            };
            if interp {
                group.bench_function("rbpf-interp", |b| {
                    b.iter_custom(|iters| {
                        batch(iters, &samples[0], || {
                            black_box(&rbpf).execute_program(&mut data).unwrap_or(0)
                        })
                    })
                });
            }
            if jit {
                group.bench_function("rbpf-x86", |b| {
                    b.iter_custom(|iters| {
                        batch(iters, &samples[1], || {
                            // SAFETY: see above.
                            unsafe { black_box(&rbpf).execute_program_jit(&mut data) }.unwrap_or(0)
                        })
                    })
                });
            }
        }
    }
}

/// A program that calls the helper `calls` times, chaining `r0` into `r1`.
fn calling(calls: usize) -> String {
    let mut text = String::from("mov %r0, 0\n");
    for _ in 0..calls {
        text.push_str("mov %r1, %r0\ncall 1\n");
    }
    text.push_str("exit");
    text
}

/// ns per helper call through each engine (then the direct call), from `helper/*`.
fn bench_helpers(c: &mut Criterion) -> Vec<(&'static str, Option<f64>)> {
    let mut group = c.benchmark_group("helper");
    let mut out = Vec::new();
    for &engine in Engine::ALL {
        let load = |calls| {
            Vm::builder()
                .engine(engine)
                .helper(1, helper)
                .load_asm(&calling(calls))
                .expect("helper program")
        };
        let (one, ten) = (load(1), load(10));
        assert_eq!((one.run_no_data(), ten.run_no_data()), (Ok(1), Ok(10)));
        let samples: [RefCell<Samples>; 4] = Default::default();
        for (i, vm) in [&one, &ten].into_iter().enumerate() {
            group.bench_function(format!("{}/{}", engine.name(), [1, 10][i]), |b| {
                b.iter_custom(|iters| batch(iters, &samples[i], || vm.run_no_data().unwrap_or(0)));
            });
            let mut runner = vm.runner();
            group.bench_function(format!("{}+runner/{}", engine.name(), [1, 10][i]), |b| {
                b.iter_custom(|iters| {
                    batch(iters, &samples[2 + i], || runner.run_no_data().unwrap_or(0))
                });
            });
        }
        let per_call = |one: &RefCell<Samples>, ten: &RefCell<Samples>| match (
            one.borrow().median_ns(),
            ten.borrow().median_ns(),
        ) {
            (Some(a), Some(b)) => Some((b - a) / 9.0),
            _ => None,
        };
        out.push((engine.name(), per_call(&samples[0], &samples[1])));
        out.push((runner_name(engine), per_call(&samples[2], &samples[3])));
    }
    let direct = RefCell::default();
    let h: &dyn Helper = &helper;
    // One map for every call, as a run lends its own: building a map is not part of a call.
    let mut memory = ebpf_abi::MemoryMap::new();
    group.bench_function("direct", |b| {
        b.iter_custom(|iters| {
            batch(iters, &direct, || {
                black_box(h)
                    .call(black_box([1, 2, 3, 4, 5]), black_box(&mut memory))
                    .unwrap_or(0)
            })
        });
    });
    out.push(("direct &dyn Helper", direct.borrow().median_ns()));
    group.finish();
    out
}

/// The name of an engine's `Runner` column.
fn runner_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Interpreter => "interp+runner",
        Engine::X86 => "x86+runner",
        Engine::Cranelift => "cranelift+runner",
        _ => "tiered+runner",
    }
}

/// Runs per second of `vm` on `threads` threads at once, each with its own input (and its own
/// runner, with `runner`), over `duration`.
fn throughput(vm: &Vm, input: &[u8], threads: usize, duration: Duration, runner: bool) -> f64 {
    let runs: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut buf = input.to_vec();
                    let mut own = runner.then(|| vm.runner());
                    let start = Instant::now();
                    let mut runs = 0u64;
                    while start.elapsed() < duration {
                        for _ in 0..1000 {
                            let r0 = match &mut own {
                                Some(runner) => runner.run(black_box(&mut buf)),
                                None => vm.run(black_box(&mut buf)),
                            };
                            black_box(r0.ok());
                        }
                        runs += 1000;
                    }
                    runs as f64 / start.elapsed().as_secs_f64()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread") as u64)
            .sum()
    });
    runs as f64
}

fn print_summary(rows: &[Row]) {
    let mut names: Vec<&str> = Engine::ALL
        .iter()
        .flat_map(|&e| [e.name(), runner_name(e)])
        .collect();
    names.extend(["rbpf-interp", "rbpf-x86"]);
    let jit = names.len() - 1;
    println!();
    println!(
        "ns per run through Vm::run and Runner::run (median of {SAMPLE_SIZE} batch samples, \
         one run);"
    );
    println!("in brackets: the ratio to rbpf's x86 JIT");
    print!("| {:<12} | insns |", "program");
    for name in &names {
        print!(" {name:>16} |");
    }
    println!();
    print!("|{:-<14}|------:|", "");
    for _ in &names {
        print!("{:->18}|", ":");
    }
    println!();
    for r in rows {
        print!("| {:<12} | {:>5} |", r.name, r.instructions);
        let reference = r.ns.get(jit).copied().flatten();
        for v in &r.ns {
            let cell = match (v, reference) {
                (Some(v), Some(j)) => format!("{v:.1} ({:.1}x)", v / j),
                (Some(v), None) => format!("{v:.1}"),
                _ => "-".to_string(),
            };
            print!(" {cell:>16} |");
        }
        println!();
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .configure_from_args();
    let cases = cases();
    let mut rows: Vec<Row> = cases.iter().map(|case| bench_case(&mut c, case)).collect();
    for shape in [Shape::WithNone, Shape::WithMeta, Shape::Helper1] {
        rows.push(bench_shape(&mut c, shape));
    }
    // What calling helpers at all costs a run: `helper1` less `empty`, column by column.
    let fixed = |name| rows.iter().find(|r| r.name == name).map(|r| r.ns.clone());
    if let (Some(empty), Some(helper1)) = (fixed("empty"), fixed("helper1")) {
        let ns = empty
            .iter()
            .zip(&helper1)
            .map(|(e, h)| Some(h.as_ref()? - e.as_ref()?))
            .collect();
        rows.push(Row {
            name: "helper1-empty",
            instructions: 2,
            ns,
        });
    }
    let helpers = bench_helpers(&mut c);
    c.final_summary();
    print_summary(&rows);

    println!();
    println!("ns per helper call (10 calls minus 1 call, over 9), and a direct Rust call");
    for (name, ns) in &helpers {
        let cell = ns.map_or("-".to_string(), |v| format!("{v:.1}"));
        println!("| {name:<18} | {cell:>6} |");
    }

    println!();
    println!("two threads on one Vm: runs per second, and the ratio to one thread");
    for case in cases
        .iter()
        .filter(|c| c.name == "empty" || c.name == "ip_filter")
    {
        for &engine in Engine::ALL {
            let vm = (case.load)(Vm::builder().engine(engine));
            for runner in [false, true] {
                let time = Duration::from_millis(500);
                let one = throughput(&vm, &case.input, 1, time, runner);
                let two = throughput(&vm, &case.input, 2, time, runner);
                println!(
                    "| {:<12} | {:<16} | 1 thread {:>6.1} M/s | 2 threads {:>6.1} M/s | {:.2}x |",
                    case.name,
                    if runner {
                        runner_name(engine)
                    } else {
                        engine.name()
                    },
                    one / 1e6,
                    two / 1e6,
                    two / one
                );
            }
        }
    }
}
