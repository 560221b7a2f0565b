//! `ebpf_vm`: a loaded program (the facade's `Vm`) and running it, untraced or traced
//! (`ebpf_vm_run_traced`: one `ebpf_step` per executed instruction to a C callback).

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use ebpf_vm::{Effect, Input, Step};

use crate::boundary::{self, guard};
use crate::error::{Error, Status};
use crate::helper::Release;

/// A loaded program with its configuration. Runs may happen from several threads at once, each
/// on its own memory. Free it with `ebpf_vm_free`.
#[derive(Debug)]
pub struct Vm {
    inner: ebpf_vm::Vm,
    /// Its helpers' `drop`s, run (after `inner` is dropped) if this VM is their last owner.
    _releases: Vec<Arc<Release>>,
}

impl Vm {
    pub(crate) fn new(inner: ebpf_vm::Vm, releases: Vec<Arc<Release>>) -> Vm {
        Vm {
            inner,
            _releases: releases,
        }
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

/// What an instruction did besides changing registers (`ebpf_step.effect`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EffectKind {
    /// Nothing else.
    None = 0,
    /// It read `len` bytes at `addr`: `value`.
    Read = 1,
    /// It wrote `len` bytes at `addr`: `value`.
    Write = 2,
    /// An atomic read-modify-write of `len` bytes at `addr`: `value` before, `value_after`
    /// after.
    Atomic = 3,
    /// A helper call: `helper_id`, `args` (`r1`..`r5`), `result` (the new `r0`).
    Helper = 4,
}

/// One executed instruction, as `ebpf_vm_run_traced` reports it. Valid only during the
/// callback it is passed to (copy what you keep, `insn` included).
#[repr(C)]
#[derive(Debug)]
pub struct StepC {
    /// The instruction's pc (slot index).
    pub pc: u64,
    /// Instructions executed so far, this one included.
    pub executed: u64,
    /// Local calls in progress when it executed (0 in the entry function).
    pub depth: u64,
    /// The pc that executes next; `UINT64_MAX` after the `exit` that ends the run.
    pub next: u64,
    /// The instruction in LLVM syntax, NUL-terminated.
    pub insn: *const c_char,
    /// `r0`..`r10` before it executed.
    pub before: [u64; 11],
    /// `r0`..`r10` after it executed.
    pub after: [u64; 11],
    /// What it did besides changing registers; which of the fields below are set.
    pub effect: EffectKind,
    /// `READ`, `WRITE`, `ATOMIC`: the access's width in bytes (1, 2, 4 or 8).
    pub len: u32,
    /// `READ`, `WRITE`, `ATOMIC`: the VM address of the access.
    pub addr: u64,
    /// `READ`, `WRITE`: the value moved; `ATOMIC`: the value before.
    pub value: u64,
    /// `ATOMIC`: the value after.
    pub value_after: u64,
    /// `HELPER`: the helper id.
    pub helper_id: u64,
    /// `HELPER`: `r1`..`r5` at the call.
    pub args: [u64; 5],
    /// `HELPER`: what it returned.
    pub result: u64,
}

/// Receives each executed instruction of a traced run, with the `user_data` given to
/// `ebpf_vm_run_traced`. It must not unwind (throw) into the library.
pub type StepFn = Option<unsafe extern "C" fn(user_data: *mut c_void, step: *const StepC)>;

/// Runs the program as `ebpf_vm_run` does, on the interpreter whatever the VM's engine, and
/// calls `on_step` after each executed instruction (see `ebpf_step`). The result — `r0`, or
/// the trap with its status and pc — and the memory afterwards are exactly an untraced run's;
/// the instruction that traps is not reported. `on_step` NULL is
/// `EBPF_STATUS_INVALID_ARGUMENT`. Tracing is roughly ten times slower than the interpreter's
/// untraced run, before the callback's own work (docs/trace.md).
///
/// # Safety
/// As `ebpf_vm_run`; `on_step` is a function that is safe to call with `user_data` and a
/// step, during this call only.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_vm_run_traced(
    vm: *const Vm,
    mem: *mut u8,
    len: usize,
    on_step: StepFn,
    user_data: *mut c_void,
    r0: *mut u64,
    err: *mut *mut Error,
) -> Status {
    guard(err, || {
        // SAFETY: the caller guarantees a live VM or NULL.
        let vm = unsafe { boundary::object(vm, "vm") }?;
        let on_step = on_step.ok_or_else(|| Error::null("on_step"))?;
        // SAFETY: the caller guarantees `len` writable, unaliased bytes at `mem` or NULL with 0.
        let input = match unsafe { boundary::bytes_mut(mem, len, "mem") }? {
            Some(data) => Input::new(data),
            None => Input::none(),
        };
        let mut observer = |step: &Step| {
            // LLVM syntax never contains a NUL; if it did, the step would show no text.
            let insn = CString::new(step.insn.llvm().to_string()).unwrap_or_default();
            let c = step_c(step, &insn);
            // SAFETY: `on_step` is the caller's function, called as its type says, with the
            // caller's `user_data` and a step (and its text) that live for the call.
            unsafe { on_step(user_data, &c) };
        };
        let exit = vm
            .inner
            .run_traced(input, &mut observer)
            .map_err(|t| Error::trap(&t))?;
        if !r0.is_null() {
            boundary::write_out(r0, "r0", exit.r0)?;
        }
        Ok(())
    })
}

