//! [`Executable`]: the engine interface — what a program prepared by any engine offers, so
//! that the facade, and an engine that wraps others (a tiered one, say), hold programs of every
//! engine alike.
//!
//! Each engine has its own way to prepare a program (`Interpreter::new`, the JITs' `compile`
//! with their options and their own error type); what they share is how the result runs. A
//! new engine implements this trait for its prepared program, and the facade adds one arm
//! where it picks engines.

use core::fmt;

use crate::{Exit, Helpers, Limits, MemoryMap, Stack, Trap};

/// A program an engine has prepared (pre-decoded or compiled), ready to run any number of
/// times, from any number of threads at once, each run with its own memory.
///
/// Every implementation runs with exactly the contract's semantics: for the same program,
/// memory, arguments, helpers and limits, every engine returns the same [`Exit`] (`r0` and
/// instruction count) or the same [`Trap`] (kind and pc), and leaves memory the same. The
/// interpreter (`ebpf-interp`) is the reference.
pub trait Executable: Send + Sync + fmt::Debug {
    /// Runs the program on a fresh stack (see [`Executable::run_in`]).
    ///
    /// `memory` holds every region the program may touch except the stack, which the run
    /// allocates itself (`limits.stack_size()` bytes, zeroed). `args` are `r1` and `r2`;
    /// `r10` is the top of the entry frame; every other register starts at 0. A helper that
    /// panics makes this call panic with the same payload.
    fn run(
        &self,
        memory: MemoryMap<'_>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
    ) -> Result<Exit, Trap> {
        let mut stack = Stack::new();
        // The map may hold the stack for no longer than the stack lives.
        let mut memory: MemoryMap<'_> = memory;
        self.run_in(&mut memory, args, helpers, limits, &mut stack)
    }

    /// Runs the program with the stack region `stack.region(limits.stack_size())`, which the
    /// caller lends: as [`Executable::run`] when that region is all zero (what the caller
    /// promises, by keeping [`Stack`]'s invariant), and without allocating once the stack has
    /// been used for a run of the same size. The run may leave its data in the region: the
    /// caller scrubs it before lending the stack again.
    ///
    /// The map is lent, not moved (a move copies a few hundred bytes per run); the run maps
    /// the stack into it at [`crate::layout::STACK`] (replacing what is there), which is why
    /// the stack is borrowed as long as the map's regions are. The map holds the same regions
    /// afterwards, the stack's included.
    fn run_in<'m>(
        &self,
        memory: &mut MemoryMap<'m>,
        args: [u64; 2],
        helpers: &Helpers,
        limits: &Limits,
        stack: &'m mut Stack,
    ) -> Result<Exit, Trap>;

    /// Bytes of machine code the engine generated for the program (0 for an engine that
    /// generates none).
    fn code_size(&self) -> usize {
        0
    }
}
