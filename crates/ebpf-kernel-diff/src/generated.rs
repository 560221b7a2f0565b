//! The generated set: structured programs from `ebpf-testgen` made for the kernel — register
//! and stack only, every ALU/JMP/JMP32 form (sdiv/smod, movsx, bswap included), stack loads
//! (sign-extending too), atomics, local calls, counted loops, edge values, values hidden from
//! the kernel's constant tracking, `r0` folded to 32 bits before the main function exits, and
//! code that never runs behind jumps on constants. Some of that dead code is replaced by
//! slots that do not decode but that the kernel accepts where they never run (`mov` with
//! offset 1, a reserved field, register 11, `le17`).
//!
//! A program that fails (a mismatch, or loaded by the kernel and not by us) is shrunk with
//! proptest's own shrinking to a minimal program that still fails, which is what is reported.

use ebpf_testgen::{StructuredConfig, StructuredProgram, structured_program};
use ebpf_vm::isa::CpuVersion;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::compare::{self, Ours, Subject, Verdict};

/// What kernel-diff generates: see the module comment. 64 bytes of stack per frame and at
/// most 3 sub-functions keep the deepest call chain within the kernel's 512 bytes.
pub(crate) fn config() -> StructuredConfig {
    StructuredConfig {
        input_len: 0,
        stack_bytes: 64,
        statements: 8,
        depth: 3,
        max_iterations: 4,
        functions: 3,
        max_cpu: CpuVersion::V4,
        kernel_compatible: true,
        fold_r0: true,
        opaque_values: true,
        dead_code: true,
        ..StructuredConfig::default()
    }
}

/// Slots that do not decode for us and that the kernel accepts where they never run (it checks
/// them only on paths it explores).
const UNDECODABLE: [[u8; 8]; 4] = [
    [0xbf, 0x10, 1, 0, 0, 0, 0, 0], // mov r0, r1 with offset 1 (the kernel's addr_space_cast)
    [0x07, 0x30, 0, 0, 1, 0, 0, 0], // add r0, 1 with src 3
    [0xb7, 0x0b, 0, 0, 1, 0, 0, 0], // mov r11, 1
    [0xd4, 0x00, 0, 0, 17, 0, 0, 0], // le17 r0
];

/// The bytes of a generated program: every other dead slot becomes an undecodable one.
fn bytes(s: &StructuredProgram) -> Vec<u8> {
    let mut bytes = s.program.to_bytes();
    for (i, &pc) in s.dead.iter().enumerate() {
        if i % 2 == 0 {
            let slot = UNDECODABLE[(i / 2 + pc) % UNDECODABLE.len()];
            bytes[pc * 8..pc * 8 + 8].copy_from_slice(&slot);
        }
    }
    bytes
}

fn subject(index: usize, s: &StructuredProgram) -> Subject {
    let bytes = bytes(s);
    Subject {
        name: format!("generated #{index}"),
        ours: Ours::Bytes(bytes.clone()),
        kernel: bytes,
        mem: None,
        budget: s.max_steps.saturating_add(16),
        incomparable: None,
    }
}

/// Whether a verdict is a failure of ours.
fn fails(v: &Verdict) -> bool {
    matches!(v, Verdict::Mismatch(_) | Verdict::RejectedOnlyByUs(_))
}

/// Program `index` of the generator seeded with `seed`, and its verdict; a failing one comes
/// back shrunk, with the verdict of the smallest failing program found. Each index has a
/// generator of its own (seeded from `seed` and the index), so programs can be made and
/// compared in any order and on any thread, and a run is repeatable.
pub(crate) fn one(seed: u64, index: usize) -> anyhow::Result<(Subject, Verdict)> {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&(index as u64).to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = structured_program(config());
    let mut tree = strategy
        .new_tree(&mut runner)
        .map_err(|e| anyhow::anyhow!("program {index}: the generator gave up: {e}"))?;
    let first = subject(index, &tree.current());
    let verdict = compare::compare(&first)?;
    if !fails(&verdict) {
        return Ok((first, verdict));
    }
    let (smallest, verdict) = shrink(&mut tree, verdict, |s| {
        let verdict = compare::compare(&subject(index, s))?;
        Ok::<_, ebpf_kernel::KernelError>(fails(&verdict).then_some(verdict))
    })?;
    let mut shrunk = subject(index, &smallest);
    shrunk.name = format!("generated #{index}, shrunk");
    Ok((shrunk, verdict))
}

/// proptest's shrinking loop: simplify while the program still fails (`check` returns what
/// failed), complicate back when a simplification passed. At most 2,000 steps. Returns the
/// smallest failing program and its failure.
fn shrink<F, E>(
    tree: &mut impl ValueTree<Value = StructuredProgram>,
    failure: F,
    mut check: impl FnMut(&StructuredProgram) -> Result<Option<F>, E>,
) -> Result<(StructuredProgram, F), E> {
    let mut best = (tree.current(), failure);
    if !tree.simplify() {
        return Ok(best);
    }
    for _ in 0..2000 {
        let candidate = tree.current();
        match check(&candidate)? {
            Some(failure) => {
                best = (candidate, failure);
                if !tree.simplify() {
                    break;
                }
            }
            None => {
                if !tree.complicate() {
                    break;
                }
            }
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shrinking keeps the failure and makes the program small: "fails" here means "has an
    /// atomic instruction", and the smallest such program is a prologue and one atomic.
    #[test]
    fn shrinking_finds_a_small_failing_program() {
        let has_atomic = |s: &StructuredProgram| {
            s.program
                .insns()
                .iter()
                .any(|i| matches!(i, ebpf_vm::isa::Insn::Atomic { .. }))
        };
        let mut runner = TestRunner::deterministic();
        let strategy = structured_program(config());
        let mut tree = loop {
            let tree = strategy.new_tree(&mut runner).unwrap();
            let s = tree.current();
            if has_atomic(&s) && s.program.len() > 80 {
                break tree;
            }
        };
        let before = tree.current().program.len();
        let (small, ()) =
            shrink(&mut tree, (), |s| Ok::<_, ()>(has_atomic(s).then_some(()))).unwrap();
        assert!(has_atomic(&small));
        assert!(
            small.program.len() * 2 < before,
            "{} -> {} instructions",
            before,
            small.program.len()
        );
    }

    /// Every replacement is undecodable for us, and the dead slots are whole slots.
    #[test]
    fn dead_slots_become_undecodable_slots() {
        for slot in UNDECODABLE {
            assert!(ebpf_vm::isa::decode(&slot).is_err(), "{slot:02x?}");
        }
        let mut runner = TestRunner::deterministic();
        let strategy = structured_program(config());
        let mut replaced = 0;
        for _ in 0..50 {
            let s = strategy.new_tree(&mut runner).unwrap().current();
            let b = bytes(&s);
            replaced += s
                .dead
                .iter()
                .filter(|&&pc| ebpf_vm::isa::decode_at(&b, pc).is_err())
                .count();
            // Everything else is untouched.
            let plain = s.program.to_bytes();
            for pc in (0..plain.len() / 8).filter(|pc| !s.dead.contains(pc)) {
                assert_eq!(plain[pc * 8..pc * 8 + 8], b[pc * 8..pc * 8 + 8]);
            }
        }
        assert!(replaced > 10, "{replaced}");
    }
}
