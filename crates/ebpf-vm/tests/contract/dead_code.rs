//! Code the verifier proves never runs, on every engine: it loads whatever it holds — even
//! slots that do not decode — runs as if it were not there, and traps if it is reached after
//! all.

use ebpf_isa::{CallKind, Insn};
use ebpf_vm::{Engine, FindingKind, Trap, TrapKind, Vm};

/// `mov r0, 7; jeq r0, 7, +2`, then two slots that do not decode (an unknown opcode, and `mov`
/// with offset 1, the kernel's `addr_space_cast`), then `add r0, 1; exit`.
const DEAD_JUNK: [[u8; 8]; 6] = [
    [0xb7, 0x00, 0, 0, 7, 0, 0, 0],
    [0x15, 0x00, 2, 0, 7, 0, 0, 0],
    [0xff, 0x00, 0, 0, 0, 0, 0, 0],
    [0xbf, 0x10, 1, 0, 0, 0, 0, 0],
    [0x07, 0x00, 0, 0, 1, 0, 0, 0],
    [0x95, 0x00, 0, 0, 0, 0, 0, 0],
];

#[test]
fn undecodable_slots_that_never_run_load_and_run_on_every_engine() {
    let bytes = DEAD_JUNK.concat();
    for &engine in Engine::ALL {
        let vm = Vm::builder().engine(engine).load(&bytes).unwrap();
        assert_eq!(vm.run_no_data(), Ok(8), "{engine}");
        let kinds: Vec<(usize, &FindingKind)> =
            vm.warnings().iter().map(|w| (w.pc, &w.kind)).collect();
        assert!(
            matches!(
                kinds.as_slice(),
                [
                    (2, FindingKind::NeverRuns { end: 4, branch: 1 }),
                    (2, FindingKind::Decode(_)),
                    (3, FindingKind::Decode(_)),
                ]
            ),
            "{engine}: {kinds:?}"
        );
    }
    // Where the same slots run, the program is refused.
    let mut live = DEAD_JUNK;
    live[1][0] = 0x55; // jne: never taken
    assert!(Vm::builder().load(&live.concat()).is_err());
}

#[test]
fn the_stand_in_for_an_undecodable_slot_traps_on_every_engine() {
    // What the verifier hands the engines for the bytes above: a trapping stand-in (a call by
    // BTF id) in each slot that did not decode.
    let verified = ebpf_vm::verifier::Verifier::new(Default::default())
        .verify_bytes(&DEAD_JUNK.concat())
        .unwrap();
    assert_eq!(verified.undecodable(), [2, 3]);
    let mut insns = verified.program().insns().to_vec();
    assert_eq!(
        insns[2],
        Insn::Call {
            kind: CallKind::Btf,
            imm: 0
        }
    );
    // Make the jump fall into the stand-in, as if the verifier had been wrong: every engine
    // must trap there rather than run anything.
    let Insn::Jump { cond, .. } = &mut insns[1] else {
        panic!("{:?}", insns[1])
    };
    *cond = ebpf_isa::Cond::Ne;
    let program = ebpf_isa::Program::from_insns(insns);
    for &engine in Engine::ALL {
        let vm = Vm::builder()
            .engine(engine)
            .unverified()
            .load_program(program.clone())
            .unwrap();
        let trap = vm.run_no_data().unwrap_err();
        assert!(
            matches!(
                trap,
                Trap {
                    pc: 2,
                    kind: TrapKind::InvalidInstruction { .. }
                }
            ),
            "{engine}: {trap:?}"
        );
    }
    // Loaded from the bytes, the facade reports such a trap as an undecodable instruction
    // (`undecodable_trap` in vm.rs, unit-tested there: a verified load never reaches it).
}
