//! Reading an object: the ELF header, section headers and names, the symbol table and the
//! relocation tables. Every offset, size and index is checked against the file before goblin
//! reads the record it points at, so malformed input is an [`ElfError`] with the offset of the
//! bad structure, never a panic.

use std::collections::BTreeMap;
use std::ops::Range;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::Elf;
use goblin::elf::header::{
    EI_CLASS, EI_DATA, ELFCLASS64, ELFDATA2LSB, ELFMAG, EM_BPF, ET_REL, SELFMAG,
};
use goblin::elf::reloc::RelocSection;
use goblin::elf::section_header::{
    SHF_EXECINSTR, SHN_ABS, SHN_COMMON, SHN_LORESERVE, SHN_XINDEX, SHT_NOBITS, SHT_PROGBITS,
    SHT_REL, SHT_RELA, SHT_SYMTAB, SectionHeader,
};
use goblin::elf::sym::{STT_FUNC, STT_SECTION, Sym};

use crate::MAX_NAME_LEN;
use crate::error::{ElfError, ElfErrorKind};

/// Size of the ELF64 header.
const EHDR_SIZE: u64 = 64;
/// Size of an ELF64 section header.
const SHDR_SIZE: u64 = 64;
/// Size of an ELF64 symbol.
const SYM_SIZE: u64 = 24;
/// Size of an ELF64 `Rel` entry.
const REL_SIZE: u64 = 16;

/// No relocation.
pub(crate) const R_BPF_NONE: u32 = 0;
/// `lddw`: the 64-bit immediate becomes the symbol's address (plus the addend in `imm`).
pub(crate) const R_BPF_64_64: u32 = 1;
/// Data: a 64-bit absolute address (plus the addend in place).
pub(crate) const R_BPF_64_ABS64: u32 = 2;
/// Data: a 32-bit absolute address (plus the addend in place).
pub(crate) const R_BPF_64_ABS32: u32 = 3;
/// Data: like `ABS32`, for debug and BTF sections only.
pub(crate) const R_BPF_64_NODYLD32: u32 = 4;
/// `call`: a local call to the symbol (`imm` holds the slot offset minus one).
pub(crate) const R_BPF_64_32: u32 = 10;

/// What a section is to the loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SectionKind {
    /// Executable instructions (`SHF_EXECINSTR`).
    Code,
    /// `.rodata` and `.rodata.*`: part of the read-only image.
    Rodata,
    /// `.data` and `.data.*`: part of the writable image.
    Data,
    /// `.bss` and `.bss.*`: zeroes at the end of the writable image.
    Bss,
    /// `maps`, `maps/*` and `.maps`: map definitions.
    Maps,
    /// Everything else (BTF, DWARF, `license`, …): ignored.
    Other,
}

/// One section header, checked.
#[derive(Clone, Debug)]
pub(crate) struct Section {
    /// Its name (from `.shstrtab`).
    pub(crate) name: String,
    /// What the loader does with it.
    pub(crate) kind: SectionKind,
    /// File offset of its section header.
    pub(crate) header_offset: u64,
    /// `sh_offset`.
    pub(crate) file_offset: u64,
    /// `sh_size`.
    pub(crate) size: u64,
    /// `sh_addralign` (1 for 0).
    pub(crate) align: u64,
    /// Its bytes in the file; empty for `SHT_NOBITS`.
    pub(crate) contents: Range<usize>,
    /// Whether it is `SHT_NOBITS` (zeroes, no file contents).
    pub(crate) nobits: bool,
    /// Relocations that apply to it, by `r_offset` (only for sections the loader uses).
    pub(crate) relocs: BTreeMap<u64, Reloc>,
}

/// Where a symbol is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// `SHN_UNDEF`: an extern (kfunc, `.ksyms`, `.kconfig` variable).
    Undefined,
    /// In the section with this index.
    Section(usize),
    /// `SHN_ABS`.
    Absolute,
    /// `SHN_COMMON`.
    Common,
    /// Another reserved index.
    Reserved(u32),
}

