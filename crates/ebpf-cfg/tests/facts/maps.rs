//! Map lookups: `r0 = lookup(map, key)` is NULL or the address of a whole value of `map`, so
//! that after a 64-bit test against 0 an access inside the value is proven — and nothing
//! else is. Every program also runs on keys in and out of range (a NULL result), its facts
//! checked at every step against the interpreter's registers.

use super::{check_insn, region_lengths};
use ebpf_abi::{Helpers, Limits, MemoryMap, Region, VmMemory, layout};
use ebpf_cfg::facts::{Access, Analysis, Entry, MapLookup, MapRegion};
use ebpf_interp::Interpreter;
use ebpf_isa::Program;

const LOOKUP: u32 = 1;
/// 16-byte values, 4 of them.
const FLOWS: u64 = 0xffff_0000_0000_0000;
/// 8-byte values, 3 of them.
const STATS: u64 = 0xffff_0000_0000_0001;
const FLOWS_REGION: u8 = 20;
const STATS_REGION: u8 = 21;

fn entry() -> Entry {
    entry_aligned(8)
}

/// The entry with every value said to start at a multiple of `align` (the helper below puts
/// them at multiples of 8).
fn entry_aligned(align: u32) -> Entry {
    let map = |handle, region, len, value_size| MapRegion {
        handle,
        region,
        len,
        value_size,
        writable: true,
        align,
    };
    Entry::input().with_lookup(MapLookup {
        helper: LOOKUP,
        maps: vec![
            map(FLOWS, FLOWS_REGION, 64, 16),
            map(STATS, STATS_REGION, 24, 8),
        ],
    })
}

/// A run's memory: the input, the two maps' values.
type Bytes = (Vec<u8>, Vec<u8>, Vec<u8>);

fn map((input, flows, stats): &mut Bytes) -> MemoryMap<'_> {
    let mut m = MemoryMap::new();
    m.insert(layout::INPUT, Region::Writable(input));
    m.insert(u64::from(FLOWS_REGION), Region::Writable(flows));
    m.insert(u64::from(STATS_REGION), Region::Writable(stats));
    m
}

/// The lookup, with the key as a number in `r2` (the facts never read it): NULL for a key
/// past the last value or an unknown map.
fn helpers() -> Helpers {
    let mut h = Helpers::new();
    h.insert(LOOKUP, |a: [u64; 5], _: &mut dyn VmMemory| {
        let (region, size, n) = match a[0] {
            FLOWS => (FLOWS_REGION, 16, 4),
            STATS => (STATS_REGION, 8, 3),
            _ => return Ok(0),
        };
        Ok(if a[1] < n {
            layout::vm_addr(u64::from(region), a[1] * size)
        } else {
            0
        })
    });
    h
}

/// Substitutes the maps' handles for `FLOWS` and `STATS` in `text`.
fn program(text: &str) -> Program {
    let text = text
        .replace("FLOWS", &format!("{FLOWS:#x}"))
        .replace("STATS", &format!("{STATS:#x}"));
    ebpf_isa::assemble(&text).unwrap()
}

/// The accesses proven in bounds, by pc, and whether each is speculation-safe.
fn proven(text: &str) -> Vec<(usize, bool)> {
    proven_with(text, &entry())
}

/// [`proven`] under another entry.
fn proven_with(text: &str, entry: &Entry) -> Vec<(usize, bool)> {
    let p = program(text);
    let a = Analysis::run(&p, entry);
    a.facts()
        .accesses_in_bounds()
        .map(|i| {
            let pc = p.iter().nth(i).map_or(0, |(pc, _)| pc);
            let safe = matches!(
                a.facts().access(i),
                Access::InBounds {
                    speculation_safe: true,
                    ..
                }
            );
            (pc, safe)
        })
        .collect()
}

/// Runs `text` with the input's length (the key) from 0 to 5 and checks every fact at every
/// step: registers against the analysis (a `nonnull` range included), accesses proven in
/// bounds against their real addresses.
fn assert_sound(text: &str) {
    let p = program(text);
    let entry = entry();
    let analysis = Analysis::run(&p, &entry);
    let facts = analysis.facts();
    let limits = Limits::default();
    for key in 0..6usize {
        let memory = || -> Bytes { (vec![7u8; key], vec![1u8; 64], vec![2u8; 24]) };
        let args = layout::input_args(key as u64);
        let (mut m1, mut m2, mut m3) = (memory(), memory(), memory());
        let admitted = map(&mut m1);
        assert!(entry.admits(&admitted, args), "key {key}");
        let lens = region_lengths(&admitted, &limits);
        drop(admitted);
        let expected = Interpreter::new(&p).run(map(&mut m2), args, &helpers(), &limits);
        let mut broken = None;
        let got = ebpf_testgen::trace(&p, map(&mut m3), args, &helpers(), &limits, |step| {
            if broken.is_some() {
                return;
            }
            let Some(regs) = analysis.registers_at(step.index) else {
                broken = Some(format!("pc {} reached, said unreachable", step.pc));
                return;
            };
            let checked = regs
                .check(step.regs, |r| lens[usize::from(r)])
                .and_then(|()| {
                    let insn = &p.insns()[step.index];
                    check_insn(insn, step.regs, facts, step.index, step.memory)
                });
            if let Err(e) = checked {
                broken = Some(format!("pc {}: {e}", step.pc));
            }
        });
        assert_eq!(got, expected, "key {key}\n{text}");
        if let Some(b) = broken {
            panic!("key {key}: {b}\n{text}");
        }
    }
}

