//! `ebpf_builder`: the configuration of a VM (the facade's `VmBuilder`) and loading a program
//! with it.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void};
use std::sync::Arc;

use ebpf_vm::VmBuilder;

use crate::EngineId;
use crate::boundary::{self, guard};
use crate::error::{Error, Status};
use crate::helper::{CHelper, HelperDrop, HelperFn, Release};
use crate::vm::Vm;

/// A VM's configuration: engine, budget, call depth, verification, helpers. Loading does not
/// consume it: load as many programs with it as you like, then free it with
/// `ebpf_builder_free` (the VMs keep what they need).
#[derive(Debug, Default)]
pub struct Builder {
    inner: VmBuilder,
    /// The registered helpers' `drop`s, by id; each VM loaded takes a share of them.
    releases: BTreeMap<u32, Arc<Release>>,
}

/// Whether this build of the library has the engine and this host can run it.
#[unsafe(no_mangle)]
pub extern "C" fn ebpf_engine_available(engine: u32) -> bool {
    boundary::guard_value(false, || {
        EngineId::from_raw(engine).is_some_and(|e| e.engine().is_available())
    })
}

/// A builder with the defaults: the interpreter, no helpers, no budget, call depth 8, programs
/// verified at load. NULL only if the library failed internally.
#[unsafe(no_mangle)]
pub extern "C" fn ebpf_builder_new() -> *mut Builder {
    boundary::guard_value(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(Builder::default()))
    })
}

/// Frees a builder; NULL is ignored. VMs loaded from it stay valid.
///
/// # Safety
/// `builder` is NULL or a builder from `ebpf_builder_new`, not yet freed, not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_builder_free(builder: *mut Builder) {
    // SAFETY: the caller guarantees a builder from `ebpf_builder_new`, freed once, or NULL.
    boundary::guard_value((), || unsafe { boundary::free(builder) });
}

/// Applies `change` to the builder behind `builder`.
///
/// # Safety
/// `builder` is NULL or a live builder that no other thread uses during the call.
unsafe fn configure(builder: *mut Builder, change: impl FnOnce(VmBuilder) -> VmBuilder) -> Status {
    guard(std::ptr::null_mut(), || {
        // SAFETY: the caller guarantees a live, unshared builder or NULL.
        let builder = unsafe { boundary::object_mut(builder, "builder") }?;
        builder.inner = change(std::mem::take(&mut builder.inner));
        Ok(())
    })
}

/// Selects the engine (`EBPF_ENGINE_*`; default the interpreter). A number that names no
/// engine is `EBPF_STATUS_INVALID_ARGUMENT`; an engine this build lacks fails at load with
/// `EBPF_STATUS_ENGINE_UNAVAILABLE` (check with `ebpf_engine_available`).
///
/// # Safety
/// `builder` is NULL or a live builder that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_builder_set_engine(builder: *mut Builder, engine: u32) -> Status {
    let Some(id) = EngineId::from_raw(engine) else {
        return Status::InvalidArgument;
    };
    // SAFETY: forwarded from the caller.
    unsafe { configure(builder, |b| b.engine(id.engine())) }
}

/// Ends every run after `instructions` executed instructions with
/// `EBPF_STATUS_TRAP_BUDGET_EXHAUSTED` (default: no limit).
///
/// # Safety
/// `builder` is NULL or a live builder that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_builder_set_budget(
    builder: *mut Builder,
    instructions: u64,
) -> Status {
    // SAFETY: forwarded from the caller.
    unsafe { configure(builder, |b| b.budget(instructions)) }
}

/// How deeply local calls may nest (default 8). Too large a depth fails at load with
/// `EBPF_STATUS_INVALID_CONFIG`.
///
/// # Safety
/// `builder` is NULL or a live builder that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_builder_set_max_call_depth(
    builder: *mut Builder,
    depth: usize,
) -> Status {
    // SAFETY: forwarded from the caller.
    unsafe { configure(builder, |b| b.max_call_depth(depth)) }
}

/// Accepts programs that can loop even without a budget (verification still runs).
///
/// # Safety
/// `builder` is NULL or a live builder that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_builder_allow_unbounded(builder: *mut Builder) -> Status {
    // SAFETY: forwarded from the caller.
    unsafe { configure(builder, |b| b.allow_unbounded()) }
}

