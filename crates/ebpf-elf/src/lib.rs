//! `ebpf-elf`: loads the BPF ELF objects that `clang -target bpf` emits.
//!
//! What it is for: taking a relocatable object (ELF64, little-endian, `e_machine == EM_BPF`,
//! as clang writes it at any optimisation level and for `-mcpu=v1` to `v4`), listing the
//! programs in it ([`ElfObject::programs`]), and turning one of them into what an engine runs
//! ([`ElfObject::load`] → [`LoadedElf`]): a flat [`Program`] plus the initial contents of the
//! read-only and writable data regions.
//!
//! What it is not for: running anything (that is the engines' job, through `ebpf-vm`),
//! checking that a program is safe (`ebpf-verifier`), creating maps (`ebpf-maps`, wired by the
//! facade), or emulating the kernel's loader. Maps are *described* ([`ElfObject::maps`]:
//! BTF-defined `.maps` and legacy `maps` sections) and references to them relocated (see
//! below). Kfuncs, extern variables (`.ksyms`, `.kconfig`) and function pointers need a
//! kernel; a program that *uses* one is refused with [`ElfErrorKind::Unsupported`], which
//! names the symbol (other programs of the same object still load). BTF (`.BTF`, `.BTF.ext`) and DWARF
//! (`.debug_*`) sections, and their relocations, are ignored — CO-RE relocations included: field
//! offsets stay as clang compiled them. `RELA` relocation tables and 32-bit absolute data
//! relocations (`R_BPF_64_ABS32`, which cannot hold a VM address) are refused too.
//!
//! ```no_run
//! use ebpf_elf::{ElfObject, Selector};
//!
//! let bytes = std::fs::read("filter.o").unwrap();
//! let object = ElfObject::parse(&bytes)?;
//! for p in object.programs() {
//!     println!("{} in section {} (slots {:?})", p.name, p.section, p.pcs);
//! }
//! let loaded = object.load(Selector::Section("xdp"))?;
//! # Ok::<(), ebpf_elf::ElfError>(())
//! ```
//!
//! # Which functions are programs
//!
//! A *program* is a global (or weak) function symbol (`STT_FUNC`) in an executable section —
//! what clang emits for a non-`static` function, whether it sits in `SEC("xdp")`, `socket` or
//! `.text`. `static` functions are subprograms: they are linked in when a program calls them,
//! and [`Selector::Function`] can still name one as the entry point. A code section without any
//! function symbol (hand-assembled objects) is one program named after its section.
//!
//! # Linking
//!
//! The selected program's function comes first, at pc 0; then every function it calls,
//! transitively, in the order the calls are found (breadth first), wherever the callee lives
//! (a `.text` helper called from `xdp`, a function in another section). A *function* is the
//! code from one function symbol to the next one in its section (or the section's end). Local
//! calls are found through `R_BPF_64_32` relocations (target slot `st_value / 8 + imm + 1` in
//! the symbol's section, LLVM's convention) and through unrelocated `call` instructions with
//! `src = 1` (relative to their own section); each call's `imm` is rewritten to the callee's
//! new position. A jump that leaves its function, or a function that does not end with `exit`
//! or an unconditional jump, is an error, since the linked layout differs from the file's.
//! Helper calls (`call imm`, `src = 0`, no relocation) stay as they are.
//!
//! # The data regions
//!
//! All `.rodata` and `.rodata.*` sections (`.rodata.str1.1`, `.rodata.cst16`, …) are
//! concatenated in section order, each at its `sh_addralign`, into [`LoadedElf::rodata`], which
//! the VM maps read-only at [`RODATA_BASE`]. All `.data` and `.data.*` sections, then all `.bss`
//! and `.bss.*` sections (as zeroes), are concatenated likewise into [`LoadedElf::data`], which
//! the VM maps writable at [`DATA_BASE`] (the facade keeps it for the VM's runs to share, so
//! globals persist from run to run). Neither image may exceed [`MAX_IMAGE_SIZE`].
//!
//! [`ElfObject::load_with_data_maps`] links as the kernel's loader does instead: each
//! non-empty global data section is a map of its own (a one-element array, listed after the
//! object's maps by [`ElfObject::maps`] with [`MapStyle::GlobalData`] and its initial value;
//! `.rodata*` with `BPF_F_RDONLY_PROG`), and a reference to a global variable becomes
//! `lddw dst, map_value N, OFF` (`src = 2`).
//!
//! An `lddw` with an `R_BPF_64_64` relocation gets the 64-bit immediate
//! `base + section's place in its image + st_value + addend`, where the addend is the
//! immediate clang left in the instruction (clang relocates `static` variables and string
//! literals against the *section* symbol and puts their offset there; globals are relocated
//! against their own symbol with an addend of 0). `R_BPF_64_ABS64` relocations in `.rodata*`
//! and `.data*` (tables of pointers, e.g. to string literals) write the same kind of address,
//! with the addend read from the patched 8 bytes.
//!
//! # Maps
//!
//! An `lddw` relocated against a map (a symbol in `.maps`, `maps` or `maps/*`) becomes
//! `lddw dst, map_fd N` (`src = 1`), where `N` is the map's index in [`ElfObject::maps`] (and
//! in [`LoadedElf::maps`]): the loader that creates the maps gives `N` its meaning, as the
//! kernel's loader puts a file descriptor there. A reference to anything but a map's start
//! is an error. A prog array's `values` initialisers (`[slot] = &program`) are listed in
//! [`MapDefinition::initial_programs`].
//!
//! # Errors
//!
//! Malformed input — a truncated header, section contents or tables outside the file, an
//! out-of-range section or symbol index, a relocation outside its section or on an instruction
//! that is neither `lddw` nor `call`, an undecodable instruction — is an [`ElfError`] with the
//! file offset of the bad structure. Parsing and loading never panic, on any input.

