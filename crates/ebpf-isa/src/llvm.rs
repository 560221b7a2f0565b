//! The LLVM/kernel disassembly syntax (placeholder, being written).

use alloc::string::String;
use core::fmt;

use crate::insn::Insn;
use crate::program::Program;

/// Displays one instruction in LLVM syntax.
#[derive(Clone, Copy, Debug)]
pub struct Llvm<'a>(&'a Insn);

impl Insn {
    /// The instruction in the syntax `llvm-objdump -d` prints.
    pub fn llvm(&self) -> Llvm<'_> {
        Llvm(self)
    }
}

impl fmt::Display for Llvm<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.conformance())
    }
}

/// The program in LLVM syntax, one instruction per line.
pub fn disassemble_llvm(program: &Program) -> String {
    let mut out = String::new();
    for insn in program.insns() {
        out.push_str(&alloc::format!("{}\n", insn.llvm()));
    }
    out
}
