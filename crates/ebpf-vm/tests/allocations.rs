//! No heap allocation on the run path: after the first run on a thread, `Vm::run` and
//! `Vm::run_with` (metadata buffer, extra regions, `.data` image) allocate nothing on any
//! engine of `Engine::ALL`, helper-calling programs and local calls included.
//!
//! Its own test binary because it installs a counting global allocator: it counts the
//! allocations of the current thread while counting is switched on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ebpf_vm::maps::UpdateFlags;
use ebpf_vm::{Engine, Input, MetadataLayout, Selector, Vm, VmBuilder, VmMemory};

/// The system allocator, counting the allocations of threads that asked for it.
struct Counting;

std::thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: thread-locals may be gone while a thread exits.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every method forwards to the system allocator unchanged; the counting touches only
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How many allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    COUNT.with(Cell::get)
}

fn elf(builder: VmBuilder, file: &str) -> Vm {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/elf")
        .join(file);
    let bytes = std::fs::read(&path).unwrap();
    builder.load_elf(&bytes, Selector::Only).unwrap()
}

/// Runs `run` to warm up, then checks that 100 more runs allocate nothing and all return the
/// first run's result. The warm-up is one run (the thread's first run may allocate its
/// buffers), except on the tiered engine: its 16th run allocates once to start the background
/// compile (which allocates on its own thread, not counted), and the first run of each session
/// after the compile is done moves it to Cranelift's session (a new one: it allocates). So
/// there the warm-up goes on until every one of `vms` runs its Cranelift code, and one run
/// more makes the switch.
fn check_no_allocation(what: &str, vms: &[&Vm], mut run: impl FnMut() -> u64) {
    let engine = vms[0].engine();
    let first = run();
    if engine == Engine::Tiered {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !vms.iter().all(|vm| vm.optimised()) {
            assert!(
                Instant::now() < deadline,
                "{what}: Cranelift never took over"
            );
            assert_eq!(
                run(),
                first,
                "{what} on {engine}: results differ between runs"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            run(),
            first,
            "{what} on {engine}: results differ between tiers"
        );
    }
    let mut same = true;
    let n = allocations(|| {
        for _ in 0..100 {
            same &= run() == first;
        }
    });
    assert!(same, "{what} on {engine}: results differ between runs");
    assert_eq!(n, 0, "{what} on {engine}: {n} allocations in 100 runs");
}

#[test]
fn the_counter_counts() {
    let n = allocations(|| drop(std::hint::black_box(vec![1u8; 10])));
    assert_eq!(n, 1);
}

#[test]
fn runs_allocate_nothing_after_the_first() {
    for &engine in Engine::ALL {
        let empty = Vm::builder()
            .engine(engine)
            .load_asm("mov %r0, 0\nexit")
            .unwrap();
        let mut input = [0u8; 64];
        check_no_allocation("Vm::run, empty program", &[&empty], || {
            empty.run(&mut input).unwrap()
        });
        check_no_allocation("Vm::run_no_data", &[&empty], || {
            empty.run_no_data().unwrap()
        });

        // clang's code: a local call and a dozen loads.
        let ip_filter = elf(Vm::builder().engine(engine), "ip_filter.o");
        let mut frame = [0u8; 64];
        frame[12] = 0x08;
        frame[14] = 0x45;
        check_no_allocation("Vm::run, ip_filter.o", &[&ip_filter], || {
            ip_filter.run(&mut frame).unwrap()
        });

        // The same through a runner (made before the count: making one allocates).
        let mut runner = empty.runner();
        check_no_allocation("Runner::run, empty program", &[&empty], || {
            runner.run(&mut input).unwrap()
        });
        check_no_allocation("Runner::run_no_data", &[&empty], || {
            runner.run_no_data().unwrap()
        });
        let mut runner = ip_filter.runner();
        check_no_allocation("Runner::run, ip_filter.o", &[&ip_filter], || {
            runner.run(&mut frame).unwrap()
        });

        // Globals: the `.data` map the runs share, mapped in place.
        let globals = elf(Vm::builder().engine(engine).budget(100_000), "globals.o");
        let mut input = [3u8; 16];
        // Globals persist, so each run starts by restoring their initial values (what a
        // host write costs is counted too).
        let data = globals.global_data().unwrap();
        let key = 0u32.to_le_bytes();
        let initial = data.lookup(&key).unwrap().unwrap();
        check_no_allocation("Vm::run, globals.o (.data)", &[&globals], || {
            data.update(&key, &initial, UpdateFlags::Any).unwrap();
            globals.run(&mut input).unwrap()
        });
    }
}

#[test]
fn run_with_metadata_and_regions_allocates_nothing_after_the_first() {
    let program = "
        ldxdw %r2, [%r1]
        ldxb %r0, [%r2]
        lddw %r3, 0x600000000
        ldxb %r4, [%r3]
        add %r0, %r4
        lddw %r3, 0x700000000
        stb [%r3+1], 9
        ldxb %r4, [%r3+1]
        add %r0, %r4
        exit
    ";
    for &engine in Engine::ALL {
        let vm = Vm::builder()
            .engine(engine)
            .metadata(MetadataLayout {
                len: 16,
                data_offset: 0,
                data_end_offset: 8,
            })
            .load_asm(program)
            .unwrap();
        let mut data = [5u8; 8];
        let lookup = [7u8; 4];
        let mut out = [0u8; 4];
        check_no_allocation("run_with, VM metadata, two regions", &[&vm], || {
            let input = Input::new(&mut data).region(&lookup).region_mut(&mut out);
            vm.run_with(input).unwrap().r0
        });
        let mut meta = [0u8; 16];
        check_no_allocation("run_with, caller's metadata, two regions", &[&vm], || {
            let input = Input::new(&mut data)
                .metadata(&mut meta)
                .region(&lookup)
                .region_mut(&mut out);
            vm.run_with(input).unwrap().r0
        });
        let mut runner = vm.runner();
        check_no_allocation("Runner::run_with, VM metadata, two regions", &[&vm], || {
            let input = Input::new(&mut data).region(&lookup).region_mut(&mut out);
            runner.run_with(input).unwrap().r0
        });
        assert_eq!(out[1], 9);
    }
}

#[test]
fn helper_calls_allocate_nothing_after_the_first() {
    let program = "
        stdw [%r10-8], 40
        mov %r6, %r1
        mov %r1, %r10
        add %r1, -8
        call 1
        ldxb %r1, [%r6]
        add %r0, %r1
        exit
    ";
    for &engine in Engine::ALL {
        let vm = Vm::builder()
            .engine(engine)
            .helper(1, |args: [u64; 5], mem: &mut dyn VmMemory| {
                let v = mem.read_u64(args[0])?;
                mem.write_u64(args[0], v + 1)?;
                Ok(v + 2)
            })
            .load_asm(program)
            .unwrap();
        let mut input = [1u8; 8];
        check_no_allocation("a helper-calling program", &[&vm], || {
            vm.run(&mut input).unwrap()
        });
        let mut runner = vm.runner();
        check_no_allocation("a helper-calling program, Runner::run", &[&vm], || {
            runner.run(&mut input).unwrap()
        });
        assert_eq!(vm.run(&mut input).unwrap(), 43);
    }
}

/// Runs of every shape the sessions serve without the facade's map — no input, a caller's
/// metadata buffer with an input or without, an input alone — one after the other in each
/// counted run, so that every decision a session keeps is taken again: for a helper-calling
/// program (whose helpers get the run's buffers) and a helper-free one (whose runs the entry
/// of `Vm::run` refuses take the fallback code), through `Vm::run_with` and a runner.
#[test]
fn runs_of_every_shape_in_turn_allocate_nothing_after_the_first() {
    let calling = "
        stdw [%r10-8], 40
        mov %r6, %r2
        mov %r1, %r10
        add %r1, -8
        call 1
        ldxdw %r1, [%r10-8]
        add %r0, %r1
        add %r0, %r6
        exit
    ";
    let plain = "mov %r0, %r2\nexit";
    for &engine in Engine::ALL {
        for (name, text, want) in [
            ("a helper-calling program", calling, 83),
            ("a helper-free program", plain, 0),
        ] {
            let vm = Vm::builder()
                .engine(engine)
                .helper(1, |args: [u64; 5], mem: &mut dyn VmMemory| {
                    let v = mem.read_u64(args[0])?;
                    mem.write_u64(args[0], v + 1)?;
                    Ok(v + 2)
                })
                .load_asm(text)
                .unwrap();
            assert_eq!(vm.run_with(Input::none()).unwrap().r0, want, "{engine}");
            let (mut input, mut meta) = ([1u8; 8], [0u8; 16]);
            let shapes =
                |run: &mut dyn FnMut(Input<'_>) -> u64, input: &mut [u8], meta: &mut [u8]| {
                    run(Input::none())
                        + 3 * run(Input::new(input).metadata(meta))
                        + 5 * run(Input::none().metadata(meta))
                        + 7 * run(Input::new(input))
                };
            let what = format!("{name}, Vm::run_with of every shape in turn");
            check_no_allocation(&what, &[&vm], || {
                shapes(&mut |i| vm.run_with(i).unwrap().r0, &mut input, &mut meta)
            });
            let mut runner = vm.runner();
            let what = format!("{name}, Runner::run_with of every shape in turn");
            check_no_allocation(&what, &[&vm], || {
                shapes(
                    &mut |i| runner.run_with(i).unwrap().r0,
                    &mut input,
                    &mut meta,
                )
            });
        }
    }
}

/// Runs with a kernel context on an object's maps: a claimed CPU, map regions, map helpers
/// (hash lookup, atomic adds, checksums), `for_each_map_elem` walks of an array and a hash,
/// the run state, a tail call — nothing allocated after the first.
#[test]
fn kernel_context_runs_allocate_nothing_after_the_first() {
    use ebpf_vm::{Context, KernelHelpers, Packet, ProgramKind};
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/bpf");
    let mut frame = vec![0u8; 54];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[23] = 6;
    frame[26..30].copy_from_slice(&[10, 0, 0, 66]);
    frame[30..34].copy_from_slice(&[10, 0, 0, 100]);
    frame[46] = 0x50;
    for &engine in Engine::ALL {
        let load_with = |name: &str, builder: VmBuilder| {
            let bytes = std::fs::read(corpus.join(name)).unwrap();
            builder
                .engine(engine)
                .kernel_helpers(KernelHelpers::new())
                .load_object(&bytes)
                .unwrap()
        };
        let load = |name: &str| load_with(name, Vm::builder());
        let fw = load("xdp_firewall.o");
        let blocked = fw.map("blocked").unwrap();
        let any = ebpf_vm::maps::UpdateFlags::Any;
        blocked
            .update(&[10, 0, 0, 66], &0u64.to_le_bytes(), any)
            .unwrap();
        let lb = load("xdp_lb.o");
        for i in 0..4u32 {
            let b = [10, 1, 0, 1, 2, 0, 0, 0, 0, 1, 0, 0];
            lb.map("backends")
                .unwrap()
                .update(&i.to_le_bytes(), &b, any)
                .unwrap();
        }
        // `first` tail-calls `second` (a taken tail call once allocated its error's message).
        // Each step of a `for_each_map_elem` walk listed the whole map in a fresh vector.
        let stats = load_with("xdp_flow_stats.o", Vm::builder().budget(1 << 20));
        let globals = load("xdp_globals.o");
        let ctx = Context::default_for(ProgramKind::Xdp);
        let mut packet = Packet::new(&frame).unwrap();
        for (object, name) in [
            (&fw, "xdp_firewall"),
            (&lb, "xdp_lb"),
            (&stats, "xdp_flow_stats"),
            (&globals, "first"),
        ] {
            let vm = object.program(name).unwrap();
            check_no_allocation(name, &[vm], || {
                packet.set(&frame).unwrap();
                vm.run_packet(&mut packet, &ctx).unwrap().r0
            });
        }
    }
}

/// Region ids from 8 on live outside the map's inline slots: runs with that many regions (read-only
/// regions, then an object's map values) reuse the thread's allocation for them instead of
/// making one per run — through `Vm::run` and through `Vm::run_packet` with the kernel helpers.
#[test]
fn runs_with_many_regions_allocate_nothing_after_the_first() {
    use ebpf_vm::{Context, KernelHelpers, Packet, ProgramKind};
    // Regions 6, 7 and 8: the last is outside the inline slots.
    let program = "
        lddw %r1, 0x600000000
        ldxb %r0, [%r1]
        lddw %r1, 0x800000000
        ldxb %r1, [%r1+1]
        add %r0, %r1
        exit
    ";
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/bpf");
    let lb_bytes = std::fs::read(corpus.join("xdp_lb.o")).unwrap();
    let mut frame = vec![0u8; 54];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[23] = 6;
    for &engine in Engine::ALL {
        let vm = Vm::builder()
            .engine(engine)
            .read_only_region(vec![1u8])
            .read_only_region(vec![2u8])
            .read_only_region(vec![3u8, 4])
            .load_asm(program)
            .unwrap();
        assert_eq!(vm.read_only_region_address(2), 0x8_0000_0000);
        let mut input = [0u8; 8];
        check_no_allocation("Vm::run, three read-only regions", &[&vm], || {
            vm.run(&mut input).unwrap()
        });
        assert_eq!(vm.run(&mut input), Ok(5));

        // Two read-only regions, then xdp_lb.o's two array maps: map values at ids 8 and 9.
        let lb = Vm::builder()
            .engine(engine)
            .read_only_region(vec![0u8; 4])
            .read_only_region(vec![0u8; 4])
            .kernel_helpers(KernelHelpers::new())
            .load_object(&lb_bytes)
            .unwrap();
        for i in 0..4u32 {
            let b = [10, 1, 0, 1, 2, 0, 0, 0, 0, 1, 0, 0];
            let any = ebpf_vm::maps::UpdateFlags::Any;
            lb.map("backends")
                .unwrap()
                .update(&i.to_le_bytes(), &b, any)
                .unwrap();
        }
        let vm = lb.program("xdp_lb").unwrap();
        let ctx = Context::default_for(ProgramKind::Xdp);
        let mut packet = Packet::new(&frame).unwrap();
        check_no_allocation("run_packet, map values past region 7", &[vm], || {
            packet.set(&frame).unwrap();
            vm.run_packet(&mut packet, &ctx).unwrap().r0
        });
    }
}

/// `Vm::run` keeps a prepared session per thread and VM: several VMs run in turn on one
/// thread — fewer than the thread keeps, and more (the rest run through the thread's shared
/// scratch) — and a VM run again from inside its own helper (a nested run, which takes a
/// second preparation) allocate nothing once each has run once.
#[test]
fn several_vms_and_nested_runs_allocate_nothing_after_the_first() {
    for &engine in Engine::ALL {
        for count in [3, 20] {
            let vms: Vec<Vm> = (0..count)
                .map(|i| {
                    Vm::builder()
                        .engine(engine)
                        .load_asm(&format!("ldxb %r0, [%r1]\nadd %r0, {i}\nexit"))
                        .unwrap()
                })
                .collect();
            let mut input = [1u8; 8];
            check_no_allocation(
                &format!("{count} VMs in turn"),
                &vms.iter().collect::<Vec<_>>(),
                || vms.iter().map(|vm| vm.run(&mut input).unwrap()).sum(),
            );
        }

        let cell: std::sync::Arc<std::sync::OnceLock<Vm>> = Default::default();
        let inner = std::sync::Arc::clone(&cell);
        let vm = Vm::builder()
            .engine(engine)
            .helper(1, move |args: [u64; 5], _: &mut dyn VmMemory| {
                if args[0] == 0 {
                    return Ok(1);
                }
                let vm = inner.get().expect("loaded");
                Ok(vm.run(&mut [0u8; 8]).unwrap_or(u64::MAX) + 1)
            })
            .load_asm("ldxb %r1, [%r1]\ncall 1\nexit")
            .unwrap();
        let _ = cell.set(vm);
        let vm = cell.get().unwrap();
        let mut input = [1u8; 8];
        check_no_allocation("a run nested in a helper", &[vm], || {
            vm.run(&mut input).unwrap()
        });
        assert_eq!(vm.run(&mut input), Ok(2));
    }
}

/// An object's program with a kernel context is compiled once, at load, for the runs
/// `run_packet` gives it (`data` after the packet's headroom): its first run compiles nothing.
/// A compile allocates about a hundred times on the x86 JIT and over a thousand on
/// Cranelift; a first run, a handful (the interpreter's, which compiles nothing, four).
#[test]
fn a_kernel_context_programs_first_run_compiles_nothing() {
    use ebpf_vm::{Context, KernelHelpers, Packet, ProgramKind};
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/bpf");
    let mut frame = vec![0u8; 54];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    let programs = [
        ("xdp_firewall.o", ProgramKind::Xdp),
        ("socket_logger.o", ProgramKind::SocketFilter),
        ("tc_classifier.o", ProgramKind::Tc),
    ];
    for &engine in Engine::ALL {
        for (file, kind) in programs {
            let bytes = std::fs::read(corpus.join(file)).unwrap();
            let object = Vm::builder()
                .engine(engine)
                .kernel_helpers(KernelHelpers::new())
                .load_object(&bytes)
                .unwrap();
            let (name, _) = object.programs().next().unwrap();
            let vm = object.program(name).unwrap();
            let ctx = Context::default_for(kind);
            let mut packet = Packet::new(&frame).unwrap();
            let first = allocations(|| {
                vm.run_packet(&mut packet, &ctx).unwrap();
            });
            assert!(
                first < 20,
                "{file} on {engine}: {first} allocations in the first run"
            );
        }
    }
}
