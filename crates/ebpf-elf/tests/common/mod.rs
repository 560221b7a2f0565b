//! Helpers shared by the ELF loader's tests: fixture files, the expectations of
//! `tests/elf/expected.txt`, running a loaded program on the interpreter, a minimal ELF writer
//! (the object bpf_conformance's runner sends in `--elf` mode) and a minimal section-table
//! reader to find the bytes a malformed-input test should break.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use ebpf_abi::{Exit, Helpers, Limits, MemoryMap, Region, Trap, layout};
use ebpf_elf::LoadedElf;
use ebpf_interp::Interpreter;

/// `tests/elf/` of the workspace.
pub fn elf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/elf")
}

/// The bytes of `tests/elf/<name>.o` (`name` may include `unsupported/`).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = elf_dir().join(format!("{name}.o"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every fixture object's name (`tests/elf/*.o`, `tests/elf/loops/*.o`,
/// `tests/elf/unsupported/*.o` and the corpus `tests/bpf/*.o` as `../bpf/NAME`), sorted.
pub fn all_fixture_names() -> Vec<String> {
    let mut names = Vec::new();
    for (dir, prefix) in [
        (elf_dir(), ""),
        (elf_dir().join("loops"), "loops/"),
        (elf_dir().join("unsupported"), "unsupported/"),
        (elf_dir().join("../bpf"), "../bpf/"),
    ] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "o") {
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                names.push(format!("{prefix}{stem}"));
            }
        }
    }
    names.sort();
    names
}

/// Parses a `.hex` input: two-digit hex bytes separated by whitespace, `#` comments.
pub fn parse_hex(text: &str) -> Vec<u8> {
    text.lines()
        .flat_map(|line| line.split('#').next().unwrap_or("").split_whitespace())
        .map(|t| u8::from_str_radix(t, 16).unwrap_or_else(|_| panic!("bad hex byte `{t}`")))
        .collect()
}

