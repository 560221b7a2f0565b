//! `ebpf-conformance-plugin`: the plugin that the bpf_conformance runner
//! (`bpf_conformance_runner --plugin_path …`) starts once per test, speaking its protocol
//! (conformance README §5):
//!
//! ```text
//! ebpf-conformance-plugin [MEM] [--engine E] [--budget N] [--program HEX] [--elf]
//! ```
//!
//! - `MEM`, present only when the test has memory, is the first argument, as hex bytes
//!   (`"aa  bb  cc  "`); a first argument that does not start with `--` is memory.
//! - The program comes on stdin as one line of hex bytes in the same format (8 bytes per
//!   instruction slot), or, when run by hand, as `--program HEX`.
//! - The program runs with `r1` = the memory's address (0 without memory), `r2` = its length,
//!   helper 5 returning `r1`, and a budget of 100 000 000 instructions (the runner has no
//!   timeout).
//! - Success: `r0` in lower-case hex and a newline on stdout (`2a`), exit status 0.
//!   Failure (bad arguments, a program that does not decode, a trap): one line on stderr,
//!   exit status 1. `--elf`: stdin holds a BPF ELF object (its only program runs).
//!
//! Empty arguments (the runner makes one from two spaces in a row in `--plugin_options`) are
//! ignored.

use std::ffi::OsString;
use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use ebpf_cli::{
    DEFAULT_BUDGET, MAX_PROGRAM_FILE, engine_names, parse_engine, parse_hex, vm_builder,
};
use ebpf_vm::Engine;
use ebpf_vm::isa::quoted;

/// What the command line asks for.
#[derive(Debug)]
struct Options {
    mem: Option<Vec<u8>>,
    engine: Engine,
    budget: u64,
    program: Option<String>,
    elf: bool,
    help: bool,
}

/// The text `--help` prints.
fn usage() -> String {
    format!(
        "\
usage: ebpf-conformance-plugin [MEM] [--engine E] [--budget N] [--program HEX] [--elf]

The bpf_conformance runner's plugin: reads a program as hex bytes on stdin (one line; or
--program HEX), runs it with MEM (hex bytes) as its input and prints r0 in hex.

  MEM            input memory as hex bytes (\"aa  bb  cc  \"); the first argument, if it
                 does not start with --. Without it r1 and r2 are 0.
  --engine E     the engine to run on: {engines} [default: {default}]
  --budget N     stop after N instructions [default: {DEFAULT_BUDGET}]
  --program HEX  the program as hex bytes instead of stdin
  --elf          the program is a BPF ELF object (its only program runs)
",
        engines = engine_names(),
        default = Engine::default(),
    )
}

/// Runs the plugin; on error prints one line to stderr and exits with 1.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Nothing useful is left to do if stderr itself fails.
            let _ = writeln!(io::stderr(), "{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the arguments, reads and runs the program, prints `r0`.
fn run() -> Result<()> {
    let args = std::env::args_os()
        .skip(1)
        .map(OsString::into_string)
        .collect::<Result<Vec<String>, OsString>>()
        .map_err(|arg| anyhow!("argument {arg:?} is not valid UTF-8"))?;
    let options = parse_args(args)?;
    if options.help {
        print!("{}", usage());
        return Ok(());
    }
    let hex = match options.program {
        Some(hex) => hex,
        None => {
            // One line, and no more than any program file may be (not all of `/dev/zero`).
            let mut line = String::new();
            io::stdin()
                .lock()
                .take(MAX_PROGRAM_FILE)
                .read_line(&mut line)
                .context("cannot read the program from stdin")?;
            line
        }
    };
    let bytes = parse_hex(&hex).map_err(|e| anyhow!("program: {e}"))?;
    if bytes.is_empty() {
        bail!("no program: expected its bytes in hex on stdin (or --program HEX)");
    }
    let builder = vm_builder(options.engine, options.budget);
    let vm = if options.elf {
        // The runner's object holds one program (`main`); the loader picks it.
        builder.load_elf(&bytes, ebpf_vm::Selector::Only)?
    } else {
        builder.load(&bytes)?
    };
    let r0 = match options.mem {
        Some(mut mem) => vm.run(&mut mem)?,
        None => vm.run_no_data()?,
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{r0:x}")
        .and_then(|()| out.flush())
        .context("<stdout>: cannot write")
}

/// Reads the arguments (without the program name) as the runner passes them.
fn parse_args(args: Vec<String>) -> Result<Options> {
    let mut options = Options {
        mem: None,
        engine: Engine::default(),
        budget: DEFAULT_BUDGET,
        program: None,
        elf: false,
        help: false,
    };
    let mut args = args.into_iter().peekable();
    if let Some(first) = args.next_if(|a| !a.starts_with("--") && a != "-h") {
        let mem = parse_hex(&first).map_err(|e| anyhow!("memory: {e}"))?;
        options.mem = Some(mem).filter(|m| !m.is_empty());
    }
    while let Some(arg) = args.next() {
        if arg.is_empty() {
            continue;
        }
        // `--name=value` or `--name value`.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| anyhow!("{} needs a value ({what})", quoted(name)))
        };
        match name {
            "--engine" => {
                options.engine = parse_engine(&value("an engine name")?).map_err(|e| anyhow!(e))?
            }
            "--budget" => {
                let n = value("a number of instructions")?;
                options.budget = n.parse().map_err(|_| {
                    anyhow!("--budget: `{}` is not a number of instructions", quoted(&n))
                })?;
            }
            "--program" => options.program = Some(value("hex bytes")?),
            "--elf" => options.elf = true,
            "--help" | "-h" => options.help = true,
            _ if name.starts_with('-') => bail!(
                "unknown option `{}` (expected --engine E, --budget N, --program HEX or --elf)",
                quoted(name)
            ),
            _ => bail!(
                "unexpected argument `{}`: memory must be the first argument",
                quoted(&arg)
            ),
        }
    }
    Ok(options)
}