#![forbid(unsafe_code)]

mod btf;
mod error;
mod link;
mod maps;
mod parse;

use std::ops::Range;

use ebpf_isa::Program;

pub use error::{ElfError, ElfErrorKind};
pub use maps::{MapDefinition, MapStyle};

/// VM address of the first byte of [`LoadedElf::rodata`]: the read-only data region.
///
/// Equals `ebpf_abi::layout::vm_addr(ebpf_abi::layout::RODATA, 0)` (region 1); `ebpf-elf`
/// does not depend on `ebpf-abi`, so the facade's tests check that the two agree.
pub const RODATA_BASE: u64 = 0x1_0000_0000;

/// VM address of the first byte of [`LoadedElf::data`]: the writable data region.
///
/// Equals `ebpf_abi::layout::vm_addr(ebpf_abi::layout::DATA, 0)` (region 3); `ebpf-elf` does
/// not depend on `ebpf-abi`, so the facade's tests check that the two agree.
pub const DATA_BASE: u64 = 0x3_0000_0000;

/// The largest data image (read-only or writable) the loader builds, in bytes: 64 MiB. A
/// larger `.bss` is refused with [`ElfErrorKind::TooLarge`] rather than allocated.
pub const MAX_IMAGE_SIZE: u64 = 64 << 20;

/// The longest name (of a section, a symbol, a BTF type or member) the loader reads, in bytes:
/// 1,024, twice the kernel's `KSYM_NAME_LEN` (its limit for BTF and symbol names) and enough
/// for a uprobe section's path. A longer name is refused ([`ElfErrorKind::NameTooLong`]), and
/// the names of an object may not add up to more than twice its size plus 64 KiB
/// ([`ElfErrorKind::NamesTooLarge`]): names are copies, and a record costs 12 to 64 bytes of
/// file however long the string it names, so without both limits a small object could claim
/// memory (and time) quadratic in its size.
pub const MAX_NAME_LEN: usize = 1024;

/// A parsed BPF object: its structure has been checked, its programs listed.
#[derive(Clone, Debug)]
pub struct ElfObject {
    bytes: Vec<u8>,
    parsed: parse::Parsed,
    programs: Vec<ProgramInfo>,
    entries: Vec<link::Entry>,
    /// The map definitions, and the map sections that cannot be read (an error only for
    /// programs that use one of their maps).
    maps: maps::Definitions,
}

/// One program of an object, as [`ElfObject::programs`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProgramInfo {
    /// Its function symbol (or, for a code section without symbols, the section's name).
    pub name: String,
    /// The section it lives in (`xdp`, `socket`, `.text`, …).
    pub section: String,
    /// Its slots in that section: `st_value / 8 .. (st_value + st_size) / 8`.
    pub pcs: Range<usize>,
}

/// Which program to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Selector<'a> {
    /// The object's only program; an error if it has none or several.
    Only,
    /// The only program in the section of this name.
    Section(&'a str),
    /// The function of this name: a program, or else a `static` function.
    Function(&'a str),
}

impl core::fmt::Display for Selector<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Selector::Only => write!(f, "the object's only program"),
            Selector::Section(s) => write!(f, "section `{}`", ebpf_isa::quoted(s)),
            Selector::Function(s) => write!(f, "function `{}`", ebpf_isa::quoted(s)),
        }
    }
}

/// A program ready to run, with the initial contents of its data regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedElf {
    /// The linked program: the entry function at pc 0, then every function it calls.
    pub program: Program,
    /// The read-only region, mapped at [`RODATA_BASE`]: every `.rodata*` section.
    pub rodata: Vec<u8>,
    /// The initial contents of the writable region, mapped at [`DATA_BASE`]: every `.data*`
    /// section, then every `.bss*` section as zeroes.
    pub data: Vec<u8>,
    /// Every map the object defines that could be read (see [`ElfObject::maps`]); the
    /// program's map references are `lddw` with `src = 1` (`Imm64Kind::MapFd`) whose
    /// immediate is an index into this list.
    pub maps: Vec<MapDefinition>,
}