/// The lookup's result checked against NULL: an 8-byte load at every offset from -1 to 9 of
/// a 16-byte value; in bounds exactly at 0..=8, and only behind the branch (not
/// speculation-safe). A store too (the map's values are writable).
#[test]
fn a_checked_lookup_proves_accesses_inside_the_value() {
    for off in -1i32..=9 {
        let text = format!(
            "
            lddw %r1, FLOWS
            call 1
            jeq %r0, 0, out
            ldxdw %r3, [%r0{off:+}]
            stxdw [%r0{off:+}], %r3
        out:
            exit"
        );
        let expected = if (0..=8).contains(&off) {
            vec![(4, false), (5, false)]
        } else {
            vec![]
        };
        assert_eq!(proven(&text), expected, "offset {off}");
        assert_sound(&text);
    }
    // `jne` to the access, and a 4-byte load at the value's last word; the smaller map too.
    let text = "
        lddw %r1, STATS
        call 1
        jne %r0, 0, found
        exit
    found:
        ldxw %r3, [%r0+4]
        ldxw %r3, [%r0+5]
        exit";
    assert_eq!(proven(text), vec![(5, false)]);
    assert_sound(text);
}

/// Before the test against NULL, after a 32-bit test (a non-NULL address has a zero low
/// half), and for a map the entry does not know, nothing is proven.
#[test]
fn an_unchecked_lookup_proves_nothing() {
    let before = "
        lddw %r1, FLOWS
        call 1
        ldxdw %r3, [%r0+0]
        jeq %r0, 0, out
    out:
        exit";
    assert_eq!(proven(before), vec![]);
    assert_sound(before);
    let w32 = "
        lddw %r1, FLOWS
        call 1
        jeq32 %r0, 0, out
        ldxdw %r3, [%r0+0]
    out:
        exit";
    assert_eq!(proven(w32), vec![]);
    assert_sound(w32);
    let unknown = "
        lddw %r1, 0xffff000000000007
        call 1
        jeq %r0, 0, out
        ldxdw %r3, [%r0+0]
    out:
        exit";
    assert_eq!(proven(unknown), vec![]);
    assert_sound(unknown);
    // Another helper with the map in r1 returns no value of it.
    let other = "
        lddw %r1, FLOWS
        call 2
        jeq %r0, 0, out
        ldxdw %r3, [%r0+0]
    out:
        exit";
    assert_eq!(proven(other), vec![]);
    // Arithmetic before the test: the sum is not NULL-or-a-value.
    let moved = "
        lddw %r1, FLOWS
        call 1
        add %r0, 8
        jeq %r0, 0, out
        ldxdw %r3, [%r0+0]
    out:
        exit";
    assert_eq!(proven(moved), vec![]);
    assert_sound(moved);
}

/// A copy of the result tested instead of the result (clang does both); the result joined
/// with a path where it was already tested; lookups in two maps of different value sizes
/// joined (no one region: nothing proven).
#[test]
fn lookup_results_through_copies_and_joins() {
    let copy = "
        lddw %r1, FLOWS
        call 1
        mov %r6, %r0
        jeq %r6, 0, out
        ldxdw %r3, [%r0+8]
        ldxdw %r3, [%r6+8]
    out:
        exit";
    assert_eq!(proven(copy), vec![(5, false), (6, false)]);
    assert_sound(copy);
    let joined = "
        mov %r6, %r2
        lddw %r1, FLOWS
        call 1
        jgt %r6, 1, join
        jeq %r0, 0, out
    join:
        jeq %r0, 0, out
        ldxdw %r3, [%r0+8]
    out:
        exit";
    assert_eq!(proven(joined), vec![(7, false)]);
    assert_sound(joined);
    let two_maps = "
        mov %r6, %r2
        jgt %r6, 1, stats
        lddw %r1, FLOWS
        call 1
        ja join
    stats:
        lddw %r1, STATS
        call 1
    join:
        jeq %r0, 0, out
        ldxdw %r3, [%r0+0]
    out:
        exit";
    assert_eq!(proven(two_maps), vec![]);
    assert_sound(two_maps);
}

/// A variable offset into the value: `p + (key & 1) * 8` proves an 8-byte load at +0 and
/// not one at +8 (which reads past the last value for the last key: a trap).
#[test]
fn a_variable_offset_into_the_value() {
    let text = "
        mov %r6, %r2
        lddw %r1, FLOWS
        call 1
        jeq %r0, 0, out
        and %r6, 1
        lsh %r6, 3
        add %r0, %r6
        ldxdw %r3, [%r0+0]
        ldxdw %r3, [%r0+8]
    out:
        exit";
    assert_eq!(proven(text), vec![(8, false)]);
    assert_sound(text);
}

