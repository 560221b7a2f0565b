//! The idioms the analysis exists for, each with the accesses it must prove — and its
//! off-by-one mutants with the one it must not — and each run to check the facts hold.

use super::{Memory, analyse, assert_sound, check_speculative, proven};
use ebpf_abi::layout;
use ebpf_cfg::facts::{
    Access, Analysis, Bound, Condition, Counter, Entry, MetadataFields, RegionSpec, Relation,
    TripCount,
};

/// The bytes 0, 1, 2, … as input.
fn bytes(n: usize) -> Memory {
    Memory::input(&(0..n).map(|i| i as u8).collect::<Vec<_>>())
}

/// Every input length from 0 to `n`.
fn every_length(text: &str, n: usize) {
    for len in 0..=n {
        assert_sound(text, &bytes(len));
    }
}

/// `if (p + 14 > end) return`, then the Ethernet header.
const ETH: &str = "
    mov %r3, %r1
    add %r3, %r2
    mov %r4, %r1
    add %r4, 14
    jgt %r4, %r3, drop
    ldxh %r0, [%r1+12]
    ldxb %r5, [%r1+13]
    ldxb %r5, [%r1]
    exit
drop:
    mov %r0, 0
    exit";

#[test]
fn a_guard_proves_the_accesses_it_dominates() {
    assert_eq!(proven(ETH), vec![5, 6, 7]);
    every_length(ETH, 20);
    // Off by one: the guard allows 13 bytes, the load of byte 13 stays checked.
    let short = ETH.replace("add %r4, 14", "add %r4, 13");
    assert_eq!(proven(&short), vec![7]);
    every_length(&short, 20);
    // `>=` instead of `>` allows one byte fewer still.
    let ge = ETH.replace("jgt %r4, %r3", "jge %r4, %r3");
    assert_eq!(proven(&ge), vec![5, 6, 7]);
    let ge13 = ge.replace("add %r4, 14", "add %r4, 13");
    assert_eq!(proven(&ge13), vec![5, 6, 7], "p + 13 < end: 14 bytes");
    every_length(&ge13, 20);
    // A signed compare of two input addresses is an unsigned one.
    let signed = ETH.replace("jgt %r4, %r3", "jsgt %r4, %r3");
    assert_eq!(proven(&signed), vec![5, 6, 7]);
    every_length(&signed, 20);
    // The guard on the wrong side proves nothing.
    let wrong = ETH.replace("jgt %r4, %r3", "jle %r4, %r3");
    assert_eq!(proven(&wrong), Vec::<usize>::new());
    every_length(&wrong, 20);
}

#[test]
fn a_length_check_on_r2_proves_constant_offsets() {
    let text = "
        jlt %r2, 8, out
        ldxdw %r0, [%r1]
        ldxw %r0, [%r1+4]
        ldxw %r0, [%r1+5]
    out:
        exit";
    assert_eq!(proven(text), vec![1, 2]);
    every_length(text, 12);
    // A 32-bit compare of the length works the same (it fits in 32 bits).
    let w = text.replace("jlt %r2, 8", "jlt32 %r2, 8");
    assert_eq!(proven(&w), vec![1, 2]);
    every_length(&w, 12);
    // Compared as `len - 1 < 7`: len = 0 wraps to a huge number, so len >= 8 still follows.
    let minus = "
        mov %r3, %r2
        sub %r3, 1
        jlt %r3, 7, out
        ldxdw %r0, [%r1]
    out:
        exit";
    assert_eq!(
        proven(minus),
        Vec::<usize>::new(),
        "len - 1 >= 7 when len = 0 too"
    );
    every_length(minus, 12);
}

#[test]
fn a_variable_length_header_needs_the_length_checked_first() {
    // An IPv4 header after a 14-byte Ethernet header: ihl from the first byte.
    let text = "
        mov %r3, %r1
        add %r3, %r2
        mov %r4, %r1
        add %r4, 34
        jgt %r4, %r3, drop
        ldxb %r5, [%r1+14]
        and %r5, 15
        lsh %r5, 2
        mov %r6, %r1
        add %r6, 14
        add %r6, %r5
        mov %r7, %r6
        add %r7, 4
        jgt %r7, %r3, drop
        ldxh %r0, [%r6+2]
        ldxh %r0, [%r6+3]
        exit
    drop:
        mov %r0, 0
        exit";
    assert_eq!(proven(text), vec![5, 14]);
    for len in 30..=80 {
        assert_sound(text, &bytes(len));
        let mut m = bytes(len);
        if let Some(i) = m.input.as_mut() {
            i.iter_mut().for_each(|b| *b = 0xff);
        }
        assert_sound(text, &m);
    }
}

/// clang -O2 for `for (i = 0; i < len; i++) h = (h ^ data[i]) * P`.
const FNV: &str = "
    lddw %r0, 0xcbf29ce484222325
    jeq %r2, 0, out
    mov %r3, 0
    lddw %r4, 0x100000001b3
loop:
    mov %r5, %r1
    add %r5, %r3
    ldxb %r5, [%r5]
    xor %r0, %r5
    mul %r0, %r4
    add %r3, 1
    jlt %r3, %r2, loop
out:
    exit";

#[test]
fn an_index_below_the_length_proves_a_byte_loop() {
    assert_eq!(proven(FNV), vec![8]);
    every_length(FNV, 40);
    // `i <= len` reads one byte too many.
    let le = FNV.replace("jlt %r3, %r2", "jle %r3, %r2");
    assert_eq!(proven(&le), Vec::<usize>::new());
    every_length(&le, 10);
    // A signed compare: i and len are both non-negative here.
    let signed = FNV.replace("jlt %r3, %r2", "jslt %r3, %r2");
    assert_eq!(proven(&signed), vec![8]);
    every_length(&signed, 20);
}

/// clang -O2 for `u64 *a = data; for (i = 0; i < len / 8; i++) s += a[i]`.
const SUM: &str = "
    mov %r0, 0
    jlt %r2, 8, out
    rsh %r2, 3
    mov %r3, 0
    mov %r4, 0
loop:
    ldxdw %r0, [%r1]
    add %r0, %r4
    add %r1, 8
    add %r3, 1
    mov %r4, %r0
    jlt %r3, %r2, loop
out:
    exit";

#[test]
fn a_pointer_striding_with_its_index_proves_a_word_loop() {
    let (program, a) = analyse(SUM);
    assert_eq!(
        a.facts().access(5),
        Access::InBounds {
            region: layout::INPUT as u8,
            speculation_safe: false,
        },
        "{:?}",
        a.registers_at(5)
            .map(|r| (r.value(1), r.relations(1), r.relations(3)))
    );
    let _ = program;
    every_length(SUM, 70);
    // Reading a[i + 1] runs past the end on the last iteration.
    let past = SUM.replace("ldxdw %r0, [%r1]", "ldxdw %r0, [%r1+8]");
    assert_eq!(proven(&past), Vec::<usize>::new());
    every_length(&past, 40);
}

