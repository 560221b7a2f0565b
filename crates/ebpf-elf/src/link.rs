//! Linking: the data images (`.rodata*`, `.data*`, `.bss*`), the program list, and the flat
//! instruction sequence of one program with every function it calls.

use std::collections::BTreeMap;
use std::ops::Range;

use ebpf_isa::{CallKind, DecodeError, Imm64Kind, Insn, Program, decode};
use goblin::elf::sym::{STB_GLOBAL, STB_WEAK, STT_FUNC, STT_OBJECT};

use crate::error::{ElfError, ElfErrorKind};
use crate::maps::Definitions;
use crate::parse::{
    Parsed, Place, R_BPF_64_32, R_BPF_64_64, R_BPF_64_ABS32, R_BPF_64_ABS64, R_BPF_64_NODYLD32,
    Reloc, SectionKind, Symbol,
};
use crate::{DATA_BASE, MAX_IMAGE_SIZE, ProgramInfo, RODATA_BASE};

/// A program's entry: its code section and first slot there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) section: usize,
    pub(crate) slot: usize,
}

/// The two data images and where each data section sits in its image.
pub(crate) struct Images {
    pub(crate) rodata: Vec<u8>,
    pub(crate) data: Vec<u8>,
    /// Offset of section `i` in its image (meaningful for `.rodata*`, `.data*`, `.bss*`).
    placement: Vec<u64>,
}

fn err<T>(offset: u64, kind: ElfErrorKind) -> Result<T, ElfError> {
    Err(ElfError::at(offset, kind))
}

fn slots_of(parsed: &Parsed, section: usize) -> usize {
    parsed
        .sections
        .get(section)
        .map_or(0, |s| usize::try_from(s.size / 8).unwrap_or(0))
}

/// Function symbols (`STT_FUNC`) defined in code sections, with their section index.
fn functions(parsed: &Parsed) -> impl Iterator<Item = (usize, &Symbol)> + '_ {
    parsed.symbols.iter().filter_map(|sym| match sym.place {
        Place::Section(s)
            if sym.st_type == STT_FUNC
                && parsed.sections.get(s).map(|s| s.kind) == Some(SectionKind::Code) =>
        {
            Some((s, sym))
        }
        _ => None,
    })
}

/// Where functions start in each code section: the boundaries that cut a section into
/// functions (sorted, deduplicated; slot 0 is always one).
pub(crate) struct Layout {
    starts: Vec<Vec<usize>>,
}

impl Layout {
    pub(crate) fn new(parsed: &Parsed) -> Layout {
        let mut starts = vec![Vec::new(); parsed.sections.len()];
        for (i, section) in parsed.sections.iter().enumerate() {
            if section.kind == SectionKind::Code
                && let Some(s) = starts.get_mut(i)
            {
                s.push(0);
            }
        }
        for (s, sym) in functions(parsed) {
            if let Some(list) = starts.get_mut(s) {
                list.push(usize::try_from(sym.value / 8).unwrap_or(usize::MAX));
            }
        }
        for list in &mut starts {
            list.sort_unstable();
            list.dedup();
        }
        Layout { starts }
    }

    /// The slot range of the function that contains slot `t` of code section `section`: from
    /// the closest function start at or before `t` to the next function start (or the
    /// section's end). Code before the first function symbol is a function of its own.
    fn chunk_of(&self, parsed: &Parsed, section: usize, t: usize) -> Option<Range<usize>> {
        let end_of_section = slots_of(parsed, section);
        if t >= end_of_section {
            return None;
        }
        let starts = self.starts.get(section)?;
        let i = starts.partition_point(|&b| b <= t);
        let start = starts.get(i.checked_sub(1)?).copied()?;
        let end = starts
            .get(i)
            .copied()
            .unwrap_or(end_of_section)
            .min(end_of_section);
        Some(start..end)
    }
}