/// One symbol-table entry, checked.
#[derive(Clone, Debug)]
pub(crate) struct Symbol {
    /// Its name; for a section symbol, the section's name.
    pub(crate) name: String,
    /// `st_value`: the offset in its section.
    pub(crate) value: u64,
    /// `st_size`.
    pub(crate) size: u64,
    /// `ELF64_ST_TYPE(st_info)`.
    pub(crate) st_type: u8,
    /// `ELF64_ST_BIND(st_info)`.
    pub(crate) bind: u8,
    /// Where it is defined.
    pub(crate) place: Place,
}

/// One relocation entry, checked: its symbol exists and the bytes it patches lie inside the
/// section.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reloc {
    /// `ELF64_R_TYPE(r_info)`.
    pub(crate) r_type: u32,
    /// `ELF64_R_SYM(r_info)`, a valid index into the symbol table.
    pub(crate) sym: usize,
    /// File offset of the relocation entry.
    pub(crate) entry_offset: u64,
}

/// The checked structure of an object.
#[derive(Clone, Debug)]
pub(crate) struct Parsed {
    /// Every section, by index (index 0 is the null section).
    pub(crate) sections: Vec<Section>,
    /// Every symbol, by index (index 0 is the null symbol); empty without a symbol table.
    pub(crate) symbols: Vec<Symbol>,
}

fn err<T>(offset: u64, kind: ElfErrorKind) -> Result<T, ElfError> {
    Err(ElfError::at(offset, kind))
}

/// `offset .. offset + size` as a range of `bytes`, if it lies inside.
pub(crate) fn file_range(len: usize, offset: u64, size: u64) -> Option<Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    (end <= len).then_some(start..end)
}

/// Reads and checks everything the loader needs.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed, ElfError> {
    let ctx = check_identification(bytes)?;
    // 64 bytes are there and the identification is ELF64 little-endian: goblin can read it.
    let header = Elf::parse_header(bytes).map_err(|_| {
        ElfError::at(
            0,
            ElfErrorKind::Truncated {
                what: "the ELF header",
            },
        )
    })?;
    if header.e_type != ET_REL {
        return err(
            16,
            ElfErrorKind::NotRelocatable {
                e_type: header.e_type,
            },
        );
    }
    if header.e_machine != EM_BPF {
        return err(
            18,
            ElfErrorKind::WrongMachine {
                machine: header.e_machine,
            },
        );
    }
    let headers = section_headers(bytes, &header, ctx)?;
    let mut names = NameReader::new(bytes.len());
    let mut sections = name_sections(bytes, &header, &headers, &mut names)?;
    let symbols = read_symbols(bytes, &headers, &sections, ctx, &mut names)?;
    read_relocations(bytes, &headers, &mut sections, symbols.len(), ctx)?;
    Ok(Parsed { sections, symbols })
}

fn check_identification(bytes: &[u8]) -> Result<Ctx, ElfError> {
    let magic = &ELFMAG[..SELFMAG];
    let prefix = bytes.len().min(SELFMAG);
    if bytes.get(..prefix) != magic.get(..prefix) {
        return err(0, ElfErrorKind::NotElf);
    }
    let truncated = ElfErrorKind::Truncated {
        what: "the ELF header",
    };
    let (Some(&class), Some(&data)) = (bytes.get(EI_CLASS), bytes.get(EI_DATA)) else {
        return err(0, truncated);
    };
    if class != ELFCLASS64 {
        return err(EI_CLASS as u64, ElfErrorKind::WrongClass { class });
    }
    if data != ELFDATA2LSB {
        return err(EI_DATA as u64, ElfErrorKind::WrongEndianness { data });
    }
    if (bytes.len() as u64) < EHDR_SIZE {
        return err(0, truncated);
    }
    Ok(Ctx::new(Container::Big, Endian::Little))
}

