//! Programs in the kernel: [`load_program`] (`BPF_PROG_LOAD`, with the verifier's log on
//! rejection) and [`Program::test_run`] (`BPF_PROG_TEST_RUN`).

use std::fmt;

use crate::attr::{self, ptr};
use crate::error::ERRNO_ENOSPC;
use crate::sys::{self, Fd};
use crate::{Btf, Command, KernelError, Refusal};

/// What kind of program the kernel loads it as: that decides what `r1` points to, which
/// helpers exist, and how the verifier checks context and packet accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProgramType {
    /// `BPF_PROG_TYPE_SOCKET_FILTER`: `r1` is a `struct __sk_buff`; no direct packet access
    /// (only `LD_ABS`/`LD_IND` and `bpf_skb_load_bytes`).
    SocketFilter,
    /// `BPF_PROG_TYPE_SCHED_CLS` (TC): `r1` is a `struct __sk_buff` with direct packet access.
    SchedCls,
    /// `BPF_PROG_TYPE_XDP`: `r1` is a `struct xdp_md` whose `data`/`data_end` are the packet.
    Xdp,
}

impl ProgramType {
    /// The number in `enum bpf_prog_type`.
    pub fn number(self) -> u32 {
        match self {
            ProgramType::SocketFilter => 1,
            ProgramType::SchedCls => 3,
            ProgramType::Xdp => 6,
        }
    }
}

impl fmt::Display for ProgramType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProgramType::SocketFilter => "socket filter",
            ProgramType::SchedCls => "TC classifier",
            ProgramType::Xdp => "XDP",
        })
    }
}

/// How [`load_program`] loads.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions<'a> {
    /// The program's name, as `bpftool prog` shows it: at most 15 bytes of `[A-Za-z0-9_.]`
    /// (default `ebpf_vm`).
    pub name: &'a str,
    /// The license (default `GPL`, which lets the program call GPL-only helpers).
    pub license: &'a str,
    /// `prog_flags` (`BPF_F_*`, default 0).
    pub flags: u32,
    /// Whether a rejected program is loaded a second time with a log, for
    /// [`KernelError::Rejected`]'s `log` (default true; a program the verifier spends long on
    /// costs that time twice).
    pub log_on_rejection: bool,
    /// The first size of the log buffer for the second, logging load after a rejection; it
    /// grows fourfold while the kernel says it is too small, up to 64 MiB (default 1 MiB).
    pub log_size: usize,
    /// BTF function information (default none): the BTF and, per subprogram, its first slot
    /// and function type id. A program that takes a callback's address needs it (see
    /// [`callback_btf`](crate::callback_btf)).
    pub func_info: Option<FuncInfo<'a>>,
}

/// BTF function information for [`LoadOptions::func_info`].
#[derive(Clone, Copy, Debug)]
pub struct FuncInfo<'a> {
    /// The BTF the type ids are in.
    pub btf: &'a Btf,
    /// Per subprogram, in order of their first slots: (first slot, `BTF_KIND_FUNC` type id).
    pub records: &'a [(u32, u32)],
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions {
            name: "ebpf_vm",
            license: "GPL",
            flags: 0,
            log_on_rejection: true,
            log_size: 1 << 20,
            func_info: None,
        }
    }
}

/// The largest log buffer a rejection is retried with.
const MAX_LOG: usize = 64 << 20;

/// A program loaded into the kernel; unloaded when dropped (unless something else holds it).
#[derive(Debug)]
pub struct Program {
    fd: Fd,
    program_type: ProgramType,
}

#[cfg(target_os = "linux")]
impl std::os::fd::AsFd for Program {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self.fd.owned())
    }
}