/// The admission: a run whose map region is not exactly the entry's length is not admitted
/// (a lookup's address is bounded by the length the run maps).
#[test]
fn the_admission_checks_each_map_regions_length() {
    let entry = entry();
    let args = [layout::vm_addr(layout::INPUT, 0), 0];
    for (flows_len, admitted) in [(64, true), (56, false), (72, false), (0, false)] {
        let (mut input, mut flows, mut stats) = (vec![], vec![0u8; flows_len], vec![0u8; 24]);
        let mut m = MemoryMap::new();
        m.insert(layout::INPUT, Region::Writable(&mut input));
        if flows_len > 0 {
            m.insert(u64::from(FLOWS_REGION), Region::Writable(&mut flows));
        }
        m.insert(u64::from(STATS_REGION), Region::Writable(&mut stats));
        assert_eq!(entry.admits(&m, args), admitted, "{flows_len} bytes");
    }
}

/// An atomic on a lookup's result in a map of several values is proven when the map's values
/// are aligned (`MapRegion::align`) and the offset keeps it aligned: a counter at the start of
/// a value, the second word of a 16-byte value, a 4-byte half of an 8-byte one.
#[test]
fn an_atomic_on_a_checked_lookup_is_proven() {
    let text = |map: &str, atomic: &str| {
        format!(
            "
            lddw %r1, {map}
            call 1
            jeq %r0, 0, out
            mov %r1, 1
            {atomic}
        out:
            exit"
        )
    };
    for (map, atomic, is_proven) in [
        ("STATS", "lock add [%r0+0], %r1", true),
        ("STATS", "lock fetch add [%r0+0], %r1", true),
        ("FLOWS", "lock add [%r0+8], %r1", true),
        ("STATS", "lock add32 [%r0+4], %r1", true),
        ("FLOWS", "lock xchg [%r0+8], %r1", true),
        // Mutants: misaligned offsets (they trap on every key in range), past the value.
        ("STATS", "lock add [%r0+4], %r1", false),
        ("FLOWS", "lock add32 [%r0+2], %r1", false),
        ("STATS", "lock add [%r0+8], %r1", false),
    ] {
        let text = text(map, atomic);
        let expected = if is_proven { vec![(5, false)] } else { vec![] };
        assert_eq!(proven(&text), expected, "{atomic} on {map}");
        assert_sound(&text);
    }
    // Values only said 4-aligned (or 12: its power-of-two factor): an 8-byte atomic is not
    // proven, a 4-byte one is; 2-aligned or nothing said proves neither.
    let eight = text("STATS", "lock add [%r0+0], %r1");
    let four = text("STATS", "lock add32 [%r0+4], %r1");
    for (align, eight_proven, four_proven) in [
        (16, true, true),
        (4, false, true),
        (12, false, true),
        (2, false, false),
        (1, false, false),
        (0, false, false),
    ] {
        let expected = |p: bool| if p { vec![(5, false)] } else { vec![] };
        let entry = entry_aligned(align);
        assert_eq!(
            proven_with(&eight, &entry),
            expected(eight_proven),
            "{align}"
        );
        assert_eq!(proven_with(&four, &entry), expected(four_proven), "{align}");
    }
}

/// The alignment says nothing before the test against NULL (the atomic may be at address 0),
/// and survives a join of two lookups and a step of a multiple of 8 into a 16-byte value.
#[test]
fn an_atomics_alignment_needs_the_null_test_and_survives_joins_and_steps() {
    let before = "
        lddw %r1, STATS
        call 1
        mov %r1, 1
        lock add [%r0+0], %r1
        exit";
    assert_eq!(proven(before), vec![]);
    assert_sound(before);
    // One of two lookups, tested after the join.
    let joined = "
        jeq %r2, 3, other
        lddw %r1, STATS
        call 1
        ja test
    other:
        lddw %r1, STATS
        mov %r2, 1
        call 1
    test:
        jeq %r0, 0, out
        mov %r1, 1
        lock add [%r0+0], %r1
    out:
        exit";
    assert_eq!(proven(joined), vec![(11, false)]);
    assert_sound(joined);
    // `p + (key & 1) * STEP`: aligned for a step of 8; a step of 4 traps on odd keys.
    for (step, proven_at) in [(3, vec![(9, false)]), (2, vec![])] {
        let text = format!(
            "
            mov %r6, %r2
            lddw %r1, FLOWS
            call 1
            jeq %r0, 0, out
            and %r6, 1
            lsh %r6, {step}
            add %r0, %r6
            mov %r1, 1
            lock add [%r0+0], %r1
        out:
            exit"
        );
        assert_eq!(proven(&text), proven_at, "step {}", 1 << step);
        assert_sound(&text);
    }
}