/// The bytes of `tests/elf/inputs/<input>.hex`.
pub fn input(input: &str) -> Vec<u8> {
    let path = elf_dir().join(format!("inputs/{input}.hex"));
    parse_hex(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// One line of `expected.txt`.
#[derive(Clone, Debug)]
pub struct Expectation {
    pub object: String,
    pub program: String,
    pub input: String,
    pub result: u64,
}

/// Every line of `tests/elf/expected.txt`.
pub fn expectations() -> Vec<Expectation> {
    let text = std::fs::read_to_string(elf_dir().join("expected.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 4, "bad line in expected.txt: {l}");
            let hex = f[3].trim_start_matches("0x");
            Expectation {
                object: f[0].to_string(),
                program: f[1].to_string(),
                input: f[2].to_string(),
                result: u64::from_str_radix(hex, 16).unwrap(),
            }
        })
        .collect()
}

/// The helpers the fixtures may call: id 5 returns its first argument.
pub fn helpers() -> Helpers {
    Helpers::conformance()
}

/// Runs a loaded program on the interpreter as the contract says: `.rodata` read-only at
/// region 1, a fresh copy of `.data`/`.bss` writable at region 3, a copy of the input writable
/// at region 4, `r1` = the input's address, `r2` = its length. Returns the exit and the input
/// as the program left it.
pub fn run(loaded: &LoadedElf, input: &[u8], budget: Option<u64>) -> (Result<Exit, Trap>, Vec<u8>) {
    let interp = Interpreter::new(&loaded.program);
    let mut data = loaded.data.clone();
    let mut mem = input.to_vec();
    let mut map = MemoryMap::new();
    map.insert(layout::RODATA, Region::ReadOnly(&loaded.rodata));
    map.insert(layout::DATA, Region::Writable(&mut data));
    map.insert(layout::INPUT, Region::Writable(&mut mem));
    let limits = Limits {
        budget,
        ..Limits::default()
    };
    let args = layout::input_args(input.len() as u64);
    let exit = interp.run(map, args, &helpers(), &limits);
    (exit, mem)
}

// ---- A minimal ELF64 writer -------------------------------------------------------------

pub const SHT_PROGBITS: u32 = 1;
pub const SHT_SYMTAB: u32 = 2;
pub const SHT_STRTAB: u32 = 3;
pub const SHT_REL: u32 = 9;
pub const SHF_ALLOC: u64 = 2;
pub const SHF_EXECINSTR: u64 = 4;

/// One section for [`write_elf`] (the null section is implicit).
#[derive(Clone, Debug)]
pub struct Section {
    pub name_offset: u32,
    pub sh_type: u32,
    pub flags: u64,
    pub data: Vec<u8>,
    pub link: u32,
    pub info: u32,
    pub align: u64,
    pub entsize: u64,
}

impl Section {
    /// The section-name string table (section 1 in these objects; it also holds symbol names).
    pub fn names(name_offset: u32, data: Vec<u8>) -> Section {
        Section {
            name_offset,
            sh_type: SHT_STRTAB,
            flags: 0,
            data,
            link: 0,
            info: 0,
            align: 1,
            entsize: 0,
        }
    }

    /// A symbol table whose names are in section 1; `first_global` is the index of its first
    /// global symbol (`sh_info`).
    pub fn symbols(name_offset: u32, data: Vec<u8>, first_global: u32) -> Section {
        Section {
            name_offset,
            sh_type: SHT_SYMTAB,
            flags: 0,
            data,
            link: 1,
            info: first_global,
            align: 8,
            entsize: 24,
        }
    }

    /// An executable code section.
    pub fn code(name_offset: u32, code: &[u8]) -> Section {
        Section {
            name_offset,
            sh_type: SHT_PROGBITS,
            flags: SHF_ALLOC | SHF_EXECINSTR,
            data: code.to_vec(),
            link: 0,
            info: 0,
            align: 8,
            entsize: 0,
        }
    }
}

/// A string table of `names` and each name's offset in it.
pub fn strtab(names: &[&str]) -> (Vec<u8>, Vec<u32>) {
    let mut table = vec![0u8];
    let mut offsets = Vec::new();
    for name in names {
        offsets.push(table.len() as u32);
        table.extend_from_slice(name.as_bytes());
        table.push(0);
    }
    (table, offsets)
}

/// An ELF64 symbol.
pub fn symbol(name: u32, info: u8, shndx: u16, value: u64, size: u64) -> Vec<u8> {
    let mut s = Vec::with_capacity(24);
    s.extend_from_slice(&name.to_le_bytes());
    s.push(info);
    s.push(0);
    s.extend_from_slice(&shndx.to_le_bytes());
    s.extend_from_slice(&value.to_le_bytes());
    s.extend_from_slice(&size.to_le_bytes());
    s
}

/// An ELF64 `Rel` entry.
pub fn rel(offset: u64, sym: u32, r_type: u32) -> Vec<u8> {
    let mut r = offset.to_le_bytes().to_vec();
    r.extend_from_slice(&((u64::from(sym) << 32) | u64::from(r_type)).to_le_bytes());
    r
}

/// A relocatable ELF64 little-endian `EM_BPF` object: the header, each section's contents
/// (aligned), then the section header table.
pub fn write_elf(sections: &[Section], shstrndx: u16) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    let mut placed = Vec::new();
    for s in sections {
        let align = s.align.max(1) as usize;
        while !out.len().is_multiple_of(align) {
            out.push(0);
        }
        placed.push(out.len() as u64);
        out.extend_from_slice(&s.data);
    }
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    let shoff = out.len() as u64;
    out.extend_from_slice(&[0u8; 64]); // the null section
    for (s, offset) in sections.iter().zip(placed) {
        let mut h = Vec::with_capacity(64);
        h.extend_from_slice(&s.name_offset.to_le_bytes());
        h.extend_from_slice(&s.sh_type.to_le_bytes());
        h.extend_from_slice(&s.flags.to_le_bytes());
        h.extend_from_slice(&0u64.to_le_bytes()); // sh_addr
        h.extend_from_slice(&offset.to_le_bytes());
        h.extend_from_slice(&(s.data.len() as u64).to_le_bytes());
        h.extend_from_slice(&s.link.to_le_bytes());
        h.extend_from_slice(&s.info.to_le_bytes());
        h.extend_from_slice(&s.align.to_le_bytes());
        h.extend_from_slice(&s.entsize.to_le_bytes());
        out.extend_from_slice(&h);
    }
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // ELFCLASS64
    out[5] = 1; // little-endian
    out[6] = 1; // EV_CURRENT
    out[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
    out[18..20].copy_from_slice(&247u16.to_le_bytes()); // EM_BPF
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[40..48].copy_from_slice(&shoff.to_le_bytes());
    out[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    out[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
    out[60..62].copy_from_slice(&(sections.len() as u16 + 1).to_le_bytes());
    out[62..64].copy_from_slice(&shstrndx.to_le_bytes());
    out
}

/// The object bpf_conformance's runner sends in `--elf` mode (its README, §5.4): sections
/// NULL, `.shstrtab`, `.symtab` (linked to `.shstrtab`, which also holds the symbol names) and
/// the code section (`.text`, or `xdp` with `--xdp_prolog`), one `FUNC GLOBAL` symbol `main`
/// at offset 0 covering the code.
pub fn conformance_elf(code: &[u8], code_section: &str) -> Vec<u8> {
    let (names, off) = strtab(&[".shstrtab", ".symtab", code_section, "main"]);
    let mut symtab = symbol(0, 0, 0, 0, 0);
    symtab.extend(symbol(off[3], 0x12, 3, 0, code.len() as u64));
    let sections = [
        Section::names(off[0], names),
        Section::symbols(off[1], symtab, 1),
        Section::code(off[2], code),
    ];
    write_elf(&sections, 1)
}

// ---- A minimal section-table reader ---------------------------------------------------------

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// One section header of a well-formed object, as the tests need it.
#[derive(Clone, Debug)]
pub struct Shdr {
    pub index: usize,
    pub name: String,
    /// File offset of this section header.
    pub header: usize,
    pub sh_type: u32,
    pub offset: usize,
    pub size: usize,
    pub link: u32,
    pub info: u32,
}

/// The section headers of a well-formed object.
pub fn sections(b: &[u8]) -> Vec<Shdr> {
    let shoff = u64_at(b, 40) as usize;
    let shnum = u16_at(b, 60) as usize;
    let shstrndx = u16_at(b, 62) as usize;
    let raw: Vec<Shdr> = (0..shnum)
        .map(|i| {
            let h = shoff + i * 64;
            Shdr {
                index: i,
                name: u32_at(b, h).to_string(),
                header: h,
                sh_type: u32_at(b, h + 4),
                offset: u64_at(b, h + 24) as usize,
                size: u64_at(b, h + 32) as usize,
                link: u32_at(b, h + 40),
                info: u32_at(b, h + 44),
            }
        })
        .collect();
    let names = raw[shstrndx].clone();
    raw.into_iter()
        .map(|mut s| {
            let at = names.offset + s.name.parse::<usize>().unwrap();
            let end = b[at..].iter().position(|&c| c == 0).unwrap();
            s.name = String::from_utf8_lossy(&b[at..at + end]).into_owned();
            s
        })
        .collect()
}

/// The section named `name`.
pub fn section(b: &[u8], name: &str) -> Shdr {
    sections(b)
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no section {name}"))
}