/// Loads programs without the verifier. Every engine stays memory-safe on any program; this is
/// for harnesses that must run what a verifier rejects (to test traps, say).
///
/// # Safety
/// `builder` is NULL or a live builder that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_builder_skip_verification(builder: *mut Builder) -> Status {
    // SAFETY: forwarded from the caller.
    unsafe { configure(builder, |b| b.unverified()) }
}

/// Spectre v1 masking in the JITs' code, on (`true`) or off (`false`) for both JITs (default:
/// each JIT's own — on for both). With masking, the address
/// of every access checked at run time is forced to 0 by a conditional move on the check's
/// result, so that a mispredicted bounds check cannot load out of bounds even speculatively.
/// Turn it on for programs you do not trust. No effect on the interpreter, nor on results
/// (docs/security.md).
///
/// # Safety
/// `builder` is NULL or a live builder that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_builder_set_spectre_masking(
    builder: *mut Builder,
    on: bool,
) -> Status {
    // SAFETY: forwarded from the caller.
    unsafe { configure(builder, |b| b.spectre_masking(on)) }
}

/// With Spectre masking on, also clamp (`true`) — without a branch — the accesses the JITs
/// prove in bounds through a branch of the program's own (a guard `if (p + 14 > end)
/// return`, a loop bound), which otherwise run unchecked: on the path a mispredicted guard
/// leads to, the CPU would run such an access with the value the guard excluded. Both JITs
/// (with their masking, on by default unless `ebpf_builder_set_spectre_masking` turns it
/// off). Default: off (`false`) — it costs 12–16% with the x86 JIT. No effect on the
/// interpreter, nor on results (docs/security.md).
///
/// # Safety
/// `builder` is NULL or a live builder that no other thread uses during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_builder_set_spectre_clamp_proven(
    builder: *mut Builder,
    on: bool,
) -> Status {
    // SAFETY: forwarded from the caller.
    unsafe { configure(builder, |b| b.spectre_clamp_proven(on)) }
}

/// Registers `function` as helper `id` (`call id`), replacing any earlier one. `user_data` is
/// passed to every call; `drop`, unless NULL, is called with it once the builder and every VM
/// loaded from it are freed: in the `ebpf_builder_free` or `ebpf_vm_free` that frees the last
/// of them, on that call's thread (or, for a registration replaced by a later one for the
/// same id, in that registration if no VM uses it). If registering fails, nothing keeps
/// `user_data` and `drop` is not called. A VM run from several threads at once calls the
/// helper from all of them: `function` and `user_data` must allow that.
///
/// # Safety
/// `builder` is NULL or a live builder that no other thread uses during the call; `function`
/// and `drop` follow their types' contracts for as long as the helper is registered.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_builder_register_helper(
    builder: *mut Builder,
    id: u32,
    function: HelperFn,
    user_data: *mut c_void,
    drop: HelperDrop,
) -> Status {
    let Some(function) = function else {
        return Status::InvalidArgument;
    };
    guard(std::ptr::null_mut(), || {
        // SAFETY: the caller guarantees a live, unshared builder or NULL.
        let builder = unsafe { boundary::object_mut(builder, "builder") }?;
        let helper = CHelper::new(function, user_data);
        builder.inner = std::mem::take(&mut builder.inner).helper(id, helper);
        match drop {
            Some(drop) => builder
                .releases
                .insert(id, Arc::new(Release::new(user_data, drop))),
            None => builder.releases.remove(&id),
        };
        Ok(())
    })
}