/// clang -O2's bubble sort over `u32 a[len / 4]`.
const BSORT: &str = "
    mov %r3, %r2
    rsh %r3, 2
    jlt %r2, 8, checksum
    mov %r4, 0
    mov %r0, 1
    mov %r5, %r1
    add %r5, 4
    ja outer
next:
    mov %r0, %r4
    add %r0, 1
    jge %r0, %r3, checksum
outer:
    mov %r6, %r4
    mov %r4, %r0
    mov %r0, %r3
    sub %r0, %r6
    jlt %r0, 2, next
    mov %r6, 1
    ldxw %r8, [%r1]
    mov %r7, %r5
    ja inner
step:
    add %r7, 4
    add %r6, 1
    mov32 %r8, %r9
    jlt %r6, %r0, inner
    ja next
inner:
    ldxw %r9, [%r7]
    jle32 %r8, %r9, step
    stxw [%r7], %r8
    stxw [%r7-4], %r9
    mov32 %r9, %r8
    ja step
checksum:
    mov %r0, 0
    jlt %r2, 4, out
    mov %r2, 0
sum:
    mul %r0, 31
    ldxw %r4, [%r1]
    add %r0, %r4
    add %r1, 4
    add %r2, 1
    jlt %r2, %r3, sum
out:
    exit";

#[test]
fn nested_loops_over_the_input_are_proven() {
    let p = proven(BSORT);
    // ldxw [r1] (first element), the inner loop's load and both stores, the checksum's load.
    assert_eq!(p, vec![17, 25, 27, 28, 35], "{p:?}");
    for len in 0..=40 {
        let mut m = bytes(len);
        if let Some(i) = m.input.as_mut() {
            i.reverse();
        }
        assert_sound(BSORT, &m);
    }
}

#[test]
fn stack_tables_with_masked_indices_are_proven() {
    let text = "
        mov %r4, %r10
        sub %r4, 256
        mov %r5, 0
    zero:
        mov %r6, %r4
        add %r6, %r5
        stdw [%r6], 0
        add %r5, 8
        jlt %r5, 256, zero
        jeq %r2, 0, out
        ldxb %r6, [%r1]
        and %r6, 0xf8
        add %r6, %r4
        ldxdw %r7, [%r6]
        add %r7, 1
        stxdw [%r6], %r7
        stxdw [%r6+8], %r7
    out:
        exit";
    assert_eq!(proven(text), vec![5, 9, 12, 14]);
    for len in 0..3 {
        assert_sound(text, &bytes(len));
        assert_sound(text, &Memory::input(&vec![0xff; len]));
    }
}

#[test]
fn callees_reach_their_callers_frame() {
    let text = "
        mov %r1, %r10
        sub %r1, 64
        stdw [%r1], 7
        call local f
        ldxdw %r0, [%r10-64]
        exit
    f:
        ldxdw %r0, [%r1]
        stdw [%r10-512], 1
        ldxdw %r2, [%r10-513]
        exit";
    assert_eq!(
        proven(text),
        vec![2, 4, 6, 7],
        "a callee's r10 - 513 is in the caller's frame, but is not proven"
    );
    assert_sound(text, &bytes(0));
}

#[test]
fn metadata_fields_are_the_input_until_overwritten() {
    let text = "
        ldxdw %r2, [%r1]
        ldxdw %r3, [%r1+8]
        mov %r4, %r2
        add %r4, 4
        jgt %r4, %r3, out
        ldxw %r0, [%r2]
    out:
        exit";
    let program = ebpf_isa::assemble(text).unwrap();
    let entry = Entry::metadata(MetadataFields::input(0, 8));
    let a = Analysis::run(&program, &entry);
    assert_eq!(
        a.facts().access(5),
        Access::InBounds {
            region: layout::INPUT as u8,
            speculation_safe: false,
        }
    );
    let regs = a.registers_at(5).unwrap();
    assert!(regs.min_len(layout::INPUT as u8) >= 4);
    // A store into the buffer first: the fields may be anything.
    let stored = text.replace(
        "ldxdw %r2, [%r1]\n",
        "stxdw [%r1+8], %r1\n        ldxdw %r2, [%r1]\n",
    );
    let a = Analysis::run(&ebpf_isa::assemble(&stored).unwrap(), &entry);
    assert!(matches!(a.facts().access(6), Access::Checked { .. }));
    // So may a helper (6 writes memory).
    let helper = text.replace(
        "ldxdw %r2, [%r1]\n",
        "mov %r6, %r1\n        call 5\n        mov %r1, %r6\n        ldxdw %r2, [%r1]\n",
    );
    let a = Analysis::run(&ebpf_isa::assemble(&helper).unwrap(), &entry);
    assert!(matches!(a.facts().access(8), Access::Checked { .. }));
    for len in 0..8 {
        let mut m = bytes(len);
        m.metadata = true;
        assert_sound(text, &m);
        assert_sound(&stored, &m);
        assert_sound(&helper, &m);
    }
}

#[test]
fn divisors_proven_nonzero_and_not_minus_one() {
    let text = "
        mov %r0, %r2
        or %r2, 1
        div %r0, %r2
        ldxdw %r0, [%r1]
        ldxdw %r3, [%r1]
        jeq %r3, 0, out
        mod %r0, %r3
        sdiv %r0, %r3
        jeq %r3, -1, out
        sdiv %r0, %r3
        mov32 %r4, %r3
        and32 %r4, 0xff
        or32 %r4, 0x100
        sdiv32 %r0, %r4
    out:
        exit";
    let (program, a) = analyse(text);
    let f = a.facts();
    let d = |pc: usize| {
        let i = program.iter().position(|(p, _)| p == pc).unwrap();
        f.division(i)
    };
    assert!(d(2).nonzero);
    assert!(d(6).nonzero);
    assert!(
        d(7).nonzero && !d(7).no_overflow,
        "r3 may be -1 with r0 = MIN"
    );
    assert!(d(9).nonzero && d(9).no_overflow);
    assert!(
        d(13).nonzero && d(13).no_overflow,
        "0x100..=0x1ff: neither 0 nor -1"
    );
    for v in [0u64, 1, u64::MAX, i64::MIN as u64, 7] {
        for w in [0u64, u64::MAX, i64::MIN as u64] {
            let mut input = w.to_le_bytes().to_vec();
            input.extend(v.to_le_bytes());
            let program = text.replace("ldxdw %r3, [%r1]", "ldxdw %r3, [%r1+8]");
            assert_sound(&program, &Memory::input(&input));
        }
    }
}