fn section_headers(
    bytes: &[u8],
    header: &goblin::elf::Header,
    ctx: Ctx,
) -> Result<Vec<(u64, SectionHeader)>, ElfError> {
    let shoff = header.e_shoff;
    if shoff == 0 {
        return Ok(Vec::new());
    }
    if u64::from(header.e_shentsize) != SHDR_SIZE {
        return err(
            58,
            ElfErrorKind::BadHeader {
                reason: "e_shentsize is not 64",
            },
        );
    }
    let truncated = ElfErrorKind::Truncated {
        what: "the section header table",
    };
    let Some(first) = file_range(bytes.len(), shoff, SHDR_SIZE) else {
        return err(shoff, truncated);
    };
    let start = first.start;
    let mut count = u64::from(header.e_shnum);
    if count == 0 {
        // More than SHN_LORESERVE sections: the count is the null section's sh_size.
        let null = SectionHeader::parse_from(bytes, start, 1, ctx)
            .map_err(|_| ElfError::at(shoff, truncated.clone()))?;
        count = null.first().map_or(0, |s| s.sh_size);
    }
    let Some(table) = count
        .checked_mul(SHDR_SIZE)
        .and_then(|size| file_range(bytes.len(), shoff, size))
    else {
        return err(shoff, truncated);
    };
    let count = table.len() / SHDR_SIZE as usize;
    let headers = SectionHeader::parse_from(bytes, start, count.max(1), ctx)
        .map_err(|_| ElfError::at(shoff, truncated))?;
    Ok(headers
        .into_iter()
        .take(count)
        .enumerate()
        .map(|(i, h)| (shoff + i as u64 * SHDR_SIZE, h))
        .collect())
}

fn name_sections(
    bytes: &[u8],
    header: &goblin::elf::Header,
    headers: &[(u64, SectionHeader)],
    reader: &mut NameReader,
) -> Result<Vec<Section>, ElfError> {
    let count = headers.len();
    let mut sections = Vec::with_capacity(count);
    // Every section's contents must lie inside the file (NOBITS sections have none).
    for (i, (at, h)) in headers.iter().enumerate() {
        let nobits = h.sh_type == SHT_NOBITS;
        let contents = if nobits {
            0..0
        } else {
            file_range(bytes.len(), h.sh_offset, h.sh_size).ok_or_else(|| {
                ElfError::at(
                    *at,
                    ElfErrorKind::SectionOutOfRange {
                        section: i,
                        start: h.sh_offset,
                        size: h.sh_size,
                    },
                )
            })?
        };
        let align = h.sh_addralign.max(1);
        if !align.is_power_of_two() {
            return err(
                *at,
                ElfErrorKind::BadHeader {
                    reason: "sh_addralign is not a power of two",
                },
            );
        }
        sections.push(Section {
            name: String::new(),
            kind: SectionKind::Other,
            header_offset: *at,
            file_offset: h.sh_offset,
            size: h.sh_size,
            align,
            contents,
            nobits,
            relocs: BTreeMap::new(),
        });
    }
    if count == 0 {
        return Ok(sections);
    }
    let mut shstrndx = u64::from(header.e_shstrndx);
    if shstrndx == u64::from(SHN_XINDEX) {
        shstrndx = headers.first().map_or(0, |(_, h)| u64::from(h.sh_link));
    }
    if shstrndx == 0 {
        // No section names: every section keeps an empty name.
        return classify(sections, headers);
    }
    let Some(names) = usize::try_from(shstrndx)
        .ok()
        .and_then(|i| sections.get(i))
        .map(|s| s.contents.clone())
    else {
        return err(
            62,
            ElfErrorKind::BadSectionIndex {
                index: shstrndx,
                count,
            },
        );
    };
    let names = bytes.get(names).unwrap_or_default();
    for (section, (at, h)) in sections.iter_mut().zip(headers) {
        section.name = reader.elf_name(names, h.sh_name as u64, *at)?;
    }
    classify(sections, headers)
}

