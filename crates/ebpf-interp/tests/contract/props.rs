//! Property tests of the interpreter: arbitrary programs (`ebpf_testgen::any_program`, and
//! `closed_program` whose jumps stay inside) on arbitrary memory maps, entry registers and
//! limits never panic it, never run past the budget, trap only at a pc of the program (or
//! one past its end), and give the same result and the same memory when run twice.

use ebpf_abi::{Exit, Limits, MemoryMap, Region, Trap, TrapKind, layout};
use ebpf_interp::Interpreter;
use ebpf_isa::Program;
use ebpf_testgen::{any_program, closed_program};
use proptest::collection::vec;
use proptest::prelude::*;

/// The memory of one run: input (region 4), writable data (region 3), read-only data
/// (region 1), and a metadata buffer (region 5).
#[derive(Clone, Debug)]
struct Memory {
    input: Vec<u8>,
    data: Vec<u8>,
    rodata: Vec<u8>,
    metadata: Vec<u8>,
}

fn any_memory() -> impl Strategy<Value = Memory> {
    (
        vec(any::<u8>(), 0..64),
        vec(any::<u8>(), 0..32),
        vec(any::<u8>(), 0..32),
        vec(any::<u8>(), 0..24),
    )
        .prop_map(|(input, data, rodata, metadata)| Memory {
            input,
            data,
            rodata,
            metadata,
        })
}

/// Entry registers: mostly real addresses, sometimes anything.
fn any_args() -> impl Strategy<Value = [u64; 2]> {
    let addr = prop_oneof![
        4 => Just(layout::vm_addr(layout::INPUT, 0)),
        1 => Just(layout::vm_addr(layout::METADATA, 0)),
        1 => Just(layout::vm_addr(layout::DATA, 0)),
        1 => Just(0u64),
        1 => any::<u64>(),
    ];
    (addr, prop_oneof![0u64..64, any::<u64>()]).prop_map(|(a, b)| [a, b])
}

fn any_test_program() -> impl Strategy<Value = Program> {
    prop_oneof![any_program(0..64), closed_program(0..64)]
}

fn run(
    interp: &Interpreter,
    memory: &Memory,
    args: [u64; 2],
    limits: &Limits,
) -> (Result<Exit, Trap>, Memory) {
    let mut m = memory.clone();
    let result = {
        let mut map = MemoryMap::new();
        map.insert(layout::INPUT, Region::Writable(&mut m.input));
        map.insert(layout::DATA, Region::Writable(&mut m.data));
        map.insert(layout::RODATA, Region::ReadOnly(&m.rodata));
        map.insert(layout::METADATA, Region::Writable(&mut m.metadata));
        interp.run(map, args, &ebpf_contract::helpers(), limits)
    };
    (result, m)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn arbitrary_programs_never_panic_the_interpreter(
        program in any_test_program(),
        memory in any_memory(),
        args in any_args(),
        budget in prop_oneof![0u64..64, Just(10_000u64)],
        depth in 0usize..=8,
    ) {
        let interp = Interpreter::new(&program);
        prop_assert_eq!(interp.len(), program.slot_count());
        let limits = Limits { budget: Some(budget), max_call_depth: depth };
        let (first, after) = run(&interp, &memory, args, &limits);
        let (second, after_again) = run(&interp, &memory, args, &limits);
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(format!("{after:?}"), format!("{after_again:?}"));
        prop_assert_eq!(&after.rodata, &memory.rodata, "read-only data changed");
        match first {
            Ok(exit) => prop_assert!(
                (1..=budget).contains(&exit.instructions),
                "{} instructions with a budget of {}",
                exit.instructions,
                budget
            ),
            Err(trap) => {
                prop_assert!(trap.pc <= program.slot_count(), "{:?}", trap);
                match trap.kind {
                    TrapKind::BudgetExhausted { budget: b } => prop_assert_eq!(b, budget),
                    TrapKind::CallDepthExceeded { max_depth } => prop_assert_eq!(max_depth, depth),
                    _ => {}
                }
            }
        }
    }
}
