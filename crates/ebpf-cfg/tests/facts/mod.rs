//! Facts against executions: every fact claimed at an instruction must hold in every concrete
//! state that reaches it. Each run is traced step by step (`ebpf_testgen::trace`, whose
//! outcome is compared with the interpreter's), and at every step the registers are checked
//! against the analysis, an access proven in bounds against its real address, a division's
//! facts against its real operands.

mod idioms;
mod maps;
mod programs;

use ebpf_abi::{Helpers, Limits, MemoryMap, Region, TrapKind, layout};
use ebpf_cfg::facts::{Access, Analysis, Entry, MetadataFields, RegionSpec};
use ebpf_interp::Interpreter;
use ebpf_isa::{AluOp, Insn, Operand, Program, Width};

/// One run's memory: the input, and optional read-only and writable data images.
#[derive(Clone, Debug, Default)]
pub(crate) struct Memory {
    pub(crate) input: Option<Vec<u8>>,
    pub(crate) rodata: Vec<u8>,
    pub(crate) data: Vec<u8>,
    /// Prefix of a metadata buffer holding the input's addresses at offsets 0 and 8.
    pub(crate) metadata: bool,
    /// With `metadata`: the buffer holds a packet's addresses instead, `data` at this many
    /// bytes into the input and `data_end` at the second (which may lie past the input's end:
    /// a run the packet entry must not admit).
    pub(crate) packet: Option<(u32, u64)>,
}

impl Memory {
    pub(crate) fn input(bytes: &[u8]) -> Memory {
        Memory {
            input: Some(bytes.to_vec()),
            ..Memory::default()
        }
    }
}

/// Helpers of the tests: 5 returns r1 (the conformance helper), 6 stores r2 (8 bytes) at r1.
pub(crate) fn helpers() -> Helpers {
    let mut h = Helpers::conformance();
    h.insert(6, |args: [u64; 5], mem: &mut dyn ebpf_abi::VmMemory| {
        mem.write_u64(args[0], args[1])?;
        Ok(0)
    });
    h
}

/// The entries whose facts a run may use: the plain input layout, the metadata layout, and
/// the ELF images as fixed regions — each only if the run satisfies it — and always
/// `Entry::unknown()`. A fixed region is declared at its length and, where it has bytes, at
/// half of it too: `Fixed { len }` means at least `len` bytes, and facts must hold on every
/// region the entry admits, not only on one of the length it names.
fn entries(mem: &Memory) -> Vec<Entry> {
    let mut entries = vec![with_images(mem, 1), Entry::unknown()];
    if !mem.rodata.is_empty() || !mem.data.is_empty() {
        entries.push(with_images(mem, 2));
    }
    entries
}

/// The input or metadata entry, with the ELF images as fixed regions of `1 / divisor` of
/// their lengths.
fn with_images(mem: &Memory, divisor: u64) -> Entry {
    let mut base = if mem.metadata {
        Entry::metadata(match mem.packet {
            None => MetadataFields::input(0, 8),
            Some((offset, _)) => MetadataFields::packet(0, 8, offset),
        })
    } else {
        Entry::input()
    };
    if !mem.rodata.is_empty() {
        base = base.with_region(
            layout::RODATA as u8,
            RegionSpec::Fixed {
                len: mem.rodata.len() as u64 / divisor,
                writable: false,
            },
        );
    }
    if !mem.data.is_empty() {
        base = base.with_region(
            layout::DATA as u8,
            RegionSpec::Fixed {
                len: mem.data.len() as u64 / divisor,
                writable: true,
            },
        );
    }
    base
}