/// Loads `insns` (8-byte slots, as the ELF `.text` holds them) into the kernel as a program
/// of `program_type`.
///
/// The first attempt asks for no log (logging slows the verifier down); a rejected program is
/// loaded once more with log level 1 so that [`KernelError::Rejected`] carries the
/// verifier's reasons (unless [`LoadOptions::log_on_rejection`] is off). Maps the program refers to must have been patched in
/// ([`patch_map_fd`](crate::patch_map_fd)) and stay open until this returns.
pub fn load_program(
    program_type: ProgramType,
    insns: &[u8],
    options: &LoadOptions<'_>,
) -> Result<Program, KernelError> {
    let command = Command::ProgLoad;
    if insns.is_empty() || !insns.len().is_multiple_of(8) {
        return Err(KernelError::invalid(
            command,
            format!(
                "{} bytes are not a non-empty whole number of 8-byte slots",
                insns.len()
            ),
        ));
    }
    let insn_cnt = u32::try_from(insns.len() / 8)
        .map_err(|_| KernelError::invalid(command, "more than 2^32 instructions"))?;
    let name = attr::obj_name(options.name).ok_or_else(|| {
        KernelError::invalid(
            command,
            format!(
                "program name {:?} is not at most 15 bytes of [A-Za-z0-9_.]",
                options.name
            ),
        )
    })?;
    let mut license = options.license.as_bytes().to_vec();
    if license.contains(&0) {
        return Err(KernelError::invalid(command, "the license contains a NUL"));
    }
    license.push(0);
    let records: Vec<u8> = options
        .func_info
        .map(|f| {
            f.records
                .iter()
                .flat_map(|(slot, ty)| [slot.to_le_bytes(), ty.to_le_bytes()].concat())
                .collect()
        })
        .unwrap_or_default();
    let mut base = attr::ProgLoad {
        prog_type: program_type.number(),
        insn_cnt,
        insns: ptr(insns.as_ptr()),
        license: ptr(license.as_ptr()),
        prog_flags: options.flags,
        prog_name: name,
        ..attr::ProgLoad::default()
    };
    if let Some(f) = options.func_info {
        base.prog_btf_fd = f.btf.fd().raw();
        base.func_info_rec_size = 8;
        base.func_info = ptr(records.as_ptr());
        base.func_info_cnt = u32::try_from(f.records.len())
            .map_err(|_| KernelError::invalid(command, "more than 2^32 func_info records"))?;
    }
    let first = {
        let mut a = base;
        // SAFETY: `insns` holds `insn_cnt` 8-byte slots, `license` is NUL-terminated, and
        // `records` holds `func_info_cnt` 8-byte records (or none is given); all outlive the
        // call, and no log buffer is given.
        unsafe { sys::bpf(command, &mut a) }
    };
    let errno = match first {
        Ok(ret) => {
            return Ok(Program {
                fd: Fd::take(command, ret)?,
                program_type,
            });
        }
        Err(KernelError::Failed { errno, .. }) if !options.log_on_rejection => {
            return Err(KernelError::Rejected {
                errno,
                log: String::new(),
            });
        }
        Err(KernelError::Failed { errno, .. }) => errno,
        Err(
            e @ KernelError::Refused {
                reason: Refusal::NotPermitted,
                ..
            },
        ) => {
            // EPERM is a refusal only if the verifier says nothing: ask again with a log.
            match logged_rejection(base, options.log_size)? {
                Some(rejected) => return Err(rejected),
                None => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    Err(
        logged_rejection(base, options.log_size)?.unwrap_or(KernelError::Rejected {
            errno,
            log: String::new(),
        }),
    )
}

/// Loads `base` again with a log; `Some(Rejected)` with the log, or `None` for a refusal
/// without one. A load that succeeds the second time is unloaded and reported as a rejection
/// without a log (the kernel changed its mind; the caller saw it fail once).
fn logged_rejection(
    base: attr::ProgLoad,
    first_size: usize,
) -> Result<Option<KernelError>, KernelError> {
    let command = Command::ProgLoad;
    let mut size = first_size.clamp(4096, MAX_LOG);
    loop {
        let mut log = vec![0u8; size];
        let mut a = attr::ProgLoad {
            log_level: 1,
            log_size: size as u32,
            log_buf: ptr(log.as_mut_ptr()),
            ..base
        };
        // SAFETY: as for the first load in `load_program` (the same `insns` and `license`
        // pointers, still alive in the caller), plus `log`, writable for `log_size` bytes and
        // alive for the call.
        let result = unsafe { sys::bpf(command, &mut a) };
        let text = log_text(&log);
        match result {
            Ok(ret) => {
                // Closing the descriptor unloads the program again.
                let _unloaded = Fd::take(command, ret)?;
                return Ok(Some(KernelError::Rejected {
                    errno: 0,
                    log: text,
                }));
            }
            Err(KernelError::Failed { errno, .. }) if errno == ERRNO_ENOSPC && size < MAX_LOG => {
                size = (size * 4).min(MAX_LOG);
            }
            Err(KernelError::Failed { errno, .. }) => {
                return Ok(Some(KernelError::Rejected { errno, log: text }));
            }
            Err(
                e @ KernelError::Refused {
                    reason: Refusal::NotPermitted,
                    ..
                },
            ) => {
                return Ok((!text.is_empty()).then(|| KernelError::Rejected {
                    errno: e.errno().unwrap_or(1),
                    log: text,
                }));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The log up to its NUL, as text.
fn log_text(log: &[u8]) -> String {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    String::from_utf8_lossy(&log[..end]).trim_end().to_string()
}

/// Checks once whether the kernel loads BPF for this process: loads `r0 = 0; exit` as a
/// socket filter. `Err` with [`KernelError::is_refusal`] means skip.
pub fn probe() -> Result<(), KernelError> {
    const RETURN_0: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    load_program(
        ProgramType::SocketFilter,
        &RETURN_0,
        &LoadOptions {
            name: "probe",
            ..LoadOptions::default()
        },
    )
    .map(drop)
}

/// One `BPF_PROG_TEST_RUN`: the packet and, optionally, the context the program starts with.
#[derive(Clone, Copy, Debug)]
pub struct TestRun<'a> {
    /// The packet (`data_in`). The kernel wants at least 14 bytes (an Ethernet header) for
    /// XDP and skb programs.
    pub data: &'a [u8],
    /// The context (`ctx_in`): a `struct xdp_md` or `struct __sk_buff` prefix, or `None`.
    pub context: Option<&'a [u8]>,
    /// How many times to run (`repeat`; 0 and 1 both run once). The return value and packet
    /// are the last run's.
    pub repeat: u32,
    /// Room for the packet after the run (default: its length plus 4096, enough for any
    /// growth the kernel allows).
    pub data_out_capacity: Option<usize>,
}

impl<'a> TestRun<'a> {
    /// One run on `data`, no context.
    pub fn new(data: &'a [u8]) -> TestRun<'a> {
        TestRun {
            data,
            context: None,
            repeat: 1,
            data_out_capacity: None,
        }
    }

    /// Runs `n` times.
    pub fn repeat(self, n: u32) -> TestRun<'a> {
        TestRun { repeat: n, ..self }
    }

    /// Starts from `context`; its state after the run is returned.
    pub fn context(self, context: &'a [u8]) -> TestRun<'a> {
        TestRun {
            context: Some(context),
            ..self
        }
    }
}

/// What a test run returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestOutput {
    /// The program's return value: the low 32 bits of `r0`.
    pub retval: u32,
    /// The packet after the (last) run. Socket filters start at the network header and
    /// never see the first 14 bytes (the Ethernet header), which the kernel zeroes here.
    pub data: Vec<u8>,
    /// Whether the packet grew past the capacity and `data` holds only its start.
    pub data_truncated: bool,
    /// The context after the run (empty if none was given).
    pub context: Vec<u8>,
    /// Average time of one run, in nanoseconds, as the kernel measured it.
    pub duration_ns: u32,
}

impl Program {
    /// The descriptor, for the crate's other modules (prog arrays).
    pub(crate) fn fd(&self) -> &Fd {
        &self.fd
    }

    /// How it was loaded.
    pub fn program_type(&self) -> ProgramType {
        self.program_type
    }

    /// Runs the program in the kernel on `run`'s packet (`BPF_PROG_TEST_RUN`).
    pub fn test_run(&self, run: &TestRun<'_>) -> Result<TestOutput, KernelError> {
        let command = Command::ProgTestRun;
        let too_big = |what: &str| KernelError::invalid(command, format!("{what} exceeds 4 GiB"));
        let capacity = run
            .data_out_capacity
            .unwrap_or_else(|| run.data.len().saturating_add(4096));
        let mut data_out = vec![0u8; capacity];
        let context = run.context.unwrap_or(&[]);
        let mut context_out = vec![0u8; context.len()];
        let mut a = attr::TestRun {
            prog_fd: self.fd.raw(),
            data_size_in: u32::try_from(run.data.len()).map_err(|_| too_big("the packet"))?,
            data_size_out: u32::try_from(capacity).map_err(|_| too_big("the capacity"))?,
            data_in: ptr(run.data.as_ptr()),
            data_out: ptr(data_out.as_mut_ptr()),
            repeat: run.repeat,
            ..attr::TestRun::default()
        };
        if !context.is_empty() {
            a.ctx_size_in = u32::try_from(context.len()).map_err(|_| too_big("the context"))?;
            a.ctx_size_out = a.ctx_size_in;
            a.ctx_in = ptr(context.as_ptr());
            a.ctx_out = ptr(context_out.as_mut_ptr());
        }
        // SAFETY: `data_in` is readable for `data_size_in` bytes and `data_out` writable for
        // `data_size_out` bytes (the kernel writes at most that much and reports the full size
        // with ENOSPC); the context buffers likewise, or all zero; all outlive the call.
        let result = unsafe { sys::bpf(command, &mut a) };
        match result {
            Ok(_) => {}
            // The program ran; only an output (the packet or the context) did not fit.
            Err(KernelError::Failed { errno, .. }) if errno == ERRNO_ENOSPC => {}
            Err(e) => return Err(e),
        }
        let truncated = a.data_size_out as usize > capacity;
        data_out.truncate((a.data_size_out as usize).min(capacity));
        context_out.truncate((a.ctx_size_out as usize).min(context.len()));
        Ok(TestOutput {
            retval: a.retval,
            data: data_out,
            data_truncated: truncated,
            context: context_out,
            duration_ns: a.duration,
        })
    }
}
