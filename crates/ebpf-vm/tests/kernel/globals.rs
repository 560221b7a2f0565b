//! Global variables as the kernel keeps them: each of an object's `.data`, `.bss` and
//! `.rodata` is a one-element array map, so globals persist from run to run, are shared by
//! the object's programs and by concurrent runs, are the host's to read and write, and
//! `.rodata` is read-only for programs — on every engine.

use std::sync::Arc;

use ebpf_vm::isa::Program;
use ebpf_vm::maps::{MapError, MapSpec, MapType, Maps, UpdateFlags};
use ebpf_vm::{
    Context, Engine, KernelHelpers, Packet, ProgramKind, TrapKind, Vm, XdpAction, layout,
};

use crate::corpus::{object, xdp};
use crate::packets::{ipv4, udp};

/// A UDP frame whose IPv4 header says `payload + 28` bytes.
fn frame(payload: usize) -> Vec<u8> {
    ipv4(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        17,
        &udp(1, 2, &vec![0xab; payload]),
    )
}

/// `xdp_bss_counter`'s `.bss`: (packets, bytes).
fn bss(object: &ebpf_vm::Object) -> (u64, u64) {
    let value = object
        .map(".bss")
        .unwrap()
        .lookup(&0u32.to_le_bytes())
        .unwrap()
        .unwrap();
    let word = |i: usize| u64::from_le_bytes(value[i * 8..i * 8 + 8].try_into().unwrap());
    (word(0), word(1))
}

#[test]
fn a_bss_counter_persists_across_runs_on_every_engine() {
    for &engine in Engine::ALL {
        let object = object("xdp_bss_counter", engine);
        // The maps libbpf would make: the sections' sizes, `.rodata` as the file has it.
        let value = |name: &str| {
            object
                .map(name)
                .unwrap_or_else(|| panic!("no map {name}"))
                .lookup(&0u32.to_le_bytes())
                .unwrap()
                .unwrap()
        };
        assert_eq!(value(".rodata"), 5u32.to_le_bytes(), "{engine}");
        assert_eq!(value(".data"), 0xffffu32.to_le_bytes(), "{engine}");
        assert_eq!(bss(&object), (0, 0), "{engine}");
        let mut bytes = 0;
        for n in 1..=12u64 {
            let f = frame(n as usize);
            bytes += f.len() as u64;
            let (action, _) = xdp(&object, "xdp_bss_counter", &f);
            // Every fifth packet is dropped: the count carries over from run to run.
            let want = if n % 5 == 0 {
                XdpAction::Drop
            } else {
                XdpAction::Pass
            };
            assert_eq!(action, want, "packet {n} on {engine}");
            assert_eq!(bss(&object), (n, bytes), "packet {n} on {engine}");
            let ip_len = (20 + 8 + n) as u32;
            assert_eq!(value(".data"), ip_len.to_le_bytes(), "{engine}");
        }
    }
}

#[test]
fn host_writes_to_globals_are_seen_by_the_next_run() {
    for &engine in Engine::ALL {
        let object = object("xdp_bss_counter", engine);
        let bss_map = object.map(".bss").unwrap();
        // 9 packets so far: the next is the tenth, dropped.
        let value = [9u64.to_le_bytes(), 100u64.to_le_bytes()].concat();
        bss_map
            .update(&0u32.to_le_bytes(), &value, UpdateFlags::Any)
            .unwrap();
        let f = frame(4);
        let (action, _) = xdp(&object, "xdp_bss_counter", &f);
        assert_eq!(action, XdpAction::Drop, "{engine}");
        assert_eq!(bss(&object), (10, 100 + f.len() as u64), "{engine}");
        // `.rodata` is frozen: the host cannot change it either (the kernel says EPERM).
        let rodata = object.map(".rodata").unwrap();
        let err = rodata
            .update(&0u32.to_le_bytes(), &1u32.to_le_bytes(), UpdateFlags::Any)
            .unwrap_err();
        assert_eq!(
            (err.clone(), err.errno()),
            (MapError::Frozen, 1),
            "{engine}"
        );
    }
}

