//! Map values in the verifier: accesses through a `map_lookup_elem` result at constant offsets
//! are checked against the map's value size, and a result that may be NULL is not
//! dereferenced before a check — only where the analysis is sure, so that nothing the kernel
//! loads is refused. Each expected finding follows from the rule: the access's offset plus its
//! width against `value_size`.

use ebpf_verifier::{FindingKind, MapLookup, MapValues, Verifier, VerifierConfig};

const LOOKUP: u32 = 1;
/// The handles the programs below load for the hash map `flows` (16-byte values), the array
/// `stats` (8-byte values) and a map the configuration does not describe.
const FLOWS: &str = "0xffff000000000000";
const STATS: &str = "0xffff000000000001";
const UNDESCRIBED: &str = "0xffff000000000002";
/// The handle of the array of maps `tenants`.
const TENANTS: &str = "0xffff000000000003";
const UPDATE: u32 = 2;
const DELETE: u32 = 3;

fn config() -> VerifierConfig {
    VerifierConfig {
        helpers: Some(vec![LOOKUP, UPDATE, DELETE]),
        map_lookup: Some(MapLookup {
            helper: LOOKUP,
            maps: vec![
                MapValues {
                    handle: 0xffff_0000_0000_0000,
                    name: "flows".into(),
                    value_size: 16,
                    may_be_null: true,
                    region: None,
                },
                MapValues {
                    handle: 0xffff_0000_0000_0001,
                    name: "stats".into(),
                    value_size: 8,
                    may_be_null: false,
                    region: None,
                },
            ],
            outer_maps: vec![(0xffff_0000_0000_0003, "tenants".into())],
            map_helpers: vec![UPDATE, DELETE],
        }),
        ..VerifierConfig::default()
    }
}

