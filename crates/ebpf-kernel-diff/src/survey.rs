//! The survey: real-world BPF objects this project has never seen (a directory of them, e.g.
//! unpacked from distribution packages), tried as a new user would. Every program of every
//! object is loaded with the kernel helpers on every engine (`load_elf`); an XDP,
//! socket-filter or TC program that loads runs on the packets of `packets.rs` on every engine
//! and, where the kernel loads the object too, is compared with the kernel packet by packet
//! (the corpus set's comparison, `corpus::compare`); every program we refuse is listed with
//! the exact message, and the summary groups the refusals by reason.
//!
//! A program we refuse but the kernel loads is listed apart: where the reason is a feature
//! this VM claims (a verifier rejection, a map type or helper in docs/helpers.md), it is a
//! bug. The survey fails (exit 1) on a mismatch with the kernel or between engines, and on a
//! refusal whose message names nothing (the held-out check of issue 17: every refusal must
//! say what is missing).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use ebpf_kernel::ObjectProgram;
use ebpf_vm::elf::{ElfObject, MapDefinition, Selector};
use ebpf_vm::{Engine, LoadError};

use crate::corpus::{self, CorpusProgram, KernelSide};
use crate::ours;
use crate::packets::{self, Packet};

/// `EM_BPF`.
const EM_BPF: u16 = 247;

/// Every file under `dir` (recursively) that is an ELF object for BPF, either byte order;
/// sorted.
fn objects(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| d.display().to_string())? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if is_bpf_object(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_bpf_object(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return false;
    }
    let machine = [bytes[18], bytes[19]];
    let machine = if bytes[5] == 2 {
        u16::from_be_bytes(machine)
    } else {
        u16::from_le_bytes(machine)
    };
    machine == EM_BPF
}

/// A refusal's reason with the object's own names (map, section and function names, in
/// backticks) and file offsets left out, so that refusals group.
fn reason(message: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in message.chars() {
        if c == '`' {
            quoted = !quoted;
            if quoted {
                out.push_str("`…`");
            }
        } else if !quoted {
            out.push(c);
        }
    }
    match out.find(" (at file offset") {
        Some(i) => out[..i].to_string(),
        None => out,
    }
}

/// Whether a refusal names what is missing: a helper, a map type, a program type, a
/// relocation, a kfunc, an ELF feature, a verifier finding… — anything but a bare failure.
fn names_what_is_missing(message: &str) -> bool {
    const GENERIC: [&str; 3] = ["unknown error", "internal error", "not supported"];
    message.len() > 20 && !GENERIC.iter().any(|g| message.trim() == *g)
}

/// How many entries the survey gives a map its loader sizes at run time (`max_entries` 0
/// in the object), other than a perf event array. Real loaders size such maps by the machine
/// (xdp-tools' counters: the possible CPUs times a per-counter factor, indexed by CPU); the
/// comparison runs on one CPU (index 0 on both sides), so a fixed size serves, with room for
/// an index that is a counter's number times the CPU count.
pub(crate) const SIZED_AT_LOAD: u32 = 64;

/// The `max_entries` a loader would set for each of `maps` left at 0, the same for the kernel
/// and for us: a perf event array gets one slot per CPU of the comparison (libbpf gives it
/// one per possible CPU; our side's default is one per CPU of its set, `ours::CPUS`), any
/// other map [`SIZED_AT_LOAD`].
pub(crate) fn sized_at_load(maps: &[MapDefinition]) -> Vec<(String, u32)> {
    maps.iter()
        .filter(|m| m.max_entries == 0)
        .map(|m| {
            let n = if m.map_type == corpus::PERF_EVENT_ARRAY {
                ours::CPUS as u32
            } else {
                SIZED_AT_LOAD
            };
            (m.name.clone(), n)
        })
        .collect()
}

