//! The `bpf(2)` syscall, the file descriptors it returns, shared mappings of a map's pages
//! (ring buffers) and CPU affinity — the crate's only `unsafe`.
//!
//! On Linux, [`bpf`] is `syscall(SYS_bpf, cmd, &attr, sizeof attr)`, [`Fd`] an
//! [`OwnedFd`](std::os::fd::OwnedFd), [`Mapping`] an `mmap` of a map's descriptor read only
//! through bounds-checked atomic loads and copies, and [`pin_to_cpu`] `sched_setaffinity`.
//! Elsewhere [`Fd`] and [`Mapping`] cannot exist and every call says
//! [`Refusal::NotLinux`](crate::Refusal::NotLinux), so everything above compiles unchanged.

#[cfg(target_os = "linux")]
pub(crate) use linux::{Fd, Mapping, bpf, current_cpu, page_size, pin_to_cpu};
#[cfg(not(target_os = "linux"))]
pub(crate) use other::{Fd, Mapping, bpf, current_cpu, page_size, pin_to_cpu};

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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
        let number = command
            .number()
            .ok_or_else(|| KernelError::invalid(command, "not a bpf command"))?;
        let ptr: *mut T = attr;
        // SAFETY: `ptr` is a live, exclusive `&mut T` of `size` bytes, which the kernel reads
        // (and, for output fields, writes) only during the call; the caller guarantees the
        // pointers inside it (this function's contract).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                number as libc::c_long,
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

    /// `len` bytes of a map's pages, mapped shared at `offset` of its descriptor; unmapped on
    /// drop. Read through bounds-checked accessors only: the kernel writes these pages while
    /// we read them, so no Rust reference to them is ever made.
    #[derive(Debug)]
    pub(crate) struct Mapping {
        addr: *mut u8,
        len: usize,
    }

    // SAFETY: the mapping is plain shared memory; every access goes through atomics or
    // volatile copies (below), which are sound from any thread.
    unsafe impl Send for Mapping {}
    // SAFETY: as for `Send`: no access through `&Mapping` assumes exclusivity.
    unsafe impl Sync for Mapping {}

    impl Mapping {
        /// Maps `len` bytes of `fd` at `offset` (a multiple of the page size), readable and,
        /// if `writable`, writable.
        pub(crate) fn new(
            fd: &Fd,
            offset: usize,
            len: usize,
            writable: bool,
        ) -> Result<Mapping, KernelError> {
            let command = Command::MapMmap;
            let offset = libc::off_t::try_from(offset)
                .map_err(|_| KernelError::invalid(command, "offset out of range"))?;
            let prot = if writable {
                libc::PROT_READ | libc::PROT_WRITE
            } else {
                libc::PROT_READ
            };
            // SAFETY: a fresh mapping at an address the kernel chooses (no existing memory is
            // replaced); `fd` is a live map descriptor for the call.
            let addr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_SHARED,
                    fd.0.as_raw_fd(),
                    offset,
                )
            };
            if addr == libc::MAP_FAILED {
                let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                return Err(KernelError::Failed { command, errno });
            }
            Ok(Mapping {
                addr: addr.cast(),
                len,
            })
        }

        /// The address of `size` bytes at `offset`, aligned to `size`, if they are inside.
        fn word(&self, offset: usize, size: usize) -> Option<*mut u8> {
            let end = offset.checked_add(size)?;
            (end <= self.len && offset.is_multiple_of(size))
                // SAFETY: `offset + size <= len`, so the result stays inside the mapping.
                .then(|| unsafe { self.addr.add(offset) })
        }

        /// The aligned `u64` at `offset`, loaded with acquire ordering (the kernel publishes
        /// ring positions with release stores).
        pub(crate) fn load_u64(&self, offset: usize) -> Option<u64> {
            let p = self.word(offset, 8)?;
            // SAFETY: `p` is 8 aligned bytes inside a live mapping (page-aligned base,
            // `offset` a multiple of 8); the kernel accesses them only atomically or with
            // release stores, and `AtomicU64` has `u64`'s layout.
            Some(unsafe { &*p.cast::<AtomicU64>() }.load(Ordering::Acquire))
        }

        /// Stores the aligned `u64` at `offset` with release ordering.
        pub(crate) fn store_u64(&self, offset: usize, value: u64) -> Option<()> {
            let p = self.word(offset, 8)?;
            // SAFETY: as in `load_u64`; the caller mapped these pages writable (a store to a
            // read-only mapping would fault: only the consumer page is mapped writable, and
            // only it is stored to).
            unsafe { &*p.cast::<AtomicU64>() }.store(value, Ordering::Release);
            Some(())
        }

        /// The aligned `u32` at `offset`, loaded with acquire ordering.
        pub(crate) fn load_u32(&self, offset: usize) -> Option<u32> {
            let p = self.word(offset, 4)?;
            // SAFETY: as in `load_u64`, for 4 aligned bytes.
            Some(unsafe { &*p.cast::<AtomicU32>() }.load(Ordering::Acquire))
        }

        /// A copy of `len` bytes at `offset`, if they are inside.
        pub(crate) fn read(&self, offset: usize, len: usize) -> Option<Vec<u8>> {
            let end = offset.checked_add(len)?;
            if end > self.len {
                return None;
            }
            let mut out = vec![0u8; len];
            for (i, b) in out.iter_mut().enumerate() {
                // SAFETY: `offset + i < len` of a live mapping; a volatile byte read, since
                // the kernel may write the page concurrently (a committed record's bytes do
                // not change until it is consumed).
                *b = unsafe { self.addr.add(offset + i).read_volatile() };
            }
            Some(out)
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: `addr`/`len` are exactly what `mmap` returned and took; nothing refers
            // to the mapping after this.
            unsafe { libc::munmap(self.addr.cast(), self.len) };
        }
    }

    /// Restricts the calling thread to CPU `cpu` (`sched_setaffinity`), so that what a
    /// program does to per-CPU maps lands in that CPU's copy.
    pub(crate) fn pin_to_cpu(cpu: usize) -> Result<(), KernelError> {
        let command = Command::SchedSetaffinity;
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(KernelError::invalid(command, format!("no CPU {cpu}")));
        }
        // SAFETY: `cpu_set_t` is a plain bit array; all zeros is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu < CPU_SETSIZE` (checked above), so the bit is inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
        // SAFETY: `set` is a valid `cpu_set_t` of the size passed; 0 is the calling thread.
        let ret = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
        if ret != 0 {
            let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            return Err(KernelError::Failed { command, errno });
        }
        Ok(())
    }

    /// The size of a page, which `mmap` offsets and a ring buffer's layout are counted in.
    pub(crate) fn page_size() -> usize {
        // SAFETY: `sysconf` only reads a system constant.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).unwrap_or(4096)
    }

    /// The CPU the calling thread runs on (`sched_getcpu`).
    pub(crate) fn current_cpu() -> Result<usize, KernelError> {
        // SAFETY: no arguments; reads the calling thread's CPU.
        let ret = unsafe { libc::sched_getcpu() };
        usize::try_from(ret).map_err(|_| KernelError::Failed {
            command: Command::SchedSetaffinity,
            errno: io::Error::last_os_error().raw_os_error().unwrap_or(0),
        })
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

    /// No kernel, so no mapping can exist.
    #[derive(Debug)]
    pub(crate) enum Mapping {}

    impl Mapping {
        pub(crate) fn new(
            fd: &Fd,
            _offset: usize,
            _len: usize,
            _writable: bool,
        ) -> Result<Mapping, KernelError> {
            match *fd {}
        }
        pub(crate) fn load_u64(&self, _offset: usize) -> Option<u64> {
            match *self {}
        }
        pub(crate) fn store_u64(&self, _offset: usize, _value: u64) -> Option<()> {
            match *self {}
        }
        pub(crate) fn load_u32(&self, _offset: usize) -> Option<u32> {
            match *self {}
        }
        pub(crate) fn read(&self, _offset: usize, _len: usize) -> Option<Vec<u8>> {
            match *self {}
        }
    }

    pub(crate) fn pin_to_cpu(_cpu: usize) -> Result<(), KernelError> {
        Err(KernelError::Refused {
            command: Command::SchedSetaffinity,
            reason: Refusal::NotLinux,
        })
    }

    pub(crate) fn current_cpu() -> Result<usize, KernelError> {
        pin_to_cpu(0).map(|()| 0)
    }

    pub(crate) fn page_size() -> usize {
        4096
    }
}
