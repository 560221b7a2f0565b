//! `ebpf_cli`: the code that the `ebpf` command and `ebpf-conformance-plugin` share — hex
//! byte strings, the VM configuration every run uses (the conformance helper and the default
//! instruction budget), engine names, and loading a program from a file by its extension.
//!
//! It exists so that the two binaries cannot drift apart; it is not a library API for
//! anyone else (embed [`ebpf_vm`] instead). Like the binaries, it only parses, reads files and
//! configures: every behaviour lives behind [`ebpf_vm`].

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use ebpf_testdata::TestVector;
pub use ebpf_vm::CONFORMANCE_HELPER_ID;
use ebpf_vm::isa::{self, Program, quoted};
use ebpf_vm::{Engine, VmBuilder, conformance_helper};

/// The instruction budget when none is given: far more than test programs need (the longest
/// run in the conformance suite executes 655 instructions), few enough that a runaway loop
/// ends with an error within about a second instead of hanging.
pub const DEFAULT_BUDGET: u64 = 100_000_000;

/// The configuration every command runs with: `engine`, the conformance helper under id
/// [`CONFORMANCE_HELPER_ID`], and a budget of `budget` instructions per run.
pub fn vm_builder(engine: Engine, budget: u64) -> VmBuilder {
    ebpf_vm::Vm::builder()
        .engine(engine)
        .helper(CONFORMANCE_HELPER_ID, conformance_helper)
        .budget(budget)
}

/// The largest program file any command reads: 256 MiB, far above what the VM loads (a
/// program of a million slots is 8 MB of bytecode, and an ELF object's data images are at most
/// 64 MiB each), so that a wrong path (`/dev/zero`) is an error instead of exhausting memory.
pub const MAX_PROGRAM_FILE: u64 = 256 << 20;

/// The largest input a run accepts: one region's 4 GiB window.
pub const MAX_INPUT: u64 = ebpf_vm::layout::MAX_REGION_LEN;

/// Reads all of `reader`, refusing more than `limit` bytes of `what` (`input`, `program
/// file`): at most `limit + 1` bytes are read, and a buffer that cannot be allocated is an
/// error too (never an abort). Errors do not name the source; callers do.
pub fn read_bounded(reader: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "more than {limit} bytes, the largest {what} accepted"
        ));
    }
    Ok(bytes)
}

/// Reads the file at `path` as [`read_bounded`] does; a regular file longer than `limit` is
/// refused before anything is read.
pub fn read_path_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let file = File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > limit
    {
        return Err(format!(
            "{} bytes, more than {limit}, the largest {what} accepted",
            meta.len()
        ));
    }
    read_bounded(file, limit, what)
}

/// [`read_path_bounded`], with errors that start with the file's name.
pub fn read_file_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    read_path_bounded(path, limit, what).map_err(|e| anyhow!("{}: {e}", quote_path(path)))
}

/// Standard input, read as [`read_bounded`] does.
pub fn read_stdin_bounded(limit: u64, what: &str) -> Result<Vec<u8>> {
    read_bounded(io::stdin().lock(), limit, what).map_err(|e| anyhow!("<stdin>: {e}"))
}

/// A path as messages show it: as it is when it prints plainly, else quoted and escaped
/// ([`isa::quoted`], which every piece of user input in a message goes through), so that
/// control characters in a file name never reach the terminal.
pub fn quote_path(path: &Path) -> String {
    quoted(&path.display().to_string()).to_string()
}

/// The names of the engines this build contains, for messages: `interp, …`.
pub fn engine_names() -> String {
    let names: Vec<&str> = Engine::ALL.iter().map(|e| e.name()).collect();
    names.join(", ")
}

/// The engine called `name`, or an error listing the ones that exist.
pub fn parse_engine(name: &str) -> Result<Engine, String> {
    Engine::from_name(name).ok_or_else(|| {
        let name = quoted(name);
        format!("unknown engine `{name}` (available: {})", engine_names())
    })
}