/// A set with one frozen `.rodata`-like map (programs may only read it) holding the `u32`s
/// 4, 7, 9 (12 bytes: the region ends there, not at the next multiple of 8).
fn rodata_maps() -> Arc<Maps> {
    let mut maps = Maps::new(1);
    let spec = MapSpec {
        flags: 1 << 7, // BPF_F_RDONLY_PROG
        ..MapSpec::new(MapType::Array, 4, 12, 1)
    };
    let map = maps.create(".rodata", spec).unwrap();
    let value = [4u32, 7, 9].map(u32::to_le_bytes).concat();
    map.update(&0u32.to_le_bytes(), &value, UpdateFlags::Any)
        .unwrap();
    map.freeze();
    Arc::new(maps)
}

/// `lddw r1, map_value 0, 4` (map 0, byte 4 of its value: the immediate is `N | OFF << 32`),
/// then `tail`.
fn through_map_value(tail: &str) -> Program {
    ebpf_vm::isa::assemble(&format!("lddw %r1, map_value 0x400000000\n{tail}")).unwrap()
}

#[test]
fn rodata_is_read_only_and_exactly_its_size_for_programs_on_every_engine() {
    let load = through_map_value("ldxw %r0, [%r1]\nexit");
    let store = through_map_value("stw [%r1], 9\nmov %r0, 0\nexit");
    // Bytes 12..16: past the value, inside its last 8-byte word.
    let past = through_map_value("ldxw %r0, [%r1+8]\nexit");
    for &engine in Engine::ALL {
        let maps = rodata_maps();
        let run = |program: &Program| {
            let vm = Vm::builder()
                .engine(engine)
                .kernel_helpers(KernelHelpers::new())
                .load_with_maps(program.clone(), ProgramKind::Xdp, Arc::clone(&maps))
                .unwrap_or_else(|e| panic!("{engine}: {e}"));
            let mut packet = Packet::new(&[0u8; 64]).unwrap();
            vm.run_packet(&mut packet, &Context::default_for(ProgramKind::Xdp))
        };
        assert_eq!(run(&load).map(|o| o.r0), Ok(7), "{engine}");
        let trap = run(&store).unwrap_err();
        assert_eq!(trap.pc, 2, "{engine}");
        assert!(
            matches!(trap.kind, TrapKind::OutOfBounds { addr, len: 4, write: true }
                if layout::offset_of(addr) == 4),
            "{engine}: {trap}"
        );
        let trap = run(&past).unwrap_err();
        assert!(
            matches!(trap.kind, TrapKind::OutOfBounds { addr, len: 4, write: false }
                if layout::offset_of(addr) == 12),
            "{engine}: {trap}"
        );
        let value = maps.get(".rodata").unwrap().lookup(&0u32.to_le_bytes());
        let want = [4u32, 7, 9].map(u32::to_le_bytes).concat();
        assert_eq!(value, Ok(Some(want)), "{engine}");
    }
}

#[test]
fn two_threads_count_in_bss_exactly() {
    const THREADS: u64 = 2;
    const RUNS: u64 = 3_000;
    for &engine in Engine::ALL {
        let object = Arc::new(object("xdp_bss_counter", engine));
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                let object = Arc::clone(&object);
                s.spawn(move || {
                    let f = frame(10);
                    let mut packet = Packet::new(&f).unwrap();
                    let ctx = Context::default_for(ProgramKind::Xdp);
                    let vm = object.program("xdp_bss_counter").unwrap();
                    for _ in 0..RUNS {
                        packet.set(&f).unwrap();
                        vm.run_packet(&mut packet, &ctx).unwrap();
                    }
                });
            }
        });
        // `packets` is counted with an atomic add: exact. (`bytes += len` is a plain
        // read-modify-write, which loses updates under contention here as in the kernel.)
        assert_eq!(bss(&object).0, THREADS * RUNS, "{engine}");
    }
}
