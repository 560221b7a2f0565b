//! `ebpf-testgen`: proptest strategies for eBPF instructions, byte strings and programs, shared
//! by the property and differential tests of every crate in the workspace.
//!
//! What it is for: generating test inputs.
//!
//! - single values: [`any_reg`], [`any_imm`], [`any_off`], [`any_imm64`] (biased towards
//!   boundary values);
//! - instructions of every form of [`ebpf_isa::table::SPECS`] ([`any_insn`],
//!   [`insn_of_form`], [`any_insn_where`]): the forms are read from the table, so a new row is
//!   generated without touching this crate;
//! - programs without run-time guarantees ([`any_program`], [`closed_program`]) for codecs,
//!   text round trips and control-flow analyses, and the same with chosen immediates
//!   ([`with_immediates`], with [`blinding_edge_imm`] for the JIT's constant blinding);
//! - byte strings for decoders ([`arbitrary_bytes`], [`mutated_bytes`], …), mostly valid so
//!   that every decode error is reached;
//! - runnable programs ([`structured_program`]) that stay in bounds and terminate, for the
//!   interpreter, the verifier and the JITs' differential tests;
//! - programs that guard their input accesses, and their off-by-one mutants ([`parser`],
//!   [`counted_loop`]), for static facts and the engines that rely on them;
//! - programs that once broke an engine or the facts, with the memory they broke on
//!   ([`CLAIMED_END_IN_FIXED_REGION`], [`run_claimed_end`]), for the tests of every crate
//!   that must keep them working;
//! - a step-by-step runner ([`trace`]) that shows the registers before every instruction, for
//!   checking static facts against executions (tests compare its outcome with the
//!   interpreter's).
//!
//! What it is not for: production code (it is a test-only dependency, never a normal one of a
//! library), running or checking programs (that is `ebpf-interp` and `ebpf-verifier`; the
//! small evaluator in this crate's own tests exists only to check the generators' promises),
//! or fuzzing with coverage feedback.
//!
//! ```
//! use ebpf_testgen::{StructuredConfig, any_insn, structured_program};
//! use proptest::prelude::*;
//! use proptest::strategy::ValueTree;
//! use proptest::test_runner::TestRunner;
//!
//! let mut runner = TestRunner::deterministic();
//! let insn = any_insn().new_tree(&mut runner).unwrap().current();
//! assert_eq!(ebpf_isa::decode(&ebpf_isa::encode(&[insn])).unwrap().insns(), &[insn]);
//!
//! let s = structured_program(StructuredConfig::default())
//!     .new_tree(&mut runner)
//!     .unwrap()
//!     .current();
//! assert_eq!(s.program.insns().last(), Some(&ebpf_isa::Insn::Exit));
//! ```

#![forbid(unsafe_code)]

mod bytes;
#[cfg(test)]
mod check;
mod guarded;
mod insn;
mod program;
mod regress;
mod structured;
mod trace;

pub use bytes::{
    Mutation, any_mutation, arbitrary_bytes, mutated_bytes, near_valid_slot, near_valid_slots,
    raw_bytes, valid_bytes,
};
pub use guarded::{
    ClampMutant, Guard, OffByOne, ParserStep, clamped_walk, counted_loop, off_by_one, parser,
    parser_step,
};
pub use insn::{
    INTERESTING_I16, INTERESTING_I32, INTERESTING_U64, any_form, any_imm, any_imm64, any_insn,
    any_insn_where, any_off, any_reg, blinding_edge_imm, blinding_edge_imm64, forms, forms_where,
    insn_of_form, insn_of_form_using, reg_in,
};
pub use program::{any_program, any_program_where, closed_program, with_immediates};
pub use regress::{
    CLAIMED_END_DECLARED_LEN, CLAIMED_END_IN_FIXED_REGION, CLAIMED_END_RODATA,
    CLAIMED_END_STACK_ACCESS, CLAIMED_ENDS, claimed_end_input, run_claimed_end,
};
pub use structured::{
    GENERAL_REGS, INPUT_REG, MAX_DEPTH, MAX_FUNCTIONS, MAX_ITERATIONS, StructuredConfig,
    StructuredProgram, input_bytes, structured_program, structured_with_input,
};
pub use trace::{Step, trace};
