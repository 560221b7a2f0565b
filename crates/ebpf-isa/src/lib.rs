//! `ebpf-isa`: eBPF instructions as data (RFC 9669).
//!
//! What it is for: turning bytes into typed instructions and back ([`decode`], [`encode`]),
//! text into instructions and back in two syntaxes — the bpf_conformance one ([`assemble`],
//! [`disassemble`]) and the LLVM/kernel one that `llvm-objdump` prints ([`Insn::llvm`]) — and
//! writing programs in Rust ([`builder`]). One table ([`table::SPECS`]) drives all of it, so
//! the decoder, the encoder, the assembler and the disassemblers cannot disagree.
//!
//! What it is not for: running programs, checking that they are safe, or knowing their control
//! flow. Those live in `ebpf-interp`, `ebpf-verifier` and `ebpf-cfg`, which all build on this
//! crate. It has no dependencies and is `#![no_std]` (with `alloc`).
//!
//! ```
//! use ebpf_isa::{assemble, decode, disassemble};
//!
//! let program = assemble("mov32 %r0, 1\nadd32 %r0, 2\nexit").unwrap();
//! let bytes = program.to_bytes();
//! assert_eq!(bytes.len(), 24);
//! assert_eq!(decode(&bytes).unwrap(), program);
//! assert_eq!(disassemble(&program), "mov32 %r0, 1\nadd32 %r0, 2\nexit\n");
//! ```

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod asm;
pub mod builder;
mod codec;
mod disasm;
mod insn;
mod llvm;
mod program;
mod quote;
pub mod table;

pub use asm::{AsmError, AsmErrorKind, assemble, assemble_lines};
pub use codec::{DecodeError, DecodeErrorKind, RawInsn, SLOT_SIZE, decode, decode_at, encode};
pub use disasm::{Conformance, disassemble};
pub use insn::{
    AluOp, AtomicOp, ByteOrder, CallKind, Cond, Imm64Kind, Insn, Operand, PacketAddr, Reg,
    SignExtend, Size, SwapWidth, Width,
};
pub use llvm::{Llvm, disassemble_llvm};
pub use program::Program;
pub use quote::{Quoted, quoted};
pub use table::{CpuVersion, Field, Group};