impl ElfObject {
    /// Parses and checks an object: headers, section table, names, symbols, and the relocations
    /// of the code and data sections.
    pub fn parse(bytes: &[u8]) -> Result<ElfObject, ElfError> {
        let parsed = parse::parse(bytes)?;
        let (programs, entries) = link::programs(&parsed).into_iter().unzip();
        let maps = maps::definitions(&parsed, bytes);
        Ok(ElfObject {
            bytes: bytes.to_vec(),
            parsed,
            programs,
            entries,
            maps,
        })
    }

    /// The maps the object defines, BTF-defined (`.maps`) and legacy (`maps`), in section
    /// order, then by position; an error if a definition cannot be read.
    pub fn maps(&self) -> Result<Vec<MapDefinition>, ElfError> {
        if let Some((_, e)) = self.maps.failed.first() {
            return Err(e.clone());
        }
        Ok(self.maps.all().cloned().collect())
    }

    /// The programs the object contains, in section order, then by position.
    pub fn programs(&self) -> &[ProgramInfo] {
        &self.programs
    }

    /// The program `selector` chooses, as [`ElfObject::load`] would choose it (the same
    /// errors: none, several, or no program found). A function selected by name that is
    /// not a program of its own (a `.text` function) is described by its name and section.
    pub fn selected(&self, selector: Selector<'_>) -> Result<ProgramInfo, ElfError> {
        self.select(selector).map(|(info, _)| info)
    }

    /// Links the selected program and builds the data images: a reference to a global
    /// variable is its address in the read-only or writable data region.
    pub fn load(&self, selector: Selector<'_>) -> Result<LoadedElf, ElfError> {
        self.load_as(selector, link::Globals::Images)
    }

    /// Links the selected program as the kernel's loader does: each global data section
    /// (`.data*`, `.bss*`, `.rodata*`) is a map of its own, one element holding the whole
    /// section (the [`MapStyle::GlobalData`] definitions at the end of [`ElfObject::maps`]),
    /// and a reference to a global variable is `lddw dst, map_value N, OFF`
    /// (`Imm64Kind::MapValue`, `src = 2`, the kernel's `BPF_PSEUDO_MAP_VALUE`: the low 32
    /// bits of the immediate are the map's index `N`, the high 32 the offset in its value).
    /// The images of [`LoadedElf`] are empty. Pointers stored in data sections
    /// (`R_BPF_64_ABS64`, tables of string literals) stay as the file holds them, as the
    /// kernel's maps get them from libbpf.
    pub fn load_with_data_maps(&self, selector: Selector<'_>) -> Result<LoadedElf, ElfError> {
        self.load_as(selector, link::Globals::Maps)
    }

    fn load_as(
        &self,
        selector: Selector<'_>,
        globals: link::Globals,
    ) -> Result<LoadedElf, ElfError> {
        let (_, entry) = self.select(selector)?;
        let images = link::images(&self.parsed, &self.bytes)?;
        let program = link::link(
            &self.parsed,
            &self.bytes,
            &images,
            &self.maps,
            entry,
            globals,
        )?;
        let (rodata, data) = match globals {
            link::Globals::Images => (images.rodata, images.data),
            link::Globals::Maps => (Vec::new(), Vec::new()),
        };
        Ok(LoadedElf {
            program,
            rodata,
            data,
            maps: self.maps.all().cloned().collect(),
        })
    }

    fn select(&self, selector: Selector<'_>) -> Result<(ProgramInfo, link::Entry), ElfError> {
        let all = self.programs.iter().zip(&self.entries);
        let matches: Vec<(ProgramInfo, link::Entry)> = match selector {
            Selector::Only => {
                if self.programs.is_empty() {
                    return Err(ElfError::request(ElfErrorKind::NoPrograms));
                }
                all.map(|(p, e)| (p.clone(), *e)).collect()
            }
            Selector::Section(name) => all
                .filter(|(p, _)| p.section == name)
                .map(|(p, e)| (p.clone(), *e))
                .collect(),
            Selector::Function(name) => {
                let programs: Vec<_> = all
                    .filter(|(p, _)| p.name == name)
                    .map(|(p, e)| (p.clone(), *e))
                    .collect();
                if programs.is_empty() {
                    link::functions_named(&self.parsed, name)
                } else {
                    programs
                }
            }
        };
        match matches.as_slice() {
            [(info, entry)] => Ok((info.clone(), *entry)),
            [] => Err(ElfError::request(ElfErrorKind::NotFound {
                selector: selector.to_string(),
            })),
            several => Err(ElfError::request(ElfErrorKind::Ambiguous {
                selector: selector.to_string(),
                candidates: several
                    .iter()
                    .map(|(p, _)| {
                        let (name, section) =
                            (ebpf_isa::quoted(&p.name), ebpf_isa::quoted(&p.section));
                        format!("{name} ({section})")
                    })
                    .collect(),
            })),
        }
    }
}
