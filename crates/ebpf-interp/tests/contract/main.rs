//! The runtime contract on the interpreter itself, below the facade.
//!
//! One test binary built from modules:
//!
//! - this file — the bpf_conformance suite, and every case of `tests/contract/*.txt` on
//!   `Interpreter::run`, with the regions
//!   and entry registers that `ebpf-contract` builds from the contract, so the interpreter is
//!   checked without the facade in between (`EBPF_BLESS=1` rewrites the cases' expectations
//!   from the interpreter, the oracle); and what only the engine level can express: regions the
//!   facade never maps (read-only data in region 1, writable data in region 3, the last region,
//!   ids the map ignores), the stack the run allocates itself, arbitrary entry registers;
//! - `props` — property tests: arbitrary programs on arbitrary memory never panic the
//!   interpreter, stay within their budget, and run deterministically.

mod props;

use ebpf_abi::{Exit, Helpers, Limits, MemoryMap, Region, Trap, TrapKind, layout};
use ebpf_interp::Interpreter;
use ebpf_isa::Program;

#[test]
fn contract_on_the_interpreter() {
    let interp = ebpf_contract::engine(Interpreter::new, Interpreter::run);
    if ebpf_contract::blessing() {
        let changed = ebpf_contract::bless(&interp);
        eprintln!("EBPF_BLESS=1: rewrote {changed} expectations");
        return;
    }
    ebpf_contract::check_engine("interp", &interp);
}

/// The 313 bpf_conformance programs: each exits with the expected `r0`.
#[test]
fn conformance_suite() {
    ebpf_contract::conformance::check_suite(
        "interp",
        |v| Ok(Interpreter::new(&v.program)),
        Interpreter::run,
        None,
    );
}

/// Runs `text` with `map`, `args` and the default limits.
fn run(text: &str, map: MemoryMap<'_>, args: [u64; 2]) -> Result<Exit, Trap> {
    let program = ebpf_isa::assemble(text).unwrap();
    Interpreter::new(&program).run(map, args, &ebpf_contract::helpers(), &Limits::default())
}

fn r0(text: &str, map: MemoryMap<'_>) -> Result<u64, Trap> {
    run(text, map, [0, 0]).map(|exit| exit.r0)
}

fn oob(pc: usize, addr: u64, len: u64, write: bool) -> Trap {
    Trap {
        pc,
        kind: TrapKind::OutOfBounds { addr, len, write },
    }
}

#[test]
fn rodata_region_is_read_only() {
    let rodata = [1u8, 2, 3, 4];
    let map = || {
        let mut m = MemoryMap::new();
        m.insert(layout::RODATA, Region::ReadOnly(&rodata));
        m
    };
    let load = "lddw %r1, 0x100000000\nldxw %r0, [%r1]\nexit";
    assert_eq!(r0(load, map()), Ok(0x0403_0201));
    let store = "lddw %r1, 0x100000000\nstb [%r1], 9\nexit";
    assert_eq!(r0(store, map()), Err(oob(2, 0x1_0000_0000, 1, true)));
    let atomic = "lddw %r1, 0x100000000\nlock add32 [%r1], %r2\nexit";
    assert_eq!(r0(atomic, map()), Err(oob(2, 0x1_0000_0000, 4, true)));
    let past = "lddw %r1, 0x100000000\nldxb %r0, [%r1+4]\nexit";
    assert_eq!(r0(past, map()), Err(oob(2, 0x1_0000_0004, 1, false)));
}

