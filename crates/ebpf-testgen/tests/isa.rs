//! Property tests of the codec, the conformance syntax and `Program`, over inputs from
//! `ebpf-testgen`: decoding never panics and reports a sensible pc, `decode`/`encode` and
//! `assemble`/`disassemble` are inverse on every kind of generated program, and `Program`'s
//! pc addressing agrees with itself and with `decode_at`.
//!
//! They test `ebpf-isa` but live with the generators: `ebpf-testgen` depends on `ebpf-isa`, so
//! `ebpf-isa` using it in its own tests would close a dependency cycle (the crate graph has
//! none, dev-dependencies included; `cargo xtask tidy` checks).

use std::collections::BTreeSet;

use ebpf_isa::builder::Builder;
use ebpf_isa::{
    DecodeError, DecodeErrorKind, Insn, Program, SLOT_SIZE, assemble, decode, decode_at,
    disassemble, encode,
};
use ebpf_testgen::{
    StructuredConfig, any_insn, any_program, arbitrary_bytes, closed_program, mutated_bytes,
    near_valid_slots, raw_bytes, structured_program, valid_bytes,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// Checks what every decode error must satisfy: a pc inside the input (or just past its last
/// whole slot, for a length error) and a message that names it.
fn check_error(bytes: &[u8], e: &DecodeError) -> Result<(), TestCaseError> {
    let slots = bytes.len() / SLOT_SIZE;
    prop_assert!(e.pc < slots + 1, "pc {} for {} slots", e.pc, slots);
    if !matches!(e.kind, DecodeErrorKind::LengthNotMultipleOf8 { .. }) {
        prop_assert!(e.pc < slots, "pc {} for {} slots", e.pc, slots);
    }
    let message = e.to_string();
    prop_assert!(
        message.starts_with(&format!("pc {}: ", e.pc)),
        "{}",
        message
    );
    Ok(())
}

/// Decodes `bytes`; on success the decoding must be exact (strict decoding means one byte
/// string per program), on failure the error must be sensible.
fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes) {
        Ok(p) => {
            prop_assert_eq!(p.to_bytes(), bytes);
            prop_assert_eq!(p.slot_count() * SLOT_SIZE, bytes.len());
        }
        Err(e) => check_error(bytes, &e)?,
    }
    Ok(())
}

/// `decode(encode(p)) == p` and `encode(decode(b)) == b`.
fn check_codec(p: &Program) -> Result<(), TestCaseError> {
    let bytes = p.to_bytes();
    prop_assert_eq!(bytes.len(), p.slot_count() * SLOT_SIZE);
    prop_assert_eq!(&bytes, &encode(p.insns()));
    let decoded = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, p);
    prop_assert_eq!(decoded.to_bytes(), bytes);
    Ok(())
}