/// A run's `r1`/`r2` and its metadata buffer (the input's start and end addresses at offsets 0
/// and 8): the input's start and length, or the metadata buffer and its length.
fn arguments(mem: &Memory) -> ([u64; 2], Vec<u8>) {
    let input_len = mem.input.as_ref().map_or(0, |i| i.len() as u64);
    let start = mem
        .input
        .as_ref()
        .map_or(0, |_| layout::vm_addr(layout::INPUT, 0));
    let end = mem
        .input
        .as_ref()
        .map_or(0, |_| layout::vm_addr(layout::INPUT, input_len));
    let (data, data_end) = match mem.packet {
        None => (start, end),
        Some((offset, data_end)) => (
            layout::vm_addr(layout::INPUT, u64::from(offset)),
            layout::vm_addr(layout::INPUT, data_end),
        ),
    };
    let mut meta = vec![0u8; 16];
    meta[..8].copy_from_slice(&data.to_le_bytes());
    meta[8..].copy_from_slice(&data_end.to_le_bytes());
    let args = if mem.metadata {
        [layout::vm_addr(layout::METADATA, 0), 16]
    } else {
        [start, input_len]
    };
    (args, meta)
}

/// Runs `program` on `mem` and checks every fact of every entry the run satisfies. Returns a
/// description of the first broken fact.
pub(crate) fn check(program: &Program, mem: &Memory, budget: Option<u64>) -> Result<(), String> {
    let helpers = helpers();
    let limits = Limits {
        budget: Some(budget.unwrap_or(200_000)),
        ..Limits::default()
    };
    for entry in entries(mem) {
        let analysis = Analysis::run(program, &entry);
        let facts = analysis.facts();
        let (args, mut meta) = arguments(mem);
        let (mut input, mut rodata, mut data) =
            (mem.input.clone(), mem.rodata.clone(), mem.data.clone());
        // One map to check the entry, one for the interpreter, one for the trace: each over a
        // fresh copy of the bytes.
        let (mut i1, mut r1, mut d1, mut m1) =
            (input.clone(), rodata.clone(), data.clone(), meta.clone());
        let map1 = map_of(&mut i1, &mut r1, &mut d1, &mut m1, mem.metadata);
        if !entry.admits(&map1, args) {
            continue;
        }
        let lens = region_lengths(&map1, &limits);
        drop(map1);
        let interp = Interpreter::new(program);
        let (mut i2, mut r2, mut d2, mut m2) =
            (input.clone(), rodata.clone(), data.clone(), meta.clone());
        let expected = interp.run(
            map_of(&mut i2, &mut r2, &mut d2, &mut m2, mem.metadata),
            args,
            &helpers,
            &limits,
        );
        let mut broken: Option<String> = None;
        // The analysis's view of each instruction, computed when first reached.
        let mut states: Vec<Option<Option<ebpf_cfg::facts::Registers>>> = vec![None; program.len()];
        let mut loops = LoopWatch::new(program, facts, lens);
        let got = ebpf_testgen::trace(
            program,
            map_of(&mut input, &mut rodata, &mut data, &mut meta, mem.metadata),
            args,
            &helpers,
            &limits,
            |step| {
                if broken.is_some() {
                    return;
                }
                let len = |r: u8| lens[usize::from(r)];
                let cached = &mut states[step.index];
                if cached.is_none() {
                    *cached = Some(analysis.registers_at(step.index));
                }
                let Some(Some(regs)) = cached.as_ref() else {
                    broken = Some(format!(
                        "pc {} reached but the analysis says it is not",
                        step.pc
                    ));
                    return;
                };
                if let Err(e) = regs.check(step.regs, len) {
                    broken = Some(format!("pc {}: {e}", step.pc));
                    return;
                }
                let insn = &program.insns()[step.index];
                if let Err(e) = check_insn(insn, step.regs, facts, step.index, step.memory) {
                    broken = Some(format!("pc {}: {e}", step.pc));
                    return;
                }
                if let Err(e) = loops.step(step.index, step.depth, step.regs, step.memory) {
                    broken = Some(format!("pc {}: {e}", step.pc));
                }
            },
        );
        if got != expected {
            return Err(format!(
                "the trace ({got:?}) disagrees with the interpreter ({expected:?})"
            ));
        }
        if broken.is_none() && got.is_ok() {
            broken = loops.finish().err();
        }
        if let Some(b) = broken {
            return Err(format!("{b}\nentry {entry:?}"));
        }
        if let Err(t) = &got
            && let TrapKind::OutOfBounds { .. } | TrapKind::MisalignedAtomic { .. } = t.kind
        {
            let index = program.iter().position(|(pc, _)| pc == t.pc).unwrap_or(0);
            if let Access::InBounds { .. } = facts.access(index) {
                return Err(format!(
                    "pc {} trapped ({t:?}) but was proven in bounds",
                    t.pc
                ));
            }
        }
    }
    Ok(())
}