/// Parses hex bytes: whitespace-separated tokens of two digits per byte, so `aa bb cc`,
/// `aabbcc`, `AA BB` and the plugin protocol's `aa  bb  cc  ` all work; a token may start
/// with `0x`. An empty or all-blank string is no bytes.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for token in text.split_whitespace() {
        let digits = token
            .strip_prefix("0x")
            .or_else(|| token.strip_prefix("0X"))
            .unwrap_or(token);
        if digits.is_empty() {
            return Err(format!("`{}` has no hex digits", quoted(token)));
        }
        if let Some(bad) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
            let mut buf = [0; 4];
            return Err(format!(
                "`{}` is not hex: `{}` is not a hex digit",
                quoted(token),
                quoted(bad.encode_utf8(&mut buf))
            ));
        }
        if digits.len() % 2 != 0 {
            return Err(format!(
                "`{}` has an odd number of hex digits ({}); write every byte as two digits",
                quoted(token),
                digits.len()
            ));
        }
        for pair in digits.as_bytes().chunks_exact(2) {
            // Both are ASCII hex digits, checked above.
            let high = hex_value(pair[0]);
            let low = hex_value(pair[1]);
            bytes.push(high << 4 | low);
        }
    }
    Ok(bytes)
}

/// The value of one ASCII hex digit (0 for anything else; callers check first).
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// The kinds of program file, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.bin`: raw bytecode, 8-byte little-endian slots.
    Bytecode,
    /// `.s` or `.asm`: assembly in the bpf_conformance dialect.
    Assembly,
    /// `.data`: a bpf_conformance test vector.
    Vector,
    /// `.o`: a BPF ELF object, as `clang -target bpf -c` writes it.
    Elf,
}

impl Format {
    /// The format of `path`, by its extension.
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "bin" => Some(Format::Bytecode),
            "s" | "asm" => Some(Format::Assembly),
            "data" => Some(Format::Vector),
            "o" => Some(Format::Elf),
            _ => None,
        }
    }
}

/// A program read from a file, with the input memory the file brings (a `.data` file's
/// non-empty `-- mem`).
#[derive(Clone, Debug)]
pub struct ProgramFile {
    /// The program.
    pub program: Program,
    /// The input memory, if the file has some.
    pub mem: Option<Vec<u8>>,
}

/// Reads a program by its file's extension (see [`Format`]). Errors are one line and start
/// with the file's name: `prog.s: line 3: invalid register: %r50 (expected %r0..%r10)`.
pub fn read_program(path: &Path) -> Result<ProgramFile> {
    let name = quote_path(path);
    let format = Format::of(path).ok_or_else(|| {
        anyhow!(
            "{name}: unknown program format; expected .bin (bytecode), .s or .asm (assembly), \
             .data (test vector) or .o (BPF ELF object)"
        )
    })?;
    let bytes = read_file_bounded(path, MAX_PROGRAM_FILE, "program file")?;
    match format {
        Format::Bytecode => {
            let program = isa::decode(&bytes).with_context(|| name.clone())?;
            Ok(ProgramFile { program, mem: None })
        }
        Format::Assembly => {
            let program = isa::assemble(utf8(&name, &bytes)?).with_context(|| name.clone())?;
            Ok(ProgramFile { program, mem: None })
        }
        Format::Elf => {
            // The code only (for `verify`); running needs the data images: see `load_vm`.
            let object = ebpf_vm::elf::ElfObject::parse(&bytes).with_context(|| name.clone())?;
            let loaded = object
                .load(ebpf_vm::Selector::Only)
                .with_context(|| name.clone())?;
            Ok(ProgramFile {
                program: loaded.program,
                mem: None,
            })
        }
        Format::Vector => {
            let text = utf8(&name, &bytes)?;
            let vector = ebpf_testdata::parse(text).with_context(|| name.clone())?;
            if !vector.has_program() {
                bail!("{name}: no program (the file has no `-- asm` or `-- raw` section)");
            }
            let program = vector_program(&vector).map_err(|e| anyhow!("{name}: {e}"))?;
            Ok(ProgramFile {
                program,
                mem: vector_mem(&vector),
            })
        }
    }
}

