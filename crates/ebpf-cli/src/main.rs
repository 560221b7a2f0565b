//! The `ebpf` command: assembles and disassembles eBPF programs (RFC 9669).
//!
//! This binary is deliberately thin: argument parsing (clap), file I/O and printing. Every
//! behaviour — the assembler, the decoder, both disassembly syntaxes — lives in the libraries
//! behind [`ebpf_vm`].
//!
//! Errors are one line on stderr that names the file and, for bad input, the line (`asm`) or
//! the pc (`disasm`): `error: prog.s: line 3: invalid register: %r50 (expected %r0..%r10)`.
//! The exit status is 1; usage errors exit with 2 (clap's convention). Output files are
//! written to a temporary file beside the target and renamed over it, so a failure never
//! leaves a partial or corrupted file behind.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use ebpf_vm::isa;

/// Assemble and disassemble eBPF programs (RFC 9669).
#[derive(Debug, Parser)]
#[command(name = "ebpf", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Assemble conformance-syntax text (the bpf_conformance dialect) to raw bytecode.
    ///
    /// Without -o, the bytecode goes to FILE.bin next to the input (prog.s -> prog.bin), or to
    /// stdout when the input is stdin.
    Asm {
        /// The assembly text; `-` reads stdin.
        #[arg(value_name = "FILE.s")]
        input: PathBuf,
        /// Where to write the bytecode; `-` writes to stdout [default: the input with the
        /// extension .bin, next to it].
        #[arg(short, long, value_name = "FILE.bin")]
        output: Option<PathBuf>,
    },
    /// Print the disassembly of raw bytecode.
    ///
    /// The default output is exactly what `ebpf asm` reads back, so
    /// `ebpf disasm x.bin > x.s && ebpf asm x.s` reproduces x.bin.
    Disasm {
        /// The bytecode (8-byte little-endian slots); `-` reads stdin.
        #[arg(value_name = "FILE.bin")]
        input: PathBuf,
        /// The syntax to print.
        #[arg(long, value_enum, default_value = "conformance")]
        syntax: Syntax,
        /// Prefix every instruction with its pc (slot index), as in `   0: exit`. The output
        /// then no longer assembles.
        #[arg(long)]
        pcs: bool,
    },
}

/// The disassembly syntaxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Syntax {
    /// The bpf_conformance dialect, which `ebpf asm` reads (`ldxw %r0, [%r1+4]`).
    Conformance,
    /// The LLVM/kernel syntax that `llvm-objdump -d` prints.
    Llvm,
}

/// The name `-` stands for stdin or stdout.
const STDIO: &str = "-";

/// Runs the command line; on error prints one line to stderr and exits with 1.
fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Nothing useful is left to do if stderr itself fails.
            let _ = writeln!(io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Carries out one command.
fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Asm { input, output } => asm(&input, output.as_deref()),
        Command::Disasm { input, syntax, pcs } => disasm(&input, syntax, pcs),
    }
}

/// `ebpf asm`.
fn asm(input: &Path, output: Option<&Path>) -> Result<()> {
    let (name, bytes) = read_input(input)?;
    let output = match output {
        Some(path) => path.to_path_buf(),
        None if is_stdio(input) => PathBuf::from(STDIO),
        None => {
            let path = input.with_extension("bin");
            if path == input {
                bail!("{name}: the default output would be the input itself; name one with -o");
            }
            path
        }
    };
    let text = utf8(&name, &bytes)?;
    let program = isa::assemble(text).with_context(|| name.clone())?;
    write_output(&output, &program.to_bytes())
}

/// `ebpf disasm`.
fn disasm(input: &Path, syntax: Syntax, pcs: bool) -> Result<()> {
    let (name, bytes) = read_input(input)?;
    let program = isa::decode(&bytes).with_context(|| name.clone())?;
    let text = if pcs {
        let mut text = String::new();
        for (pc, insn) in program.iter() {
            // Writing to a String cannot fail.
            let _ = match syntax {
                Syntax::Conformance => writeln!(text, "{pc:>4}: {}", insn.conformance()),
                Syntax::Llvm => writeln!(text, "{pc:>4}: {}", insn.llvm()),
            };
        }
        text
    } else {
        match syntax {
            Syntax::Conformance => isa::disassemble(&program),
            Syntax::Llvm => isa::disassemble_llvm(&program),
        }
    };
    write_stdout(text.as_bytes())
}

/// Whether a path argument is `-`.
fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == STDIO
}

/// Reads a file, or stdin for `-`; returns the name to use in messages and the bytes.
fn read_input(path: &Path) -> Result<(String, Vec<u8>)> {
    if is_stdio(path) {
        let name = "<stdin>".to_string();
        let mut bytes = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .with_context(|| format!("{name}: cannot read"))?;
        Ok((name, bytes))
    } else {
        let name = path.display().to_string();
        let bytes = fs::read(path).with_context(|| format!("{name}: cannot read"))?;
        Ok((name, bytes))
    }
}

/// The bytes as text, or an error naming the first line that is not UTF-8.
fn utf8<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = bytes.get(..e.valid_up_to()).unwrap_or_default();
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow!("{name}: line {line}: not valid UTF-8")
    })
}

/// Writes to the file, or to stdout for `-`.
fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    if is_stdio(path) {
        write_stdout(bytes)
    } else {
        write_file(path, bytes)
    }
}

/// Writes to stdout. A closed pipe (`ebpf disasm x.bin | head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("<stdout>: cannot write"),
    }
}

/// Replaces the file's contents all at once: writes a temporary file beside it and renames it
/// over the target, so that on failure the target is untouched and no temporary file remains.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let fail = || format!("{}: cannot write", path.display());
    let file_name = path
        .file_name()
        .ok_or_else(|| anyhow!("{}: cannot write: not a file name", path.display()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (tmp, mut file) = create_temp(dir, file_name).with_context(fail)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    let result = written.and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        // Best effort: the error that matters is the one reported below.
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(fail)
}

/// Creates a new file `.NAME.PID.N.tmp` in `dir`, trying a few `N` if one exists.
fn create_temp(dir: &Path, name: &OsStr) -> io::Result<(PathBuf, File)> {
    let mut attempt = 0u32;
    loop {
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{attempt}.tmp", std::process::id()));
        let tmp = dir.join(tmp_name);
        match File::create_new(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}
