//! Programs that once broke an engine or the facts, shared by the tests of every crate that
//! must keep them working (the analysis and both JITs), with the memory they break on.

use ebpf_abi::{Exit, MemoryMap, Region, Trap, layout};

/// A loop over read-only data up to an end address the input claims (its first 8 bytes),
/// whose body also indexes the stack by how far that end lies past the data's start: with an
/// end past 64 bytes, the stack access is past the stack's top on the first iteration.
///
/// An entry that declares the data `Fixed` at [`CLAIMED_END_DECLARED_LEN`] bytes admits a run
/// that maps more ([`CLAIMED_END_RODATA`]); a version of the loop solved as if the data ended
/// at its declared length once "proved" that stack access and dropped its check (found by
/// review: the versioned copy read and wrote outside the host's stack buffer). Every engine
/// must trap there as the interpreter does, for every end in [`CLAIMED_ENDS`].
pub const CLAIMED_END_IN_FIXED_REGION: &str = "
    mov %r0, 0
    ldxdw %r6, [%r1]
    lddw %r8, 0x100000000
    jlt %r6, %r8, out
    mov %r7, %r8
loop:
    jge %r7, %r6, out
    ldxb %r4, [%r7]
    add %r0, %r4
    mov %r3, %r6
    sub %r3, %r8
    mov %r5, %r10
    add %r5, -128
    add %r5, %r3
    ldxdw %r4, [%r5+56]
    add %r7, 1
    ja loop
out:
    exit";

/// The index of [`CLAIMED_END_IN_FIXED_REGION`]'s stack access.
pub const CLAIMED_END_STACK_ACCESS: usize = 13;

/// How long the entry declares the read-only data of [`CLAIMED_END_IN_FIXED_REGION`]
/// (`RegionSpec::Fixed { len, writable: false }` at `layout::RODATA`): shorter than mapped.
pub const CLAIMED_END_DECLARED_LEN: u64 = 64;

/// The read-only data a run of [`CLAIMED_END_IN_FIXED_REGION`] maps: 128 bytes of 1.
pub const CLAIMED_END_RODATA: [u8; 128] = [1; 128];

/// The ends (byte offsets into the read-only data) each engine runs
/// [`CLAIMED_END_IN_FIXED_REGION`] with: inside the declared length, at it, past it, at the
/// mapped end and past that.
pub const CLAIMED_ENDS: [u64; 9] = [0, 1, 63, 64, 65, 72, 127, 128, 129];

/// The input of [`CLAIMED_END_IN_FIXED_REGION`] for `end`: the claimed end's address.
pub fn claimed_end_input(end: u64) -> [u8; 8] {
    layout::vm_addr(layout::RODATA, end).to_le_bytes()
}

/// Runs [`CLAIMED_END_IN_FIXED_REGION`] with `engine` (its program already made) on the
/// memory of `end`: the input of [`claimed_end_input`] (writable, `r1`/`r2` its start and
/// length) and [`CLAIMED_END_RODATA`] at `layout::RODATA`.
pub fn run_claimed_end(
    engine: impl FnOnce(MemoryMap<'_>, [u64; 2]) -> Result<Exit, Trap>,
    end: u64,
) -> Result<Exit, Trap> {
    let mut input = claimed_end_input(end);
    let args = layout::input_args(input.len() as u64);
    let mut map = MemoryMap::new();
    map.insert(layout::INPUT, Region::Writable(&mut input));
    map.insert(layout::RODATA, Region::ReadOnly(&CLAIMED_END_RODATA));
    engine(map, args)
}
