//! [`JitError`]: why a program could not be compiled.

use core::fmt;

use ebpf_isa::quoted;

/// Why compilation failed. Run-time errors are `ebpf_abi::Trap`s, never this.
#[derive(Debug)]
#[non_exhaustive]
pub enum JitError {
    /// Cranelift has no backend for the host (or it was compiled out).
    UnsupportedHost {
        /// Cranelift's explanation.
        reason: String,
    },
    /// The target triple is malformed, or Cranelift cannot generate code for it (only 64-bit
    /// x86-64, AArch64, RISC-V 64 and s390x are supported).
    UnsupportedTarget {
        /// The triple as given.
        triple: String,
        /// Why.
        reason: String,
    },
    /// An ISA or code-generation setting was rejected (unknown name or bad value).
    Setting {
        /// The setting's name.
        name: String,
        /// The value given.
        value: String,
        /// Cranelift's explanation.
        reason: String,
    },
    /// Cranelift failed to compile the generated IR.
    Codegen(cranelift_codegen::CodegenError),
    /// Cranelift's module layer failed (declaring, defining or linking a function).
    Module(Box<cranelift_module::ModuleError>),
    /// Writing the object file failed.
    Object(String),
    /// Cranelift (or this crate's use of it) panicked while compiling: a bug, reported as an
    /// error rather than unwinding into the caller. The panic's message.
    Panicked(String),
}

impl fmt::Display for JitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JitError::UnsupportedHost { reason } => {
                write!(f, "cranelift cannot generate code for this host: {reason}")
            }
            // The triple and settings are the user's (a command line, `EBPF_JIT_ISA_FLAGS`), and
            // the reasons may echo them: all go through `quoted`.
            JitError::UnsupportedTarget { triple, reason } => {
                write!(
                    f,
                    "unsupported target `{}`: {}",
                    quoted(triple),
                    quoted(reason)
                )
            }
            JitError::Setting {
                name,
                value,
                reason,
            } => write!(
                f,
                "bad cranelift setting `{}={}`: {}",
                quoted(name),
                quoted(value),
                quoted(reason)
            ),
            JitError::Codegen(e) => write!(f, "cranelift code generation failed: {e}"),
            JitError::Module(e) => write!(f, "cranelift module error: {e}"),
            JitError::Object(e) => write!(f, "writing the object file failed: {e}"),
            JitError::Panicked(e) => write!(f, "cranelift panicked while compiling: {e}"),
        }
    }
}

impl std::error::Error for JitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JitError::Codegen(e) => Some(e),
            JitError::Module(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<cranelift_codegen::CodegenError> for JitError {
    fn from(e: cranelift_codegen::CodegenError) -> JitError {
        JitError::Codegen(e)
    }
}

impl From<cranelift_module::ModuleError> for JitError {
    fn from(e: cranelift_module::ModuleError) -> JitError {
        match e {
            cranelift_module::ModuleError::Compilation(e) => JitError::Codegen(e),
            e => JitError::Module(Box::new(e)),
        }
    }
}
