//! `kernel-diff`: the running Linux kernel as a second oracle. Loads programs into the kernel
//! (`ebpf-kernel`, as XDP programs), runs them with `BPF_PROG_TEST_RUN` on the same input as
//! every engine of `ebpf_vm::Engine::ALL`, and compares.
//!
//! ```text
//! cargo xtask kernel-diff [--generated N] [--seed S] [--set conformance|elf|generated|corpus]...
//! ```
//!
//! ```text
//! cargo xtask kernel-diff --survey DIR [--verbose]
//! ```
//!
//! surveys real-world objects instead (`survey.rs`): every program of every BPF object under
//! DIR loaded, run and compared, or refused with the reason counted.
//!
//! Four sets (see each module): the conformance vectors, the ELF fixtures, `N` generated
//! programs (default 2,000), and the corpus of real XDP and socket-filter programs
//! (`tests/bpf`) with their maps, compared packet by packet (`corpus.rs`; the seed also picks
//! its random packets). Each set prints its counts, the reasons the kernel rejected
//! programs, what was not compared and why, and a reproducer for every mismatch; the run ends
//! with exactly one summary line
//!
//! ```text
//! N programs, N accepted by the kernel, N compared, N mismatches, N rejected only by us
//! ```
//!
//! and exits non-zero on any mismatch, or on a program of the generated, conformance or corpus
//! set that the kernel loads and we do not (the ELF set's such programs are listed but do not fail the
//! run: see `docs/kernel-differences.md`). Where the kernel refuses BPF (not root), it says so
//! and exits 0 — except under `CI`, where that is a failure.

mod compare;
mod conformance;
mod corpus;
mod elf;
mod generated;
mod ours;
mod packets;
mod survey;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use compare::{Subject, Verdict};

/// The sets, in the order they run.
const SETS: [&str; 4] = ["conformance", "elf", "generated", "corpus"];

struct Args {
    generated: usize,
    seed: u64,
    sets: Vec<String>,
    /// Print every program's verdict and how long it took.
    verbose: bool,
    /// `--survey DIR`: the survey of the objects under DIR instead of the sets.
    survey: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        generated: 2000,
        seed: 0x6b65_726e_656c,
        sets: Vec::new(),
        verbose: false,
        survey: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--generated" => {
                args.generated = value("--generated")?.parse().context("--generated")?
            }
            "--seed" => args.seed = value("--seed")?.parse().context("--seed")?,
            "--verbose" => args.verbose = true,
            "--survey" => args.survey = Some(value("--survey")?.into()),
            "--set" => {
                let set = value("--set")?;
                if !SETS.contains(&set.as_str()) {
                    bail!("unknown set {set:?}; sets: {}", SETS.join(", "));
                }
                args.sets.push(set);
            }
            other => bail!(
                "unknown argument {other:?}; usage: kernel-diff [--generated N] [--seed S] \
                 [--set conformance|elf|generated|corpus]... [--verbose] [--survey DIR]"
            ),
        }
    }
    if args.sets.is_empty() {
        args.sets = SETS.iter().map(ToString::to_string).collect();
    }
    Ok(args)
}

/// The counts of one set (and of all of them).
#[derive(Default)]
struct Tally {
    programs: usize,
    accepted: usize,
    compared: usize,
    mismatches: Vec<String>,
    rejected_only_by_us: Vec<String>,
    rejected_by_both: usize,
    /// Why the kernel rejected what only it rejected, with counts.
    kernel_reasons: BTreeMap<String, usize>,
    not_comparable: BTreeMap<String, usize>,
    /// How many programs have each feature (see [`features`]).
    features: BTreeMap<&'static str, usize>,
}

/// What a program's bytes contain, for the report: loops, local calls, atomics, and slots
/// that do not decode.
fn features(bytes: &[u8]) -> Vec<&'static str> {
    use ebpf_vm::isa::{CallKind, Insn};
    let mut found = Vec::new();
    let mut pc = 0;
    while pc * 8 < bytes.len() {
        let (feature, slots) = match ebpf_vm::isa::decode_at(bytes, pc) {
            Ok(insn) => {
                let feature = match insn {
                    Insn::Jump { off, .. } | Insn::Ja { off } if off < 0 => Some("a loop"),
                    Insn::Call {
                        kind: CallKind::Local,
                        ..
                    } => Some("a local call"),
                    Insn::Atomic { .. } => Some("an atomic"),
                    _ => None,
                };
                (feature, insn.slots())
            }
            Err(_) => (Some("a slot that does not decode (in dead code)"), 1),
        };
        if let Some(f) = feature
            && !found.contains(&f)
        {
            found.push(f);
        }
        pc += slots;
    }
    found
}

