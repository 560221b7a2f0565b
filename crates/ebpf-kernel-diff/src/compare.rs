//! One program on both oracles: [`Subject`] (what to load and how to run it), [`compare`]
//! (the kernel's `BPF_PROG_TEST_RUN` against every engine of `Engine::ALL`) and [`Verdict`].
//!
//! # Input mapping
//!
//! Every subject is loaded into the kernel as an XDP program, behind a prologue that turns the
//! kernel's entry state into ours: with input memory of `L` bytes,
//!
//! ```text
//! r2 = *(u32 *)(r1 + 4)     data_end
//! r1 = *(u32 *)(r1 + 0)     data
//! r1 += L
//! if r1 <= r2 goto +2       proves L bytes of packet to the kernel's verifier
//! r0 = 0
//! exit
//! r1 -= L                   r1 = the input, as in our r1
//! r2 = L                    r2 = its length, as in our r2
//! ```
//!
//! and the packet is the input (padded with zeros to the 14 bytes `BPF_PROG_TEST_RUN` wants;
//! the program sees only `L` of them, and only those are compared after the run). Without input,
//! the prologue is `r1 = 0; r2 = 0`, as our `Input::none()` starts. The prologue touches only
//! `r0`–`r2` (and `r0` only on the path that never runs), so a program that reads another
//! register before writing it is rejected by both verifiers, as it should be. Socket filters
//! would do for programs without input, but their packet starts at the network header and they
//! cannot read it directly; XDP gives `r0` and the input most faithfully.
//!
//! The kernel returns the low 32 bits of `r0`; they are what is compared (generated programs
//! fold the upper half in before they exit).

use std::fmt::Write as _;

use ebpf_kernel::{KernelError, LoadOptions, ProgramType, TestRun};
use ebpf_vm::isa::{self, AluOp, Cond, Insn, Operand, Reg, Size, Width};
use ebpf_vm::{Engine, Input, LoadError, Trap, Vm, VmBuilder};

/// The smallest packet `BPF_PROG_TEST_RUN` takes for XDP (an Ethernet header).
const MIN_PACKET: usize = 14;

/// How our engines load the program.
#[derive(Clone, Debug)]
pub(crate) enum Ours {
    /// Bytecode, verified by `VmBuilder::load`.
    Bytes(Vec<u8>),
    /// A function of an ELF object, by `VmBuilder::load_elf`.
    Elf {
        /// The object's bytes.
        object: Vec<u8>,
        /// The function.
        function: String,
    },
}

/// One program to compare.
#[derive(Clone, Debug)]
pub(crate) struct Subject {
    /// What the report calls it.
    pub(crate) name: String,
    /// How our engines load it.
    pub(crate) ours: Ours,
    /// The program the kernel gets (before the prologue): the same bytes, or the ELF
    /// function as our loader links it.
    pub(crate) kernel: Vec<u8>,
    /// The input memory, if any.
    pub(crate) mem: Option<Vec<u8>>,
    /// Our instruction budget (the VM refuses a looping program without one).
    pub(crate) budget: u64,
    /// Why the results cannot be compared even if both sides load it (a helper whose id means
    /// something else in the kernel, data regions the kernel would need maps for).
    pub(crate) incomparable: Option<String>,
}

/// What comparing one subject found.
#[derive(Clone, Debug)]
pub(crate) enum Verdict {
    /// Both loaded it and agree.
    Match,
    /// Both loaded it; the results are not comparable (the reason).
    NotComparable(String),
    /// The kernel rejected it (the last line of its log); whether we did too.
    RejectedByKernel { reason: String, by_us_too: bool },
    /// The kernel loaded it and we did not (which engine, and why).
    RejectedOnlyByUs(String),
    /// Both loaded it and they disagree: a report with everything needed to reproduce it.
    Mismatch(String),
}

impl Verdict {
    /// One line for `--verbose`.
    pub(crate) fn summary(&self) -> String {
        match self {
            Verdict::Match => "match".to_string(),
            Verdict::Mismatch(_) => "MISMATCH".to_string(),
            Verdict::NotComparable(why) => format!("not compared: {why}"),
            Verdict::RejectedOnlyByUs(why) => format!("REJECTED ONLY BY US: {why}"),
            Verdict::RejectedByKernel { reason, by_us_too } => {
                let both = if *by_us_too { " (and by us)" } else { "" };
                format!("rejected by the kernel{both}: {reason}")
            }
        }
    }

    /// Whether we rejected the program (whatever the kernel did).
    pub(crate) fn rejected_by_us(&self) -> bool {
        matches!(
            self,
            Verdict::RejectedOnlyByUs(_)
                | Verdict::RejectedByKernel {
                    by_us_too: true,
                    ..
                }
        )
    }
}

