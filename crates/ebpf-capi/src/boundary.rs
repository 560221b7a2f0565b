//! The checks every entry point makes before it trusts its arguments, and the guard that keeps
//! panics from unwinding into C.

use std::ffi::{CStr, c_char};
use std::panic::{self, AssertUnwindSafe};

use crate::error::{Error, Status};

/// Runs `body`, turning a panic into `EBPF_STATUS_INTERNAL` (with an error object, when the
/// caller asked for one). Unwinding out of an `extern "C"` function would abort the caller's
/// process; a panic here means a bug in this library, which the caller should see as an error.
pub(crate) fn guard(err: *mut *mut Error, body: impl FnOnce() -> Result<(), Error>) -> Status {
    let result = panic::catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(Error::internal(panic_message(&*payload))));
    match result {
        Ok(()) => {
            set_error(err, None);
            Status::Ok
        }
        Err(e) => {
            let status = e.status;
            set_error(err, Some(e));
            status
        }
    }
}

/// Like [`guard`] for functions that return a value instead of a status: `fallback` on panic.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// What a panic said, for the error message.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic");
    format!("internal error (a bug in ebpf-vm): {what}")
}

/// Stores `error` (or NULL) through the caller's optional out-pointer; drops it if the caller
/// passed none.
fn set_error(out: *mut *mut Error, error: Option<Error>) {
    if out.is_null() {
        return;
    }
    let ptr = error.map_or(std::ptr::null_mut(), |e| Box::into_raw(Box::new(e)));
    // SAFETY: `out` is non-null, and the API contract says a non-null `err` points to writable
    // storage for one `ebpf_error *`.
    unsafe { out.write(ptr) };
}

/// Stores `value` through an out-pointer the caller must provide.
pub(crate) fn write_out<T>(out: *mut T, name: &str, value: T) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::null(name));
    }
    // SAFETY: `out` is non-null, and the API contract says it points to writable storage for
    // one `T`.
    unsafe { out.write(value) };
    Ok(())
}

/// The caller's `(ptr, len)` as a byte slice. A NULL pointer is accepted only with length 0.
///
/// # Safety
/// A non-null `ptr` must point to `len` readable bytes that stay valid and unaliased by writes
/// for `'a`.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize, name: &str) -> Result<&'a [u8], Error> {
    check_len(ptr.is_null(), len, name)?;
    if ptr.is_null() {
        return Ok(&[]);
    }
    // SAFETY: non-null, `len` fits `isize`, and the caller guarantees `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The caller's `(ptr, len)` as a writable byte slice; `None` for NULL with length 0.
///
/// # Safety
/// A non-null `ptr` must point to `len` writable bytes that nothing else touches for `'a`.
pub(crate) unsafe fn bytes_mut<'a>(
    ptr: *mut u8,
    len: usize,
    name: &str,
) -> Result<Option<&'a mut [u8]>, Error> {
    check_len(ptr.is_null(), len, name)?;
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null, `len` fits `isize`, and the caller guarantees `len` writable bytes
    // that nothing else accesses during the call.
    Ok(Some(unsafe { std::slice::from_raw_parts_mut(ptr, len) }))
}

/// A NULL pointer with a non-zero length, or a length no allocation can have, is the caller's
/// mistake; report it rather than build an invalid slice.
fn check_len(null: bool, len: usize, name: &str) -> Result<(), Error> {
    if null && len != 0 {
        return Err(Error::invalid(format!(
            "{name} is NULL but its length is {len}"
        )));
    }
    if len > isize::MAX as usize {
        return Err(Error::invalid(format!(
            "{name}'s length {len} is larger than any buffer"
        )));
    }
    Ok(())
}

/// The caller's NUL-terminated UTF-8 string; `None` for NULL.
///
/// # Safety
/// A non-null `ptr` must point to a NUL-terminated string that stays valid for `'a`.
pub(crate) unsafe fn opt_str<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>, Error> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null, and the caller guarantees a NUL-terminated string valid for `'a`.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str()
        .map(Some)
        .map_err(|e| Error::invalid(format!("{name} is not UTF-8: {e}")))
}

/// A shared reference to one of this library's objects.
///
/// # Safety
/// A non-null `ptr` must come from this library's constructor for `T` and not be freed yet.
pub(crate) unsafe fn object<'a, T>(ptr: *const T, name: &str) -> Result<&'a T, Error> {
    // SAFETY: the caller guarantees a live object or NULL; NULL is checked by `as_ref`.
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::null(name))
}

/// An exclusive reference to one of this library's objects.
///
/// # Safety
/// As [`object`], and no other thread may use the object during the call.
pub(crate) unsafe fn object_mut<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T, Error> {
    // SAFETY: the caller guarantees a live, unshared object or NULL; NULL is checked by
    // `as_mut`.
    unsafe { ptr.as_mut() }.ok_or_else(|| Error::null(name))
}

/// Frees an object made by `Box::into_raw`; NULL is a no-op, as with `free`.
///
/// # Safety
/// A non-null `ptr` must come from this library's constructor for `T` and not be freed yet.
pub(crate) unsafe fn free<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: the caller guarantees `ptr` came from `Box::into_raw` and is freed once.
        drop(unsafe { Box::from_raw(ptr) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error_not_an_unwind() {
        let mut err: *mut Error = std::ptr::null_mut();
        let status = guard(&mut err, || panic!("boom"));
        assert_eq!(status, Status::Internal);
        // SAFETY: `guard` stored a live error from `Box::into_raw`; freed once below.
        let error = unsafe { Box::from_raw(err) };
        assert_eq!(error.status, Status::Internal);
        assert_eq!(error.message(), "internal error (a bug in ebpf-vm): boom");
        assert_eq!(guard_value(7, || panic!("again")), 7);
    }

    #[test]
    fn lengths_are_checked_before_a_slice_is_made() {
        // SAFETY: every call below is refused before the pointer would be read.
        unsafe {
            let e = bytes(std::ptr::null(), 3, "code").unwrap_err();
            assert_eq!(e.message(), "code is NULL but its length is 3");
            let e = bytes([0u8; 1].as_ptr(), usize::MAX, "code").unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument);
            assert!(bytes(std::ptr::null(), 0, "code").is_ok_and(<[u8]>::is_empty));
        }
    }
}