#[test]
fn links_follow_copies_and_strides() {
    let (_, a) = analyse(SUM);
    let regs = a.registers_at(5).unwrap();
    assert!(
        regs.relations(1).iter().any(|r| matches!(
            r,
            Relation::Link {
                reg: 3,
                shift: 3,
                ..
            }
        )),
        "p = base + (i << 3): {:?}",
        regs.relations(1)
    );
    assert!(
        regs.relations(3).iter().any(|r| matches!(
            r,
            Relation::AtMostReg {
                reg: 2,
                shift: 0,
                offset: -1,
                minus: None
            }
        )),
        "i <= n - 1: {:?}",
        regs.relations(3)
    );
}

/// A byte loop bounded by a length the input claims (the engines bench's programs).
const CLAIMED: &str = "
    ldxdw %r2, [%r1]
    mov %r3, %r1
    add %r3, %r2
    add %r1, 8
    mov %r0, 0
count:
    jge %r1, %r3, done
    ldxb %r4, [%r1]
    add %r0, %r4
    add %r1, 1
    ja count
done:
    exit";

#[test]
fn a_claimed_length_versions_the_loop() {
    let (program, a) = analyse(CLAIMED);
    let f = a.facts();
    assert_eq!(proven(CLAIMED), Vec::<usize>::new(), "nothing statically");
    let v = &f.versions()[0];
    assert_eq!(v.entry, 5);
    assert_eq!(
        v.conditions,
        vec![Condition {
            reg: 3,
            region: layout::INPUT as u8,
            offset: 0,
            shift: 0
        }],
        "r3 <= end(input)"
    );
    assert_eq!(v.accesses, vec![(6, layout::INPUT as u8)]);
    assert_eq!(
        f.likely_region(6),
        Some(layout::INPUT as u8),
        "a guess where nothing is proven"
    );
    let _ = program;
    // Claimed lengths right, short, long and absurd: the version's access is checked in
    // every run whose condition holds.
    for claimed in [0u64, 8, 12, 16, 17, 40, u64::MAX - 3] {
        let mut input = claimed.to_le_bytes().to_vec();
        input.extend([7u8; 8]);
        assert_sound(CLAIMED, &Memory::input(&input));
    }
}

/// A `Fixed` region is admitted at its length *or longer*, and a version's dispatcher tests
/// the claimed end against the run's own end of the region. So the version may not be solved
/// as if the region ended at the declared length: with 128 bytes mapped where 64 are declared,
/// an end 128 bytes in passes the test, and the stack access, "proven" for ends up to 64, is
/// 56 bytes past the stack's top on the first iteration (found by review: the versioned copy
/// read and wrote outside the host's stack buffer).
#[test]
fn a_version_on_a_fixed_region_takes_its_length_as_a_minimum() {
    use ebpf_testgen::{
        CLAIMED_END_DECLARED_LEN, CLAIMED_END_IN_FIXED_REGION, CLAIMED_END_RODATA,
        CLAIMED_END_STACK_ACCESS, CLAIMED_ENDS, claimed_end_input,
    };
    let program = ebpf_isa::assemble(CLAIMED_END_IN_FIXED_REGION).unwrap();
    let entry = Entry::input().with_region(
        layout::RODATA as u8,
        RegionSpec::Fixed {
            len: CLAIMED_END_DECLARED_LEN,
            writable: false,
        },
    );
    let analysis = Analysis::run(&program, &entry);
    let facts = analysis.facts();
    assert!(
        facts.versions().iter().all(|v| !v
            .accesses
            .contains(&(CLAIMED_END_STACK_ACCESS, layout::STACK as u8))),
        "{:?}",
        facts.versions()
    );
    // Every claimed end, on read-only data of 128 bytes (declared at 128 and at 64 by the
    // harness): each run's facts hold, and an end past 64 bytes traps at the stack access.
    for end in CLAIMED_ENDS {
        let mut mem = Memory::input(&claimed_end_input(end));
        mem.rodata = CLAIMED_END_RODATA.to_vec();
        assert_sound(CLAIMED_END_IN_FIXED_REGION, &mem);
    }
}

#[test]
fn counted_loops_know_their_instructions() {
    let text = "
        mov %r0, 0
        mov %r1, 0
    loop:
        add %r0, %r1
        add %r1, 1
        jlt %r1, 10, loop
        exit";
    let (_, a) = analyse(text);
    let l = &a.facts().loops()[0];
    assert_eq!(
        (l.entry, l.count, l.per_iteration, l.until_exit),
        (2, known(10, 30), 3, 3)
    );
    assert_sound(text, &bytes(0));
    // The exit test in the middle, a jump back at the bottom (clang's shape).
    let middle = "
        mov %r4, 0
        mov %r1, 4
    loop:
        mov %r0, %r1
        add %r0, -3
        add %r1, 1
        mov %r4, %r0
        jeq %r1, 2003, out
        ja loop
    out:
        exit";
    let (_, a) = analyse(middle);
    let l = &a.facts().loops()[0];
    assert_eq!(
        (l.count, l.per_iteration, l.until_exit),
        (known(1999, 1998 * 6 + 5), 6, 5)
    );
    assert_sound(middle, &bytes(0));
    // A body with two paths: no count.
    let paths = "
        mov %r1, 0
    loop:
        jset %r1, 1, odd
        add %r0, 1
    odd:
        add %r1, 1
        jlt %r1, 10, loop
        exit";
    assert!(analyse(paths).1.facts().loops().is_empty());
    assert_sound(paths, &bytes(0));
}

fn known(trip_count: u64, instructions: u64) -> TripCount {
    TripCount::Known {
        trip_count,
        instructions,
    }
}

/// The run-time counter of the only loop of `text`, if it has one.
fn at_entry(text: &str) -> Option<Counter> {
    match analyse(text).1.facts().loops() {
        [l] => match l.count {
            TripCount::AtEntry(c) => Some(c),
            TripCount::Known { .. } => None,
        },
        _ => None,
    }
}

