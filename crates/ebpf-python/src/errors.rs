//! The package's exceptions — `Error`, and its subclasses `LoadError` and `Trap`, each with
//! `kind` (a short name) and `pc` (an int or `None`) — and the conversion of the facade's errors
//! into them.

use ebpf_vm::TrapKind;
use pyo3::prelude::*;
use pyo3::{PyErr, Python, create_exception};

create_exception!(
    ebpf_vm,
    Error,
    pyo3::exceptions::PyException,
    "Anything ebpf_vm reports: `kind` names what happened, `pc` is the instruction or None."
);
create_exception!(
    ebpf_vm,
    LoadError,
    Error,
    "A program could not be loaded (kind: decode, asm, elf, rejected, needs_budget, \
     invalid_config, engine_unavailable, compile, uses_maps, too_large)."
);
create_exception!(
    ebpf_vm,
    Trap,
    Error,
    "A run ended with a trap (kind: out_of_bounds, misaligned_atomic, budget_exhausted, \
     call_depth_exceeded, unknown_helper, helper_failed, invalid_instruction, region_too_large)."
);

/// An exception of type `E` with `kind` and `pc` set.
fn with_details<E: pyo3::PyTypeInfo>(
    py: Python<'_>,
    message: String,
    kind: &str,
    pc: Option<usize>,
) -> PyErr {
    let err = PyErr::new::<E, _>(message);
    let value = err.value(py);
    // Setting attributes on a fresh exception instance cannot fail; if it somehow did, the
    // exception still carries its message.
    let _ = value.setattr("kind", kind);
    let _ = value.setattr("pc", pc);
    err
}

/// `LoadError` for a failed load.
pub(crate) fn load_error(py: Python<'_>, e: &ebpf_vm::LoadError) -> PyErr {
    use ebpf_vm::LoadError as E;
    let (kind, pc) = match e {
        E::Decode(d) => ("decode", Some(d.pc)),
        E::Asm(_) => ("asm", None),
        E::Elf(_) => ("elf", None),
        E::Rejected(r) => ("rejected", r.errors().next().map(|f| f.pc)),
        E::NeedsBudget => ("needs_budget", None),
        E::InvalidConfig(_) => ("invalid_config", None),
        E::EngineUnavailable(_) => ("engine_unavailable", None),
        E::Compile { .. } => ("compile", None),
        E::UsesMaps { .. } => ("uses_maps", None),
        E::TooLarge { .. } => ("too_large", None),
        _ => ("other", None),
    };
    with_details::<LoadError>(py, e.to_string(), kind, pc)
}

/// `Trap` for a run that trapped; `cause` is the exception a Python helper raised, if that
/// is what ended the run.
pub(crate) fn trap(py: Python<'_>, t: &ebpf_vm::Trap, cause: Option<PyErr>) -> PyErr {
    let err = with_details::<Trap>(py, t.to_string(), trap_kind(&t.kind), Some(t.pc));
    set_address(py, &err, &t.kind);
    if matches!(t.kind, TrapKind::HelperFailed { .. }) {
        err.set_cause(py, cause);
    }
    err
}

/// The `kind` of a trap.
pub(crate) fn trap_kind(kind: &TrapKind) -> &'static str {
    match kind {
        TrapKind::OutOfBounds { .. } => "out_of_bounds",
        TrapKind::MisalignedAtomic { .. } => "misaligned_atomic",
        TrapKind::BudgetExhausted { .. } => "budget_exhausted",
        TrapKind::CallDepthExceeded { .. } => "call_depth_exceeded",
        TrapKind::UnknownHelper { .. } => "unknown_helper",
        TrapKind::HelperFailed { .. } => "helper_failed",
        TrapKind::InvalidInstruction { .. } => "invalid_instruction",
        TrapKind::RegionTooLarge { .. } => "region_too_large",
        _ => "other",
    }
}

/// `Trap` for a helper's failed memory access (no pc: the run's trap will have it).
pub(crate) fn memory_error(py: Python<'_>, kind: &TrapKind) -> PyErr {
    let err = with_details::<Trap>(py, kind.to_string(), trap_kind(kind), None);
    set_address(py, &err, kind);
    err
}

/// `address` for the kinds that have one (the stub documents it for those only).
fn set_address(py: Python<'_>, err: &PyErr, kind: &TrapKind) {
    if let TrapKind::OutOfBounds { addr, .. } | TrapKind::MisalignedAtomic { addr, .. } = *kind {
        let _ = err.value(py).setattr("address", addr);
    }
}