/// `assemble(disassemble(p)) == p`, and the text is one line per instruction.
fn check_text(p: &Program) -> Result<(), TestCaseError> {
    let text = disassemble(p);
    prop_assert_eq!(text.lines().count(), p.len());
    let again = assemble(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    prop_assert_eq!(&again, p, "\n{}", text);
    for insn in p.insns() {
        let line = insn.conformance().to_string();
        let one = assemble(&line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        prop_assert_eq!(one.insns(), &[*insn], "{}", line);
    }
    Ok(())
}

/// `iter`, `at_pc`, `slot_count`, `len` and `decode_at` agree.
fn check_addressing(p: &Program) -> Result<(), TestCaseError> {
    let bytes = p.to_bytes();
    let mut expected_pc = 0;
    for (i, (pc, insn)) in p.iter().enumerate() {
        prop_assert_eq!(pc, expected_pc);
        prop_assert_eq!(Some(insn), p.insns().get(i));
        prop_assert_eq!(p.at_pc(pc), Some(insn));
        prop_assert_eq!(decode_at(&bytes, pc).ok(), Some(*insn));
        if insn.slots() == 2 {
            prop_assert_eq!(p.at_pc(pc + 1), None, "second slot of lddw at {}", pc);
        }
        expected_pc += insn.slots();
    }
    prop_assert_eq!(expected_pc, p.slot_count());
    prop_assert_eq!(p.iter().count(), p.len());
    prop_assert_eq!(p.is_empty(), p.iter().next().is_none());
    prop_assert_eq!(p.at_pc(p.slot_count()), None);
    prop_assert_eq!(p.at_pc(usize::MAX), None);
    let rebuilt: Program = p.insns().iter().copied().collect();
    prop_assert_eq!(&rebuilt, p);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    // ---- (1) decode never panics ----

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in arbitrary_bytes(256)) {
        check_decode(&bytes)?;
    }

    #[test]
    fn decode_never_panics_on_mutated_programs(bytes in mutated_bytes(0..32)) {
        check_decode(&bytes)?;
    }

    #[test]
    fn decode_at_never_panics(bytes in raw_bytes(0..64), pc in prop_oneof![0usize..10, Just(usize::MAX), Just(usize::MAX / 8)]) {
        match decode_at(&bytes, pc) {
            Ok(insn) => prop_assert!((pc + insn.slots()) * SLOT_SIZE <= bytes.len()),
            Err(e) => {
                prop_assert_eq!(e.pc, pc);
                let _ = e.to_string();
            }
        }
    }

    // ---- (2) decode(encode(p)) == p and encode(decode(b)) == b ----

    #[test]
    fn codec_round_trips_any_program(p in any_program(0..64)) {
        check_codec(&p)?;
    }

    #[test]
    fn codec_round_trips_closed_programs(p in closed_program(0..64)) {
        check_codec(&p)?;
    }

    #[test]
    fn codec_round_trips_valid_bytes(bytes in valid_bytes(0..64)) {
        let p = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(encode(p.insns()), bytes);
    }

    #[test]
    fn codec_round_trips_single_instructions(insn in any_insn()) {
        check_codec(&Program::from_insns(vec![insn]))?;
        let mut b = Builder::new();
        b.insn(insn);
        prop_assert_eq!(b.build().ok(), Some(Program::from_insns(vec![insn])));
    }

    // ---- (3) assemble(disassemble(p)) == p ----

    #[test]
    fn text_round_trips_any_program(p in any_program(0..48)) {
        check_text(&p)?;
    }

    #[test]
    fn text_round_trips_closed_programs(p in closed_program(0..48)) {
        check_text(&p)?;
    }

    // ---- (4) Program addressing ----

    #[test]
    fn addressing_is_consistent(p in any_program(0..64)) {
        check_addressing(&p)?;
    }
}

proptest! {
    // Structured programs are bigger; fewer cases keep the file fast.
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_property_holds_for_structured_programs(s in structured_program(StructuredConfig::default())) {
        check_codec(&s.program)?;
        check_text(&s.program)?;
        check_addressing(&s.program)?;
    }

    #[test]
    fn near_valid_slots_decode_or_fail_cleanly(bytes in near_valid_slots(0..32)) {
        check_decode(&bytes)?;
    }
}

/// Disassembled text with a few characters inserted, replaced or deleted.
fn mutated_text() -> impl Strategy<Value = String> {
    const CHARS: &str = "%r0123456789+-[],x:# \nabcdeflmnoqstuvwxyz\u{e9}";
    let edit = (
        any::<prop::sample::Index>(),
        0u8..3,
        prop::sample::select(CHARS.chars().collect::<Vec<_>>()),
    );
    (any_program(1..16), prop::collection::vec(edit, 1..4)).prop_map(|(p, edits)| {
        let mut chars: Vec<char> = disassemble(&p).chars().collect();
        for (at, what, c) in edits {
            let i = at.index(chars.len() + 1);
            match what {
                0 => chars.insert(i, c),
                1 if i < chars.len() => chars[i] = c,
                _ if i < chars.len() => {
                    chars.remove(i);
                }
                _ => {}
            }
        }
        chars.into_iter().collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The assembler never panics, and its errors point at a line of the text.
    #[test]
    fn assemble_never_panics_on_mutated_text(text in mutated_text()) {
        if let Err(e) = assemble(&text) {
            prop_assert!(e.line >= 1 && e.line <= text.lines().count().max(1), "{:?}", e);
            let prefix = format!("line {}: ", e.line);
            prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
        }
    }

    #[test]
    fn assemble_never_panics_on_arbitrary_text(text in "\\PC{0,80}") {
        let _ = assemble(&text);
    }
}

/// The byte-string generators reach every decode error, not just "unknown opcode".
#[test]
fn mutated_bytes_reach_every_decode_error() {
    let mut runner = TestRunner::deterministic();
    let strategy = arbitrary_bytes(256);
    let mut seen = BTreeSet::new();
    let mut decoded = 0;
    for _ in 0..4000 {
        let bytes = strategy.new_tree(&mut runner).unwrap().current();
        let kind = match decode(&bytes) {
            Ok(_) => {
                decoded += 1;
                continue;
            }
            Err(e) => e.kind,
        };
        seen.insert(match kind {
            DecodeErrorKind::LengthNotMultipleOf8 { .. } => "length",
            DecodeErrorKind::UnknownOpcode { .. } => "opcode",
            DecodeErrorKind::ReservedField { .. } => "reserved",
            DecodeErrorKind::InvalidSelector { .. } => "selector",
            DecodeErrorKind::InvalidRegister { .. } => "register",
            DecodeErrorKind::TruncatedLddw => "truncated lddw",
            DecodeErrorKind::MalformedLddw { field: None, .. } => "lddw opcode",
            DecodeErrorKind::MalformedLddw { field: Some(_), .. } => "lddw field",
            _ => "other",
        });
    }
    let all = [
        "length",
        "opcode",
        "reserved",
        "selector",
        "register",
        "truncated lddw",
        "lddw opcode",
        "lddw field",
    ];
    for kind in all {
        assert!(
            seen.contains(kind),
            "never produced a {kind} error: {seen:?}"
        );
    }
    // A fair share of inputs must decode, so the success path is exercised too.
    assert!(decoded > 400, "only {decoded} of 4000 decoded");
}

/// A hand-picked regression: an `lddw` in the last slot, and one whose second slot is not a
/// pseudo-instruction, both fail at the `lddw`'s pc.
#[test]
fn lddw_errors_point_at_the_lddw() {
    let p = Program::from_insns(vec![
        Insn::Exit,
        Insn::LoadImm64 {
            dst: ebpf_isa::Reg::R1,
            kind: ebpf_isa::Imm64Kind::Value,
            imm: 7,
        },
    ]);
    let bytes = p.to_bytes();
    let e = decode(&bytes[..16]).unwrap_err();
    assert_eq!((e.pc, e.kind), (1, DecodeErrorKind::TruncatedLddw));
    let mut bad = bytes.clone();
    bad[16] = 0x95;
    let e = decode(&bad).unwrap_err();
    assert_eq!(e.pc, 1);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::MalformedLddw {
            field: None,
            value: 0x95
        }
    ));
}