#[test]
fn loops_bounded_at_run_time_count_at_their_entry() {
    // The engines bench's shapes: `poly` (`!=` a count from the input), `hash` (`<` an end
    // from the input), `histogram` (the exit test on top, `>=`).
    let poly = "
        mov %r3, %r2
        mov %r4, 0
        mov %r0, 0
    loop:
        mul %r0, 3
        add %r0, %r4
        add %r4, 1
        jne %r4, %r3, loop
        exit";
    let (_, a) = analyse(poly);
    let l = &a.facts().loops()[0];
    assert_eq!((l.entry, l.per_iteration, l.until_exit), (3, 4, 4));
    let counter = Counter {
        reg: 4,
        offset: 1,
        step_log2: 0,
        down: false,
        bound: Bound::Reg(3),
        inclusive: false,
        signed: false,
        until_equal: true,
    };
    assert_eq!(l.count, TripCount::AtEntry(counter));
    // With r3 = 5 at entry: r4 is 1..=5 at the tests, 4 trips go on, then 4 to the exit.
    let mut regs = [0u64; 11];
    regs[3] = 5;
    assert_eq!(l.instructions(&regs), Some(4 * 4 + 4));
    regs[3] = 0;
    assert_eq!(
        l.instructions(&regs),
        None,
        "0 is behind the counter: it wraps around"
    );
    assert_sound(poly, &bytes(5));
    let hash = "
        mov %r3, %r1
        add %r3, %r2
        mov %r0, 0
        jge %r1, %r3, out
    loop:
        ldxb %r4, [%r1]
        xor %r0, %r4
        mul %r0, 31
        add %r1, 1
        jlt %r1, %r3, loop
    out:
        exit";
    let c = at_entry(hash).expect("hash");
    assert_eq!(
        (c.reg, c.offset, c.bound, c.down, c.inclusive, c.until_equal),
        (1, 1, Bound::Reg(3), false, false, false)
    );
    for len in [1, 2, 7, 64] {
        assert_sound(hash, &bytes(len));
    }
    let histogram = "
        mov %r1, 0
        mov %r0, 0
    count:
        jge %r1, %r2, out
        add %r0, %r1
        add %r1, 1
        ja count
    out:
        exit";
    let c = at_entry(histogram).expect("histogram");
    assert_eq!(
        (c.reg, c.offset, c.bound, c.down, c.inclusive),
        (1, 0, Bound::Reg(2), false, false)
    );
    for len in [0, 1, 7, 64] {
        assert_sound(histogram, &bytes(len));
    }
    // Down by 8 to a signed `>=` a constant; `<=` a register.
    let down = "
        mov %r1, %r2
        mov %r0, 0
    loop:
        add %r0, 1
        add %r1, -8
        jsge %r1, -3, loop
        exit";
    let c = at_entry(down).expect("down");
    assert_eq!(
        (
            c.step_log2,
            c.down,
            c.signed,
            c.inclusive,
            c.bound,
            c.offset
        ),
        (
            3,
            true,
            true,
            true,
            Bound::Imm((-3i64) as u64),
            (-8i64) as u64
        )
    );
    for len in [0, 1, 7, 64, 4096] {
        assert_sound(down, &bytes(len));
    }
    // Not counted: a second exit, a bound the loop writes, a step of 3, the counter going
    // away from the bound, a 32-bit test.
    let second_exit = hash.replace("xor %r0, %r4", "jeq %r4, 0, out");
    assert_eq!(at_entry(&second_exit), None);
    let written = hash.replace("mul %r0, 31", "add %r3, 1");
    assert_eq!(at_entry(&written), None);
    let three = histogram.replace("add %r1, 1", "add %r1, 3");
    assert_eq!(at_entry(&three), None);
    let away = histogram.replace("add %r1, 1", "add %r1, -1");
    assert_eq!(at_entry(&away), None);
    let narrow = histogram.replace("jge %r1, %r2, out", "jge32 %r1, %r2, out");
    assert_eq!(at_entry(&narrow), None);
}

#[test]
fn a_counted_loop_caps_its_counter() {
    // clang's mul/div loop: i runs 1..2000, the divisor is i + 3 and the modulus is i. The
    // exit test is an equality, so only the trip count bounds i (and keeps it nonzero).
    let text = "
        mov %r4, 0
        mov %r1, 4
        lddw %r3, 0x5851f42d4c957f2d
        add %r2, 1
    loop:
        mov %r0, %r1
        add %r0, -3
        mov %r5, %r4
        mod %r5, %r0
        mul %r0, %r2
        div %r0, %r1
        add %r0, %r4
        add %r0, %r5
        mul %r2, %r3
        add %r1, 1
        mov %r4, %r0
        jeq %r1, 2003, out
        ja loop
    out:
        exit";
    let (program, a) = analyse(text);
    let d = |pc: usize| {
        let i = program.iter().position(|(p, _)| p == pc).unwrap();
        a.facts().division(i)
    };
    assert!(d(8).nonzero, "i >= 1");
    assert!(d(10).nonzero, "i + 3 >= 4");
    assert!(matches!(
        a.facts().loops()[0].count,
        TripCount::Known {
            trip_count: 1999,
            ..
        }
    ));
    assert_sound(text, &bytes(0));
}

#[test]
fn a_capped_counter_reaches_a_fixed_point() {
    // The counter steps by 5 up to an equality: the cap at the head ([0, 995]) is coarser
    // than what the join finds ([0, 999]); capping after the test for change would requeue
    // the head forever.
    for step in [1, 2, 5, 10, 100] {
        let text = format!(
            "mov %r0, 0\nloop:\n{}jne %r0, 1000, loop\nexit",
            "add %r0, 1\n".repeat(step)
        );
        let (_, a) = analyse(&text);
        let instructions = 1000 / step as u64 * (step as u64 + 1);
        assert_eq!(
            a.facts().loops()[0].instructions(&[0; 11]),
            Some(instructions)
        );
        assert_sound(&text, &bytes(0));
    }
}

/// The accesses of `text` proven in bounds whose proof needs no branch, by pc.
fn speculation_safe(text: &str) -> Vec<usize> {
    let (program, a) = analyse(text);
    a.facts()
        .accesses_in_bounds()
        .filter(|&i| {
            matches!(
                a.facts().access(i),
                Access::InBounds {
                    speculation_safe: true,
                    ..
                }
            )
        })
        .map(|i| program.iter().nth(i).map_or(0, |(pc, _)| pc))
        .collect()
}