/// `program` with every conditional jump decided in advance: the `k`-th (counting from 0,
/// modulo 64) always jumps if bit `k` of `taken` is set, never otherwise. Every path of the
/// result is a path of `program` along which some branches went the way the data did not
/// say: a path a CPU may run speculatively, mispredicting them.
pub(crate) fn mispredicted(program: &Program, taken: u64) -> Program {
    let mut k = 0u32;
    let insns = program
        .insns()
        .iter()
        .map(|insn| match *insn {
            Insn::Jump { off, .. } => {
                let jumps = taken >> (k % 64) & 1 == 1;
                k += 1;
                Insn::Ja {
                    off: if jumps { off } else { 0 },
                }
            }
            other => other,
        })
        .collect();
    Program::from_insns(insns)
}

/// Runs `program` with its conditional jumps decided by `taken` ([`mispredicted`]) on `mem`,
/// and checks every access `program`'s facts say is speculation-safe (`Access::InBounds {
/// speculation_safe: true }`) against its real address, for every entry the run satisfies.
/// Accesses proven by a branch may go out of bounds here; speculation-safe ones may not.
pub(crate) fn check_speculative(program: &Program, mem: &Memory, taken: u64) -> Result<(), String> {
    let helpers = helpers();
    let limits = Limits {
        budget: Some(5_000),
        ..Limits::default()
    };
    let run = mispredicted(program, taken);
    for entry in entries(mem) {
        let analysis = Analysis::run(program, &entry);
        let facts = analysis.facts();
        let (args, mut meta) = arguments(mem);
        let (mut input, mut rodata, mut data) =
            (mem.input.clone(), mem.rodata.clone(), mem.data.clone());
        let (mut i1, mut r1, mut d1, mut m1) =
            (input.clone(), rodata.clone(), data.clone(), meta.clone());
        if !entry.admits(
            &map_of(&mut i1, &mut r1, &mut d1, &mut m1, mem.metadata),
            args,
        ) {
            continue;
        }
        let mut broken: Option<String> = None;
        let _ = ebpf_testgen::trace(
            &run,
            map_of(&mut input, &mut rodata, &mut data, &mut meta, mem.metadata),
            args,
            &helpers,
            &limits,
            |step| {
                if broken.is_some() {
                    return;
                }
                let fact = facts.access(step.index);
                if let Access::InBounds {
                    speculation_safe: true,
                    ..
                } = fact
                    && let Err(e) =
                        check_access_fact(&run.insns()[step.index], step.regs, fact, step.memory)
                {
                    broken = Some(format!(
                        "pc {}, branches decided by {taken:#x}: speculation-safe, but {e}",
                        step.pc
                    ));
                }
            },
        );
        if let Some(b) = broken {
            return Err(format!("{b}\nentry {entry:?}"));
        }
    }
    Ok(())
}

/// Watches the loops with facts along a run: inside a version whose conditions held at entry,
/// every versioned access must be in bounds; a loop with a trip count must run exactly its
/// instructions per entry (for a count known at run time, as the registers at the entry give
/// it).
struct LoopWatch<'a> {
    program: &'a Program,
    facts: &'a ebpf_cfg::facts::Facts,
    lens: [u64; 64],
    /// The version being run unchecked: index, call depth at entry.
    fast: Option<(usize, usize)>,
    /// The counted loop being run: index, depth, instructions so far, its instructions.
    counted: Option<(usize, usize, u64, u64)>,
    previous: Option<usize>,
}

impl<'a> LoopWatch<'a> {
    fn new(program: &'a Program, facts: &'a ebpf_cfg::facts::Facts, lens: [u64; 64]) -> Self {
        LoopWatch {
            program,
            facts,
            lens,
            fast: None,
            counted: None,
            previous: None,
        }
    }