/// A readable name for the function at `start` of `section`.
fn function_name(parsed: &Parsed, section: usize, start: usize) -> String {
    functions(parsed)
        .filter(|(s, sym)| *s == section && sym.value / 8 == start as u64)
        .map(|(_, sym)| sym.name.clone())
        .min_by_key(|name| name.is_empty())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| {
            let name = parsed.sections.get(section).map_or("", |s| s.name.as_str());
            format!("{name}+{start}")
        })
}

/// The programs of an object: every global or weak function symbol in a code section, and
/// every non-empty code section without any function symbol (named after the section).
pub(crate) fn programs(parsed: &Parsed) -> Vec<(ProgramInfo, Entry)> {
    let layout = Layout::new(parsed);
    let mut out = Vec::new();
    for (s, sym) in functions(parsed) {
        if sym.bind != STB_GLOBAL && sym.bind != STB_WEAK {
            continue;
        }
        let start = usize::try_from(sym.value / 8).unwrap_or(usize::MAX);
        if start >= slots_of(parsed, s) {
            // A symbol at the very end of its section names no code.
            continue;
        }
        let end = if sym.size > 0 {
            usize::try_from(sym.value.saturating_add(sym.size) / 8).unwrap_or(usize::MAX)
        } else {
            layout.chunk_of(parsed, s, start).map_or(start, |r| r.end)
        };
        let section = parsed.sections.get(s).map_or("", |x| x.name.as_str());
        out.push((
            ProgramInfo {
                name: sym.name.clone(),
                section: section.to_string(),
                pcs: start..end,
            },
            Entry {
                section: s,
                slot: start,
            },
        ));
    }
    // One pass over the symbols, not one per code section (sections × symbols was quadratic).
    let mut has_function = vec![false; parsed.sections.len()];
    for (s, _) in functions(parsed) {
        if let Some(has) = has_function.get_mut(s) {
            *has = true;
        }
    }
    for (s, section) in parsed.sections.iter().enumerate() {
        if section.kind == SectionKind::Code
            && section.size > 0
            && !has_function.get(s).copied().unwrap_or(false)
        {
            out.push((
                ProgramInfo {
                    name: section.name.clone(),
                    section: section.name.clone(),
                    pcs: 0..slots_of(parsed, s),
                },
                Entry {
                    section: s,
                    slot: 0,
                },
            ));
        }
    }
    out.sort_by_key(|(_, e)| (e.section, e.slot));
    out
}

/// Any function symbol named `name` (global or local), for `Selector::Function`.
pub(crate) fn functions_named(parsed: &Parsed, name: &str) -> Vec<(ProgramInfo, Entry)> {
    let layout = Layout::new(parsed);
    functions(parsed)
        .filter(|(_, sym)| sym.name == name)
        .filter_map(|(s, sym)| {
            let start = usize::try_from(sym.value / 8).ok()?;
            let pcs = layout.chunk_of(parsed, s, start)?;
            let section = parsed.sections.get(s)?.name.clone();
            Some((
                ProgramInfo {
                    name: sym.name.clone(),
                    section,
                    pcs: start..pcs.end,
                },
                Entry {
                    section: s,
                    slot: start,
                },
            ))
        })
        .collect()
}