/// Which proofs rest on a branch (a mispredicted one leads a CPU past it with the value it
/// excluded) and which hold on every path, mispredicted branches included.
#[test]
fn proofs_that_need_a_branch_are_not_speculation_safe() {
    // A guarded packet parser: the guard is the proof.
    assert_eq!(proven(ETH), vec![5, 6, 7]);
    assert_eq!(speculation_safe(ETH), Vec::<usize>::new());
    // A loop index bounded by `i < len`.
    assert_eq!(proven(FNV), vec![8]);
    assert_eq!(speculation_safe(FNV), Vec::<usize>::new());
    assert_eq!(speculation_safe(SUM), Vec::<usize>::new());
    // Frame slots at constant offsets from r10, behind a branch that proves nothing of them.
    let slots = "
        stdw [%r10-8], 1
        jeq %r2, 0, out
        ldxdw %r0, [%r10-8]
        stxdw [%r10-512], %r0
    out:
        exit";
    assert_eq!(proven(slots), vec![0, 2, 3]);
    assert_eq!(speculation_safe(slots), vec![0, 2, 3]);
    // A stack table: the clearing loop's store is bounded by its exit test, the loads of the
    // input by `len != 0`; the masked and the zero-extended indices need no branch (the store
    // at pc 15 reaches 8 bytes past the table: checked).
    let table = "
        mov %r4, %r10
        sub %r4, 256
        mov %r5, 0
    zero:
        mov %r6, %r4
        add %r6, %r5
        stdw [%r6], 0
        add %r5, 8
        jlt %r5, 256, zero
        jeq %r2, 0, out
        ldxb %r6, [%r1]
        and %r6, 0xf8
        add %r6, %r4
        ldxdw %r7, [%r6]
        add %r7, 1
        stxdw [%r6], %r7
        stxdw [%r6+8], %r7
        ldxb %r3, [%r1]
        add %r3, %r4
        ldxb %r0, [%r3]
    out:
        exit";
    assert_eq!(proven(table), vec![5, 9, 12, 14, 16, 18]);
    assert_eq!(speculation_safe(table), vec![12, 14, 18]);
    // And they hold with the branches going either way.
    for text in [ETH, FNV, SUM, slots, table] {
        let program = ebpf_isa::assemble(text).unwrap();
        for taken in [0, u64::MAX, 0x5555_5555_5555_5555, 0xaaaa_aaaa_aaaa_aaaa] {
            for len in [0, 1, 9, 20] {
                check_speculative(&program, &bytes(len), taken).unwrap();
            }
        }
    }
    // A version's unchecked copy is chosen by its dispatcher's branch: its accesses are never
    // proven outside the version, so never speculation-safe.
    let (_, a) = analyse(CLAIMED);
    assert_eq!(
        a.facts().versions()[0].accesses,
        vec![(6, layout::INPUT as u8)]
    );
    assert!(matches!(a.facts().access(6), Access::Checked { .. }));
}

/// A run of the packet entry: `headroom` bytes, a packet of `len`, `tailroom` bytes, in one
/// input region; the metadata buffer holds the packet's start and end at offsets 0 and 8.
pub(crate) fn packet(headroom: u32, len: u64, tailroom: u64) -> Memory {
    let total = u64::from(headroom) + len + tailroom;
    Memory {
        input: Some((0..total).map(|i| i as u8).collect()),
        metadata: true,
        packet: Some((headroom, u64::from(headroom) + len)),
        ..Memory::default()
    }
}

/// An XDP program's Ethernet header check, on the fields its context access conversion
/// leaves (`data`, `data_end` as 64-bit loads of the metadata buffer).
const XDP_ETH: &str = "
    ldxdw %r2, [%r1]
    ldxdw %r3, [%r1+8]
    mov %r4, %r2
    add %r4, 14
    jgt %r4, %r3, drop
    ldxh %r0, [%r2+12]
    ldxb %r5, [%r2+13]
    ldxb %r5, [%r2]
    exit
drop:
    mov %r0, 0
    exit";

/// Every packet length from 0 to 20 after `headroom`, with no tailroom (a load past the
/// packet traps) and with some, and runs whose `data_end` lies past the input's end or
/// before `data` (which the entry must not admit: `check` skips them).
fn every_packet(text: &str, headroom: u32) {
    for len in 0..=20 {
        for tailroom in [0, 1, 3] {
            assert_sound(text, &packet(headroom, len, tailroom));
        }
        let mut lying = packet(headroom, len, 0);
        lying.packet = Some((headroom, u64::from(headroom) + len + 1));
        assert_sound(text, &lying);
    }
}

#[test]
fn a_guard_against_a_packets_end_proves_the_header() {
    let entry = Entry::metadata(MetadataFields::packet(0, 8, 16));
    let proven_for = |text: &str| {
        let program = ebpf_isa::assemble(text).unwrap();
        let facts = ebpf_cfg::facts::Facts::analyse(&program, &entry);
        facts.accesses_in_bounds().collect::<Vec<_>>()
    };
    assert_eq!(proven_for(XDP_ETH), vec![0, 1, 5, 6, 7]);
    // The mbuff entry says `data` is the input's start: the same program, other facts, but
    // the same shape of proof.
    assert_eq!(
        proven(XDP_ETH),
        Vec::<usize>::new(),
        "no metadata, no proof"
    );
    let input_entry = Entry::metadata(MetadataFields::input(0, 8));
    let program = ebpf_isa::assemble(XDP_ETH).unwrap();
    let facts = ebpf_cfg::facts::Facts::analyse(&program, &input_entry);
    assert_eq!(
        facts.accesses_in_bounds().collect::<Vec<_>>(),
        vec![0, 1, 5, 6, 7]
    );
    for headroom in [0, 16, 256] {
        every_packet(XDP_ETH, headroom);
    }
    // The mutants: 13 bytes guarded, the load of byte 13 stays checked.
    let short = XDP_ETH.replace("add %r4, 14", "add %r4, 13");
    assert_eq!(proven_for(&short), vec![0, 1, 7]);
    every_packet(&short, 16);
    let ge = XDP_ETH.replace("jgt %r4, %r3", "jge %r4, %r3");
    assert_eq!(proven_for(&ge), vec![0, 1, 5, 6, 7]);
    every_packet(&ge, 16);
    let signed = XDP_ETH.replace("jgt %r4, %r3", "jsgt %r4, %r3");
    assert_eq!(proven_for(&signed), vec![0, 1, 5, 6, 7]);
    every_packet(&signed, 16);
    let wrong = XDP_ETH.replace("jgt %r4, %r3", "jle %r4, %r3");
    assert_eq!(proven_for(&wrong), vec![0, 1]);
    every_packet(&wrong, 16);
    // A 32-bit sum may wrap: nothing proven past it.
    let wrap = XDP_ETH.replace("add %r4, 14", "add32 %r4, 14");
    assert_eq!(proven_for(&wrap), vec![0, 1]);
    every_packet(&wrap, 16);
    // Without a guard the packet may be empty: only the headroom is known.
    let unguarded = XDP_ETH.replace("jgt %r4, %r3, drop", "ja +0");
    assert_eq!(proven_for(&unguarded), vec![0, 1]);
    every_packet(&unguarded, 16);
    let headroom = "ldxdw %r2, [%r1]\nldxb %r0, [%r2-16]\nldxb %r0, [%r2-17]\nexit";
    assert_eq!(
        proven_for(headroom),
        vec![0, 1],
        "16 bytes of headroom, not 17"
    );
    every_packet(headroom, 16);
    // Speculation: the guard's proofs need its branch; the headroom's and the fields' do not.
    let safe = |text: &str, i: usize| {
        let program = ebpf_isa::assemble(text).unwrap();
        match ebpf_cfg::facts::Facts::analyse(&program, &entry).access(i) {
            Access::InBounds {
                speculation_safe, ..
            } => speculation_safe,
            Access::Checked { .. } => panic!("{i} not proven"),
        }
    };
    assert!(safe(XDP_ETH, 0) && safe(XDP_ETH, 1) && safe(headroom, 1));
    assert!(!safe(XDP_ETH, 5) && !safe(XDP_ETH, 7));
    for taken in [0, 1, u64::MAX] {
        for len in [0, 13, 14] {
            for text in [XDP_ETH, headroom] {
                let program = ebpf_isa::assemble(text).unwrap();
                if let Err(e) = check_speculative(&program, &packet(16, len, 0), taken) {
                    panic!("{e}\n{text}");
                }
            }
        }
    }
}