/// The counts the survey prints.
#[derive(Default)]
struct Survey {
    objects: usize,
    objects_refused: BTreeMap<String, usize>,
    programs: usize,
    loaded: usize,
    loaded_not_run: usize,
    ran: usize,
    compared_with_kernel: usize,
    packets_compared: usize,
    refused: BTreeMap<String, Vec<String>>,
    kernel_refused_what_we_ran: BTreeMap<String, usize>,
    refused_only_by_us: Vec<String>,
    mismatches: Vec<String>,
    vague: Vec<String>,
}

/// Runs the survey of `dir`; `Ok(false)`: a mismatch or a vague refusal.
pub(crate) fn run(dir: &Path, seed: u64, verbose: bool, kernel: bool) -> Result<bool> {
    let paths = objects(dir)?;
    if paths.is_empty() {
        return Err(anyhow!("{}: no BPF objects (ELF, EM_BPF)", dir.display()));
    }
    let packets = packets::packets(seed);
    println!(
        "survey: {} objects under {}, {} packets per program ({})",
        paths.len(),
        dir.display(),
        packets.len(),
        corpus::categories(&packets)
    );
    let dir = dir.to_path_buf();
    let thread = std::thread::spawn(move || -> Result<Survey> {
        if kernel {
            ebpf_kernel::pin_to_cpu(corpus::CPU).context("pinning the survey's thread")?;
        }
        let mut survey = Survey::default();
        for path in &paths {
            let name = path
                .strip_prefix(&dir)
                .unwrap_or(path)
                .display()
                .to_string();
            survey.object(&name, path, &packets, verbose, kernel)?;
        }
        Ok(survey)
    });
    let survey = thread
        .join()
        .map_err(|_| anyhow!("the survey's thread panicked"))??;
    survey.print();
    Ok(survey.mismatches.is_empty() && survey.vague.is_empty())
}

impl Survey {
    fn refuse(&mut self, what: String, message: &str) {
        if !names_what_is_missing(message) {
            self.vague.push(format!("{what}: {message}"));
        }
        self.refused
            .entry(reason(message))
            .or_default()
            .push(format!("{what}: {message}"));
    }