/// What one side computed: `r0` (all 64 bits) or a trap, and the input memory afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    result: Result<u64, Trap>,
    mem: Option<Vec<u8>>,
}

/// The prologue of the module comment, for input memory of `len` bytes (or none).
fn prologue(len: Option<usize>) -> Result<Vec<Insn>, String> {
    let mov = |dst, imm| Insn::Alu {
        width: Width::W64,
        op: AluOp::Mov,
        dst,
        src: Operand::Imm(imm),
    };
    let Some(len) = len else {
        return Ok(vec![mov(Reg::R1, 0), mov(Reg::R2, 0)]);
    };
    let len = i32::try_from(len).map_err(|_| format!("an input of {len} bytes"))?;
    let add = |dst, imm| Insn::Alu {
        width: Width::W64,
        op: AluOp::Add,
        dst,
        src: Operand::Imm(imm),
    };
    let load = |dst, off| Insn::Load {
        size: Size::W,
        signed: false,
        dst,
        src: Reg::R1,
        off,
    };
    Ok(vec![
        load(Reg::R2, 4),
        load(Reg::R1, 0),
        add(Reg::R1, len),
        Insn::Jump {
            width: Width::W64,
            cond: Cond::Le,
            dst: Reg::R1,
            src: Operand::Reg(Reg::R2),
            off: 2,
        },
        mov(Reg::R0, 0),
        Insn::Exit,
        add(Reg::R1, len.wrapping_neg()),
        mov(Reg::R2, len),
    ])
}

/// The kernel's side: `Ok((retval, packet))`, or `Err` with the rejection (with the
/// verifier's log if `log`).
fn run_kernel(
    subject: &Subject,
    log: bool,
) -> Result<Result<(u32, Vec<u8>), KernelError>, KernelError> {
    let prologue = prologue(subject.mem.as_ref().map(Vec::len)).map_err(|what| {
        KernelError::InvalidArgument {
            command: ebpf_kernel::Command::ProgLoad,
            what,
        }
    })?;
    let mut bytes = isa::encode(&prologue);
    bytes.extend_from_slice(&subject.kernel);
    let options = LoadOptions {
        name: "kernel_diff",
        log_on_rejection: log,
        ..LoadOptions::default()
    };
    let program = match ebpf_kernel::load_program(ProgramType::Xdp, &bytes, &options) {
        Ok(p) => p,
        Err(e @ KernelError::Rejected { .. }) => return Ok(Err(e)),
        Err(e) => return Err(e),
    };
    let mut packet = subject.mem.clone().unwrap_or_default();
    let len = packet.len();
    packet.resize(len.max(MIN_PACKET), 0);
    let out = program.test_run(&TestRun::new(&packet))?;
    let mut data = out.data;
    data.truncate(len);
    Ok(Ok((out.retval, data)))
}

/// A builder for our side: the conformance helper (id 5), which the vectors and fixtures call,
/// and the subject's budget.
fn builder(engine: Engine, budget: u64) -> VmBuilder {
    Vm::builder()
        .engine(engine)
        .helper(ebpf_vm::CONFORMANCE_HELPER_ID, ebpf_vm::conformance_helper)
        .budget(budget)
}

fn load_ours(subject: &Subject, engine: Engine) -> Result<Vm, LoadError> {
    let b = builder(engine, subject.budget);
    match &subject.ours {
        Ours::Bytes(bytes) => b.load(bytes),
        Ours::Elf { object, function } => b.load_elf(object, ebpf_vm::Selector::Function(function)),
    }
}

fn run_ours(vm: &Vm, subject: &Subject) -> Outcome {
    let mut mem = subject.mem.clone();
    let result = match mem.as_deref_mut() {
        Some(m) => vm.run_with(Input::new(m)),
        None => vm.run_with(Input::none()),
    };
    Outcome {
        result: result.map(|exit| exit.r0),
        mem,
    }
}