/// A helper may move the packet (`xdp_adjust_head`): pointers loaded before it stay inside
/// the input (its end does not move), fields loaded after it are unknown.
#[test]
fn a_helper_call_makes_the_fields_unknown() {
    let entry = Entry::metadata(MetadataFields::packet(0, 8, 16));
    // Helper 6 writes r2 at r1: here the packet's start moves 4 bytes on (data + 4).
    let text = "
        ldxdw %r6, [%r1]
        ldxdw %r7, [%r1+8]
        mov %r4, %r6
        add %r4, 14
        jgt %r4, %r7, drop
        mov %r8, %r1
        mov %r2, %r6
        add %r2, 4
        call 6
        ldxh %r0, [%r6+12]
        ldxdw %r2, [%r8]
        ldxdw %r3, [%r8+8]
        mov %r4, %r2
        add %r4, 14
        jgt %r4, %r3, drop
        ldxh %r0, [%r2+12]
        exit
    drop:
        mov %r0, 0
        exit";
    let program = ebpf_isa::assemble(text).unwrap();
    let facts = ebpf_cfg::facts::Facts::analyse(&program, &entry);
    assert_eq!(
        facts.access(9),
        Access::InBounds {
            region: layout::INPUT as u8,
            speculation_safe: false,
        },
        "loaded before the call"
    );
    // The field is still in the buffer, but what it holds is not known after the call.
    assert!(matches!(facts.access(10), Access::InBounds { .. }));
    assert!(
        matches!(facts.access(15), Access::Checked { .. }),
        "the guard of a field loaded after the call proves nothing"
    );
    every_packet(text, 16);
    // The same with a store into the field instead of the call.
    let stored = text.replace("call 6", "stxdw [%r1], %r2");
    let program = ebpf_isa::assemble(&stored).unwrap();
    let facts = ebpf_cfg::facts::Facts::analyse(&program, &entry);
    assert!(matches!(facts.access(15), Access::Checked { .. }));
    every_packet(&stored, 16);
}

/// `p = len < 20 ? … : first == 0 ? NULL : first == 1 ? data + 6 : data + 16`, then
/// `if (p)` and two bytes read and written at `p` (`xdp_lb`'s `l4_csum`): the join of NULL and
/// two pointers into the input is "NULL or in the input" (`nonnull`), and the 64-bit test
/// against 0 brings it back into the buffer.
const NULL_OR_POINTER: &str = "
    jlt %r2, 20, out
    mov %r8, 0
    ldxb %r5, [%r1+0]
    jeq %r5, 0, test
    mov %r8, %r1
    add %r8, 6
    jeq %r5, 1, test
    mov %r8, %r1
    add %r8, 16
test:
    jeq %r8, 0, out
    ldxh %r0, [%r8+0]
    stxh [%r8+2], %r0
out:
    exit";

/// Inputs of every length up to 24 whose first byte takes each of the program's paths.
fn null_or_pointer_inputs(text: &str) {
    for first in 0..3u8 {
        for len in 0..=24usize {
            let mut bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            if let Some(b) = bytes.first_mut() {
                *b = first;
            }
            assert_sound(text, &Memory::input(&bytes));
        }
    }
}

#[test]
fn a_null_or_packet_pointer_tested_for_null_is_proven() {
    assert_eq!(proven(NULL_OR_POINTER), vec![2, 10, 11]);
    null_or_pointer_inputs(NULL_OR_POINTER);
    // `if (p != NULL)`, the other way round.
    let ne = NULL_OR_POINTER.replace("jeq %r8, 0, out", "jne %r8, 0, +1\nexit");
    assert_eq!(proven(&ne), vec![2, 11, 12]);
    null_or_pointer_inputs(&ne);
    // Mutants. No test: the NULL path reads address 0.
    let untested = NULL_OR_POINTER.replace("jeq %r8, 0, out", "ja +0");
    assert_eq!(proven(&untested), vec![2]);
    null_or_pointer_inputs(&untested);
    // A 32-bit test is proven too, but not by the join: the test's block is short, so each
    // of its three predecessors is refined on its own — NULL always takes the jump, and the
    // two pointers' low halves (6 and 16 past the input's start) never do.
    let w32 = NULL_OR_POINTER.replace("jeq %r8, 0, out", "jeq32 %r8, 0, out");
    assert_eq!(proven(&w32), vec![2, 10, 11]);
    null_or_pointer_inputs(&w32);
    // Behind a longer block, the join alone: a 32-bit test of NULL-or-pointer proves nothing
    // (an address in the input may have a zero low half), a 64-bit one does.
    let padded = |test: &str| {
        NULL_OR_POINTER.replace(
            "test:\n    jeq %r8, 0, out",
            &format!(
                "test:\n    mov %r4, 1\n    mov %r4, 2\n    mov %r4, 3\n    mov %r4, 4\n    {test}"
            ),
        )
    };
    assert_eq!(proven(&padded("jeq %r8, 0, out")), vec![2, 14, 15]);
    assert_eq!(proven(&padded("jeq32 %r8, 0, out")), vec![2]);
    null_or_pointer_inputs(&padded("jeq32 %r8, 0, out"));
    // Not NULL but 1 on the first path: not a pointer-or-NULL, and it reads address 1.
    let one = NULL_OR_POINTER.replace("mov %r8, 0", "mov %r8, 1");
    assert_eq!(proven(&one), vec![2]);
    null_or_pointer_inputs(&one);
    // One of the pointers into the stack: two regions, nothing proven.
    let stack = NULL_OR_POINTER.replace(
        "mov %r8, %r1\n    add %r8, 16",
        "mov %r8, %r10\n    add %r8, -16",
    );
    assert_eq!(proven(&stack), vec![2]);
    null_or_pointer_inputs(&stack);
    // The guard one byte short: the store's last byte (p + 19 on the third path) may be past
    // the end.
    let short = NULL_OR_POINTER.replace("jlt %r2, 20, out", "jlt %r2, 19, out");
    assert_eq!(proven(&short), vec![2, 10]);
    null_or_pointer_inputs(&short);
}