/// Where each data section goes: its offset in its image (by section index; 0 for other
/// sections) and the size of each image. Arithmetic over the section headers only, so that
/// the images' limit is checked before anything of that size is allocated (a `SHT_NOBITS`
/// header costs 64 bytes of file and may claim 64 MiB). The error names the section whose end
/// passes [`MAX_IMAGE_SIZE`], with its index.
pub(crate) fn data_layout(parsed: &Parsed) -> Result<DataLayout, (usize, ElfError)> {
    let mut placement = vec![0u64; parsed.sections.len()];
    let (mut rodata_size, mut data_size) = (0u64, 0u64);
    let order = [
        (SectionKind::Rodata, "the .rodata image"),
        (SectionKind::Data, "the .data/.bss image"),
        (SectionKind::Bss, "the .data/.bss image"),
    ];
    for (kind, what) in order {
        let size = if kind == SectionKind::Rodata {
            &mut rodata_size
        } else {
            &mut data_size
        };
        for (i, section) in parsed.sections.iter().enumerate() {
            if section.kind != kind {
                continue;
            }
            let too_large = |size| {
                let kind = ElfErrorKind::TooLarge { what, size };
                (i, ElfError::at(section.header_offset, kind))
            };
            let start = size
                .checked_add(section.align - 1)
                .map(|x| x & !(section.align - 1))
                .ok_or_else(|| too_large(u64::MAX))?;
            let end = start
                .checked_add(section.size)
                .ok_or_else(|| too_large(u64::MAX))?;
            if end > MAX_IMAGE_SIZE {
                return Err(too_large(end));
            }
            if let Some(p) = placement.get_mut(i) {
                *p = start;
            }
            *size = end;
        }
    }
    Ok(DataLayout {
        placement,
        rodata_size,
        data_size,
    })
}

/// The result of [`data_layout`].
pub(crate) struct DataLayout {
    placement: Vec<u64>,
    rodata_size: u64,
    data_size: u64,
}

/// Builds the read-only and writable images and applies the data relocations
/// (`R_BPF_64_ABS64`: pointers in `.rodata`/`.data`, e.g. tables of string literals).
pub(crate) fn images(parsed: &Parsed, bytes: &[u8]) -> Result<Images, ElfError> {
    let layout = data_layout(parsed).map_err(|(_, e)| e)?;
    // Both sizes are at most `MAX_IMAGE_SIZE`.
    let mut rodata = vec![0; layout.rodata_size as usize];
    let mut data = vec![0; layout.data_size as usize];
    for (i, section) in parsed.sections.iter().enumerate() {
        let image = match section.kind {
            SectionKind::Rodata => &mut rodata,
            SectionKind::Data | SectionKind::Bss => &mut data,
            _ => continue,
        };
        let Some(contents) = bytes
            .get(section.contents.clone())
            .filter(|_| !section.nobits)
        else {
            continue;
        };
        let start = layout.placement.get(i).copied().unwrap_or(0) as usize;
        let len = contents.len().min(section.size as usize);
        if let (Some(to), Some(from)) = (image.get_mut(start..start + len), contents.get(..len)) {
            to.copy_from_slice(from);
        }
    }
    let placement = layout.placement;
    let mut images = Images {
        rodata,
        data,
        placement,
    };
    for (i, section) in parsed.sections.iter().enumerate() {
        if !matches!(section.kind, SectionKind::Rodata | SectionKind::Data) {
            continue;
        }
        let base = images.placement.get(i).copied().unwrap_or(0);
        for (&r_offset, reloc) in &section.relocs {
            let sym = symbol(parsed, reloc)?;
            match reloc.r_type {
                R_BPF_64_ABS64 => {
                    let image = if section.kind == SectionKind::Rodata {
                        &images.rodata
                    } else {
                        &images.data
                    };
                    let at = usize::try_from(base + r_offset).unwrap_or(usize::MAX);
                    let mut word = [0u8; 8];
                    word.copy_from_slice(image.get(at..at.saturating_add(8)).unwrap_or(&[0; 8]));
                    let value = address_of(parsed, &images, sym, u64::from_le_bytes(word), reloc)?;
                    let image = if section.kind == SectionKind::Rodata {
                        &mut images.rodata
                    } else {
                        &mut images.data
                    };
                    if let Some(slot) = image.get_mut(at..at.saturating_add(8)) {
                        slot.copy_from_slice(&value.to_le_bytes());
                    }
                }
                R_BPF_64_ABS32 | R_BPF_64_NODYLD32 => {
                    return err(
                        reloc.entry_offset,
                        ElfErrorKind::Unsupported {
                            symbol: sym.name.clone(),
                            reason: "the target of a 32-bit absolute relocation in a data section \
                                     (a VM address does not fit in 32 bits)",
                        },
                    );
                }
                _ => {
                    return err(
                        reloc.entry_offset,
                        ElfErrorKind::BadRelocation {
                            reason: "an instruction relocation (R_BPF_64_64 or R_BPF_64_32) \
                                     in a data section",
                        },
                    );
                }
            }
        }
    }
    Ok(images)
}