#[test]
fn data_region_is_writable() {
    let mut data = [0u8; 8];
    let mut map = MemoryMap::new();
    map.insert(layout::DATA, Region::Writable(&mut data));
    let text = "lddw %r1, 0x300000000\nstw [%r1+4], 0x11223344\nldxdw %r0, [%r1]\nexit";
    assert_eq!(r0(text, map), Ok(0x1122_3344_0000_0000));
    assert_eq!(data, [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
}

#[test]
fn region_ids_the_map_accepts_and_ignores() {
    let bytes = [7u8; 4];
    let mut map = MemoryMap::new();
    map.insert(layout::MAX_REGION, Region::ReadOnly(&bytes));
    map.insert(layout::MAX_REGION + 1, Region::ReadOnly(&bytes));
    map.insert(layout::NULL_REGION, Region::ReadOnly(&bytes));
    let text = |addr: u64| format!("lddw %r1, {addr:#x}\nldxb %r0, [%r1+3]\nexit");
    assert_eq!(
        r0(&text(63 << 32), MemoryMap::new()),
        Err(oob(2, (63 << 32) + 3, 1, false))
    );
    let last = r0(&text(63 << 32), {
        let mut m = MemoryMap::new();
        m.insert(63, Region::ReadOnly(&bytes));
        m
    });
    assert_eq!(last, Ok(7));
    let mut ignored = MemoryMap::new();
    ignored.insert(64, Region::ReadOnly(&bytes));
    ignored.insert(0, Region::ReadOnly(&bytes));
    assert_eq!(
        r0(&text(64 << 32), ignored),
        Err(oob(2, (64 << 32) + 3, 1, false))
    );
    let mut ignored = MemoryMap::new();
    ignored.insert(0, Region::ReadOnly(&bytes));
    assert_eq!(r0(&text(0), ignored), Err(oob(2, 3, 1, false)));
    assert_eq!(r0(&text(63 << 32), map), Ok(7));
}

#[test]
fn the_run_allocates_its_own_stack() {
    // A stack region in the caller's map is replaced by the run's fresh, zeroed one.
    let mut mine = [0xffu8; 4608];
    let mut map = MemoryMap::new();
    map.insert(layout::STACK, Region::Writable(&mut mine));
    let text = "ldxdw %r0, [%r10-8]\nstdw [%r10-16], 1\nexit";
    assert_eq!(r0(text, map), Ok(0));
    assert!(
        mine.iter().all(|&b| b == 0xff),
        "the caller's bytes are untouched"
    );
    // Its size follows the limits: (depth + 1) frames.
    let program = ebpf_isa::assemble("ldxb %r0, [%r10-1536]\nexit").unwrap();
    let interp = Interpreter::new(&program);
    let limits = |max_call_depth| Limits {
        budget: None,
        max_call_depth,
    };
    let helpers = Helpers::new();
    assert_eq!(
        interp
            .run(MemoryMap::new(), [0, 0], &helpers, &limits(2))
            .map(|e| e.r0),
        Ok(0)
    );
    assert_eq!(
        interp.run(MemoryMap::new(), [0, 0], &helpers, &limits(1)),
        Err(oob(0, layout::vm_addr(layout::STACK, 0) - 512, 1, false))
    );
}

#[test]
fn entry_registers_are_the_arguments() {
    let text = "mov %r0, %r1\nxor %r0, %r2\nexit";
    assert_eq!(
        run(text, MemoryMap::new(), [0xdead_0000, 0xbeef]).map(|e| e.r0),
        Ok(0xdead_beef)
    );
    let text = "mov %r0, %r10\nexit";
    assert_eq!(
        run(text, MemoryMap::new(), [1, 2]).map(|e| e.r0),
        Ok(Limits::default().frame_pointer(0))
    );
}

#[test]
fn interpreter_api() {
    let program = ebpf_isa::assemble("lddw %r0, 1\nexit").unwrap();
    let interp = Interpreter::new(&program);
    assert_eq!(interp.len(), 3);
    assert!(!interp.is_empty());
    let empty = Interpreter::new(&Program::default());
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Interpreter>();
    // One interpreter, many threads at once.
    let program = ebpf_isa::assemble("ldxb %r0, [%r1]\nmul %r0, 3\nexit").unwrap();
    let interp = Interpreter::new(&program);
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let interp = &interp;
            s.spawn(move || {
                for _ in 0..100 {
                    let mut input = [t];
                    let mut map = MemoryMap::new();
                    map.insert(layout::INPUT, Region::Writable(&mut input));
                    let exit = interp
                        .run(
                            map,
                            [layout::vm_addr(layout::INPUT, 0), 1],
                            &Helpers::new(),
                            &Limits::default(),
                        )
                        .unwrap();
                    assert_eq!(exit.r0, u64::from(t) * 3);
                }
            });
        }
    });
}