impl Tally {
    fn add(&mut self, subject: &Subject, verdict: &Verdict) {
        self.programs += 1;
        if let compare::Ours::Bytes(bytes) = &subject.ours {
            for f in features(bytes) {
                *self.features.entry(f).or_default() += 1;
            }
        }
        match verdict {
            Verdict::Match => {
                self.accepted += 1;
                self.compared += 1;
            }
            Verdict::Mismatch(report) => {
                self.accepted += 1;
                self.compared += 1;
                self.mismatches.push(report.clone());
            }
            Verdict::NotComparable(why) => {
                self.accepted += 1;
                *self.not_comparable.entry(why.clone()).or_default() += 1;
            }
            Verdict::RejectedOnlyByUs(why) => {
                self.accepted += 1;
                let listing = match &subject.ours {
                    compare::Ours::Bytes(b) => compare::listing(b),
                    compare::Ours::Elf { .. } => String::new(),
                };
                self.rejected_only_by_us
                    .push(format!("{}: {why}\n{listing}", subject.name));
            }
            Verdict::RejectedByKernel { reason, by_us_too } => {
                if *by_us_too {
                    self.rejected_by_both += 1;
                } else {
                    *self.kernel_reasons.entry(generic(reason)).or_default() += 1;
                }
            }
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.programs += other.programs;
        self.accepted += other.accepted;
        self.compared += other.compared;
        self.mismatches.extend(other.mismatches.iter().cloned());
        self.rejected_only_by_us
            .extend(other.rejected_only_by_us.iter().cloned());
    }

    fn line(&self) -> String {
        format!(
            "{} programs, {} accepted by the kernel, {} compared, {} mismatches, {} rejected only by us",
            self.programs,
            self.accepted,
            self.compared,
            self.mismatches.len(),
            self.rejected_only_by_us.len()
        )
    }

    fn print(&self, set: &str) {
        println!("{set}: {}", self.line());
        if self.rejected_by_both > 0 {
            println!("  rejected by both: {}", self.rejected_by_both);
        }
        if !self.kernel_reasons.is_empty() {
            let total: usize = self.kernel_reasons.values().sum();
            println!("  rejected only by the kernel: {total}, the most common reasons:");
            let mut reasons: Vec<_> = self.kernel_reasons.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (reason, n) in reasons.iter().take(6) {
                println!("    {n:5}  {}", reason.escape_debug());
            }
        }
        if !self.features.is_empty() {
            let list: Vec<String> = self
                .features
                .iter()
                .map(|(f, n)| format!("{n} with {f}"))
                .collect();
            println!("  programs: {}", list.join(", "));
        }
        for (why, n) in &self.not_comparable {
            println!("  accepted, not compared: {n:5}  {why}");
        }
        for r in &self.rejected_only_by_us {
            println!("  rejected only by us: {r}");
        }
        for m in &self.mismatches {
            println!("  {m}");
        }
    }
}

/// A verifier message with its numbers (instruction indices, offsets, sizes) replaced by `N`,
/// so that messages group: `unreachable insn 45` and `unreachable insn 63` are one reason.
/// Register names (`R1`, `r10`) keep their numbers.
fn generic(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut chars = reason.chars().peekable();
    let mut prev: Option<char> = None;
    while let Some(c) = chars.next() {
        let starts_number = c.is_ascii_digit() && !prev.is_some_and(|p| p.is_ascii_alphanumeric());
        if starts_number {
            // The number, hex or decimal.
            while chars
                .peek()
                .is_some_and(|n| n.is_ascii_hexdigit() || *n == 'x')
            {
                chars.next();
            }
            out.push('N');
            prev = Some('N');
            continue;
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kernel-diff: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(false)`: the comparison failed.
fn run() -> Result<bool> {
    let args = parse_args()?;
    if let Some(dir) = &args.survey {
        let kernel = match ebpf_kernel::probe() {
            Ok(()) => true,
            Err(e) => {
                println!("survey: without the kernel: {e}");
                false
            }
        };
        return survey::run(dir, args.seed, args.verbose, kernel);
    }
    if let Err(e) = ebpf_kernel::probe() {
        if e.is_refusal() {
            if std::env::var_os("CI").is_some() {
                bail!("CI must run kernel-diff, but {e}");
            }
            println!("kernel-diff: skipped: {e}");
            return Ok(true);
        }
        bail!("probing the kernel: {e}");
    }
    let engines: Vec<&str> = ebpf_vm::Engine::ALL.iter().map(|e| e.name()).collect();
    println!("kernel-diff: the kernel against {}", engines.join(", "));
    let mut total = Tally::default();
    let mut ok = true;
    for set in &args.sets {
        let started = Instant::now();
        if set == "corpus" {
            let tally = corpus_set(args.seed, args.verbose)?;
            tally.print(set);
            println!("  ({:.1?})", started.elapsed());
            ok &= tally.mismatches.is_empty() && tally.rejected_only_by_us.is_empty();
            total.merge(&tally);
            continue;
        }
        let results = match set.as_str() {
            "conformance" => {
                let (subjects, skipped) = conformance::subjects()?;
                if skipped > 0 {
                    println!(
                        "conformance: {skipped} files have no program that assembles (not counted)"
                    );
                }
                par_map(&subjects, |s| {
                    timed(|| compare::compare(s).map(|v| (s.clone(), v)))
                })
            }
            "elf" => elf_results(&elf::subjects()?),
            _ => {
                let indices: Vec<usize> = (0..args.generated).collect();
                par_map(&indices, |&i| timed(|| generated::one(args.seed, i)))
            }
        };
        let mut tally = Tally::default();
        for result in results {
            let ((subject, verdict), took) = result?;
            if args.verbose {
                println!("  {took:8.1?}  {}: {}", subject.name, verdict.summary());
            }
            tally.add(&subject, &verdict);
        }
        tally.print(set);
        println!("  ({:.1?})", started.elapsed());
        ok &= tally.mismatches.is_empty();
        if set != "elf" {
            ok &= tally.rejected_only_by_us.is_empty();
        }
        total.merge(&tally);
    }
    println!("{}", total.line());
    Ok(ok)
}

/// The corpus set (see `corpus.rs`), on one thread pinned to `corpus::CPU`: every program of
/// `tests/bpf` on every packet of `packets.rs`, in the kernel (twice, from fresh maps: the
/// second run checks the kernel's own determinism) and on every engine.
fn corpus_set(seed: u64, verbose: bool) -> Result<Tally> {
    let programs = corpus::programs()?;
    let packets = packets::packets(seed);
    println!(
        "corpus: {} programs, {} packets each ({})",
        programs.len(),
        packets.len(),
        corpus::categories(&packets)
    );
    let thread = std::thread::spawn(move || -> Result<Tally> {
        ebpf_kernel::pin_to_cpu(corpus::CPU).context("pinning the corpus set's thread")?;
        let mut tally = Tally::default();
        let mut packets_compared: BTreeMap<String, usize> = BTreeMap::new();
        for program in &programs {
            tally.programs += 1;
            let mut reference = match corpus::KernelSide::load(program) {
                Ok(side) => side,
                Err(e) if e.is_refusal() => bail!("{e}"),
                Err(e) => {
                    // The corpus is written for the kernel: a rejection is a finding.
                    tally
                        .mismatches
                        .push(format!("{}: the kernel refused it: {e}", program.name()));
                    continue;
                }
            };
            tally.accepted += 1;
            let mut candidates: Vec<corpus::Candidate> = vec![(
                "the kernel again".to_string(),
                corpus::KernelSide::load(program)
                    .map(|s| Box::new(s) as Box<dyn corpus::Side>)
                    .map_err(anyhow::Error::from),
            )];
            candidates.extend(ours::candidates(program));
            let undrained;
            let sequence = if program.drain_rings_at_end {
                undrained = corpus::undrained_sequence(&packets);
                &undrained
            } else {
                &packets
            };
            let result = corpus::compare(program, sequence, &mut reference, candidates)?;
            let mut line = Vec::new();
            let mut whole = true;
            if !result.refused.is_empty() {
                let list: Vec<String> = result
                    .refused
                    .iter()
                    .map(|&i| format!("{i} ({} bytes)", sequence[i].bytes.len()))
                    .collect();
                *tally
                    .not_comparable
                    .entry(format!(
                        "packets BPF_PROG_TEST_RUN refuses (EINVAL), {}",
                        program.name()
                    ))
                    .or_default() += result.refused.len();
                if verbose {
                    println!(
                        "  {}: the kernel refuses packets {}",
                        program.name(),
                        list.join(", ")
                    );
                }
            }
            let retvals: Vec<String> = result
                .retvals
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            if retvals.len() <= 8 {
                line.push(format!("kernel return values {{{}}}", retvals.join(", ")));
            } else {
                line.push(format!("{} distinct kernel return values", retvals.len()));
            }
            for (side, result) in result.sides {
                *packets_compared.entry(side.clone()).or_default() += result.compared;
                match (&result.not_run, &result.mismatch) {
                    (Some(why), _) => {
                        whole = false;
                        line.push(format!("{side}: not run"));
                        if side.starts_with("the kernel") {
                            tally
                                .mismatches
                                .push(format!("{}: {side}: {why}", program.name()));
                        } else {
                            tally
                                .rejected_only_by_us
                                .push(format!("{} on {side}: {why}", program.name()));
                        }
                    }
                    (None, Some(report)) => {
                        whole = false;
                        line.push(format!("{side}: MISMATCH at {}", result.compared));
                        tally.mismatches.push(report.clone());
                    }
                    (None, None) => line.push(format!("{side}: {}", result.compared)),
                }
            }
            if whole {
                tally.compared += 1;
            }
            if verbose || !whole {
                println!("  {}: {}", program.name(), line.join(", "));
            }
        }
        let per_side: Vec<String> = packets_compared
            .iter()
            .map(|(side, n)| format!("{side} {n}"))
            .collect();
        println!("  packets compared: {}", per_side.join(", "));
        Ok(tally)
    });
    thread
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// A comparison's result with how long it took.
type Timed = Result<((Subject, Verdict), Duration)>;

fn timed<E: Into<anyhow::Error>>(f: impl FnOnce() -> Result<(Subject, Verdict), E>) -> Timed {
    let start = Instant::now();
    f().map(|r| (r, start.elapsed())).map_err(Into::into)
}

/// The ELF set's verdicts, in order. What we reject we reject whatever the input: such a
/// function is loaded into the kernel once, with its first input, and its other inputs share
/// that verdict (the recursive fixture costs the kernel's verifier a million instructions per
/// load). Functions run in parallel; one function's inputs in order.
fn elf_results(subjects: &[Subject]) -> Vec<Timed> {
    // Group by the linked function (the same bytes for every input), keeping the order.
    let mut groups: Vec<(Vec<u8>, Vec<usize>)> = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        match groups.iter_mut().find(|(k, _)| *k == s.kernel) {
            Some((_, members)) => members.push(i),
            None => groups.push((s.kernel.clone(), vec![i])),
        }
    }
    let per_group = par_map(&groups, |(_, members)| {
        let mut shared: Option<Verdict> = None;
        let mut out = Vec::new();
        for &i in members {
            let s = &subjects[i];
            let result = match &shared {
                Some(v) => Ok(((s.clone(), v.clone()), Duration::ZERO)),
                None => timed(|| compare::compare(s).map(|v| (s.clone(), v))),
            };
            if let Ok(((_, v), _)) = &result
                && v.rejected_by_us()
            {
                shared = Some(v.clone());
            }
            out.push((i, result));
        }
        out
    });
    let mut all: Vec<(usize, Timed)> = per_group.into_iter().flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// `f` on every item, on as many threads as the machine has cores, in the items' order.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_lose_their_numbers_but_not_their_registers() {
        assert_eq!(generic("unreachable insn 45"), "unreachable insn N");
        assert_eq!(
            generic("R1 offset is outside of the packet"),
            "R1 offset is outside of the packet"
        );
        assert_eq!(
            generic("invalid access to packet, off=0 size=4, R10 -0x8"),
            "invalid access to packet, off=N size=N, R10 -N"
        );
        assert_eq!(
            generic("85: (55) if r2 != 0x0 goto pc-5"),
            "N: (N) if r2 != N goto pc-N"
        );
    }
}
