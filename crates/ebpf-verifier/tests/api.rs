//! The verifier's API beyond single cases: the default configuration and its 1,000,000-slot
//! limit (too large for a case file), `Rejected`'s summary, and how policies show up.

use ebpf_isa::{AluOp, Insn, Operand, Program, Reg, Width};
use ebpf_verifier::{
    FindingKind, Policy, PolicyView, Severity, Termination, Verifier, VerifierConfig,
};

fn mov_r0(imm: i32) -> Insn {
    Insn::Alu {
        width: Width::W64,
        op: AluOp::Mov,
        dst: Reg::R0,
        src: Operand::Imm(imm),
    }
}

/// `slots - 1` movs and an exit.
fn straight_line(slots: usize) -> Program {
    let mut insns = vec![mov_r0(1); slots - 1];
    insns.push(Insn::Exit);
    Program::from_insns(insns)
}

#[test]
fn the_default_configuration() {
    let c = VerifierConfig::default();
    assert_eq!(c.max_slots, 1_000_000);
    assert_eq!(c.unreachable, Severity::Warning);
    assert_eq!(c.helpers, None);
    assert_eq!(c.max_call_depth, 8);
}

#[test]
fn a_million_slots_are_accepted_and_one_more_is_not() {
    let verifier = Verifier::new(VerifierConfig::default());
    let ok = verifier.verify(straight_line(1_000_000)).unwrap();
    assert_eq!(
        ok.termination(),
        Termination::Bounded {
            max_instructions: 1_000_000
        }
    );
    let too_long = straight_line(1_000_001);
    let bytes = too_long.to_bytes();
    for rejected in [
        verifier.verify(too_long).unwrap_err(),
        verifier.verify_bytes(&bytes).unwrap_err(),
    ] {
        let f = rejected.findings();
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].to_string(),
            "pc 0: the program has 1000001 slots; the limit is 1000000"
        );
        assert_eq!(
            f[0].kind,
            FindingKind::TooLong {
                slots: 1_000_001,
                max: 1_000_000
            }
        );
    }
}

/// Junk in dead code is accepted with a warning per slot, however much of it there is (the
/// lookup of the stand-ins was quadratic: 40,000 slots took 8.7 s).
#[test]
fn two_hundred_thousand_undecodable_dead_slots_are_accepted() {
    let junk = 200_000;
    let mut bytes = Program::from_insns(vec![mov_r0(0), Insn::Exit]).to_bytes();
    for _ in 0..junk {
        bytes.extend_from_slice(&[0xff, 0, 0, 0, 0, 0, 0, 0]);
    }
    let verified = Verifier::new(VerifierConfig::default())
        .verify_bytes(&bytes)
        .unwrap();
    assert_eq!(verified.undecodable(), (2..2 + junk).collect::<Vec<_>>());
    let decode = verified
        .warnings()
        .iter()
        .filter(|f| matches!(f.kind, FindingKind::Decode(_)))
        .count();
    assert_eq!(decode, junk);
}

#[test]
fn rejected_summarises_the_first_error_and_counts_the_rest() {
    let verifier = Verifier::new(VerifierConfig::default());
    let one = verifier
        .verify(ebpf_isa::assemble("exit").unwrap())
        .unwrap_err();
    assert_eq!(one.to_string(), "pc 0: r0 is read before it is written");

    // Three errors and a warning: the warning is not counted.
    let text = "mov %r0, 1\ndiv %r0, 0\nadd %r0, %r6\nadd %r0, %r7\nadd %r0, %r8\nexit";
    let many = verifier
        .verify(ebpf_isa::assemble(text).unwrap())
        .unwrap_err();
    assert_eq!(many.findings().len(), 4);
    assert_eq!(many.errors().count(), 3);
    assert_eq!(
        many.to_string(),
        "pc 2: r6 is read before it is written (and 2 more errors)"
    );
    let two = "mov %r0, %r6\nadd %r0, %r7\nexit";
    let two = verifier
        .verify(ebpf_isa::assemble(two).unwrap())
        .unwrap_err();
    assert_eq!(
        two.to_string(),
        "pc 0: r6 is read before it is written (and 1 more error)"
    );
}

struct Named;

impl Policy for Named {
    fn name(&self) -> &str {
        "named"
    }

    fn check(&self, _: &PolicyView<'_>, out: &mut Vec<(usize, Severity, String)>) {
        out.push((1, Severity::Warning, "a note".into()));
    }
}

#[test]
fn policy_findings_are_typed_and_named() {
    let verifier = Verifier::new(VerifierConfig::default()).with_policy(Named);
    assert!(format!("{verifier:?}").contains("\"named\""));
    let ok = verifier
        .verify(ebpf_isa::assemble("mov %r0, 0\nexit").unwrap())
        .unwrap();
    let w = &ok.warnings()[0];
    assert_eq!((w.pc, w.severity), (1, Severity::Warning));
    assert_eq!(
        w.kind,
        FindingKind::Policy {
            name: "named".into(),
            message: "a note".into()
        }
    );
    assert_eq!(w.to_string(), "pc 1: named: a note");
}
