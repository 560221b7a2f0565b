//! Python callables as helpers: `helper(args, mem)` with `args` the tuple `(r1, …, r5)` and
//! `mem` a [`Memory`] valid during the call; it returns the new `r0` (an int in
//! `0..2**64`). An exception ends the run with `Trap(kind="helper_failed")` whose
//! `__cause__` is that exception — or, if it is the `Trap` a failed `mem` access raised, with
//! that access's trap (`out_of_bounds`, …) at the call's pc (a `Trap` the helper caught does
//! not replace the exception it raised after). An exception that is not an
//! `Exception` (`KeyboardInterrupt`, `SystemExit`) ends the run too and `Vm.run` raises it
//! as it is: a `Trap` would let `except Exception` swallow Ctrl-C.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use ebpf_vm::{Helper, HelperError, TrapKind, VmMemory};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors;

thread_local! {
    /// The exception the last failing Python helper on this thread raised, for the `Trap`'s
    /// `__cause__`: a run happens on the thread that called `Vm.run`, and so do its helpers.
    static PENDING: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// Forgets an exception left by an earlier run.
pub(crate) fn clear_pending_error() {
    PENDING.with(|p| p.borrow_mut().take());
}

/// The exception the run's failing helper raised, if any.
pub(crate) fn take_pending_error() -> Option<PyErr> {
    PENDING.with(|p| p.borrow_mut().take())
}

/// What `Vm.run` raises for a run that ended with `trap`: the exception a helper raised if it
/// is no `Exception` (`KeyboardInterrupt`, `SystemExit`: they propagate unchanged), else the
/// `Trap`, caused by that exception if a helper failed.
pub(crate) fn run_error(py: Python<'_>, trap: &ebpf_vm::Trap) -> PyErr {
    match take_pending_error() {
        Some(err) if !err.is_instance_of::<PyException>(py) => err,
        cause => errors::trap(py, trap, cause),
    }
}

/// Where a helper's callable lives: shared by the [`PyHelper`] inside the facade's VM and by
/// the Python `Vm` that owns it ([`Callables`]).
type Slot = Arc<Mutex<Option<Py<PyAny>>>>;

/// A Python callable registered as helper `id`. It does not own the callable: the facade may
/// keep a copy of the helper after the VM is freed (a thread that ran the VM keeps its last
/// run's preparation until it runs another VM or exits), and the callable, with everything it
/// refers to, must be released when the Python `Vm` is. The copy is never called again: a kept
/// preparation is found only by a live VM's identity.
pub(crate) struct PyHelper {
    id: u32,
    callable: Slot,
}

impl PyHelper {
    /// The helper, and the slot its owner empties when freed (see [`Callables`]).
    pub(crate) fn new(id: u32, callable: Py<PyAny>) -> (PyHelper, Slot) {
        let callable = Arc::new(Mutex::new(Some(callable)));
        let slot = Arc::clone(&callable);
        (PyHelper { id, callable }, slot)
    }
}

/// The callables of a Python `Vm`'s helpers, released when the `Vm` is (not when the last
/// thread that ran it drops its kept preparation).
#[derive(Default)]
pub(crate) struct Callables(Vec<Slot>);

impl Callables {
    pub(crate) fn push(&mut self, slot: Slot) {
        self.0.push(slot);
    }
}

impl Drop for Callables {
    fn drop(&mut self) {
        for slot in &self.0 {
            let callable = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            drop(callable);
        }
    }
}

impl Helper for PyHelper {
    fn call(&self, args: [u64; 5], memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
        Python::attach(|py| {
            // A reference of our own, so the lock is not held while Python runs (the helper
            // may run this VM again, on this thread or another).
            let callable = self
                .callable
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|c| c.clone_ref(py))
                .ok_or_else(|| HelperError::failed("the helper's Vm has been freed"))?;
            let result = Memory::lend(py, memory, |mem| {
                let [r1, r2, r3, r4, r5] = args;
                let value = callable.call1(py, ((r1, r2, r3, r4, r5), mem))?;
                value.extract::<u64>(py).map_err(|_| {
                    pyo3::exceptions::PyTypeError::new_err(format!(
                        "helper {} returned {}, not an int in 0..2**64",
                        self.id,
                        value
                            .bind(py)
                            .repr()
                            .map_or_else(|_| "?".into(), |r| r.to_string())
                    ))
                })
            });
            result.map_err(|(err, memory_failure)| {
                if !err.is_instance_of::<PyException>(py) {
                    let message = err.to_string();
                    PENDING.with(|p| *p.borrow_mut() = Some(err));
                    return HelperError::Failed(message);
                }
                if let Some(kind) = memory_failure {
                    return HelperError::Memory(kind);
                }
                let message = err.to_string();
                PENDING.with(|p| *p.borrow_mut() = Some(err));
                HelperError::Failed(message)
            })
        })
    }
}