/// What clang makes of `udp = l4_header(p, end)` (NULL when `p > end`) tested with
/// `if (!udp || udp + 1 > end)`: `r1 = 0; if p > end goto L; r1 = p; L: if p > end goto drop;
/// r3 = r1 + 8; if r3 <= end goto ok` — the second test re-tests `p`, not `r1`. Kept apart,
/// the re-test's two predecessors refine on their own: where `p > end` held, `p <= end`
/// cannot, so only `r1 = p` reaches the load at `r1 + 2`.
const RETEST: &str = "
    mov %r5, %r1
    add %r5, %r2
    mov %r3, %r1
    add %r3, 14
    mov %r1, 0
    jgt %r3, %r5, retest
    mov %r1, %r3
retest:
    jgt %r3, %r5, drop
    mov %r3, %r1
    add %r3, 8
    jle %r3, %r5, ok
drop:
    mov %r0, 1
    exit
ok:
    ldxh %r0, [%r1+2]
    exit";

#[test]
fn the_l4_header_retest_is_proven() {
    assert_eq!(proven(RETEST), vec![13]);
    every_length(RETEST, 30);
    // `>=` for the re-test: still the other side of the first test.
    let ge = RETEST.replace("jgt %r3, %r5, drop", "jge %r3, %r5, drop");
    assert_eq!(proven(&ge), vec![13]);
    every_length(&ge, 30);
    // Mutants. The re-test of another register (always false): NULL reaches the load.
    let other = RETEST.replace("jgt %r3, %r5, drop", "jgt %r0, %r5, drop");
    assert_eq!(proven(&other), Vec::<usize>::new());
    every_length(&other, 30);
    // The re-test inverted: NULL reaches the load.
    let inverted = RETEST.replace("jgt %r3, %r5, drop", "jle %r3, %r5, drop");
    assert_eq!(proven(&inverted), Vec::<usize>::new());
    every_length(&inverted, 30);
    // Three bytes checked for a load of bytes 2 and 3.
    let short = RETEST.replace("add %r3, 8", "add %r3, 3");
    assert_eq!(proven(&short), Vec::<usize>::new());
    every_length(&short, 30);
    // The first test the other way round: `r1 = p` only where `p > end`.
    let swapped = RETEST.replace("jgt %r3, %r5, retest", "jle %r3, %r5, retest");
    assert_eq!(proven(&swapped), Vec::<usize>::new());
    every_length(&swapped, 30);
}

/// clang -O2's insertion sort of `min(len / 2, 256)` u16 words (tests/elf/loops/sort.c): the
/// inner loop walks a pointer `r0` down by 2 while its exit test is on a separate counter `r6`
/// (`j != 0`), both started from the outer index `r2`.
const SORT: &str = "
    mov %r3, %r2
    rsh %r3, 1
    jlt %r2, 512, small
    mov %r3, 256
small:
    jlt %r3, 2, hash
    mov %r2, 1
    mov %r4, %r1
    add %r4, 2
    ja outer
inner:
    ldxh %r8, [%r0-2]
    mov %r7, %r6
    jle32 %r8, %r5, place
    stxh [%r0], %r8
    mov %r7, 0
    add %r0, -2
    add %r6, -1
    jne %r6, 0, inner
place:
    lsh %r7, 1
    mov %r0, %r1
    add %r0, %r7
    stxh [%r0], %r5
    add %r4, 2
    add %r2, 1
    jlt %r2, %r3, outer
    ja hash
outer:
    mov %r5, %r2
    lsh %r5, 1
    mov %r0, %r1
    add %r0, %r5
    ldxh %r5, [%r0]
    mov %r0, %r4
    mov %r6, %r2
    ja inner
hash:
    lddw %r0, 0xcbf29ce484222325
    jeq %r3, 0, out
    lddw %r2, 0xcbf29ce484222325
    mov %r4, 0
    lddw %r5, 0x100000001b3
    mov %r0, %r1
hashing:
    ldxh %r6, [%r0]
    xor %r2, %r6
    mul %r2, %r5
    add %r0, 2
    add %r4, 1
    jlt %r4, %r3, hashing
    lsh %r2, 32
    rsh %r2, 32
    ldxh %r0, [%r1]
    lsh %r0, 32
    or %r0, %r2
    lsh %r3, 1
    add %r1, %r3
    ldxh %r1, [%r1-2]
    lsh %r1, 48
    or %r0, %r1
out:
    exit";

/// Every input length up to `n` bytes, ascending and descending (the inner loop of `SORT`
/// runs to the start on the second).
fn every_length_both_ways(text: &str, n: usize) {
    for len in 0..=n {
        let mut m = bytes(len);
        assert_sound(text, &m);
        if let Some(i) = m.input.as_mut() {
            i.reverse();
        }
        assert_sound(text, &m);
    }
}

#[test]
fn same_step_pointer_and_counter_prove_a_downward_loop() {
    let (_, a) = analyse(SORT);
    // At the inner loop's head the pointer is linked to the counter, not (as on entry) to the
    // outer index, from which both move away every iteration.
    let at_head = a.registers_at(9).map(|r| r.relations(0));
    assert!(
        at_head
            .as_ref()
            .is_some_and(|r| r.contains(&Relation::Link {
                reg: 6,
                shift: 1,
                offset: layout::vm_addr(layout::INPUT, 0),
            })),
        "{at_head:?}"
    );
    // 9 and 12: `v[j - 1]` and `v[j]` in the inner loop; 20, 29 and 50 were proven before;
    // 42 (the hash loop) and 55 (`v[n - 1]`) by `n <= len / 2`, kept through the `min`.
    assert_eq!(proven(SORT), vec![9, 12, 20, 29, 42, 50, 55]);
    every_length_both_ways(SORT, 64);
}