/// A lookup of key 0 in the map with `handle` (pcs 0–5: `r0` is the result at pc 6), then
/// `body`, then `r0 = 0; exit`.
fn program(handle: &str, body: &str) -> ebpf_isa::Program {
    let text = format!(
        "stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\nlddw %r1, {handle}\ncall 1\n{body}\n\
         mov %r0, 0\nexit"
    );
    ebpf_isa::assemble(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The errors the verifier finds with `config`, as `(pc, kind)`.
fn errors_with(config: VerifierConfig, handle: &str, body: &str) -> Vec<(usize, FindingKind)> {
    match Verifier::new(config).verify(program(handle, body)) {
        Ok(_) => Vec::new(),
        Err(rejected) => rejected.errors().map(|f| (f.pc, f.kind.clone())).collect(),
    }
}

fn errors(handle: &str, body: &str) -> Vec<(usize, FindingKind)> {
    errors_with(config(), handle, body)
}

fn out_of_bounds(map: &str, offset: i64, size: u32, value_size: u32) -> FindingKind {
    FindingKind::MapValueOutOfBounds {
        map: map.into(),
        offset,
        size,
        value_size,
    }
}

#[test]
fn accesses_inside_a_checked_value_are_accepted() {
    // Bytes 8..16 of a 16-byte value, and 0..8 written.
    let body = "jeq %r0, 0, +2\nldxdw %r3, [%r0+8]\nstdw [%r0+0], 1";
    assert_eq!(errors(FLOWS, body), []);
}

#[test]
fn a_constant_offset_past_the_value_is_refused_naming_map_offset_and_size() {
    // 12 + 8 = 20 > 16: the load at pc 7.
    let body = "jeq %r0, 0, +1\nldxdw %r3, [%r0+12]";
    assert_eq!(
        errors(FLOWS, body),
        [(7, out_of_bounds("flows", 12, 8, 16))]
    );
    let rejected = Verifier::new(config())
        .verify(program(FLOWS, body))
        .unwrap_err();
    let message = rejected.errors().next().unwrap().to_string();
    assert_eq!(
        message,
        "pc 7: invalid access to a value of map `flows`: 8 bytes at offset 12, but its \
         values are 16 bytes"
    );
}

#[test]
fn offsets_follow_pointer_arithmetic_and_negative_offsets_are_refused() {
    // r0 + 12, then 4 bytes at +4: offset 16, the first byte past the value.
    let body = "jeq %r0, 0, +2\nadd %r0, 12\nstw [%r0+4], 1";
    assert_eq!(
        errors(FLOWS, body),
        [(8, out_of_bounds("flows", 16, 4, 16))]
    );
    // r0 + 12, then 4 bytes at +0: the value's last 4 bytes.
    assert_eq!(
        errors(FLOWS, "jeq %r0, 0, +2\nadd %r0, 12\nstw [%r0+0], 1"),
        []
    );
    // One byte before the value.
    let body = "jeq %r0, 0, +1\nldxb %r3, [%r0-1]";
    assert_eq!(
        errors(FLOWS, body),
        [(7, out_of_bounds("flows", -1, 1, 16))]
    );
    // A subtraction moves the pointer back: 8 - 8 = 0, then 8 bytes.
    assert_eq!(
        errors(
            FLOWS,
            "jeq %r0, 0, +3\nadd %r0, 8\nsub %r0, 8\nldxdw %r3, [%r0+0]"
        ),
        []
    );
}

/// `jeq r0, 0, +0` (or `jne`) reaches the next instruction whether the key was found or not,
/// so r0 is still "a value or NULL" there. The NULL check's refinement of one edge was
/// applied to both (found by review): a later NULL test looked decided, the code behind it
/// dead, and an unknown helper there a warning that then trapped at run time; and `jne`'s
/// edge let an unchecked result be dereferenced.
#[test]
fn a_null_check_whose_two_edges_reach_the_same_instruction_tells_nothing() {
    let body = "jeq %r0, 0, +0\njne %r0, 0, +1\nja +1\ncall 99";
    assert_eq!(
        errors(FLOWS, body),
        [(9, FindingKind::UnknownHelper { id: 99 })]
    );
    assert_eq!(
        errors(FLOWS, "jne %r0, 0, +0\nldxw %r3, [%r0+0]"),
        [(
            7,
            FindingKind::MapValueOrNull {
                map: "flows".into()
            }
        )]
    );
}

#[test]
fn a_result_not_checked_against_null_is_not_dereferenced() {
    let or_null = FindingKind::MapValueOrNull {
        map: "flows".into(),
    };
    assert_eq!(errors(FLOWS, "ldxw %r3, [%r0+0]"), [(6, or_null.clone())]);
    assert_eq!(
        Verifier::new(config())
            .verify(program(FLOWS, "stw [%r0+0], 1"))
            .unwrap_err()
            .errors()
            .next()
            .unwrap()
            .to_string(),
        "pc 6: invalid mem access 'map_value_or_null': the result of a lookup in map `flows` \
         is dereferenced before it is checked against NULL"
    );
    // On `jne r0, 0`'s fall-through r0 is the constant 0: dereferencing it is left to the
    // engines (address 0 is in no region), not this finding.
    assert_eq!(errors(FLOWS, "jne %r0, 0, +1\nldxw %r3, [%r0+0]"), []);
    // A copy checked checks the original too (the kernel's register ids).
    assert_eq!(
        errors(FLOWS, "mov %r6, %r0\njeq %r6, 0, +1\nldxw %r3, [%r0+0]"),
        []
    );
    // Checked through a register holding 0.
    assert_eq!(
        errors(FLOWS, "mov %r4, 0\njeq %r0, %r4, +1\nldxw %r3, [%r0+0]"),
        []
    );
}

#[test]
fn array_values_are_checked_for_offsets_only() {
    // The kernel proves an array lookup with a constant key in range non-NULL itself.
    assert_eq!(errors(STATS, "ldxdw %r3, [%r0+0]"), []);
    // 4 + 8 = 12 > 8.
    assert_eq!(
        errors(STATS, "ldxdw %r3, [%r0+4]"),
        [(6, out_of_bounds("stats", 4, 8, 8))]
    );
}

#[test]
fn where_the_analysis_is_not_sure_it_refuses_nothing() {
    // A map the configuration does not describe.
    assert_eq!(errors(UNDESCRIBED, "ldxdw %r3, [%r0+64]"), []);
    // No map configuration at all: the helper's result is an unknown value.
    let plain = VerifierConfig {
        helpers: Some(vec![LOOKUP]),
        ..VerifierConfig::default()
    };
    assert_eq!(errors_with(plain, FLOWS, "ldxdw %r3, [%r0+64]"), []);
    // A comparison other than a 64-bit (in)equality with 0 tells nothing followed.
    assert_eq!(errors(FLOWS, "jgt %r0, 0, +1\nldxdw %r3, [%r0+64]"), []);
    assert_eq!(errors(FLOWS, "jeq32 %r0, 0, +1\nldxdw %r3, [%r0+64]"), []);
    // An offset that is not a constant.
    assert_eq!(
        errors(
            FLOWS,
            "jeq %r0, 0, +3\nldxdw %r4, [%r0+0]\nadd %r0, %r4\nldxdw %r3, [%r0+64]"
        ),
        []
    );
    // Paths that disagree on whether it was checked join to unknown.
    assert_eq!(
        errors(FLOWS, "jeq %r0, 0, +1\nmov %r0, %r0\nldxdw %r3, [%r0+64]"),
        []
    );
    // A spill and reload loses what is known (the kernel tracks spills; we do not).
    assert_eq!(
        errors(
            FLOWS,
            "jeq %r0, 0, +2\nstxdw [%r10-16], %r0\nldxdw %r0, [%r10-16]\nldxdw %r3, [%r0+64]"
        ),
        []
    );
}

#[test]
fn the_null_side_of_a_check_holds_constants_not_values() {
    // An array lookup is not NULL for the checks, but on `jeq r0, 0`'s taken edge r0 is 0
    // (the kernel, which knows it is not NULL, never checks that path): nothing there is a
    // map-value access.
    assert_eq!(errors(STATS, "jne %r0, 0, +1\nldxdw %r3, [%r0+64]"), []);
    // A copy 4 bytes further holds 4 there: `jeq r6, 4` is decided, and the access behind
    // it never runs (a warning, not an error).
    let body = "mov %r6, %r0\nadd %r6, 4\njne %r0, 0, +2\njeq %r6, 4, +1\nldxdw %r3, [%r0+64]";
    assert_eq!(errors(STATS, body), []);
    // On the not-equal edge the value is a value: the access at +64 is checked.
    let body = "jeq %r0, 0, +1\nldxdw %r3, [%r0+64]";
    assert_eq!(errors(STATS, body), [(7, out_of_bounds("stats", 64, 8, 8))]);
}

/// A lookup in a map of maps gives a map: passed to a map helper it loads (checked or not:
/// NULL is the helper's runtime error), dereferenced — read or written, checked or not — it
/// is refused, as is a program's update or delete of the map of maps itself.
#[test]
fn an_inner_map_goes_to_map_helpers_only() {
    // r1 = the inner map; r0 = lookup(r1, key 0).
    assert_eq!(
        errors(
            TENANTS,
            "jeq %r0, 0, +4\nmov %r1, %r0\nmov %r2, %r10\nadd %r2, -4\ncall 1"
        ),
        []
    );
    let access = |pc| {
        (
            pc,
            FindingKind::InnerMapAccess {
                map: "tenants".into(),
            },
        )
    };
    assert_eq!(
        errors(TENANTS, "jeq %r0, 0, +1\nldxdw %r1, [%r0+0]"),
        [access(7)]
    );
    assert_eq!(errors(TENANTS, "stw [%r0+8], 1"), [access(6)]);
    // A copy is the same map.
    assert_eq!(
        errors(TENANTS, "mov %r3, %r0\njeq %r3, 0, +1\nldxw %r1, [%r3+16]"),
        [access(8)]
    );
    for helper in [UPDATE, DELETE] {
        let body = format!(
            "lddw %r1, {TENANTS}\nmov %r2, %r10\nadd %r2, -4\nmov %r3, %r2\nmov %r4, 0\ncall {helper}"
        );
        assert_eq!(
            errors(STATS, &body),
            [(
                12,
                FindingKind::OuterMapHelper {
                    map: "tenants".into(),
                    helper
                }
            )]
        );
    }
}