    fn object(
        &mut self,
        name: &str,
        path: &Path,
        packets: &[Packet],
        verbose: bool,
        kernel: bool,
    ) -> Result<()> {
        self.objects += 1;
        let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
        let object = match ElfObject::parse(&bytes) {
            Ok(o) => o,
            Err(e) => {
                let message = LoadError::Elf(e).to_string();
                if verbose {
                    println!("  {name}: refused whole: {message}");
                }
                if !names_what_is_missing(&message) {
                    self.vague.push(format!("{name}: {message}"));
                }
                *self.objects_refused.entry(reason(&message)).or_default() += 1;
                return Ok(());
            }
        };
        // Every packet program the ELF loader links, for the kernel's copy of the object.
        let linked: Vec<ObjectProgram> = object
            .programs()
            .iter()
            .filter_map(|p| {
                let program_type = corpus::program_type(&p.section)?;
                let loaded = object
                    .load_with_data_maps(Selector::Function(&p.name))
                    .ok()?;
                Some(ObjectProgram {
                    name: p.name.clone(),
                    program_type,
                    insns: loaded.program.to_bytes(),
                })
            })
            .collect();
        let maps = object.maps().unwrap_or_default();
        let map_sizes = sized_at_load(&maps);
        for info in object.programs() {
            self.programs += 1;
            let what = format!("{name} {} ({})", info.name, info.section);
            let mut loads = Engine::ALL.iter().map(|&engine| {
                ours::builder(engine, &map_sizes).load_elf(&bytes, Selector::Function(&info.name))
            });
            let first = loads.next().ok_or_else(|| anyhow!("no engine"))?;
            let rest: Vec<_> = loads.collect();
            let program_type = corpus::program_type(&info.section);
            let candidate = program_type.map(|program_type| CorpusProgram {
                object_name: name.to_string(),
                object: bytes.clone(),
                entry: info.name.clone(),
                program_type,
                maps: maps.clone(),
                programs: linked.clone(),
                map_sizes: map_sizes.clone(),
                drain_rings_at_end: false,
            });
            match first {
                Err(e) => {
                    let message = e.to_string();
                    if rest.iter().any(|r| r.is_ok()) {
                        self.mismatches.push(format!(
                            "{what}: refused by {} but loaded by another engine: {message}",
                            Engine::ALL[0].name()
                        ));
                    }
                    if verbose {
                        println!("  {what}: refused: {message}");
                    }
                    if kernel
                        && let Some(c) = &candidate
                        && c.programs.iter().any(|p| p.name == c.entry)
                        && kernel_load(c).is_ok()
                    {
                        self.refused_only_by_us.push(format!("{what}: {message}"));
                    }
                    self.refuse(what, &message);
                }
                Ok(_) => {
                    self.loaded += 1;
                    for (engine, r) in Engine::ALL.iter().skip(1).zip(&rest) {
                        if let Err(e) = r {
                            self.mismatches.push(format!(
                                "{what}: loaded by {} but refused by {}: {e}",
                                Engine::ALL[0].name(),
                                engine.name()
                            ));
                        }
                    }
                    let Some(candidate) = candidate else {
                        self.loaded_not_run += 1;
                        if verbose {
                            println!("  {what}: loaded (no packet context: not run)");
                        }
                        continue;
                    };
                    self.ran += 1;
                    let line = self.compare(&candidate, packets, kernel)?;
                    if verbose {
                        println!("  {what}: {line}");
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs one program on every engine and, where the kernel loads its object, in the kernel,
    /// and compares; returns a line for the verbose listing.
    fn compare(
        &mut self,
        program: &CorpusProgram,
        packets: &[Packet],
        kernel: bool,
    ) -> Result<String> {
        let reference = if kernel && program.programs.iter().any(|p| p.name == program.entry) {
            kernel_load(program).map_err(|e| e.to_string())
        } else {
            Err("the kernel was not asked".to_string())
        };
        let mut candidates = ours::candidates(program);
        let name = program.name();
        match reference {
            Ok(mut reference) => {
                self.compared_with_kernel += 1;
                let result = corpus::compare(program, packets, &mut reference, candidates)?;
                let mut line = format!("{} packets run by the kernel", packets.len());
                for (side, r) in result.sides {
                    self.packets_compared += r.compared;
                    if let Some(m) = r.mismatch {
                        self.mismatches.push(m);
                        line.push_str(&format!(", {side}: MISMATCH"));
                    } else if let Some(why) = r.not_run {
                        self.mismatches
                            .push(format!("{name}: {side} did not run: {why}"));
                        line.push_str(&format!(", {side}: not run"));
                    }
                }
                Ok(line)
            }
            Err(why) => {
                *self
                    .kernel_refused_what_we_ran
                    .entry(reason(&generic_kernel(&why)))
                    .or_default() += 1;
                // The engines against the interpreter.
                let (first, rest) = candidates.split_at_mut(1);
                let reference = match &mut first[0].1 {
                    Ok(side) => side,
                    Err(e) => return Err(anyhow!("{name}: the interpreter did not load: {e:#}")),
                };
                let mut compared = 0;
                for (index, packet) in packets.iter().enumerate() {
                    let expected = reference.run(&packet.bytes).map_err(|e| e.to_string());
                    let expected_maps = reference.snapshot(true).map_err(|e| e.to_string());
                    for (engine, side) in rest.iter_mut() {
                        let Ok(side) = side else { continue };
                        let got = side.run(&packet.bytes).map_err(|e| e.to_string());
                        let maps = side.snapshot(true).map_err(|e| e.to_string());
                        compared += 1;
                        if got != expected || maps != expected_maps {
                            self.mismatches.push(format!(
                                "mismatch: {name} on {engine} against the interpreter, packet \
                                 {index} ({}): {got:?} / {expected:?}",
                                packet.what
                            ));
                        }
                    }
                }
                self.packets_compared += compared;
                Ok(format!(
                    "ran on every engine ({compared} runs compared with the interpreter); \
                     the kernel did not load it: {why}"
                ))
            }
        }
    }

    fn print(&self) {
        let refused: usize = self.refused.values().map(Vec::len).sum();
        let objects_refused: usize = self.objects_refused.values().sum();
        println!(
            "survey: {} objects ({} refused whole), {} programs: {} loaded ({} of a type with no \
             packet context, not run), {} ran on every engine ({} of them compared with the \
             kernel, {} runs compared), {} refused",
            self.objects,
            objects_refused,
            self.programs,
            self.loaded,
            self.loaded_not_run,
            self.ran,
            self.compared_with_kernel,
            self.packets_compared,
            refused
        );
        if objects_refused > 0 {
            println!("  objects refused whole, by reason:");
            for (why, n) in &self.objects_refused {
                println!("    {n:5}  {why}");
            }
        }
        println!("  programs refused, by reason:");
        let mut reasons: Vec<_> = self.refused.iter().collect();
        reasons.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        for (why, list) in reasons {
            println!("    {:5}  {why}", list.len());
        }
        for (why, n) in &self.kernel_refused_what_we_ran {
            println!("  ran here, refused by the kernel: {n:5}  {why}");
        }
        for r in &self.refused_only_by_us {
            println!("  refused by us, loaded by the kernel: {r}");
        }
        for v in &self.vague {
            println!("  refused without naming what is missing: {v}");
        }
        for m in &self.mismatches {
            println!("  {m}");
        }
        println!(
            "survey: {} mismatches, {} refused by us and loaded by the kernel",
            self.mismatches.len(),
            self.refused_only_by_us.len()
        );
    }
}

/// The kernel's side of `program`: its whole object or, where the kernel refuses a sibling
/// (a program that needs BTF for its map's spin lock, a devmap program reading
/// `egress_ifindex`), the entry program alone with the object's maps — what our side falls
/// back to as well (`ours::load`), and what a loader that loads one program does. The error is
/// the whole object's.
fn kernel_load(program: &CorpusProgram) -> Result<KernelSide, ebpf_kernel::ObjectError> {
    KernelSide::load(program).or_else(|whole| {
        let alone = CorpusProgram {
            programs: program
                .programs
                .iter()
                .filter(|p| p.name == program.entry)
                .cloned()
                .collect(),
            ..program.clone()
        };
        if alone.programs.is_empty() || alone.programs.len() == program.programs.len() {
            return Err(whole);
        }
        KernelSide::load(&alone).map_err(|_| whole)
    })
}

/// The first line of a kernel refusal (the verifier's log is long), numbers kept.
fn generic_kernel(why: &str) -> String {
    why.lines().next().unwrap_or(why).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xdp-bench's counters and cpumap are sized 64 on both sides, its perf event array (as
    /// libbpf sizes one) a slot per CPU of the comparison; a map the object sizes keeps its
    /// size.
    #[test]
    fn maps_left_at_zero_get_the_survey_sizes() {
        let map = |name: &str, map_type, max_entries| MapDefinition {
            name: name.to_string(),
            map_type,
            key_size: 4,
            value_size: 4,
            max_entries,
            flags: 0,
            style: ebpf_vm::elf::MapStyle::Btf,
            section: ".maps".to_string(),
            initial_programs: Vec::new(),
            initial_value: None,
            inner: None,
            initial_maps: Vec::new(),
        };
        let maps = [
            map("rx_cnt", 2, 0),
            map("events", corpus::PERF_EVENT_ARRAY, 0),
            map("cpus_count", 2, 1),
            map("cpu_map", 16, 0),
        ];
        assert_eq!(
            sized_at_load(&maps),
            [
                ("rx_cnt".to_string(), 64),
                ("events".to_string(), 1),
                ("cpu_map".to_string(), 64)
            ]
        );
    }

    #[test]
    fn reasons_group_without_the_objects_own_names() {
        assert_eq!(
            reason("map `rx_cnt` cannot be created: max_entries is 0 (at file offset 0x10)"),
            "map `…` cannot be created: max_entries is 0"
        );
        assert_eq!(
            reason(
                "the program calls helper 51 (bpf_redirect_map), which this VM does not provide"
            ),
            "the program calls helper 51 (bpf_redirect_map), which this VM does not provide"
        );
    }
}