fn symbol<'p>(parsed: &'p Parsed, reloc: &Reloc) -> Result<&'p Symbol, ElfError> {
    parsed.symbols.get(reloc.sym).ok_or_else(|| {
        ElfError::at(
            reloc.entry_offset,
            ElfErrorKind::BadSymbolIndex {
                index: reloc.sym as u64,
                count: parsed.symbols.len(),
            },
        )
    })
}

/// The VM address a data relocation against `sym` with `addend` stands for.
fn address_of(
    parsed: &Parsed,
    images: &Images,
    sym: &Symbol,
    addend: u64,
    reloc: &Reloc,
) -> Result<u64, ElfError> {
    let unsupported = |symbol: String, reason| {
        ElfError::at(
            reloc.entry_offset,
            ElfErrorKind::Unsupported { symbol, reason },
        )
    };
    let s = match sym.place {
        Place::Section(s) => s,
        Place::Undefined => {
            return Err(unsupported(
                sym.name.clone(),
                "an extern variable (.ksyms/.kconfig), which needs a kernel",
            ));
        }
        Place::Absolute | Place::Common | Place::Reserved(_) => {
            return Err(unsupported(
                sym.name.clone(),
                "not defined in a section (SHN_ABS or SHN_COMMON; compile with -fno-common)",
            ));
        }
    };
    let kind = parsed
        .sections
        .get(s)
        .map_or(SectionKind::Other, |x| x.kind);
    let base = match kind {
        SectionKind::Rodata => RODATA_BASE,
        SectionKind::Data | SectionKind::Bss => DATA_BASE,
        SectionKind::Maps => {
            // A section symbol plus an offset: name the map defined there, if any.
            let offset = sym.value.wrapping_add(addend);
            let name = parsed
                .symbols
                .iter()
                .find(|m| {
                    m.place == Place::Section(s)
                        && m.st_type == STT_OBJECT
                        && m.value == offset
                        && !m.name.is_empty()
                })
                .map_or_else(|| sym.name.clone(), |m| m.name.clone());
            return Err(unsupported(
                name,
                "a map definition; maps are not supported",
            ));
        }
        SectionKind::Code => {
            return Err(unsupported(
                sym.name.clone(),
                "the address of a function (a callback); function pointers are not supported",
            ));
        }
        SectionKind::Other => {
            return Err(unsupported(
                sym.name.clone(),
                "in a section other than .rodata*, .data* and .bss*, so it has no VM address",
            ));
        }
    };
    let placed = images.placement.get(s).copied().unwrap_or(0);
    Ok(base
        .wrapping_add(placed)
        .wrapping_add(sym.value)
        .wrapping_add(addend))
}

/// One function placed in the linked program.
struct Chunk {
    section: usize,
    /// Slot range in its section.
    slots: Range<usize>,
    /// Its first slot in the linked program.
    new_start: usize,
    insns: Vec<Insn>,
    /// `pcs[i]`: the slot of `insns[i]`, counted from the function's start.
    pcs: Vec<usize>,
}

/// A local call, or a function's address (`lddw`, src = 4), to patch once every function has
/// its place.
struct CallFix {
    chunk: usize,
    insn: usize,
    target: usize,
    target_offset: usize,
}

/// `pc + 1 + delta`, if it is a valid index.
fn relative(pc: usize, delta: i64) -> Option<usize> {
    let t = i64::try_from(pc).ok()?.checked_add(delta)?.checked_add(1)?;
    usize::try_from(t).ok()
}