/// Loads and runs `load` with a copy of the builder's configuration, storing the VM in `*vm`.
///
/// # Safety
/// `builder` is NULL or a live builder; `vm` is NULL or writable; `err` as in [`guard`].
unsafe fn load_with(
    builder: *const Builder,
    vm: *mut *mut Vm,
    err: *mut *mut Error,
    load: impl FnOnce(VmBuilder) -> Result<Result<ebpf_vm::Vm, ebpf_vm::LoadError>, Error>,
) -> Status {
    guard(err, || {
        if vm.is_null() {
            return Err(Error::null("vm"));
        }
        // SAFETY: `vm` is non-null and the caller guarantees it is writable; clearing it first
        // means a failed load never leaves a stale pointer behind.
        unsafe { vm.write(std::ptr::null_mut()) };
        // SAFETY: the caller guarantees a live builder or NULL.
        let builder = unsafe { boundary::object(builder, "builder") }?;
        let loaded = load(builder.inner.clone())?.map_err(|e| Error::load(&e))?;
        let releases = builder.releases.values().cloned().collect();
        boundary::write_out(vm, "vm", Box::into_raw(Box::new(Vm::new(loaded, releases))))
    })
}

/// Loads bytecode (`len` bytes of 8-byte little-endian slots), verifying it unless
/// `ebpf_builder_skip_verification`. On success `*vm` is the loaded program (free it with
/// `ebpf_vm_free`); on failure `*vm` is NULL and `*err` (when `err` is not NULL) says why,
/// with the pc for decode and verifier errors.
///
/// # Safety
/// `builder` is NULL or a live builder; `code` points to `len` readable bytes (or is NULL with
/// `len` 0); `vm` is NULL or writable; `err` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_builder_load(
    builder: *const Builder,
    code: *const u8,
    len: usize,
    vm: *mut *mut Vm,
    err: *mut *mut Error,
) -> Status {
    let load = |b: VmBuilder| {
        // SAFETY: the caller guarantees `len` readable bytes at `code`.
        let code = unsafe { boundary::bytes(code, len, "code") }?;
        Ok(b.load(code))
    };
    // SAFETY: forwarded from the caller.
    unsafe { load_with(builder, vm, err, load) }
}

/// Assembles and loads NUL-terminated text in the bpf_conformance syntax
/// (`mov %r0, 1\nexit`). Results as `ebpf_builder_load`.
///
/// # Safety
/// `builder` is NULL or a live builder; `text` is NULL or NUL-terminated; `vm` and `err` as in
/// `ebpf_builder_load`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_builder_load_asm(
    builder: *const Builder,
    text: *const c_char,
    vm: *mut *mut Vm,
    err: *mut *mut Error,
) -> Status {
    let load = |b: VmBuilder| {
        // SAFETY: the caller guarantees NULL or a NUL-terminated string.
        let text = unsafe { boundary::opt_str(text, "text") }?;
        Ok(b.load_asm(text.ok_or_else(|| Error::null("text"))?))
    };
    // SAFETY: forwarded from the caller.
    unsafe { load_with(builder, vm, err, load) }
}

/// Loads a program of a BPF ELF object (`clang -target bpf -c`) held in `len` bytes at `elf`:
/// the one starting at function `function` if it is not NULL, else the one in section
/// `section` if that is not NULL, else the object's only program. Its `.rodata*` and
/// `.data*`/`.bss*` become the program's data regions. Results as `ebpf_builder_load`.
///
/// # Safety
/// `builder` is NULL or a live builder; `elf` points to `len` readable bytes; `section` and
/// `function` are NULL or NUL-terminated; `vm` and `err` as in `ebpf_builder_load`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_builder_load_elf(
    builder: *const Builder,
    elf: *const u8,
    len: usize,
    section: *const c_char,
    function: *const c_char,
    vm: *mut *mut Vm,
    err: *mut *mut Error,
) -> Status {
    let load = |b: VmBuilder| {
        // SAFETY: the caller guarantees `len` readable bytes at `elf` and NULL or
        // NUL-terminated names.
        let (elf, section, function) = unsafe {
            (
                boundary::bytes(elf, len, "elf")?,
                boundary::opt_str(section, "section")?,
                boundary::opt_str(function, "function")?,
            )
        };
        let selector = match (function, section) {
            (Some(f), _) => ebpf_vm::Selector::Function(f),
            (None, Some(s)) => ebpf_vm::Selector::Section(s),
            (None, None) => ebpf_vm::Selector::Only,
        };
        Ok(b.load_elf(elf, selector))
    };
    // SAFETY: forwarded from the caller.
    unsafe { load_with(builder, vm, err, load) }
}