/// `step` as C sees it, with `insn` its text.
fn step_c(step: &Step, insn: &CString) -> StepC {
    let mut c = StepC {
        pc: step.pc as u64,
        executed: step.executed,
        depth: step.depth as u64,
        next: step.next.map_or(u64::MAX, |n| n as u64),
        insn: insn.as_ptr(),
        before: step.before,
        after: step.after,
        effect: EffectKind::None,
        len: 0,
        addr: 0,
        value: 0,
        value_after: 0,
        helper_id: 0,
        args: [0; 5],
        result: 0,
    };
    match step.effect {
        Effect::None => {}
        Effect::Read(a) | Effect::Write(a) => {
            c.effect = if matches!(step.effect, Effect::Read(_)) {
                EffectKind::Read
            } else {
                EffectKind::Write
            };
            (c.len, c.addr, c.value) = (u32::from(a.len), a.addr, a.value);
        }
        Effect::Atomic { read, after } => {
            c.effect = EffectKind::Atomic;
            (c.len, c.addr, c.value, c.value_after) =
                (u32::from(read.len), read.addr, read.value, after);
        }
        Effect::Helper { id, args, result } => {
            c.effect = EffectKind::Helper;
            (c.helper_id, c.args, c.result) = (id, args, result);
        }
    }
    c
}

/// The size in bytes of the VM's global variables (an ELF object's `.data` and `.bss`
/// sections, one after the other as the program's writable data region holds them): 0 for a
/// program without them, and for NULL. Globals persist from run to run (as in the kernel),
/// and every run of the VM shares them; `ebpf_vm_globals_read` and `ebpf_vm_globals_write`
/// reach them from the host.
///
/// # Safety
/// `vm` is NULL or a live VM.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_vm_globals_size(vm: *const Vm) -> usize {
    boundary::guard_value(0, || {
        // SAFETY: the caller guarantees a live VM or NULL.
        unsafe { boundary::object(vm, "vm") }.map_or(0, |vm| {
            vm.inner
                .global_data()
                .map_or(0, |m| m.spec().value_size as usize)
        })
    })
}

/// The key of the globals' one element.
const GLOBALS_KEY: [u8; 4] = 0u32.to_le_bytes();

/// The VM's globals (`None` for a VM without: 0 bytes), or an error naming their size when
/// `len` is not it.
fn globals(vm: &Vm, len: usize) -> Result<Option<&ebpf_vm::maps::Map>, Error> {
    let map = vm.inner.global_data();
    let size = map.map_or(0, |m| m.spec().value_size as usize);
    if len != size {
        return Err(Error::invalid(format!(
            "the VM's globals are {size} bytes, not {len}"
        )));
    }
    Ok(map)
}

/// Copies the VM's globals (`ebpf_vm_globals_size` bytes, which `len` must be) to `buf`. Runs
/// on other threads may be changing them: each aligned 8-byte word is read atomically. A VM
/// without globals has 0 bytes: `len` 0 (`buf` may be NULL) copies nothing and succeeds.
///
/// # Safety
/// `vm` is NULL or a live VM; `buf` points to `len` writable bytes; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_vm_globals_read(
    vm: *const Vm,
    buf: *mut u8,
    len: usize,
    err: *mut *mut Error,
) -> Status {
    guard(err, || {
        // SAFETY: the caller guarantees a live VM or NULL.
        let vm = unsafe { boundary::object(vm, "vm") }?;
        let map = globals(vm, len)?;
        // SAFETY: the caller guarantees `len` writable bytes at `buf`.
        let buf = unsafe { boundary::bytes_mut(buf, len, "buf") }?;
        // A VM without globals has 0 bytes of them, all copied.
        let (Some(map), Some(buf)) = (map, buf) else {
            return Ok(());
        };
        let value = map
            .lookup(&GLOBALS_KEY)
            .ok()
            .flatten()
            .ok_or_else(|| Error::internal("the globals have no value".to_string()))?;
        buf.copy_from_slice(value.get(..len).unwrap_or(&value));
        Ok(())
    })
}

/// Replaces the VM's globals with the `len` bytes at `data` (`len` must be
/// `ebpf_vm_globals_size`); the next run starts from them. A VM without globals takes `len` 0
/// (`data` may be NULL) and changes nothing.
///
/// # Safety
/// `vm` is NULL or a live VM; `data` points to `len` readable bytes; `err` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_vm_globals_write(
    vm: *const Vm,
    data: *const u8,
    len: usize,
    err: *mut *mut Error,
) -> Status {
    guard(err, || {
        // SAFETY: the caller guarantees a live VM or NULL.
        let vm = unsafe { boundary::object(vm, "vm") }?;
        let map = globals(vm, len)?;
        // SAFETY: the caller guarantees `len` readable bytes at `data`.
        let data = unsafe { boundary::bytes(data, len, "data") }?;
        let Some(map) = map else {
            return Ok(());
        };
        map.update(&GLOBALS_KEY, data, ebpf_vm::maps::UpdateFlags::Any)
            .map_err(|e| Error::invalid(format!("the globals: {e}")))
    })
}

/// Bytes of machine code the VM's engine generated for the program: 0 for the interpreter, and
/// for NULL.
///
/// # Safety
/// `vm` is NULL or a live VM.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_vm_code_size(vm: *const Vm) -> usize {
    boundary::guard_value(0, || {
        // SAFETY: the caller guarantees a live VM or NULL.
        unsafe { boundary::object(vm, "vm") }.map_or(0, |vm| vm.inner.code_size())
    })
}

/// Frees a VM; NULL is ignored. Helpers' `drop` functions run here, on this thread, when no
/// other VM or builder uses them (whatever threads ran the VM).
///
/// # Safety
/// `vm` is NULL or a VM from `ebpf_builder_load*`, not yet freed, not running, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_vm_free(vm: *mut Vm) {
    // SAFETY: the caller guarantees a VM from this library, freed once, or NULL.
    boundary::guard_value((), || unsafe { boundary::free(vm) });
}