    fn inside(ranges: &[std::ops::Range<usize>], i: usize) -> bool {
        ranges.iter().any(|r| r.contains(&i))
    }

    fn step(
        &mut self,
        index: usize,
        depth: usize,
        regs: &[u64; 11],
        memory: &MemoryMap<'_>,
    ) -> Result<(), String> {
        let previous = self.previous.replace(index);
        let versions = self.facts.versions();
        // Leaving the version at its own depth ends it.
        if let Some((v, d)) = self.fast
            && depth <= d
            && !Self::inside(&versions[v].insns, index)
        {
            self.fast = None;
        }
        // Entering a version's loop from outside it.
        for (k, v) in versions.iter().enumerate() {
            let from_outside = previous.is_none_or(|p| !Self::inside(&v.insns, p));
            if index == v.entry && from_outside && self.fast.is_none() {
                let holds = v
                    .conditions
                    .iter()
                    .all(|c| c.holds(regs[usize::from(c.reg)], self.lens[usize::from(c.region)]));
                if holds {
                    self.fast = Some((k, depth));
                }
            }
        }
        if let Some((v, _)) = self.fast
            && let Ok(at) = versions[v]
                .accesses
                .binary_search_by_key(&index, |&(i, _)| i)
        {
            let region = versions[v].accesses[at].1;
            let insn = &self.program.insns()[index];
            let facts_in_version = ebpf_cfg::facts::Access::InBounds {
                region,
                speculation_safe: false,
            };
            check_access_fact(insn, regs, facts_in_version, memory)
                .map_err(|e| format!("in version {v}: {e}"))?;
        }
        // Counted loops: the instructions from entry until the first one outside.
        if let Some((l, d, count, expected)) = self.counted {
            let fact = &self.facts.loops()[l];
            let inside = Self::inside(&fact.insns, index);
            if depth == d && !inside {
                if count != expected {
                    return Err(format!(
                        "loop at {} ran {count} instructions, not {expected} ({fact:?})",
                        fact.entry
                    ));
                }
                self.counted = None;
            } else {
                self.counted = Some((l, d, count + 1, expected));
            }
        }
        if self.counted.is_none()
            && let Some(l) = self.facts.loops().iter().position(|f| f.entry == index)
        {
            let fact = &self.facts.loops()[l];
            let from_outside = previous.is_none_or(|p| !Self::inside(&fact.insns, p));
            if from_outside && let Some(expected) = fact.instructions(regs) {
                self.counted = Some((l, depth, 1, expected));
            }
        }
        Ok(())
    }

    /// At the end of a run that exited: a counted loop still open is a miscount.
    fn finish(&self) -> Result<(), String> {
        match self.counted {
            Some((l, _, count, _)) => Err(format!(
                "the run ended inside the counted loop {:?} after {count} instructions",
                self.facts.loops()[l]
            )),
            None => Ok(()),
        }
    }
}

/// The memory map of a run.
fn map_of<'a>(
    input: &'a mut Option<Vec<u8>>,
    rodata: &'a mut [u8],
    data: &'a mut [u8],
    meta: &'a mut [u8],
    metadata: bool,
) -> MemoryMap<'a> {
    let mut map = MemoryMap::new();
    if let Some(i) = input {
        map.insert(layout::INPUT, Region::Writable(i));
    }
    if !rodata.is_empty() {
        map.insert(layout::RODATA, Region::ReadOnly(rodata));
    }
    if !data.is_empty() {
        map.insert(layout::DATA, Region::Writable(data));
    }
    if metadata {
        map.insert(layout::METADATA, Region::Writable(meta));
    }
    map
}

/// The length of every region of a run (the stack's from the limits).
pub(crate) fn region_lengths(map: &MemoryMap<'_>, limits: &Limits) -> [u64; 64] {
    let mut lens = [0u64; 64];
    for (r, l) in lens.iter_mut().enumerate() {
        *l = map
            .get(r as u64)
            .map_or(0, |g| g.bytes().map_or(0, |b| b.len()) as u64);
    }
    lens[layout::STACK as usize] = limits.stack_size();
    lens
}