/// Loads and runs `subject` on the kernel and on every engine. `Err`: the kernel failed in a
/// way that is not a verdict on the program (a refusal, a failed test run).
pub(crate) fn compare(subject: &Subject) -> Result<Verdict, KernelError> {
    let mut vms = Vec::new();
    let mut our_rejection = None;
    for &engine in Engine::ALL {
        match load_ours(subject, engine) {
            Ok(vm) => vms.push((engine, vm)),
            Err(e) => {
                our_rejection.get_or_insert_with(|| format!("{engine}: {e}"));
            }
        }
    }
    // The kernel's reasons are reported only for what it alone rejects; a rejection by both
    // needs no second, logging load (which can take as long as the first).
    let kernel = run_kernel(subject, our_rejection.is_none())?;
    let (retval, packet) = match kernel {
        Err(e) => {
            let reason = match &e {
                KernelError::Rejected { log, .. } => last_reason(log),
                other => other.to_string(),
            };
            return Ok(Verdict::RejectedByKernel {
                reason,
                by_us_too: our_rejection.is_some(),
            });
        }
        Ok(out) => out,
    };
    if let Some(why) = our_rejection {
        return Ok(Verdict::RejectedOnlyByUs(why));
    }
    if let Some(why) = &subject.incomparable {
        return Ok(Verdict::NotComparable(why.clone()));
    }
    let kernel_mem = subject.mem.as_ref().map(|_| packet);
    let mut disagreements = Vec::new();
    let mut outcomes = Vec::new();
    for (engine, vm) in &vms {
        let ours = run_ours(vm, subject);
        let agrees = matches!(ours.result, Ok(r0) if r0 as u32 == retval) && ours.mem == kernel_mem;
        if !agrees {
            disagreements.push(*engine);
        }
        outcomes.push((*engine, ours));
    }
    if disagreements.is_empty() {
        return Ok(Verdict::Match);
    }
    // The kernel lets root read stack bytes never written and leaves them as they were; ours
    // are zero (or this run's earlier bytes), so the results need not agree with the kernel's
    // — but our engines all read the same bytes, so they must still agree with each other.
    let uninit_stack = vms.iter().any(|(_, vm)| {
        vm.warnings()
            .iter()
            .any(|f| matches!(f.kind, ebpf_vm::FindingKind::UninitializedStack { .. }))
    });
    let engines_agree = outcomes.windows(2).all(|pair| pair[0].1 == pair[1].1);
    if uninit_stack && engines_agree {
        return Ok(Verdict::NotComparable(
            "reads stack bytes never written, which the kernel does not zero".into(),
        ));
    }
    Ok(Verdict::Mismatch(reproducer(
        subject,
        retval,
        kernel_mem.as_deref(),
        &outcomes,
    )))
}

/// The verifier's reason: the last line of its log before the statistics.
fn last_reason(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| {
            !(l.starts_with("processed ")
                || l.starts_with("verification time")
                || l.starts_with("stack depth")
                || l.trim().is_empty())
        })
        .unwrap_or("(no log)")
        .to_string()
}

/// Everything needed to reproduce a mismatch: the program slot by slot, the input, and both
/// sides' results.
fn reproducer(
    subject: &Subject,
    retval: u32,
    kernel_mem: Option<&[u8]>,
    ours: &[(Engine, Outcome)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "mismatch: {}", subject.name);
    let _ = writeln!(
        out,
        "  program ({} slots, as the kernel gets it after the prologue):",
        subject.kernel.len() / 8
    );
    out.push_str(&listing(&subject.kernel));
    if let Some(mem) = &subject.mem {
        let _ = writeln!(out, "  input: {}", hex(mem));
    }
    let _ = write!(out, "  kernel: retval {retval:#x}");
    if let Some(mem) = kernel_mem {
        let _ = write!(out, ", memory {}", hex(mem));
    }
    out.push('\n');
    for (engine, o) in ours {
        let _ = match &o.result {
            Ok(r0) => write!(out, "  {engine}: r0 {r0:#x} (low half {:#x})", *r0 as u32),
            Err(trap) => write!(out, "  {engine}: {trap}"),
        };
        if let Some(mem) = &o.mem {
            let _ = write!(out, ", memory {}", hex(mem));
        }
        out.push('\n');
    }
    out
}

/// One line per slot: pc, bytes, and the instruction where the slot decodes.
pub(crate) fn listing(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut pc = 0;
    while pc * 8 < bytes.len() {
        let (text, slots) = match isa::decode_at(bytes, pc) {
            Ok(insn) => (insn.conformance().to_string(), insn.slots()),
            Err(e) => (format!("(does not decode: {})", e.kind), 1),
        };
        for k in 0..slots {
            let slot = bytes.get((pc + k) * 8..(pc + k + 1) * 8).unwrap_or(&[]);
            let text = if k == 0 { text.as_str() } else { "" };
            let _ = writeln!(out, "    {:4}: {}  {text}", pc + k, hex(slot));
        }
        pc += slots;
    }
    out
}

