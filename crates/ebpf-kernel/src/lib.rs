//! `ebpf-kernel`: the Linux kernel's `bpf(2)` syscall, for using the running kernel as a
//! second oracle beside ebpf-vm's interpreter.
//!
//! What it is for: loading a program into the kernel ([`load_program`], as a socket filter, an
//! XDP or a TC program, with the verifier's log on rejection), running it with
//! `BPF_PROG_TEST_RUN` ([`Program::test_run`]: packet in and out, return value, repeat), and
//! creating and using maps ([`create_map`], [`Map::lookup`], [`Map::update`], [`Map::delete`],
//! [`Map::next_key`], …) whose file descriptors are patched into `lddw` pseudo instructions
//! ([`patch_map_fd`], [`patch_map_value`]); a whole object at once ([`KernelObject`]: its
//! maps, its programs with the maps patched in, prog arrays filled); reading what programs
//! left in maps ([`Map::entries`], [`per_cpu_values`], ring buffers through [`RingReader`]);
//! and pinning the calling thread to a CPU ([`pin_to_cpu`]) so that per-CPU maps fill one
//! known copy. `cargo xtask kernel-diff` is built on it, and so is its comparison of map
//! contents after every packet.
//!
//! What it is not for: running programs for users (that is `ebpf-vm`), parsing ELF objects or
//! BTF (the loader does that on our side and hands this crate sizes and bytes), naming map
//! types (a map's type is the kernel's number, which `ebpf_maps::MapType::kernel_id` gives),
//! attaching programs to interfaces or sockets, or loading an object's own BTF into the kernel
//! (the only BTF it loads is the minimal one a callback needs, [`callback_btf`]).
//!
//! # Where the kernel refuses
//!
//! Every call returns [`KernelError::Refused`] where the kernel will not do BPF for this
//! process: not root and no `CAP_BPF` (`EPERM`), no `bpf` syscall (`ENOSYS`), or not Linux at
//! all (the crate compiles everywhere; off Linux every call is refused). A tool or test
//! skips on a refusal, and [`probe`] asks once up front.
//!
//! # Why raw syscalls
//!
//! The alternatives were `aya` and `libbpf-rs`. `libbpf-rs` wraps libbpf's C library through
//! `libbpf-sys`, which compiles libbpf (and wants libelf and zlib) in its build script: the
//! heaviest build of the three on a 2-core machine, and a C dependency for a test tool. `aya`
//! is pure Rust, but its loader starts from an ELF object (through `aya-obj` and `object`):
//! its way of loading a bare instruction stream — which is what kernel-diff does thousands of
//! times with generated programs — is private. What the maps work needs (map creation from
//! sizes we parsed ourselves, element access, fd relocation) is a handful of fixed-layout
//! `bpf_attr` structs. So this crate calls `bpf(2)` through `libc::syscall` (libc is already a
//! workspace dependency) with the structs written out in `attr.rs`: no new dependency, a build
//! of seconds, and every field the kernel sees is visible here. `unsafe` is confined to
//! `sys.rs`: the syscall itself, taking ownership of the file descriptors it returns, mapping a
//! ring buffer's pages, and `sched_setaffinity`.
//!
//! ```no_run
//! use ebpf_kernel::{LoadOptions, ProgramType, TestRun, load_program};
//!
//! // mov r0, 42; exit
//! let insns = [0xb7, 0, 0, 0, 42, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
//! match load_program(ProgramType::Xdp, &insns, &LoadOptions::default()) {
//!     Ok(program) => {
//!         let out = program.test_run(&TestRun::new(&[0; 14]))?;
//!         assert_eq!(out.retval, 42);
//!     }
//!     Err(e) if e.is_refusal() => eprintln!("skipped: {e}"),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod attr;
mod btf;
mod error;
mod map;
mod object;
mod program;
mod ring;
mod sys;

pub use btf::{Btf, CALLBACK_FUNC_TYPE, callback_btf, load_btf, subprogram_starts};
pub use error::{Command, KernelError, PatchError, Refusal};
pub use map::{
    BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_F_RDONLY_PROG, Entry, Keys, Map, MapSpec, UpdateFlags,
    create_map, create_map_of_maps, patch_map_fd, patch_map_value, per_cpu_values, possible_cpus,
};
pub use object::{KernelObject, ObjectError, ObjectMap, ObjectProgram};
pub use program::{
    FuncInfo, LoadOptions, Program, ProgramType, TestOutput, TestRun, load_program, probe,
};
pub use ring::RingReader;

/// Restricts the calling thread to CPU `cpu` (`sched_setaffinity`): the kernel runs a
/// `BPF_PROG_TEST_RUN` on the caller's CPU, so every run of a pinned thread updates that
/// CPU's copy of a per-CPU map.
pub fn pin_to_cpu(cpu: usize) -> Result<(), KernelError> {
    sys::pin_to_cpu(cpu)
}

/// The CPU the calling thread runs on now (`sched_getcpu`).
pub fn current_cpu() -> Result<usize, KernelError> {
    sys::current_cpu()
}
