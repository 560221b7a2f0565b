//! Map values as shared regions on every engine: many threads run one program that updates
//! map values in place through ordinary VM pointers; totals come out exact, and every engine
//! (JITs included) bounds-checks the region like any other.

use std::sync::Arc;

use ebpf_maps::{Map, MapSpec, MapType, Maps};
use ebpf_vm::{Engine, Input, TrapKind, Vm, layout};

const THREADS: usize = 4;
const RUNS: u64 = 5_000;

/// Run region 0 is a map shared by every run; run region 1 is this run's CPU's copy of a
/// per-CPU map.
fn counter_program(shared: u64, per_cpu: u64) -> String {
    format!(
        "lddw %r1, {shared:#x}
         lddw %r6, {per_cpu:#x}
         mov %r2, 1
         lock add [%r1+0], %r2
         mov %r3, 1
         lock fetch add [%r1+8], %r3
         mov %r2, 3
         lock add32 [%r1+20], %r2
         ldxdw %r4, [%r6+0]
         add %r4, 1
         stxdw [%r6+0], %r4
         ldxw %r5, [%r6+12]
         add %r5, 2
         stxw [%r6+12], %r5
         mov %r0, %r3
         exit"
    )
}

fn word(bytes: &[u8], at: usize, width: usize) -> u64 {
    let mut v = [0u8; 8];
    v[..width].copy_from_slice(&bytes[at..at + width]);
    u64::from_le_bytes(v)
}

/// The VM address of the `i`-th region an `Input` adds (the VMs here have no read-only
/// regions of their own).
fn run_region(i: u64) -> u64 {
    layout::vm_addr(layout::FIRST_EXTRA + i, 0)
}

fn load(engine: Engine, text: &str) -> Vm {
    Vm::builder().engine(engine).load_asm(text).unwrap()
}

#[test]
fn concurrent_runs_update_shared_map_values_exactly_on_every_engine() {
    for &engine in Engine::ALL {
        let mut maps = Maps::new(3);
        let shared = maps
            .create("shared", MapSpec::new(MapType::Array, 4, 24, 1))
            .unwrap();
        let per_cpu = maps
            .create("per_cpu", MapSpec::new(MapType::PerCpuArray, 4, 16, 1))
            .unwrap();
        let vm = Arc::new(load(engine, &counter_program(run_region(0), run_region(1))));
        assert_eq!(vm.run_region_address(1), run_region(1));
        let fetched = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (vm, maps, shared, per_cpu) = (&vm, &maps, &shared, &per_cpu);
                    s.spawn(move || {
                        let mut fetched = Vec::new();
                        for _ in 0..RUNS {
                            let cpu = maps.cpus().claim();
                            let input = Input::none()
                                .region_shared(shared.values(cpu.index()).unwrap())
                                .region_shared(per_cpu.values(cpu.index()).unwrap());
                            fetched.push(vm.run_with(input).unwrap().r0);
                        }
                        fetched
                    })
                })
                .collect();
            let mut all: Vec<u64> = handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            all.sort_unstable();
            all
        });
        let runs = THREADS as u64 * RUNS;
        // Every fetch-add saw a distinct old value: 0, 1, ..., runs - 1.
        assert!(
            fetched.iter().copied().eq(0..runs),
            "{engine}: fetch-add values"
        );
        let values = shared.lookup(&0u32.to_le_bytes()).unwrap().unwrap();
        assert_eq!(word(&values, 0, 8), runs, "{engine}: atomic adds");
        assert_eq!(word(&values, 8, 8), runs, "{engine}: atomic fetch-adds");
        assert_eq!(
            word(&values, 16, 4),
            0,
            "{engine}: the 32-bit add kept its neighbour"
        );
        assert_eq!(
            word(&values, 20, 4),
            3 * runs,
            "{engine}: 32-bit atomic adds"
        );
        let cpus = per_cpu.lookup(&0u32.to_le_bytes()).unwrap().unwrap();
        let sum = |at, width| -> u64 { cpus.chunks(16).map(|c| word(c, at, width)).sum() };
        assert_eq!(sum(0, 8), runs, "{engine}: per-CPU plain adds");
        assert_eq!(sum(12, 4), 2 * runs, "{engine}: per-CPU 32-bit plain adds");
    }
}