/// How a linked program reaches global variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Globals {
    /// By their address in the data images (regions 1 and 3).
    Images,
    /// As the kernel does: `lddw dst, map_value N, OFF` into the section's own map.
    Maps,
}

/// The state of one link: the functions placed so far and the calls to patch.
struct Linker<'a> {
    globals: Globals,
    parsed: &'a Parsed,
    bytes: &'a [u8],
    images: &'a Images,
    maps: &'a Definitions,
    layout: Layout,
    chunks: Vec<Chunk>,
    /// (section, first slot) of each placed function -> its index in `chunks`.
    placed: BTreeMap<(usize, usize), usize>,
    fixes: Vec<CallFix>,
    /// Slots placed so far.
    total: usize,
}

/// Links the program entered at `entry`: its function, then every function it calls, in the
/// order the calls are found (breadth first); local-call immediates are rewritten, `lddw`s of
/// data addresses become VM addresses.
pub(crate) fn link(
    parsed: &Parsed,
    bytes: &[u8],
    images: &Images,
    maps: &Definitions,
    entry: Entry,
    globals: Globals,
) -> Result<Program, ElfError> {
    let mut linker = Linker {
        globals,
        parsed,
        bytes,
        images,
        maps,
        layout: Layout::new(parsed),
        chunks: Vec::new(),
        placed: BTreeMap::new(),
        fixes: Vec::new(),
        total: 0,
    };
    let entry_range = linker
        .layout
        .chunk_of(parsed, entry.section, entry.slot)
        .ok_or_else(|| {
            ElfError::request(ElfErrorKind::BadCallTarget {
                reason: "the entry point lies past the end of its section",
            })
        })?;
    linker.place(entry.section, entry_range)?;
    let mut next = 0;
    while next < linker.chunks.len() {
        linker.relocate(next)?;
        next += 1;
    }
    linker.finish()
}

