//! `ebpf_vm`: a loaded program (the facade's `Vm`) and running it.

use ebpf_vm::Input;

use crate::boundary::{self, guard};
use crate::error::{Error, Status};

/// A loaded program with its configuration. Runs may happen from several threads at once, each
/// on its own memory. Free it with `ebpf_vm_free`.
#[derive(Debug)]
pub struct Vm {
    inner: ebpf_vm::Vm,
}

impl Vm {
    pub(crate) fn new(inner: ebpf_vm::Vm) -> Vm {
        Vm { inner }
    }
}

/// Runs the program on `len` bytes at `mem` (the program may write them; `r1` is their
/// address, `r2` their length) and stores `r0` in `*r0` (unless `r0` is NULL). `mem` NULL with
/// `len` 0 runs without input (`r1` = `r2` = 0). A trap returns its `EBPF_STATUS_TRAP_*` and,
/// when `err` is not NULL, an error with its pc and message in `*err` (free it with
/// `ebpf_error_free`); on success `*err` is NULL.
///
/// # Safety
/// `vm` is NULL or a live VM; `mem` points to `len` writable bytes that nothing else touches
/// during the run (or is NULL with `len` 0); `r0` and `err` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_vm_run(
    vm: *const Vm,
    mem: *mut u8,
    len: usize,
    r0: *mut u64,
    err: *mut *mut Error,
) -> Status {
    guard(err, || {
        // SAFETY: the caller guarantees a live VM or NULL.
        let vm = unsafe { boundary::object(vm, "vm") }?;
        // SAFETY: the caller guarantees `len` writable, unaliased bytes at `mem` or NULL with 0.
        let input = match unsafe { boundary::bytes_mut(mem, len, "mem") }? {
            Some(data) => Input::new(data),
            None => Input::none(),
        };
        let exit = vm.inner.run_with(input).map_err(|t| Error::trap(&t))?;
        if !r0.is_null() {
            boundary::write_out(r0, "r0", exit.r0)?;
        }
        Ok(())
    })
}

/// Frees a VM; NULL is ignored. Helpers' `drop` functions run once no VM or builder uses them.
///
/// # Safety
/// `vm` is NULL or a VM from `ebpf_builder_load*`, not yet freed, not running, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_vm_free(vm: *mut Vm) {
    // SAFETY: the caller guarantees a VM from this library, freed once, or NULL.
    boundary::guard_value((), || unsafe { boundary::free(vm) });
}