#[test]
fn every_engine_bounds_checks_a_shared_region() {
    let map = Map::new("m", MapSpec::new(MapType::Array, 4, 12, 2), 1).unwrap();
    for &engine in Engine::ALL {
        // Two 12-byte values, each padded to 16 bytes: the region is 32 bytes.
        for (off, store) in [(32, false), (28, true), (-8, false)] {
            let vm = Vm::builder()
                .engine(engine)
                .unverified()
                .load_asm(&format!(
                    "lddw %r1, {:#x}\n{}\nmov %r0, 0\nexit",
                    run_region(0),
                    if store {
                        format!("stxdw [%r1{off:+}], %r1")
                    } else {
                        format!("ldxdw %r0, [%r1{off:+}]")
                    }
                ))
                .unwrap();
            let base = vm.run_region_address(0);
            let trap = vm
                .run_with(Input::none().region_shared(map.values(0).unwrap()))
                .unwrap_err();
            assert_eq!(trap.pc, 2, "{engine}");
            assert_eq!(
                trap.kind,
                TrapKind::OutOfBounds {
                    addr: base.wrapping_add_signed(off),
                    len: 8,
                    write: store
                },
                "{engine} off {off}"
            );
        }
        // The last 8 bytes are in bounds.
        let vm = load(
            engine,
            &format!(
                "lddw %r1, {:#x}\nmov %r2, 7\nstxdw [%r1+24], %r2\nldxdw %r0, [%r1+24]\nexit",
                run_region(0)
            ),
        );
        let exit = vm
            .run_with(Input::none().region_shared(map.values(0).unwrap()))
            .unwrap();
        assert_eq!(exit.r0, 7, "{engine}");
    }
}

/// Each run hammers one shared word with many atomic operations of every kind, so an engine
/// that implemented them as a plain load and store would lose updates on (almost) every run,
/// not only when the scheduler happens to interleave two short runs.
#[test]
fn hammered_atomics_on_a_shared_word_lose_no_update_on_any_engine() {
    const LOOPS: u64 = 200_000;
    const HAMMER_RUNS: u64 = 4;
    for &engine in Engine::ALL {
        let map = Map::new("m", MapSpec::new(MapType::Array, 4, 24, 1), 1).unwrap();
        let vm = Vm::builder()
            .engine(engine)
            .allow_unbounded()
            .load_asm(&hammer_program())
            .unwrap();
        // Both threads start their runs together, so the runs overlap.
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..HAMMER_RUNS {
                        vm.run_with(Input::none().region_shared(map.values(0).unwrap()))
                            .unwrap();
                    }
                });
            }
        });
        let values = map.lookup(&0u32.to_le_bytes()).unwrap().unwrap();
        let total = 2 * HAMMER_RUNS * LOOPS;
        assert_eq!(word(&values, 0, 8), total, "{engine}: lock add");
        assert_eq!(word(&values, 8, 4), total, "{engine}: lock fetch add32");
        assert_eq!(word(&values, 16, 8), total, "{engine}: cmpxchg loop");
    }

    fn hammer_program() -> String {
        // r0 = *p; loop { r3 = r0 + 1; r0' = cmpxchg(p, r0, r3); if r0' == r0 break; r0 = r0' }
        format!(
            "lddw %r1, {:#x}
             mov %r6, {LOOPS}
             mov %r2, 1
             lock add [%r1+0], %r2
             mov %r2, 1
             lock fetch add32 [%r1+8], %r2
             ldxdw %r0, [%r1+16]
             mov %r7, %r0
             mov %r3, %r0
             add %r3, 1
             lock cmpxchg [%r1+16], %r3
             jne %r0, %r7, -5
             sub %r6, 1
             jne %r6, 0, -12
             mov %r0, 0
             exit",
            run_region(0)
        )
    }
}