fn classify(
    mut sections: Vec<Section>,
    headers: &[(u64, SectionHeader)],
) -> Result<Vec<Section>, ElfError> {
    let in_family = |name: &str, family: &str| {
        name == family
            || name
                .strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    for (section, (_, h)) in sections.iter_mut().zip(headers) {
        let name = section.name.as_str();
        section.kind = if h.sh_type == SHT_PROGBITS && h.sh_flags & u64::from(SHF_EXECINSTR) != 0 {
            SectionKind::Code
        } else if in_family(name, ".rodata") {
            SectionKind::Rodata
        } else if in_family(name, ".data") {
            SectionKind::Data
        } else if in_family(name, ".bss") {
            SectionKind::Bss
        } else if name == "maps" || name == ".maps" || name.starts_with("maps/") {
            SectionKind::Maps
        } else {
            SectionKind::Other
        };
        if section.kind == SectionKind::Code && section.size % 8 != 0 {
            return err(
                section.header_offset,
                ElfErrorKind::BadHeader {
                    reason: "a code section's size is not a multiple of 8",
                },
            );
        }
    }
    Ok(sections)
}

/// The NUL-terminated string at `offset` of a string table; `at` is where the offset was read.
/// Reads names out of string tables within two limits that keep what a hostile object's names
/// cost linear in its size: every record may name the same long string (or a suffix of it), and
/// each is a copy, so unbounded names cost records × length in memory and in time finding
/// their NULs. No name may be longer than [`MAX_NAME_LEN`], and the names one reader returns
/// add up to at most [`NAME_BYTES_PER_BYTE`] per byte of its input plus [`NAME_BYTES_FLOOR`].
pub(crate) struct NameReader {
    left: u64,
    max: u64,
}

/// See [`NameReader`]: names one object (or one `.BTF` section) may hold, per byte of it.
const NAME_BYTES_PER_BYTE: u64 = 2;
/// See [`NameReader`]: names any object may hold, whatever its size.
const NAME_BYTES_FLOOR: u64 = 64 << 10;

/// Why [`NameReader::read`] refused a name.
pub(crate) enum NameError {
    /// The offset lies outside the table.
    Outside,
    /// The name is not NUL-terminated.
    Unterminated,
    /// The name, or the names read so far, exceed the limits: the error for it.
    TooLarge(ElfErrorKind),
}

impl NameReader {
    /// A reader for the names of an input (an object, a `.BTF` section) of `input_len` bytes.
    pub(crate) fn new(input_len: usize) -> NameReader {
        let max = (input_len as u64)
            .saturating_mul(NAME_BYTES_PER_BYTE)
            .saturating_add(NAME_BYTES_FLOOR);
        NameReader { left: max, max }
    }

    /// The name at `offset` in `table`.
    pub(crate) fn read(&mut self, table: &[u8], offset: u64) -> Result<String, NameError> {
        let rest = usize::try_from(offset)
            .ok()
            .and_then(|start| table.get(start..))
            .ok_or(NameError::Outside)?;
        // Never look further than the longest name allowed, so the search is bounded too.
        let window = rest.get(..=MAX_NAME_LEN).unwrap_or(rest);
        let Some(len) = window.iter().position(|&b| b == 0) else {
            return Err(if window.len() > MAX_NAME_LEN {
                NameError::TooLarge(ElfErrorKind::NameTooLong { offset })
            } else {
                NameError::Unterminated
            });
        };
        self.left = self
            .left
            .checked_sub(len as u64)
            .ok_or(NameError::TooLarge(ElfErrorKind::NamesTooLarge {
                max: self.max,
            }))?;
        Ok(String::from_utf8_lossy(&window[..len]).into_owned())
    }

    /// Counts a copy of a name already read (a section's name that a symbol or a program takes
    /// as its own) against the same limit, at file offset `at`.
    fn copy(&mut self, name: &str, at: u64) -> Result<(), ElfError> {
        self.left = self
            .left
            .checked_sub(name.len() as u64)
            .ok_or(ElfError::at(
                at,
                ElfErrorKind::NamesTooLarge { max: self.max },
            ))?;
        Ok(())
    }

    /// [`NameReader::read`] for ELF string tables: an unreadable name is `BadStringOffset`, and
    /// every error is at file offset `at`.
    fn elf_name(&mut self, table: &[u8], offset: u64, at: u64) -> Result<String, ElfError> {
        self.read(table, offset).map_err(|e| match e {
            NameError::Outside | NameError::Unterminated => {
                ElfError::at(at, ElfErrorKind::BadStringOffset { offset })
            }
            NameError::TooLarge(kind) => ElfError::at(at, kind),
        })
    }
}

fn read_symbols(
    bytes: &[u8],
    headers: &[(u64, SectionHeader)],
    sections: &[Section],
    ctx: Ctx,
    reader: &mut NameReader,
) -> Result<Vec<Symbol>, ElfError> {
    let mut tables = headers.iter().filter(|(_, h)| h.sh_type == SHT_SYMTAB);
    let Some((at, h)) = tables.next() else {
        return Ok(Vec::new());
    };
    if let Some((second, _)) = tables.next() {
        return err(
            *second,
            ElfErrorKind::BadHeader {
                reason: "more than one symbol table",
            },
        );
    }
    if h.sh_entsize != SYM_SIZE {
        return err(
            *at,
            ElfErrorKind::BadHeader {
                reason: "the symbol table's sh_entsize is not 24",
            },
        );
    }
    let count = sections.len();
    let strtab = usize::try_from(h.sh_link)
        .ok()
        .and_then(|i| sections.get(i))
        .ok_or_else(|| {
            ElfError::at(
                *at,
                ElfErrorKind::BadSectionIndex {
                    index: u64::from(h.sh_link),
                    count,
                },
            )
        })?;
    let names = bytes.get(strtab.contents.clone()).unwrap_or_default();
    // The symbol table's contents were checked to lie inside the file.
    let n = (h.sh_size / SYM_SIZE) as usize;
    let start = usize::try_from(h.sh_offset).unwrap_or(usize::MAX);
    let raw = if n == 0 {
        Vec::new()
    } else {
        Sym::parse(bytes, start, n, ctx).map_err(|_| {
            ElfError::at(
                *at,
                ElfErrorKind::Truncated {
                    what: "the symbol table",
                },
            )
        })?
    };
    let mut symbols = Vec::with_capacity(raw.len());
    for (i, sym) in raw.iter().enumerate() {
        let entry = h.sh_offset + i as u64 * SYM_SIZE;
        let shndx = sym.st_shndx as u32;
        let place = match shndx {
            0 => Place::Undefined,
            s if s < SHN_LORESERVE => {
                if s as usize >= count {
                    return err(
                        entry,
                        ElfErrorKind::BadSectionIndex {
                            index: u64::from(s),
                            count,
                        },
                    );
                }
                Place::Section(s as usize)
            }
            SHN_ABS => Place::Absolute,
            SHN_COMMON => Place::Common,
            SHN_XINDEX => {
                return err(
                    entry,
                    ElfErrorKind::BadSectionIndex {
                        index: u64::from(SHN_XINDEX),
                        count,
                    },
                );
            }
            s => Place::Reserved(s),
        };
        let mut name = reader.elf_name(names, sym.st_name as u64, entry)?;
        let st_type = sym.st_type();
        if st_type == STT_SECTION
            && name.is_empty()
            && let Place::Section(s) = place
        {
            name = sections.get(s).map(|s| s.name.clone()).unwrap_or_default();
            reader.copy(&name, entry)?;
        }
        if st_type == STT_FUNC
            && let Place::Section(s) = place
            && let Some(section) = sections.get(s)
            && section.kind == SectionKind::Code
        {
            // A program's description carries its section's name (`ProgramInfo::section`).
            reader.copy(&section.name, entry)?;
            let reason = if sym.st_value % 8 != 0 {
                Some("not on an instruction boundary")
            } else if sym
                .st_value
                .checked_add(sym.st_size)
                .is_none_or(|end| end > section.size)
            {
                Some("extends past the end of its section")
            } else if sym.st_size % 8 != 0 {
                Some("its size is not a whole number of instructions")
            } else {
                None
            };
            if let Some(reason) = reason {
                return err(entry, ElfErrorKind::BadSymbol { name, reason });
            }
        }
        symbols.push(Symbol {
            name,
            value: sym.st_value,
            size: sym.st_size,
            st_type,
            bind: sym.st_bind(),
            place,
        });
    }
    Ok(symbols)
}

fn read_relocations(
    bytes: &[u8],
    headers: &[(u64, SectionHeader)],
    sections: &mut [Section],
    symbol_count: usize,
    ctx: Ctx,
) -> Result<(), ElfError> {
    let count = sections.len();
    let symtab = headers.iter().position(|(_, h)| h.sh_type == SHT_SYMTAB);
    for (at, h) in headers {
        if h.sh_type != SHT_REL && h.sh_type != SHT_RELA {
            continue;
        }
        let target = usize::try_from(h.sh_info)
            .ok()
            .filter(|&t| t < count)
            .ok_or_else(|| {
                ElfError::at(
                    *at,
                    ElfErrorKind::BadSectionIndex {
                        index: u64::from(h.sh_info),
                        count,
                    },
                )
            })?;
        let Some(section) = sections.get_mut(target) else {
            continue;
        };
        if section.kind == SectionKind::Other {
            // Relocations of BTF and DWARF: ignored with their sections.
            continue;
        }
        if h.sh_type == SHT_RELA {
            return err(
                *at,
                ElfErrorKind::Unsupported {
                    symbol: section.name.clone(),
                    reason: "relocated by RELA entries, which BPF objects do not use",
                },
            );
        }
        if symtab != usize::try_from(h.sh_link).ok() {
            return err(
                *at,
                ElfErrorKind::BadSectionIndex {
                    index: u64::from(h.sh_link),
                    count,
                },
            );
        }
        if h.sh_entsize != REL_SIZE {
            return err(
                *at,
                ElfErrorKind::BadHeader {
                    reason: "a relocation table's sh_entsize is not 16",
                },
            );
        }
        let n = h.sh_size / REL_SIZE;
        if n == 0 {
            continue;
        }
        // The table's contents were checked to lie inside the file.
        let start = usize::try_from(h.sh_offset).unwrap_or(usize::MAX);
        let size = (n * REL_SIZE) as usize;
        let table = RelocSection::parse(bytes, start, size, false, ctx).map_err(|_| {
            ElfError::at(
                *at,
                ElfErrorKind::Truncated {
                    what: "a relocation table",
                },
            )
        })?;
        for (i, rel) in table.iter().enumerate() {
            let entry = h.sh_offset + i as u64 * REL_SIZE;
            let width = match rel.r_type {
                R_BPF_NONE => continue,
                R_BPF_64_64 => 16,
                R_BPF_64_32 | R_BPF_64_ABS64 => 8,
                R_BPF_64_ABS32 | R_BPF_64_NODYLD32 => 4,
                r_type => return err(entry, ElfErrorKind::UnknownRelocationType { r_type }),
            };
            if rel.r_sym >= symbol_count {
                return err(
                    entry,
                    ElfErrorKind::BadSymbolIndex {
                        index: rel.r_sym as u64,
                        count: symbol_count,
                    },
                );
            }
            if rel
                .r_offset
                .checked_add(width)
                .is_none_or(|end| end > section.size)
            {
                return err(
                    entry,
                    ElfErrorKind::RelocationOutOfRange {
                        section: section.name.clone(),
                        r_offset: rel.r_offset,
                    },
                );
            }
            if section.nobits {
                return err(
                    entry,
                    ElfErrorKind::BadRelocation {
                        reason: "it patches a section without contents (SHT_NOBITS)",
                    },
                );
            }
            if section.kind == SectionKind::Code && rel.r_offset % 8 != 0 {
                return err(
                    entry,
                    ElfErrorKind::BadRelocation {
                        reason: "it is not on an instruction boundary",
                    },
                );
            }
            let reloc = Reloc {
                r_type: rel.r_type,
                sym: rel.r_sym,
                entry_offset: entry,
            };
            if section.relocs.insert(rel.r_offset, reloc).is_some() {
                return err(
                    entry,
                    ElfErrorKind::BadRelocation {
                        reason: "two relocations patch the same bytes",
                    },
                );
            }
        }
    }
    Ok(())
}