/// Which program of an ELF object to load: by section, by function, or the only one.
#[derive(Clone, Debug, Default)]
pub struct ElfChoice {
    /// `--section NAME`.
    pub section: Option<String>,
    /// `--function NAME`.
    pub function: Option<String>,
}

impl ElfChoice {
    /// The loader's selector.
    pub fn selector(&self) -> ebpf_vm::Selector<'_> {
        match (&self.function, &self.section) {
            (Some(f), _) => ebpf_vm::Selector::Function(f),
            (None, Some(s)) => ebpf_vm::Selector::Section(s),
            (None, None) => ebpf_vm::Selector::Only,
        }
    }
}

/// A program file read into memory once, to load into any number of VMs (`bench` loads it
/// once per engine, timing only the load).
#[derive(Clone, Debug)]
pub struct Source {
    name: String,
    code: Code,
    /// The input memory the file brings (a `.data` file's `-- mem`).
    pub mem: Option<Vec<u8>>,
}

/// What a [`Source`] loads from.
#[derive(Clone, Debug)]
enum Code {
    /// A decoded program.
    Program(Program),
    /// An ELF object's bytes and the program chosen in it (linked, with its data images, at
    /// each load).
    Elf(Vec<u8>, ElfChoice),
}

impl Source {
    /// Reads `path`: an ELF object (the program `choice` selects), anything else as
    /// [`read_program`] reads it. `choice` must be empty for anything but an ELF object.
    pub fn read(path: &Path, choice: &ElfChoice) -> Result<Source> {
        let name = quote_path(path);
        if Format::of(path) == Some(Format::Elf) {
            let bytes = read_file_bounded(path, MAX_PROGRAM_FILE, "program file")?;
            return Ok(Source {
                name,
                code: Code::Elf(bytes, choice.clone()),
                mem: None,
            });
        }
        if choice.section.is_some() || choice.function.is_some() {
            bail!("{name}: --section and --function select a program of an ELF object (.o)");
        }
        let ProgramFile { program, mem } = read_program(path)?;
        Ok(Source {
            name,
            code: Code::Program(program),
            mem,
        })
    }

    /// Loads the program into a VM configured by `builder`; errors start with the file's name.
    pub fn load(&self, builder: VmBuilder) -> Result<ebpf_vm::Vm> {
        let vm = match &self.code {
            Code::Program(program) => builder.load_program(program.clone()),
            Code::Elf(bytes, choice) => builder.load_elf(bytes, choice.selector()),
        };
        vm.with_context(|| self.name.clone())
    }
}

/// Loads a program file into a VM configured by `builder` (see [`Source::read`]). Also
/// returns the input memory the file brings (a `.data` file's `-- mem`).
pub fn load_vm(
    path: &Path,
    builder: VmBuilder,
    choice: &ElfChoice,
) -> Result<(ebpf_vm::Vm, Option<Vec<u8>>)> {
    let source = Source::read(path, choice)?;
    let vm = source.load(builder)?;
    Ok((vm, source.mem))
}

/// The bytes of an input file: a `.hex` file is text (two hex digits per byte, `#` comments,
/// as the ELF fixtures' inputs are); anything else is taken as raw bytes. An input larger
/// than a run accepts ([`MAX_INPUT`]) is refused, before reading it where the file's size says
/// so (a regular file), else after reading one byte more than that (a pipe, `/dev/zero`).
pub fn read_input_file(path: &Path) -> Result<Vec<u8>> {
    let name = quote_path(path);
    if path.extension().is_some_and(|e| e == "hex") {
        // Two digits per byte and room for separators and comments.
        let text = read_file_bounded(path, 4 * MAX_INPUT, "hex input file")?;
        let text = utf8(&name, &text)?;
        let stripped: Vec<&str> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .collect();
        let bytes = parse_hex(&stripped.join("\n")).map_err(|e| anyhow!("{name}: {e}"))?;
        if bytes.len() as u64 > MAX_INPUT {
            bail!("{name}: more than {MAX_INPUT} bytes, the largest input accepted");
        }
        return Ok(bytes);
    }
    read_file_bounded(path, MAX_INPUT, "input")
}