/// An access fact against the concrete registers before the access.
fn check_access_fact(
    insn: &Insn,
    regs: &[u64; 11],
    fact: Access,
    memory: &MemoryMap<'_>,
) -> Result<(), String> {
    let r = |x: ebpf_isa::Reg| regs[usize::from(x.index())];
    let (base, off, bytes, write) = match *insn {
        Insn::Load { size, src, off, .. } => (r(src), off, size.bytes(), false),
        Insn::Store { size, dst, off, .. } => (r(dst), off, size.bytes(), true),
        Insn::Atomic {
            width, dst, off, ..
        } => (r(dst), off, if width == Width::W64 { 8 } else { 4 }, true),
        _ => return Ok(()),
    };
    let addr = base.wrapping_add(off as i64 as u64);
    match fact {
        Access::InBounds { region, .. } => {
            let g = memory.get(u64::from(region));
            let len = g.map_or(0, |g| g.bytes().map_or(0, |b| b.len()) as u64);
            let ok = layout::region_of(addr) == u64::from(region)
                && layout::offset_of(addr) + u64::from(bytes) <= len
                && (!write || g.is_some_and(|g| g.is_writable()))
                && (!matches!(insn, Insn::Atomic { .. }) || addr % u64::from(bytes) == 0);
            if !ok {
                return Err(format!(
                    "{insn:?} at {addr:#x} proven in bounds of region {region} ({len} bytes)"
                ));
            }
        }
        Access::Checked {
            region: Some(region),
        } => {
            if layout::region_of(addr) != u64::from(region) {
                return Err(format!(
                    "{insn:?} at {addr:#x} said to be in region {region}"
                ));
            }
        }
        Access::Checked { region: None } => {}
    }
    Ok(())
}

/// The facts of one instruction against the concrete registers before it.
pub(crate) fn check_insn(
    insn: &Insn,
    regs: &[u64; 11],
    facts: &ebpf_cfg::facts::Facts,
    index: usize,
    memory: &MemoryMap<'_>,
) -> Result<(), String> {
    let r = |x: ebpf_isa::Reg| regs[usize::from(x.index())];
    check_access_fact(insn, regs, facts.access(index), memory)?;
    if let Insn::Alu {
        width,
        op: op @ (AluOp::Div | AluOp::Mod | AluOp::Sdiv | AluOp::Smod),
        dst,
        src: Operand::Reg(src),
    } = *insn
    {
        let d = facts.division(index);
        let (a, b) = (r(dst), r(src));
        let (zero, overflow) = match width {
            Width::W64 => (b == 0, b == u64::MAX && a == i64::MIN as u64),
            Width::W32 => (
                b as u32 == 0,
                b as u32 == u32::MAX && a as u32 == i32::MIN as u32,
            ),
        };
        let signed = matches!(op, AluOp::Sdiv | AluOp::Smod);
        if d.nonzero && zero {
            return Err(format!("{insn:?}: divisor proven nonzero is zero"));
        }
        if signed && d.no_overflow && overflow {
            return Err(format!("{insn:?}: MIN / -1 proven impossible happens"));
        }
    }
    Ok(())
}

/// Asserts [`check`] for a program written in assembly.
pub(crate) fn assert_sound(text: &str, mem: &Memory) {
    let program = ebpf_isa::assemble(text).unwrap();
    if let Err(e) = check(&program, mem, None) {
        panic!("{e}\n{text}");
    }
}

/// The analysis of an assembly program under the plain input entry.
pub(crate) fn analyse(text: &str) -> (Program, Analysis) {
    let program = ebpf_isa::assemble(text).unwrap();
    let a = Analysis::run(&program, &Entry::input());
    (program, a)
}

/// Which accesses of `text` are proven in bounds under the plain input entry, by pc.
pub(crate) fn proven(text: &str) -> Vec<usize> {
    let (program, a) = analyse(text);
    a.facts()
        .accesses_in_bounds()
        .map(|i| program.iter().nth(i).map_or(0, |(pc, _)| pc))
        .collect()
}