impl Linker<'_> {
    /// Decodes the function at `slots` of `section` and appends it to the linked program;
    /// returns its index.
    fn place(&mut self, section: usize, slots: Range<usize>) -> Result<usize, ElfError> {
        let sec = self.parsed.sections.get(section).ok_or_else(|| {
            ElfError::request(ElfErrorKind::BadCallTarget {
                reason: "the target section does not exist",
            })
        })?;
        let code = self.bytes.get(sec.contents.clone()).unwrap_or_default();
        let function = code.get(slots.start * 8..slots.end * 8).unwrap_or_default();
        let program = decode(function).map_err(|e: DecodeError| {
            ElfError::at(
                sec.file_offset + ((slots.start + e.pc) as u64) * 8,
                ElfErrorKind::Decode(e),
            )
        })?;
        let pcs = program.iter().map(|(pc, _)| pc).collect();
        let index = self.chunks.len();
        self.placed.insert((section, slots.start), index);
        let new_start = self.total;
        self.total += slots.len();
        self.chunks.push(Chunk {
            section,
            slots,
            new_start,
            insns: program.into_insns(),
            pcs,
        });
        Ok(index)
    }

    /// The placed function holding slot `target` of `section`, placing it first if needed;
    /// returns its index and the target's offset in it.
    fn function_at(
        &mut self,
        section: usize,
        target: usize,
        at: u64,
    ) -> Result<(usize, usize), ElfError> {
        let placed = self
            .placed
            .range(..=(section, target))
            .next_back()
            .map(|(_, &index)| index)
            .filter(|&index| {
                self.chunks
                    .get(index)
                    .is_some_and(|c| c.section == section && c.slots.contains(&target))
            });
        let index = match placed {
            Some(index) => index,
            None => {
                let range = self
                    .layout
                    .chunk_of(self.parsed, section, target)
                    .ok_or_else(|| {
                        ElfError::at(
                            at,
                            ElfErrorKind::BadCallTarget {
                                reason: "the call's target lies in no function",
                            },
                        )
                    })?;
                self.place(section, range)?
            }
        };
        let offset = self.chunks.get(index).map_or(0, |c| target - c.slots.start);
        Ok((index, offset))
    }

    /// Applies the relocations of function `this`, checks its jumps and its end, and finds
    /// (placing them as needed) the functions it calls.
    fn relocate(&mut self, this: usize) -> Result<(), ElfError> {
        let parsed = self.parsed;
        let Some(chunk) = self.chunks.get(this) else {
            return Ok(());
        };
        let (section, slots) = (chunk.section, chunk.slots.clone());
        let Some(sec) = parsed.sections.get(section) else {
            return Ok(());
        };
        let insns = chunk.insns.clone();
        let pcs = chunk.pcs.clone();
        let offset_of = |pc: usize| sec.file_offset + ((slots.start + pc) as u64) * 8;
        let name = || function_name(parsed, section, slots.start);
        // Every relocation inside the function must sit on the first slot of an instruction.
        let byte_range = (slots.start as u64 * 8)..(slots.end as u64 * 8);
        for (&r_offset, reloc) in sec.relocs.range(byte_range) {
            let pc = (r_offset / 8) as usize - slots.start;
            if pcs.binary_search(&pc).is_err() {
                return err(
                    reloc.entry_offset,
                    ElfErrorKind::BadRelocation {
                        reason: "it patches the second slot of an lddw",
                    },
                );
            }
        }
        for (i, (&pc, &insn)) in pcs.iter().zip(&insns).enumerate() {
            let reloc = sec.relocs.get(&(((slots.start + pc) as u64) * 8));
            let (new_insn, call) = match (insn, reloc) {
                (insn, Some(reloc)) => self.apply(insn, reloc)?,
                (
                    Insn::Call {
                        kind: CallKind::Local,
                        imm,
                    },
                    None,
                ) => {
                    // An unrelocated local call is relative to its own section.
                    let target = relative(slots.start + pc, i64::from(imm))
                        .filter(|&t| t < slots_of(parsed, section));
                    let Some(target) = target else {
                        return err(
                            offset_of(pc),
                            ElfErrorKind::BadCallTarget {
                                reason: "the local call's target lies outside its section",
                            },
                        );
                    };
                    (insn, Some((section, target)))
                }
                (Insn::Ja { off } | Insn::Jump { off, .. }, None)
                    if relative(pc, i64::from(off)).is_none_or(|t| t >= slots.len()) =>
                {
                    return err(
                        offset_of(pc),
                        ElfErrorKind::JumpOutsideFunction { function: name() },
                    );
                }
                (Insn::Ja32 { imm }, None)
                    if relative(pc, i64::from(imm)).is_none_or(|t| t >= slots.len()) =>
                {
                    return err(
                        offset_of(pc),
                        ElfErrorKind::JumpOutsideFunction { function: name() },
                    );
                }
                (insn, None) => (insn, None),
            };
            if let Some((target_section, target)) = call {
                let (index, target_offset) =
                    self.function_at(target_section, target, offset_of(pc))?;
                self.fixes.push(CallFix {
                    chunk: this,
                    insn: i,
                    target: index,
                    target_offset,
                });
            }
            if let Some(slot) = self.chunks.get_mut(this).and_then(|c| c.insns.get_mut(i)) {
                *slot = new_insn;
            }
        }
        if !matches!(
            insns.last(),
            Some(Insn::Exit | Insn::Ja { .. } | Insn::Ja32 { .. })
        ) {
            let pc = pcs.last().copied().unwrap_or(0);
            return err(
                offset_of(pc),
                ElfErrorKind::FallsThrough { function: name() },
            );
        }
        Ok(())
    }

    /// Applies one relocation to its instruction: an `lddw` gets its VM address, a `call` its
    /// target (section, slot), patched later.
    fn apply(&self, insn: Insn, reloc: &Reloc) -> Result<(Insn, Option<(usize, usize)>), ElfError> {
        let parsed = self.parsed;
        let bad = |reason| err(reloc.entry_offset, ElfErrorKind::BadRelocation { reason });
        match insn {
            Insn::LoadImm64 { dst, kind, imm } => {
                if reloc.r_type != R_BPF_64_64 {
                    return bad("an lddw is relocated by R_BPF_64_64 only");
                }
                if kind != Imm64Kind::Value {
                    return bad("the relocated lddw has a pseudo source (src != 0)");
                }
                let sym = symbol(parsed, reloc)?;
                if let Some(target) = self.code_address(sym, imm, reloc)? {
                    // A callback (bpf_loop, for_each_map_elem, timers): `lddw dst, code OFF`
                    // (src = 4), OFF from the lddw to the function, patched once placed.
                    let kind = Imm64Kind::Code;
                    return Ok((Insn::LoadImm64 { dst, kind, imm: 0 }, Some(target)));
                }
                if let Some(index) = self.map_reference(sym, imm, reloc)? {
                    let kind = Imm64Kind::MapFd;
                    return Ok((
                        Insn::LoadImm64 {
                            dst,
                            kind,
                            imm: index,
                        },
                        None,
                    ));
                }
                if let Some(imm) = self.data_map_reference(sym, imm) {
                    let kind = Imm64Kind::MapValue;
                    return Ok((Insn::LoadImm64 { dst, kind, imm }, None));
                }
                // The addend is the first slot's 32-bit immediate, signed (clang writes
                // `sym - 4` there as 0xfffffffc and libbpf reads it as an `s32`); read as the
                // 64-bit immediate it added almost 4 GiB, into the next region.
                let addend = i64::from(imm as u32 as i32) as u64;
                let imm = address_of(parsed, self.images, sym, addend, reloc)?;
                Ok((Insn::LoadImm64 { dst, kind, imm }, None))
            }
            Insn::Call { imm, .. } => {
                if reloc.r_type != R_BPF_64_32 {
                    return bad("a call is relocated by R_BPF_64_32 only");
                }
                let sym = symbol(parsed, reloc)?;
                let section = match sym.place {
                    Place::Section(s)
                        if parsed.sections.get(s).map(|x| x.kind) == Some(SectionKind::Code) =>
                    {
                        s
                    }
                    Place::Undefined => {
                        return err(
                            reloc.entry_offset,
                            ElfErrorKind::Unsupported {
                                symbol: sym.name.clone(),
                                reason: "a kfunc (a call to an extern function), \
                                         which needs a kernel",
                            },
                        );
                    }
                    _ => return bad("a call relocation against a symbol that is not code"),
                };
                // LLVM's convention: the target slot is st_value / 8 + imm + 1.
                let target = usize::try_from(sym.value / 8)
                    .ok()
                    .and_then(|v| relative(v, i64::from(imm)))
                    .filter(|&t| t < slots_of(parsed, section));
                let Some(target) = target else {
                    return err(
                        reloc.entry_offset,
                        ElfErrorKind::BadCallTarget {
                            reason: "the relocated call's target lies outside its section",
                        },
                    );
                };
                let call = Insn::Call {
                    kind: CallKind::Local,
                    imm: 0,
                };
                Ok((call, Some((section, target))))
            }
            _ => bad("it patches an instruction that is neither lddw nor call"),
        }
    }

    /// For a relocation against code (a function's address): the target (section, slot).
    fn code_address(
        &self,
        sym: &Symbol,
        addend: u64,
        reloc: &Reloc,
    ) -> Result<Option<(usize, usize)>, ElfError> {
        let Place::Section(s) = sym.place else {
            return Ok(None);
        };
        if self.parsed.sections.get(s).map(|x| x.kind) != Some(SectionKind::Code) {
            return Ok(None);
        }
        let byte = sym.value.wrapping_add(addend);
        let target = usize::try_from(byte / 8)
            .ok()
            .filter(|&t| byte.is_multiple_of(8) && t < slots_of(self.parsed, s));
        match target {
            Some(t) => Ok(Some((s, t))),
            None => err(
                reloc.entry_offset,
                ElfErrorKind::BadCallTarget {
                    reason: "a function address that is not an instruction of its section",
                },
            ),
        }
    }

    /// With [`Globals::Maps`], a reference to a global variable: `map_value N, OFF` as the
    /// immediate (`N | OFF << 32`), `OFF` the symbol's offset in its section plus the addend
    /// (32 bits, as the kernel takes it).
    fn data_map_reference(&self, sym: &Symbol, addend: u64) -> Option<u64> {
        if self.globals != Globals::Maps {
            return None;
        }
        let Place::Section(s) = sym.place else {
            return None;
        };
        let index = self.maps.global_index(s)?;
        let offset = sym.value.wrapping_add(addend) & 0xffff_ffff;
        Some(index as u64 | offset << 32)
    }

    /// For a relocation against a map: the map's index in the object's map list.
    fn map_reference(
        &self,
        sym: &Symbol,
        addend: u64,
        reloc: &Reloc,
    ) -> Result<Option<u64>, ElfError> {
        let Place::Section(s) = sym.place else {
            return Ok(None);
        };
        if self.parsed.sections.get(s).map(|x| x.kind) != Some(SectionKind::Maps) {
            return Ok(None);
        }
        if let Some(e) = self.maps.failure(s) {
            return Err(e.clone());
        }
        let maps = &self.maps.maps;
        let offset = sym.value.wrapping_add(addend);
        // `maps` is sorted by section, then offset: a search, not a scan per relocation.
        let first = maps.partition_point(|m| (m.section, m.offset) < (s, offset));
        let index = Some(first).filter(|&i| {
            maps.get(i)
                .is_some_and(|m| m.section == s && m.offset == offset)
        });
        match index {
            Some(index) => Ok(Some(index as u64)),
            None => {
                let inside = maps.iter().find(|m| {
                    m.section == s && m.offset < offset && offset < m.offset.saturating_add(m.size)
                });
                let (map, reason) = match inside {
                    Some(m) => (
                        m.definition.name.clone(),
                        format!(
                            "a reference {} bytes into the definition",
                            offset - m.offset
                        ),
                    ),
                    None => (
                        sym.name.clone(),
                        format!("no map is defined at offset {offset:#x} of its section"),
                    ),
                };
                Err(ElfError::at(
                    reloc.entry_offset,
                    ElfErrorKind::BadMap { map, reason },
                ))
            }
        }
    }

    /// Patches every local call with its final offset and flattens the functions.
    fn finish(mut self) -> Result<Program, ElfError> {
        for fix in &self.fixes {
            let (Some(caller), Some(callee)) =
                (self.chunks.get(fix.chunk), self.chunks.get(fix.target))
            else {
                continue;
            };
            let call_pc = caller.new_start + caller.pcs.get(fix.insn).copied().unwrap_or(0);
            let target_pc = callee.new_start + fix.target_offset;
            let imm = i64::try_from(target_pc)
                .ok()
                .zip(i64::try_from(call_pc).ok())
                .and_then(|(t, c)| i32::try_from(t - c - 1).ok())
                .ok_or_else(|| {
                    ElfError::request(ElfErrorKind::TooLarge {
                        what: "the linked program",
                        size: self.total as u64,
                    })
                })?;
            if let Some(insn) = self
                .chunks
                .get_mut(fix.chunk)
                .and_then(|c| c.insns.get_mut(fix.insn))
            {
                *insn = match *insn {
                    Insn::LoadImm64 { dst, kind, .. } => Insn::LoadImm64 {
                        dst,
                        kind,
                        // The low slot holds the signed offset; the high slot is 0.
                        imm: u64::from(imm.cast_unsigned()),
                    },
                    _ => Insn::Call {
                        kind: CallKind::Local,
                        imm,
                    },
                };
            }
        }
        Ok(Program::from_insns(
            self.chunks.into_iter().flat_map(|c| c.insns).collect(),
        ))
    }
}
