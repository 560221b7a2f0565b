//! `ebpf-vm`: the facade most users depend on.
//!
//! What it is for: one small API over the workspace's crates. Today that is the instruction
//! set — decoding, encoding, assembling and disassembling programs, re-exported from
//! [`ebpf_isa`] as [`isa`]; the interpreter, the verifier, the JITs and the ELF loader join it
//! behind cargo features as they land, so that an embedder compiles only the engines it uses.
//!
//! What it is not for: logic of its own. Every behaviour lives in the crate that owns it; this
//! crate chooses, configures and wires them together.
//!
//! ```
//! use ebpf_vm::isa;
//!
//! let program = isa::assemble("mov %r0, 42\nexit").unwrap();
//! assert_eq!(isa::disassemble(&program), "mov %r0, 42\nexit\n");
//! ```

#![forbid(unsafe_code)]

/// The instruction set: typed instructions, decoding, encoding, assembly and disassembly.
pub use ebpf_isa as isa;
