//! [`ElfError`]: why an object cannot be loaded, and where in the file.

use std::fmt;

use ebpf_isa::{DecodeError, quoted};

/// Why an ELF object cannot be parsed or a program cannot be loaded from it.
///
/// `offset` is the file offset of the offending structure: the ELF header field, the section
/// header, the symbol-table entry, the relocation entry or the instruction slot that is wrong.
/// It is `None` only for errors about the request rather than the file (a selector that matches
/// nothing, or more than one program).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfError {
    /// File offset of the offending structure, when the error is about the file's contents.
    pub offset: Option<u64>,
    /// What is wrong.
    pub kind: ElfErrorKind,
}

impl ElfError {
    pub(crate) fn at(offset: u64, kind: ElfErrorKind) -> ElfError {
        ElfError {
            offset: Some(offset),
            kind,
        }
    }

    pub(crate) fn request(kind: ElfErrorKind) -> ElfError {
        ElfError { offset: None, kind }
    }
}

/// What is wrong with an object, or with the request made of it.
///
/// Names from the object (symbols, sections, functions) are displayed through
/// [`ebpf_isa::quoted`]: as they are when they print plainly, else quoted and escaped, so that
/// an object cannot write control sequences to a terminal through a message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElfErrorKind {
    /// The file does not start with the ELF magic `\x7fELF`.
    NotElf,
    /// The file ends inside a structure it declares (`what` names it: the ELF header, the
    /// section header table, a relocation table, …).
    Truncated {
        /// The structure that does not fit.
        what: &'static str,
    },
    /// `EI_CLASS` is not `ELFCLASS64` (2).
    WrongClass {
        /// The class byte found.
        class: u8,
    },
    /// `EI_DATA` is not `ELFDATA2LSB` (1): eBPF objects are little-endian.
    WrongEndianness {
        /// The data-encoding byte found.
        data: u8,
    },
    /// `e_type` is not `ET_REL` (1): only relocatable objects, as clang emits them, are loaded.
    NotRelocatable {
        /// The `e_type` found.
        e_type: u16,
    },
    /// `e_machine` is not `EM_BPF` (247).
    WrongMachine {
        /// The `e_machine` found.
        machine: u16,
    },
    /// A header or table field has a value this loader cannot accept (an entry size that is not
    /// the ELF64 one, a second symbol table, an alignment that is not a power of two, …).
    BadHeader {
        /// Which field, and why.
        reason: &'static str,
    },
    /// A section's contents (`sh_offset .. sh_offset + sh_size`) lie outside the file.
    SectionOutOfRange {
        /// The section's index.
        section: usize,
        /// `sh_offset`.
        start: u64,
        /// `sh_size`.
        size: u64,
    },
    /// A section index (`e_shstrndx`, `sh_link`, `sh_info`, `st_shndx`) names no section.
    BadSectionIndex {
        /// The index found.
        index: u64,
        /// How many sections the file has.
        count: usize,
    },
    /// A name's offset lies outside its string table, or the name is not NUL-terminated.
    BadStringOffset {
        /// The offset into the string table.
        offset: u64,
    },
    /// A name is longer than [`crate::MAX_NAME_LEN`] bytes.
    NameTooLong {
        /// The offset of the name in its string table.
        offset: u64,
    },
    /// The names read from the object (or from its `.BTF` section) add up to more than the
    /// limit: twice its size plus 64 KiB (see [`crate::MAX_NAME_LEN`]).
    NamesTooLarge {
        /// The limit, in bytes.
        max: u64,
    },
    /// A relocation names a symbol the symbol table does not have.
    BadSymbolIndex {
        /// The symbol index found.
        index: u64,
        /// How many symbols the symbol table has.
        count: usize,
    },
    /// A function symbol lies outside its code section or not on an instruction boundary.
    BadSymbol {
        /// The symbol's name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A relocation patches bytes outside the section it applies to.
    RelocationOutOfRange {
        /// The section the relocation applies to.
        section: String,
        /// `r_offset`.
        r_offset: u64,
    },
    /// A relocation type that BPF objects do not use.
    UnknownRelocationType {
        /// `ELF64_R_TYPE(r_info)`.
        r_type: u32,
    },
    /// A relocation that cannot apply where it is: on an instruction that is neither `lddw`
    /// nor `call`, inside an instruction, of the wrong type for its instruction, …
    BadRelocation {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An instruction slot of a linked function does not decode (see
    /// [`DecodeError`]; its `pc` counts slots from the start of the function).
    Decode(DecodeError),
    /// A local call's target lies outside its code section, or in no function.
    BadCallTarget {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A jump leaves the function it is in: functions are linked separately, so it would land
    /// elsewhere.
    JumpOutsideFunction {
        /// The function the jump is in.
        function: String,
    },
    /// A function's last instruction is neither `exit` nor an unconditional jump, so execution
    /// would run into whatever the linker places after it.
    FallsThrough {
        /// The function.
        function: String,
    },
    /// A feature of BPF objects this loader does not support; `symbol` names the map, kfunc,
    /// extern or section involved.
    Unsupported {
        /// The symbol (or section) involved.
        symbol: String,
        /// What it is.
        reason: &'static str,
    },
    /// The `.BTF` section is malformed, or lacks what a BTF-defined map needs.
    BadBtf {
        /// What is wrong.
        reason: &'static str,
    },
    /// A map definition cannot be read (an attribute of the wrong shape, a legacy definition
    /// cut short, a reference into the middle of a map, …).
    BadMap {
        /// The map.
        map: String,
        /// What is wrong.
        reason: String,
    },
    /// A data image or the linked program would exceed the loader's limit.
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size in bytes (or slots, for the program).
        size: u64,
    },
    /// The object contains no program.
    NoPrograms,
    /// No program matches the selector.
    NotFound {
        /// The selector, as text (`section xdp`, `function main`).
        selector: String,
    },
    /// More than one program matches the selector.
    Ambiguous {
        /// The selector, as text.
        selector: String,
        /// The programs that match (`function (section)`).
        candidates: Vec<String>,
    },
}

impl fmt::Display for ElfErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfErrorKind::NotElf => write!(f, "not an ELF file (bad magic)"),
            ElfErrorKind::Truncated { what } => write!(f, "truncated: the file ends inside {what}"),
            ElfErrorKind::WrongClass { class } => {
                write!(f, "ELF class {class} is not ELFCLASS64 (2)")
            }
            ElfErrorKind::WrongEndianness { data } => {
                write!(f, "ELF data encoding {data} is not little-endian (1)")
            }
            ElfErrorKind::NotRelocatable { e_type } => {
                write!(
                    f,
                    "ELF type {e_type} is not a relocatable object (ET_REL, 1)"
                )
            }
            ElfErrorKind::WrongMachine { machine } => {
                write!(f, "e_machine {machine} is not EM_BPF (247)")
            }
            ElfErrorKind::BadHeader { reason } => write!(f, "bad header: {reason}"),
            ElfErrorKind::SectionOutOfRange {
                section,
                start,
                size,
            } => write!(
                f,
                "section {section}: contents {start:#x}+{size:#x} lie outside the file"
            ),
            ElfErrorKind::BadSectionIndex { index, count } => {
                write!(f, "section index {index} out of range ({count} sections)")
            }
            ElfErrorKind::BadStringOffset { offset } => {
                write!(f, "string offset {offset:#x} outside its string table")
            }
            ElfErrorKind::NameTooLong { offset } => write!(
                f,
                "the name at string offset {offset:#x} is longer than {} bytes",
                crate::MAX_NAME_LEN
            ),
            ElfErrorKind::NamesTooLarge { max } => {
                write!(f, "the names add up to more than {max} bytes")
            }
            ElfErrorKind::BadSymbolIndex { index, count } => {
                write!(f, "symbol index {index} out of range ({count} symbols)")
            }
            ElfErrorKind::BadSymbol { name, reason } => {
                write!(f, "symbol `{}`: {reason}", quoted(name))
            }
            ElfErrorKind::RelocationOutOfRange { section, r_offset } => write!(
                f,
                "relocation at {r_offset:#x} lies outside section `{}`",
                quoted(section)
            ),
            ElfErrorKind::UnknownRelocationType { r_type } => {
                write!(f, "unknown BPF relocation type {r_type}")
            }
            ElfErrorKind::BadRelocation { reason } => write!(f, "bad relocation: {reason}"),
            ElfErrorKind::Decode(e) => write!(f, "invalid instruction: {e}"),
            ElfErrorKind::BadCallTarget { reason } => write!(f, "bad local call: {reason}"),
            ElfErrorKind::JumpOutsideFunction { function } => {
                write!(f, "a jump leaves function `{}`", quoted(function))
            }
            ElfErrorKind::FallsThrough { function } => write!(
                f,
                "function `{}` does not end with exit or an unconditional jump",
                quoted(function)
            ),
            ElfErrorKind::Unsupported { symbol, reason } => {
                write!(f, "unsupported: `{}` is {reason}", quoted(symbol))
            }
            ElfErrorKind::BadBtf { reason } => write!(f, "bad BTF: {reason}"),
            ElfErrorKind::BadMap { map, reason } => write!(f, "map `{}`: {reason}", quoted(map)),
            ElfErrorKind::TooLarge { what, size } => {
                write!(f, "{what} too large ({size} bytes)")
            }
            ElfErrorKind::NoPrograms => write!(f, "the object contains no program"),
            ElfErrorKind::NotFound { selector } => write!(f, "no program matches {selector}"),
            ElfErrorKind::Ambiguous {
                selector,
                candidates,
            } if *selector == crate::Selector::Only.to_string() => write!(
                f,
                "the object has {} programs: {}; select one by section or function",
                candidates.len(),
                candidates.join(", ")
            ),
            ElfErrorKind::Ambiguous {
                selector,
                candidates,
            } => write!(
                f,
                "{selector} holds {} programs: {}; select one by function",
                candidates.len(),
                candidates.join(", ")
            ),
        }
    }
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(f, "{} (at file offset {offset:#x})", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for ElfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ElfErrorKind::Decode(e) => Some(e),
            _ => None,
        }
    }
}
