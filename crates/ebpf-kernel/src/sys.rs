//! The `bpf(2)` syscall and the file descriptors it returns — the crate's only `unsafe`.
//!
//! On Linux, [`bpf`] is `syscall(SYS_bpf, cmd, &attr, sizeof attr)` and [`Fd`] an
//! [`OwnedFd`](std::os::fd::OwnedFd). Elsewhere [`Fd`] cannot exist and [`bpf`] always says
//! [`Refusal::NotLinux`](crate::Refusal::NotLinux), so everything above compiles unchanged.

#[cfg(target_os = "linux")]
pub(crate) use linux::{Fd, bpf};
#[cfg(not(target_os = "linux"))]
pub(crate) use other::{Fd, bpf};

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    use crate::{Command, KernelError};

    /// A file descriptor the kernel returned for a program or a map; closed on drop.
    #[derive(Debug)]
    pub(crate) struct Fd(OwnedFd);

    impl Fd {
        /// The descriptor as the kernel's attributes carry it.
        pub(crate) fn raw(&self) -> u32 {
            self.0.as_raw_fd() as u32
        }

        /// The descriptor for `AsFd` implementations.
        pub(crate) fn owned(&self) -> &OwnedFd {
            &self.0
        }
    }

    /// Issues `command` with `attr`; returns the syscall's non-negative result.
    ///
    /// A command that creates an object returns its descriptor: wrap it with [`Fd::take`].
    ///
    /// # Safety
    ///
    /// Every pointer in `attr` must be 0 or point to memory that is valid, for the whole call,
    /// for the accesses `command` makes through it: reads of the lengths `attr` states (or
    /// that the map's key and value sizes imply) for inputs, writes of those lengths for
    /// outputs. `T` must be one of the `attr.rs` structs for `command`.
    pub(crate) unsafe fn bpf<T>(command: Command, attr: &mut T) -> Result<i64, KernelError> {
        let size = size_of::<T>();
        let ptr: *mut T = attr;
        // SAFETY: `ptr` is a live, exclusive `&mut T` of `size` bytes, which the kernel reads
        // (and, for output fields, writes) only during the call; the caller guarantees the
        // pointers inside it (this function's contract).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                command.number() as libc::c_long,
                ptr,
                size as libc::c_long,
            )
        };
        if ret < 0 {
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            return Err(KernelError::from_errno(command, errno));
        }
        Ok(ret as i64)
    }

    impl Fd {
        /// Takes ownership of the descriptor a creating command returned.
        pub(crate) fn take(command: Command, ret: i64) -> Result<Fd, KernelError> {
            let raw = RawFd::try_from(ret)
                .map_err(|_| KernelError::invalid(command, "the kernel returned no descriptor"))?;
            // SAFETY: a successful BPF_PROG_LOAD or BPF_MAP_CREATE returns a new descriptor
            // that nothing else in this process owns; it is wrapped exactly once, here.
            Ok(Fd(unsafe { OwnedFd::from_raw_fd(raw) }))
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod other {
    use crate::{Command, KernelError, Refusal};

    /// No kernel, so no descriptor can exist.
    #[derive(Debug)]
    pub(crate) enum Fd {}

    impl Fd {
        pub(crate) fn raw(&self) -> u32 {
            match *self {}
        }

        pub(crate) fn take(command: Command, _ret: i64) -> Result<Fd, KernelError> {
            Err(KernelError::Refused {
                command,
                reason: Refusal::NotLinux,
            })
        }
    }

    /// Every command is refused off Linux.
    ///
    /// # Safety
    ///
    /// None needed; `unsafe` only to match the Linux signature.
    pub(crate) unsafe fn bpf<T>(command: Command, _attr: &mut T) -> Result<i64, KernelError> {
        Err(KernelError::Refused {
            command,
            reason: Refusal::NotLinux,
        })
    }
}