/// The VM's memory as a helper sees it, during one helper call: `read(addr, length)` and
/// `write(addr, data)` go through the same bounds checks as the program. Using it after the
/// helper returned raises `RuntimeError`.
#[pyclass(unsendable, module = "ebpf_vm")]
pub(crate) struct Memory {
    /// The run's memory while the helper runs; `None` before and after.
    target: Cell<Option<NonNull<dyn VmMemory>>>,
    /// Every access that failed during this call, with the `Trap` it raised: the one the
    /// helper lets escape, if any, names the run's trap.
    failures: RefCell<Vec<(TrapKind, Py<PyAny>)>>,
}

impl Memory {
    /// Runs `body` with a `Memory` that reaches `memory` until `body` returns; returns its
    /// result, or its error with the kind of the failed access that raised it, if one did.
    fn lend<T>(
        py: Python<'_>,
        memory: &mut dyn VmMemory,
        body: impl FnOnce(&Bound<'_, Memory>) -> PyResult<T>,
    ) -> Result<T, (PyErr, Option<TrapKind>)> {
        let borrowed = NonNull::from(memory);
        // SAFETY: only the lifetime bound of the trait object changes. `Revoke` below clears
        // the pointer before this function returns (also on unwinding), so it is never used
        // after the borrow it came from ends.
        let target: NonNull<dyn VmMemory> = unsafe { std::mem::transmute(borrowed) };
        let mem = Bound::new(
            py,
            Memory {
                target: Cell::new(Some(target)),
                failures: RefCell::new(Vec::new()),
            },
        )
        .map_err(|e| (e, None))?;
        /// Clears the pointer when dropped.
        struct Revoke<'a, 'py>(&'a Bound<'py, Memory>);
        impl Drop for Revoke<'_, '_> {
            fn drop(&mut self) {
                self.0.borrow().target.set(None);
            }
        }
        let revoke = Revoke(&mem);
        let result = body(&mem);
        drop(revoke);
        result.map_err(|e| {
            let failures = mem.borrow().failures.take();
            let raised = e.value(py);
            let kind = failures
                .into_iter()
                .find(|(_, trap)| raised.is(trap.bind(py)))
                .map(|(kind, _)| kind);
            (e, kind)
        })
    }

    /// Runs one access on the lent memory.
    fn access<T>(
        &self,
        py: Python<'_>,
        op: impl FnOnce(&mut dyn VmMemory) -> Result<T, TrapKind>,
    ) -> PyResult<T> {
        let Some(mut target) = self.target.get() else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this Memory belongs to a helper call that has returned",
            ));
        };
        // SAFETY: the pointer is set only while `lend` holds the exclusive borrow it came from,
        // on this thread (the class is unsendable), and nothing else uses that borrow while
        // the helper runs.
        let memory = unsafe { target.as_mut() };
        op(memory).map_err(|kind| {
            let err = errors::memory_error(py, &kind);
            let trap = err.value(py).clone().into_any().unbind();
            self.failures.borrow_mut().push((kind, trap));
            err
        })
    }
}

#[pymethods]
impl Memory {
    /// `length` bytes of VM memory at VM address `addr`; raises `Trap` (kind
    /// `out_of_bounds`) if the program may not read them.
    fn read<'py>(&self, py: Python<'py>, addr: u64, length: u32) -> PyResult<Bound<'py, PyBytes>> {
        // The length is usually the program's: refuse one the memory does not hold before
        // allocating it (a failed allocation aborts the process, Python and all).
        let buf = self.access(py, |m| {
            m.check_range(addr, u64::from(length), false)?;
            let mut buf = vec![0; length as usize];
            m.read(addr, &mut buf).map(|()| buf)
        })?;
        Ok(PyBytes::new(py, &buf))
    }

    /// Writes `data` to VM memory at VM address `addr`; raises `Trap` (kind `out_of_bounds`)
    /// if the program may not write there.
    fn write(&self, py: Python<'_>, addr: u64, data: &[u8]) -> PyResult<()> {
        self.access(py, |m| m.write(addr, data))
    }
}
