//! Helpers written in C: the function-pointer type, the adapter that makes one a facade
//! [`Helper`], and `ebpf_call_*`, through which a helper reads and writes VM memory and reports
//! failure.

use std::ffi::{c_char, c_void};

use ebpf_vm::{Helper, HelperError, TrapKind, VmMemory};

use crate::boundary;
use crate::error::{Error, Status, trap_status};

/// A helper: `user_data` as registered, `args` pointing to `r1`..`r5` (five values),
/// `result` where to store the new `r0`, and `call` for `ebpf_call_read`/`_write`/`_fail`
/// during this call only. Return 0 for success; anything else ends the program with
/// `EBPF_STATUS_TRAP_HELPER_FAILED` (or the memory trap of a failed `ebpf_call_read`/`_write`).
pub type HelperFn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        args: *const u64,
        result: *mut u64,
        call: *mut Call<'_>,
    ) -> i32,
>;

/// Releases a helper's `user_data` in the `ebpf_builder_free` or `ebpf_vm_free` that frees the
/// last builder or VM using the helper, on that call's thread.
pub type HelperDrop = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// One helper call in progress: the VM's memory and what went wrong, if anything. Valid only
/// inside the helper it is passed to.
pub struct Call<'a> {
    memory: &'a mut dyn VmMemory,
    failure: Option<HelperError>,
}

/// A C helper with its user data, shared by the builder and every VM loaded from it. It does
/// not release the user data: the facade may keep a copy after the VM is freed (a thread that
/// ran the VM keeps its last run's preparation until it runs another VM or exits), and the
/// user's `drop` must run when the C objects are freed ([`Release`]). The copy is never called
/// again: a kept preparation is found only by a live VM's identity.
pub(crate) struct CHelper {
    function: unsafe extern "C" fn(*mut c_void, *const u64, *mut u64, *mut Call<'_>) -> i32,
    user_data: *mut c_void,
}

impl CHelper {
    pub(crate) fn new(
        function: unsafe extern "C" fn(*mut c_void, *const u64, *mut u64, *mut Call<'_>) -> i32,
        user_data: *mut c_void,
    ) -> CHelper {
        CHelper {
            function,
            user_data,
        }
    }
}

/// The user's `drop` for a helper's `user_data`, run when the last builder or VM holding it
/// (an `Arc` each) is freed.
#[derive(Debug)]
pub(crate) struct Release {
    user_data: *mut c_void,
    drop: unsafe extern "C" fn(*mut c_void),
}

impl Release {
    pub(crate) fn new(user_data: *mut c_void, drop: unsafe extern "C" fn(*mut c_void)) -> Release {
        Release { user_data, drop }
    }
}

// SAFETY: the pointer is only passed back to the caller's `drop`, once, from whichever thread
// frees the last builder or VM, which the header documents.
unsafe impl Send for Release {}
// SAFETY: `Release` has no method that uses the pointer through `&self`.
unsafe impl Sync for Release {}

impl Drop for Release {
    fn drop(&mut self) {
        // SAFETY: the caller registered `drop` for `user_data`; this is the last owner of the
        // registration, so it runs once.
        unsafe { (self.drop)(self.user_data) };
    }
}

// SAFETY: the header documents that a VM may be run from several threads at once and that a
// helper and its user data must then be safe to use concurrently; the pointer itself is only
// passed back to the caller's code.
unsafe impl Send for CHelper {}
// SAFETY: as for `Send`: sharing is the caller's documented responsibility.
unsafe impl Sync for CHelper {}

impl Helper for CHelper {
    fn call(&self, args: [u64; 5], memory: &mut dyn VmMemory) -> Result<u64, HelperError> {
        let mut call = Call {
            memory,
            failure: None,
        };
        let mut result = 0u64;
        // SAFETY: `function` is the caller's helper, called as its type says: `args` points to
        // five values and `result` to one, both live for the call; `call` is live for the call
        // and the header says it must not be used afterwards.
        let code =
            unsafe { (self.function)(self.user_data, args.as_ptr(), &mut result, &mut call) };
        if code == 0 {
            return Ok(result);
        }
        Err(call
            .failure
            .unwrap_or_else(|| HelperError::failed(format!("returned {code}"))))
    }
}

/// Copies `len` bytes of VM memory at `addr` into `buf`. On failure (memory the program may
/// not read) returns `EBPF_STATUS_TRAP_OUT_OF_BOUNDS`; if the helper then returns non-zero, the
/// run ends with that trap at the call's pc.
///
/// # Safety
/// `call` is the pointer passed to the running helper; `buf` points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_call_read(
    call: *mut Call<'_>,
    addr: u64,
    buf: *mut u8,
    len: usize,
) -> Status {
    boundary::guard(std::ptr::null_mut(), || {
        // SAFETY: the caller passes the live call of the running helper.
        let call = unsafe { boundary::object_mut(call, "call") }?;
        // SAFETY: the caller guarantees `len` writable bytes at `buf`.
        let buf = unsafe { boundary::bytes_mut(buf, len, "buf") }?.unwrap_or_default();
        call.access(|memory| memory.read(addr, buf))
    })
}

/// Copies `len` bytes from `data` into VM memory at `addr` (which must be writable). Fails as
/// `ebpf_call_read` does.
///
/// # Safety
/// `call` is the pointer passed to the running helper; `data` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_call_write(
    call: *mut Call<'_>,
    addr: u64,
    data: *const u8,
    len: usize,
) -> Status {
    boundary::guard(std::ptr::null_mut(), || {
        // SAFETY: the caller passes the live call of the running helper.
        let call = unsafe { boundary::object_mut(call, "call") }?;
        // SAFETY: the caller guarantees `len` readable bytes at `data`.
        let data = unsafe { boundary::bytes(data, len, "data") }?;
        call.access(|memory| memory.write(addr, data))
    })
}

/// Sets the message the run's error carries if the helper returns non-zero (the last one set
/// wins; a failed memory access takes precedence). `message` is copied.
///
/// # Safety
/// `call` is the pointer passed to the running helper; `message` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ebpf_call_fail(call: *mut Call<'_>, message: *const c_char) -> Status {
    boundary::guard(std::ptr::null_mut(), || {
        // SAFETY: the caller passes the live call of the running helper.
        let call = unsafe { boundary::object_mut(call, "call") }?;
        // SAFETY: the caller guarantees NULL or a NUL-terminated string.
        let message = unsafe { boundary::opt_str(message, "message") }?.unwrap_or("failed");
        if !matches!(call.failure, Some(HelperError::Memory(_))) {
            call.failure = Some(HelperError::failed(message));
        }
        Ok(())
    })
}

impl Call<'_> {
    /// Runs one memory access; a failure is remembered (the first one wins) and reported.
    fn access(
        &mut self,
        op: impl FnOnce(&mut dyn VmMemory) -> Result<(), TrapKind>,
    ) -> Result<(), Error> {
        op(&mut *self.memory).map_err(|kind| {
            let error = Error::new(trap_status(&kind), None, kind.to_string());
            if !matches!(self.failure, Some(HelperError::Memory(_))) {
                self.failure = Some(HelperError::Memory(kind));
            }
            error
        })
    }
}