/// Bytes as space-separated hex pairs, for reproducers.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prologue must be what the module comment says: checked by decoding it.
    #[test]
    fn the_prologue_maps_the_packet_to_r1_and_r2() {
        let text = |len| {
            let insns = prologue(len).unwrap();
            isa::disassemble(&isa::decode(&isa::encode(&insns)).unwrap())
        };
        assert_eq!(
            text(Some(20)),
            "ldxw %r2, [%r1+4]\nldxw %r1, [%r1]\nadd %r1, 20\njle %r1, %r2, +2\nmov %r0, 0\n\
             exit\nadd %r1, -20\nmov %r2, 20\n"
        );
        assert_eq!(text(None), "mov %r1, 0\nmov %r2, 0\n");
    }

    #[test]
    fn the_listing_shows_undecodable_slots() {
        let bytes = [
            0xb7, 0, 0, 0, 7, 0, 0, 0, //
            0xbf, 0x10, 1, 0, 0, 0, 0, 0,
        ];
        let listing = listing(&bytes);
        assert!(listing.contains("mov %r0, 7"), "{listing}");
        assert!(
            listing.contains("does not decode: invalid `offset` 1"),
            "{listing}"
        );
    }

    /// Whether the kernel loads BPF here (CI must be able to).
    fn kernel() -> bool {
        match ebpf_kernel::probe() {
            Ok(()) => true,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "CI must run these: {e}");
                eprintln!("warning: skipping a kernel-diff test: {e}");
                false
            }
        }
    }

    fn subject(asm: &str, mem: Option<Vec<u8>>) -> Subject {
        let bytes = isa::assemble(asm).unwrap().to_bytes();
        raw(bytes, mem)
    }

    fn raw(bytes: Vec<u8>, mem: Option<Vec<u8>>) -> Subject {
        Subject {
            name: "test".into(),
            ours: Ours::Bytes(bytes.clone()),
            kernel: bytes,
            mem,
            budget: 1000,
            incomparable: None,
        }
    }

    /// Each verdict, from a program that earns it.
    #[test]
    fn every_verdict_is_reachable() {
        if !kernel() {
            return;
        }
        let verdict = |s: &Subject| compare(s).unwrap();
        // Input memory, read and written through the prologue's r1 and r2.
        let swap = subject(
            "ldxb %r3, [%r1]\nldxb %r4, [%r1+1]\nstxb [%r1], %r4\nstxb [%r1+1], %r3\n\
             mov %r0, %r2\nexit",
            Some(vec![1, 2, 3]),
        );
        assert!(
            matches!(verdict(&swap), Verdict::Match),
            "{:?}",
            verdict(&swap)
        );
        // Code that never runs holds a slot neither side decodes... and both load it.
        let mut dead = isa::assemble("mov %r0, 7\njeq %r0, 7, +1\nmov %r0, 0\nexit")
            .unwrap()
            .to_bytes();
        dead[16..24].copy_from_slice(&[0xbf, 0x10, 1, 0, 0, 0, 0, 0]);
        assert!(matches!(verdict(&raw(dead, None)), Verdict::Match));
        // RFC 9669 defines division by zero; the kernel refuses an immediate zero.
        let div = subject("mov %r0, 1\ndiv %r0, 0\nexit", None);
        assert!(
            matches!(
                verdict(&div),
                Verdict::RejectedByKernel { ref reason, by_us_too: false } if reason == "div by zero"
            ),
            "{:?}",
            verdict(&div)
        );
        // Root may read stack bytes never written, and so may we (a warning); the kernel's
        // are whatever its stack held, ours zero: equal, or not comparable.
        let stack = subject("ldxdw %r0, [%r10-8]\nexit", None);
        assert!(
            match verdict(&stack) {
                Verdict::Match => true,
                Verdict::NotComparable(why) => why.contains("never written"),
                _ => false,
            },
            "{:?}",
            verdict(&stack)
        );
        // An address is not the same number in both address spaces.
        let address = subject("mov %r0, %r10\nexit", None);
        let Verdict::Mismatch(report) = verdict(&address) else {
            panic!("{:?}", verdict(&address))
        };
        assert!(report.contains("mov %r0, %r10"), "{report}");
        assert!(report.contains("kernel: retval"), "{report}");
        // Both reject, and a helper call is not compared.
        let uninit = subject("mov %r0, %r5\nexit", None);
        assert!(matches!(
            verdict(&uninit),
            Verdict::RejectedByKernel {
                by_us_too: true,
                ..
            }
        ));
        let helper = Subject {
            incomparable: Some("calls helper 5".into()),
            ..subject("call 5\nexit", None)
        };
        assert!(
            matches!(verdict(&helper), Verdict::NotComparable(_)),
            "{:?}",
            verdict(&helper)
        );
    }

    #[test]
    fn the_reason_is_the_last_line_before_the_statistics() {
        let log = "0: (b7) r0 = 0\nR1 !read_ok\nprocessed 2 insns (limit 1000000)\n";
        assert_eq!(last_reason(log), "R1 !read_ok");
        assert_eq!(last_reason(""), "(no log)");
    }
}