#[test]
fn same_step_mutants_stay_checked() {
    // Each with the accesses it still proves: never 9, nor 12 where the pointer may reach
    // the word before the input. The hash loop after the sort (42, 55) is untouched by them.
    let mutants: [(&str, &str, &[usize]); 5] = [
        // Reads v[j - 2]: one word before the input when j = 1.
        (
            "ldxh %r8, [%r0-2]",
            "ldxh %r8, [%r0-4]",
            &[12, 20, 29, 42, 50, 55],
        ),
        // The pointer steps by 3 bytes per counter step: no fixed relation.
        ("add %r0, -2", "add %r0, -3", &[20, 29, 42, 50, 55]),
        // Runs on to j = 0 (signed j >= 0): v[-1] is read.
        (
            "jne %r6, 0, inner",
            "jsgt %r6, -1, inner",
            &[29, 42, 50, 55],
        ),
        // One path keeps the counter while the pointer moves on (one instruction more: the
        // accesses after it move up by one).
        (
            "add %r6, -1",
            "jeq %r8, 7, skip\n    add %r6, -1\nskip:",
            &[21, 30, 43, 51, 56],
        ),
        // The counter is tested in 32 bits, where 2^32 - 1 and up are negative.
        (
            "jne %r6, 0, inner",
            "jsgt32 %r6, -1, inner",
            &[29, 42, 50, 55],
        ),
    ];
    for (from, to, still) in mutants {
        let text = SORT.replacen(from, to, 1);
        assert_ne!(text, SORT);
        assert_eq!(proven(&text), still, "{to}");
        every_length_both_ways(&text, 40);
    }
}

#[test]
fn a_halved_length_survives_the_min_and_bounds_the_hash_loop() {
    // `n = min(len / 2, 256)` is bounded by `(End - v) >> 1` and, once `r2` is overwritten
    // (the `lddw`), also by the unshifted `End - v + c` a rebase derives through `len`; the
    // first is the one the pointer stepping by 2 up to `n` needs, whatever their shifts.
    let mutants: [(&str, &str, &[usize]); 4] = [
        // n = 257 for a 512-byte input: the hash loop reads v[256], past the end.
        ("mov %r3, 256", "mov %r3, 257", &[]),
        // n = len: twice the words the input holds.
        ("rsh %r3, 1", "rsh %r3, 0", &[]),
        // The hash loop runs to i <= n: v[n] is read.
        ("jlt %r4, %r3, hashing", "jle %r4, %r3, hashing", &[55]),
        // v[n] instead of v[n - 1].
        ("ldxh %r1, [%r1-2]", "ldxh %r1, [%r1]", &[42]),
    ];
    for (from, to, hash_loop) in mutants {
        let text = SORT.replacen(from, to, 1);
        assert_ne!(text, SORT);
        let hash: Vec<usize> = proven(&text)
            .into_iter()
            .filter(|&i| i == 42 || i == 55)
            .collect();
        assert_eq!(hash, hash_loop, "{to}");
        for len in [0, 1, 2, 3, 4, 63, 64, 510, 511, 512, 513, 514, 600] {
            assert_sound(&text, &bytes(len));
        }
    }
}

/// clang -O2's walk into a length-prefixed frame (tests/elf/loops/packet.c): the guard is on
/// the sum `p + 2 + size <= end`, and the header's own check, `size > 13`, on the length alone.
const PREFIXED: &str = "
    mov %r0, 0
    mov %r6, %r1
    add %r6, %r2
    mov %r8, %r1
    mov %r3, %r8
    add %r3, 2
    jgt %r3, %r6, out
    ldxb %r1, [%r8]
    ldxb %r7, [%r8+1]
    lsh %r7, 8
    or %r7, %r1
    mov %r1, %r7
    add %r1, %r8
    add %r1, 2
    jgt %r1, %r6, out
    jle %r7, 13, out
    ldxb %r0, [%r8+14]
    ldxb %r3, [%r8+15]
    add %r0, %r3
out:
    exit";

/// Frames of every length up to `n` whose length prefix says every size up to `n` (the
/// prefix little-endian, as `PREFIXED` reads it).
fn every_prefix(text: &str, n: usize) {
    for len in 0..=n {
        for size in 0..=n {
            let mut frame: Vec<u8> = (0..len).map(|i| i as u8).collect();
            if len >= 2 {
                frame[0] = size as u8;
                frame[1] = 0;
            }
            assert_sound(text, &Memory::input(&frame));
        }
    }
}

#[test]
fn a_guard_on_a_sum_bounds_a_later_offset() {
    // 7 and 8: the prefix behind `p + 2 <= end`; 16 and 17: bytes 14 and 15 behind
    // `p + 2 + size <= end` and `size >= 14`.
    assert_eq!(proven(PREFIXED), vec![7, 8, 16, 17]);
    every_prefix(PREFIXED, 20);
    let mutants: [(&str, &str, &[usize]); 4] = [
        // `size >= 13`: byte 15 may be the end.
        ("jle %r7, 13, out", "jle %r7, 12, out", &[7, 8, 16]),
        // The guard on `p + 1 + size`: one byte less behind it.
        ("add %r1, 2\n    jgt", "add %r1, 1\n    jgt", &[7, 8, 16]),
        // The tested size is loaded again after the guard (the load, 15, is proven): no
        // longer the guarded one.
        (
            "jle %r7, 13, out",
            "ldxb %r7, [%r8+1]\n    jle %r7, 13, out",
            &[7, 8, 15],
        ),
        // The guard on the wrong side: only frames that run past the end go on.
        ("jgt %r1, %r6, out", "jge %r6, %r1, out", &[7, 8]),
    ];
    for (from, to, still) in mutants {
        let text = PREFIXED.replacen(from, to, 1);
        assert_ne!(text, PREFIXED);
        assert_eq!(proven(&text), still, "{to}");
        every_prefix(&text, 20);
    }
}

/// Bounds chained through registers with a shift of 63 add up to more than `i128` holds: the
/// sum must give up, not wrap negative and "prove" a load 4 KiB past a 2-byte input (found in
/// review: debug builds panicked, release builds proved it).
const SHIFTED_BOUNDS_PAST_I128: &str = "
    mov %r6, %r2
    and %r6, 1
    mov %r9, %r2
    rsh %r9, 63
    mov %r8, 0
    jgt %r8, %r9, out
    lddw %r5, 0x7fffffffffffffff
    add %r8, %r5
    mov %r7, %r2
    jgt %r7, %r8, out
    add %r7, %r5
    mov %r4, %r7
    add %r4, 3
    jgt %r6, %r4, out
    mov %r4, 0
    mov %r3, %r6
    lsh %r3, 63
    mov %r0, %r1
    add %r0, %r3
    ldxdw %r0, [%r0+4096]
out:
    exit";

#[test]
fn bounds_that_add_up_past_i128_prove_nothing() {
    assert_eq!(proven(SHIFTED_BOUNDS_PAST_I128), Vec::<usize>::new());
    for len in [0, 1, 2, 100, 5000] {
        assert_sound(SHIFTED_BOUNDS_PAST_I128, &bytes(len));
    }
}