/// A test vector's program: its `-- raw` bytecode if it has some (which replaces `-- asm`, as
/// in the upstream runner), else its assembled `-- asm` lines. Errors carry the file's line
/// (`line 3: …`) or the bytecode's pc (`pc 2: …`).
pub fn vector_program(vector: &TestVector) -> Result<Program, String> {
    match &vector.raw {
        Some(raw) if !raw.is_empty() => isa::decode(raw).map_err(|e| e.to_string()),
        _ => isa::assemble_lines(&vector.asm_lines()).map_err(|e| e.to_string()),
    }
}

/// A test vector's input memory: its `-- mem` bytes, or `None` when it has none or they are
/// empty (the runner passes memory to the plugin only when there is some).
pub fn vector_mem(vector: &TestVector) -> Option<Vec<u8>> {
    vector.mem.clone().filter(|m| !m.is_empty())
}

/// The bytes as text, or an error naming the first line that is not UTF-8.
pub fn utf8<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = bytes.get(..e.valid_up_to()).unwrap_or_default();
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow!("{name}: line {line}: not valid UTF-8")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_in_every_accepted_spelling() {
        let want = vec![0xaa, 0xbb, 0x11, 0xcc];
        for text in [
            "aa bb 11 cc",
            "aabb11cc",
            "aa  bb  11  cc  ",
            "AA BB 11 CC",
            "0xaabb 11cc",
            "\n aabb\t11 cc\n",
        ] {
            assert_eq!(parse_hex(text).as_ref(), Ok(&want), "{text:?}");
        }
        assert_eq!(parse_hex(""), Ok(vec![]));
        assert_eq!(parse_hex("   "), Ok(vec![]));
    }

    #[test]
    fn bad_hex_says_why() {
        let e = parse_hex("aa b cc").unwrap_err();
        assert!(e.contains("`b` has an odd number of hex digits (1)"), "{e}");
        let e = parse_hex("aabbc").unwrap_err();
        assert!(e.contains("odd number"), "{e}");
        let e = parse_hex("aa zz").unwrap_err();
        assert!(e.contains("`z` is not a hex digit"), "{e}");
        let e = parse_hex("aa 0x").unwrap_err();
        assert!(e.contains("`0x` has no hex digits"), "{e}");
    }

    #[test]
    fn engines_by_name() {
        assert_eq!(parse_engine("interp"), Ok(Engine::Interpreter));
        let e = parse_engine("jit").unwrap_err();
        assert!(
            e.contains("unknown engine `jit`") && e.contains("interp"),
            "{e}"
        );
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::of(Path::new("a/b.bin")), Some(Format::Bytecode));
        assert_eq!(Format::of(Path::new("b.s")), Some(Format::Assembly));
        assert_eq!(Format::of(Path::new("b.asm")), Some(Format::Assembly));
        assert_eq!(Format::of(Path::new("x.data")), Some(Format::Vector));
        assert_eq!(Format::of(Path::new("x.txt")), None);
        assert_eq!(Format::of(Path::new("noext")), None);
    }

    #[test]
    fn the_conformance_helper_returns_r1() {
        let vm = vm_builder(Engine::Interpreter, 100)
            .load_asm("mov %r1, 42\ncall 5\nexit")
            .unwrap();
        assert_eq!(vm.run_no_data(), Ok(42));
        let looping = vm_builder(Engine::Interpreter, 100)
            .load_asm("mov %r0, 0\nloop:\nadd %r0, 1\njne %r0, 0, loop\nexit")
            .unwrap();
        let trap = looping.run_no_data().unwrap_err();
        // mov, then (add, jne) 49 times, then the 50th add: the 101st instruction is a jne.
        assert_eq!(
            trap.to_string(),
            "instruction budget of 100 exhausted at pc 2"
        );
    }
}
