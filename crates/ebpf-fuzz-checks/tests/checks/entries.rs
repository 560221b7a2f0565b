//! The differential target's entries and its stack check: the entry made for a setup admits
//! that setup's run (or, for the foreign one, does not), and a run's stack scrubbed as the
//! facade scrubs it is all zero — with the helpers' mark, and with the fewer bytes an admitted
//! entry's facts allow.

use ebpf_abi::{Exit, Limits, layout};
use ebpf_cfg::facts::{Entry, Facts};
use ebpf_fuzz_checks::engines::{EngineOptions, Engines, Metadata, Setup, admitted};
use ebpf_fuzz_checks::generate::{EntryKind, entry};

fn setups() -> Vec<(&'static str, Setup)> {
    let input = Setup {
        input: Some(vec![7; 16]),
        ..Setup::default()
    };
    let metadata = |layout| Setup {
        input: Some(vec![7; 16]),
        metadata: Some((vec![0; 24], layout)),
        ..Setup::default()
    };
    vec![
        ("input", input.clone()),
        (
            "metadata with a layout",
            metadata(Some(Metadata {
                data_offset: 0,
                data_end_offset: 8,
            })),
        ),
        ("metadata without a layout", metadata(None)),
        (
            "images and regions",
            Setup {
                rodata: Some(vec![1; 40]),
                data: Some(vec![2; 33]),
                extra: vec![(true, vec![3; 9]), (false, vec![4; 1])],
                ..input
            },
        ),
    ]
}

#[test]
fn the_entry_made_for_a_setup_admits_its_run_and_the_foreign_one_does_not() {
    for (what, setup) in setups() {
        for kind in [
            EntryKind::Own,
            EntryKind::Fixed,
            EntryKind::Shorter,
            EntryKind::Packet,
        ] {
            let e = entry(kind, &setup).unwrap();
            assert_ne!(
                e,
                Entry::unknown(),
                "{what}, {kind:?}: it assumes something"
            );
            assert!(admitted(&setup, &e), "{what}, {kind:?}: {e:?}");
        }
        let foreign = entry(EntryKind::Foreign, &setup).unwrap();
        assert!(!admitted(&setup, &foreign), "{what}: {foreign:?}");
        assert_eq!(entry(EntryKind::Stack, &setup), None);
    }
    // A setup without the input the entry names is not admitted: its runs take the fallback.
    let no_input = Setup::default();
    assert!(!admitted(&no_input, &Entry::input()));
}

/// Helper 2 stores 8 bytes 300 bytes below the frame's top, far below the program's own
/// store: the facade scrubs down to the helper's mark, and so must the harness (without the
/// mark, these bytes are left on the stack and the check reports it).
#[test]
fn a_helpers_stack_write_below_the_programs_own_stores_is_scrubbed_by_its_mark() {
    let program = ebpf_isa::assemble(
        "stdw [%r10-8], 1\nmov %r1, %r10\nadd %r1, -300\nmov %r2, 7\ncall 2\nexit",
    )
    .unwrap();
    let limits = Limits::default();
    assert_eq!(ebpf_vm::scrub::own_stack_reach(&program, &limits), 8);
    let engines = Engines::compile(&program, &EngineOptions::default()).unwrap();
    let outcome = engines.check(&Setup::default()).unwrap();
    let top = limits.frame_pointer(0);
    assert_eq!(
        outcome.result,
        Ok(Exit {
            r0: top - 300 + 7,
            instructions: 6
        })
    );
}

/// A store through `r1`, which the input's entry proves lies in the input, writes no stack
/// byte in a run the entry admits: such a run is scrubbed only down to the program's store at
/// `r10 - 8`; a run it does not admit (no input) down to the whole stack. Both leave it clean.
#[test]
fn an_admitted_run_is_scrubbed_as_its_facts_allow_and_leaves_a_clean_stack() {
    let program =
        ebpf_isa::assemble("stdw [%r10-8], 1\nmov %r0, 0\njlt %r2, 8, +1\nstxdw [%r1], %r2\nexit")
            .unwrap();
    let limits = Limits::default();
    let facts = Facts::analyse(&program, &Entry::input());
    let full = limits.stack_size() as usize;
    assert_eq!(ebpf_vm::scrub::own_stack_reach(&program, &limits), full);
    assert_eq!(
        ebpf_vm::scrub::admitted_stack_reach(&program, &limits, &facts),
        8
    );
    let options = EngineOptions {
        entry: Some(Entry::input()),
        cranelift_checked_facts: true,
        ..EngineOptions::default()
    };
    let engines = Engines::compile(&program, &options).unwrap();
    let with_input = Setup {
        input: Some(vec![0; 16]),
        ..Setup::default()
    };
    let outcome = engines.check(&with_input).unwrap();
    assert_eq!(outcome.result.map(|e| e.r0), Ok(0));
    assert_eq!(
        outcome.memory,
        vec![(
            layout::INPUT,
            [16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0].to_vec()
        )]
    );
    // No input: r2 = 0, the store is skipped.
    let outcome = engines.check(&Setup::default()).unwrap();
    assert_eq!(outcome.result.map(|e| e.r0), Ok(0));
}
