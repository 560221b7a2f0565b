//! The `ebpf` command: assembles, disassembles, runs, tests and benchmarks eBPF programs
//! (RFC 9669).
//!
//! This binary is deliberately thin: argument parsing (clap), file I/O and printing. Every
//! behaviour — the assembler, the decoder, both disassembly syntaxes, the engines — lives in
//! the libraries behind [`ebpf_vm`]; what this binary shares with `ebpf-conformance-plugin`
//! (hex parsing, the helper and budget every run uses, loading a program by its extension) is
//! in the `ebpf_cli` library of this crate.
//!
//! Errors are one line on stderr that names the file and, for bad input, the line (`asm`) or
//! the pc (`disasm`): `error: prog.s: line 3: invalid register: %r50 (expected %r0..%r10)`;
//! a trap in `run` is `error: <what> at pc N`. The exit status is 1; usage errors exit with 2
//! (clap's convention). Output files are written to a temporary file beside the target and
//! renamed over it, so a failure never leaves a partial or corrupted file behind.

mod bench;
mod cfg;
mod packet;
mod profile;
mod trace;
mod vectors;

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ebpf_cli::{
    DEFAULT_BUDGET, ElfChoice, MAX_PROGRAM_FILE, parse_hex, read_file_bounded, read_program,
    read_stdin_bounded, utf8,
};
use ebpf_vm::{Engine, Input, Vm, isa};

/// Assemble, disassemble, run, test and benchmark eBPF programs (RFC 9669).
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
    /// List the maps a BPF ELF object defines (BTF-defined `.maps` and legacy `maps`).
    Maps {
        /// The object.
        #[arg(value_name = "FILE.o")]
        input: PathBuf,
    },
    /// Run a program and print r0 (as 0x<hex>).
    ///
    /// PROGRAM is bytecode (.bin), assembly in the bpf_conformance dialect (.s, .asm) or a
    /// test vector (.data: its program, with its `-- mem` as the input unless --mem or
    /// --mem-file is given). At entry r1 is the input's address and r2 its length; without
    /// an input both are 0. Helper 5 returns its first argument, as the conformance suite
    /// expects. A trap prints `error: <what> at pc N` and exits with status 1.
    ///
    /// With --packet (or --maps-init / --maps-dump), an XDP or socket-filter program of a .o
    /// runs on the frame with its kernel context and the object's maps (docs/maps.md).
    ///
    /// --trace prints every executed instruction before r0; --profile prints how often each
    /// one ran. Both run the program on the interpreter, one instruction at a time, whatever
    /// --engine says (the result is the same on every engine), and print what they saw even
    /// when the run traps. See docs/trace.md.
    Run {
        /// The program: FILE.bin, FILE.s, FILE.asm, FILE.data or FILE.o (a BPF ELF object).
        #[arg(value_name = "PROGRAM")]
        program: PathBuf,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        vm: VmArgs,
        #[command(flatten)]
        hardening: HardeningArgs,
        #[command(flatten)]
        elf: ElfArgs,
        #[command(flatten)]
        show: ShowArgs,
        #[command(flatten)]
        kernel: PacketArgs,
    },
    /// Check a program without running it: print every finding, one per line.
    ///
    /// Each line is `error: pc N: <what>` or `warning: pc N: <what>`; the last line says
    /// whether the program passed and how it terminates (loop-free with a bound on executed
    /// instructions, or looping). Exits with status 1 if there is any error. Bytecode is
    /// checked slot by slot, so every undecodable instruction is reported.
    Verify {
        /// The program: FILE.bin, FILE.s, FILE.asm or FILE.data.
        #[arg(value_name = "PROGRAM")]
        program: PathBuf,
        /// Report unreachable instructions as errors instead of warnings.
        #[arg(long)]
        strict: bool,
        /// The helper ids the program may call [default: 5, the conformance suite's].
        #[arg(long, value_name = "ID,...", value_delimiter = ',')]
        helpers: Option<Vec<u32>>,
    },
    /// Compile a program ahead of time into a relocatable object for a target (Cranelift).
    ///
    /// The object defines one function with a C ABI, `uint64_t SYMBOL(struct ebpf_ctx *)`
    /// (see crates/ebpf-jit-cranelift/c/ebpf_jit.h), and imports nothing. The program is
    /// verified first. Targets: x86_64-, aarch64-, riscv64gc- and s390x-unknown-linux-gnu.
    ///
    /// With a cache directory (`--cache-dir`, or the EBPF_OBJECT_CACHE environment variable),
    /// an object compiled before for the same program, target, options and compiler build is
    /// reused instead of compiled; a cache file that is damaged or holds another program is
    /// reported as a warning, ignored and replaced.
    Compile {
        /// The program: FILE.bin, FILE.s, FILE.asm, FILE.data or FILE.o.
        #[arg(value_name = "PROGRAM")]
        program: PathBuf,
        /// The target triple.
        #[arg(long, value_name = "TRIPLE")]
        target: String,
        /// Where to write the object.
        #[arg(short, long, value_name = "FILE.o")]
        output: PathBuf,
        /// The exported function's name.
        #[arg(long, value_name = "NAME", default_value = "ebpf_main")]
        symbol: String,
        /// Reuse and keep compiled objects in this directory [default: $EBPF_OBJECT_CACHE, if
        /// set; else no cache].
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        #[command(flatten)]
        elf: ElfArgs,
    },
    /// Draw a program's control-flow graph for Graphviz.
    ///
    /// One box per basic block (its pcs and instructions in LLVM syntax), one cluster per
    /// function; taken branches green, back edges red, blocks in loops shaded by depth, loop
    /// headers with a thick border, local calls dashed blue, ways out that trap as red
    /// octagons. `--dot` writes the DOT text; `--svg` renders it with Graphviz's `dot`.
    Cfg {
        /// The program: FILE.bin, FILE.s, FILE.asm, FILE.data or FILE.o.
        #[arg(value_name = "PROGRAM")]
        program: PathBuf,
        /// Write the graph as DOT text.
        #[arg(long, conflicts_with = "svg", required_unless_present = "svg")]
        dot: bool,
        /// Write the graph as SVG (needs Graphviz's `dot` on the PATH).
        #[arg(long)]
        svg: bool,
        /// Where to write it [default: stdout].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        elf: ElfArgs,
    },
    /// Run .data test vectors and compare r0 with their `-- result`.
    ///
    /// Prints `PASS name`, `FAIL name: why` or `SKIP name: why` for each file, then
    /// `N passed, N failed` (and `, N skipped` when some were skipped); exits with status 1 if
    /// any failed. A vector with an `-- error` section passes if loading or running it fails.
    /// A directory stands for the .data files directly in it (not in subdirectories).
    Test {
        /// .data files, or directories of them.
        #[arg(value_name = "FILES", required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// Time loading a program and running it many times, on each engine.
    ///
    /// The program is loaded (decoded and compiled) once per engine, run once to check it
    /// ends, then run repeatedly, each time on a fresh copy of the input. Prints, per engine,
    /// the load time, the bytes of machine code (0 on the interpreter), the median and
    /// minimum time per run, the instructions a run executes
    /// and the median time per instruction, all in nanoseconds. Runs are timed in batches (one
    /// clock read at each end, the batch doubled until it lasts a millisecond), with the time
    /// the input and globals take to refresh taken off, so a short run's time is the run's
    /// alone, not the clock's.
    Bench {
        /// The program: FILE.bin, FILE.s, FILE.asm, FILE.data or FILE.o.
        #[arg(value_name = "PROGRAM")]
        program: PathBuf,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        elf: ElfArgs,
        /// The engine to time, or `all`.
        #[arg(long, value_name = "ENGINE", default_value = "interp", value_parser = engines_parser())]
        engine: Engines,
        /// How many timed runs [default: as many as fit in about one second].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        iterations: Option<u64>,
        /// Stop each run after N executed instructions.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_BUDGET)]
        budget: u64,
        #[command(flatten)]
        hardening: HardeningArgs,
        /// Print the results as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// After the table, profile one run (see `ebpf run --profile`).
        #[arg(long, conflicts_with = "json")]
        profile: bool,
    },
}

/// What `run` shows of the run besides r0.
#[derive(Debug, Args)]
struct ShowArgs {
    /// Print every executed instruction, one per line: the step, the pc, the instruction
    /// (LLVM syntax, indented by call depth), the memory it read or wrote, the helper it
    /// called, the registers it changed and where control went when not to the next
    /// instruction; then r0.
    #[arg(long, conflicts_with_all = ["trace_json", "profile"])]
    trace: bool,
    /// Like --trace, as JSON lines (one object per instruction, then one with the exit or the
    /// trap).
    #[arg(long, conflicts_with = "profile")]
    trace_json: bool,
    /// Print how often each instruction ran, per function and per basic block, hottest
    /// first, with the disassembly; then r0.
    #[arg(long)]
    profile: bool,
}

/// A program written for the kernel (an XDP or socket-filter program of a `.o`), run on a
/// packet with its context and the object's maps (docs/maps.md).
#[derive(Debug, Args)]
struct PacketArgs {
    /// Run the object's XDP or socket-filter program (chosen by --section or --function) on
    /// this frame (raw bytes, or hex text if the name ends in .hex) with its kernel context,
    /// and print r0, the XDP action and the output packet.
    #[arg(long, value_name = "FRAME", conflicts_with_all = ["mem", "mem_file", "trace", "trace_json", "profile"])]
    packet: Option<PathBuf>,
    /// Seed the object's maps first: `{"map": [{"key": "HEX", "value": "HEX"}, ...], ...}`.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["mem", "mem_file", "trace", "trace_json", "profile"])]
    maps_init: Option<PathBuf>,
    /// Print every map after the run, as JSON in the --maps-init format (ring buffers as
    /// their records).
    #[arg(long, conflicts_with_all = ["mem", "mem_file", "trace", "trace_json", "profile"])]
    maps_dump: bool,
    /// Set a map's max_entries before it is created (repeatable): what a loader does for a
    /// map whose definition leaves it 0.
    #[arg(long, value_name = "MAP=N", value_parser = parse_map_size, conflicts_with_all = ["mem", "mem_file", "trace", "trace_json", "profile"])]
    map_size: Vec<(String, u32)>,
}

/// `MAP=N` of `--map-size`.
fn parse_map_size(text: &str) -> Result<(String, u32), String> {
    let (name, n) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("expected MAP=N, got {text:?}"))?;
    let n = n
        .parse::<u32>()
        .map_err(|e| format!("max_entries {n:?} of map {name:?}: {e}"))?;
    if name.is_empty() {
        return Err(format!("expected MAP=N, got {text:?}"));
    }
    Ok((name.to_string(), n))
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

/// Where a run's input comes from.
#[derive(Debug, Args)]
struct InputArgs {
    /// The input as hex bytes: `aa bb cc`, `aabbcc` or `"aa  bb  cc  "` (two digits per
    /// byte). It is writable by the program.
    #[arg(long, value_name = "HEX", value_parser = parse_mem, conflicts_with = "mem_file")]
    mem: Option<Bytes>,
    /// Read the input from a file: raw bytes, or hex text if the name ends in .hex.
    #[arg(long, value_name = "PATH")]
    mem_file: Option<PathBuf>,
}

/// Which program of an ELF object (`.o`) to use.
#[derive(Debug, Args)]
struct ElfArgs {
    /// The program in this section of the ELF object (`xdp`, `socket`, `.text`, …).
    #[arg(long, value_name = "NAME", conflicts_with = "function")]
    section: Option<String>,
    /// The program that starts at this function symbol of the ELF object.
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
}

impl ElfArgs {
    fn choice(&self) -> ElfChoice {
        ElfChoice {
            section: self.section.clone(),
            function: self.function.clone(),
        }
    }
}

/// The engine and the budget of `run` and `test`.
#[derive(Debug, Args)]
struct VmArgs {
    /// The engine to run on.
    #[arg(long, value_name = "ENGINE", default_value = "interp", value_parser = engine_parser())]
    engine: Engine,
    /// Stop with an error after N executed instructions, so that a runaway program ends
    /// instead of hanging.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BUDGET)]
    budget: u64,
}

/// How the JITs harden the code they generate (`run` and `bench`).
#[derive(Debug, Args)]
struct HardeningArgs {
    /// Spectre v1 masking in the JITs' code: `on` masks the address of every access checked
    /// at run time, so that a mispredicted bounds check cannot load out of bounds even
    /// speculatively; `off` leaves it out [default: on for both JITs]. No effect on the interpreter, nor on any result (docs/security.md).
    #[arg(long, value_name = "on|off", value_enum, hide_possible_values = true)]
    spectre_masking: Option<Switch>,
    /// With Spectre masking on, also clamp (without a branch) the accesses the JITs prove in
    /// bounds through a branch of the program's own (a guard, a loop bound), which otherwise
    /// run unchecked and so unmasked [default: off; it costs 12–16% in the x86 JIT]. No
    /// effect on the interpreter, nor on any result (docs/security.md).
    #[arg(long, value_name = "on|off", value_enum, hide_possible_values = true)]
    spectre_clamp_proven: Option<Switch>,
}

impl HardeningArgs {
    /// `builder` with these choices (those given; the rest stay the facade's defaults).
    fn apply(&self, mut builder: ebpf_vm::VmBuilder) -> ebpf_vm::VmBuilder {
        if let Some(switch) = self.spectre_masking {
            builder = builder.spectre_masking(switch == Switch::On);
        }
        if let Some(switch) = self.spectre_clamp_proven {
            builder = builder.spectre_clamp_proven(switch == Switch::On);
        }
        builder
    }
}

/// A flag's value that turns something on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// Bytes given as hex on the command line.
#[derive(Clone, Debug)]
struct Bytes(Vec<u8>);

/// Parses `--mem`.
fn parse_mem(text: &str) -> Result<Bytes, String> {
    parse_hex(text).map(Bytes)
}

/// The engines `bench --engine` names: one, or every one for `all`.
#[derive(Clone, Debug)]
struct Engines(Vec<Engine>);

/// Parses `--engine`: the name of an engine this build contains (clap lists them in the help).
fn engine_parser() -> impl TypedValueParser<Value = Engine> {
    PossibleValuesParser::new(Engine::ALL.iter().map(|e| e.name()))
        .map(|name| Engine::from_name(&name).unwrap_or_default())
}

/// Parses `bench --engine`: an engine's name, or `all`.
fn engines_parser() -> impl TypedValueParser<Value = Engines> {
    let names = Engine::ALL.iter().map(|e| e.name()).chain(["all"]);
    PossibleValuesParser::new(names).map(|name| match Engine::from_name(&name) {
        Some(engine) => Engines(vec![engine]),
        None => Engines(Engine::ALL.to_vec()),
    })
}

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

/// `ebpf verify`: every finding on stdout, then a verdict; status 1 on any error.
fn verify(path: &Path, strict: bool, helpers: Option<Vec<u32>>) -> Result<()> {
    use ebpf_vm::verifier::{Severity, Termination, Verifier, VerifierConfig};
    let config = VerifierConfig {
        unreachable: if strict {
            Severity::Error
        } else {
            Severity::Warning
        },
        helpers: Some(helpers.unwrap_or_else(|| vec![ebpf_vm::CONFORMANCE_HELPER_ID])),
        ..VerifierConfig::default()
    };
    let verifier = Verifier::new(config);
    let name = ebpf_cli::quote_path(path);
    let result = if ebpf_cli::Format::of(path) == Some(ebpf_cli::Format::Bytecode) {
        let bytes = read_file_bounded(path, MAX_PROGRAM_FILE, "program file")?;
        verifier.verify_bytes(&bytes)
    } else {
        verifier.verify(read_program(path)?.program)
    };
    let mut out = String::new();
    match result {
        Ok(verified) => {
            for finding in verified.warnings() {
                let _ = writeln!(out, "{}: {finding}", finding.severity);
            }
            let _ = match verified.termination() {
                Termination::Bounded { max_instructions } => writeln!(
                    out,
                    "ok: {name}: loop-free, at most {max_instructions} instructions per run"
                ),
                Termination::Looping => {
                    writeln!(out, "ok: {name}: may loop; runs need an instruction budget")
                }
            };
            write_stdout(out.as_bytes())
        }
        Err(rejected) => {
            for finding in rejected.findings() {
                let _ = writeln!(out, "{}: {finding}", finding.severity);
            }
            write_stdout(out.as_bytes())?;
            let errors = rejected.errors().count();
            bail!(
                "{name}: rejected with {errors} error{}",
                if errors == 1 { "" } else { "s" }
            )
        }
    }
}

/// `ebpf compile`: an ahead-of-time object for `target`, through the object cache in
/// `cache_dir` (else `$EBPF_OBJECT_CACHE`) when there is one.
fn compile(
    path: &Path,
    target: &str,
    output: &Path,
    symbol: &str,
    cache_dir: Option<&Path>,
    choice: &ElfChoice,
) -> Result<()> {
    use ebpf_vm::cranelift::{JitOptions, ObjectCache, compile_object, compile_object_cached};
    // Loading verifies; the object holds the code only (an ELF object's data images are the
    // embedder's to provide as regions, as the C header says).
    let builder = ebpf_cli::vm_builder(Engine::Interpreter, DEFAULT_BUDGET);
    let (vm, _) = ebpf_cli::load_vm(path, builder, choice)?;
    let mut options = JitOptions::default();
    options.symbol = symbol.to_string();
    let cache = cache_dir
        .map(ObjectCache::new)
        .or_else(ObjectCache::from_env);
    let object = match &cache {
        None => compile_object(vm.program(), target, &options),
        Some(cache) => compile_object_cached(vm.program(), target, &options, cache).map(|c| {
            for problem in &c.problems {
                // A cache that cannot be used costs a compile, never the result.
                let _ = writeln!(io::stderr(), "warning: {problem}");
            }
            c.object
        }),
    }
    .with_context(|| {
        let name = ebpf_cli::quote_path(path);
        format!("{name}: cannot compile for {}", isa::quoted(target))
    })?;
    write_file(output, &object)
}

/// Carries out one command.
fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Asm { input, output } => asm(&input, output.as_deref()),
        Command::Disasm { input, syntax, pcs } => disasm(&input, syntax, pcs),
        Command::Maps { input } => list_maps(&input),
        Command::Run {
            program,
            input,
            vm,
            hardening,
            elf,
            show,
            kernel,
        } => {
            if kernel.packet.is_some()
                || kernel.maps_init.is_some()
                || kernel.maps_dump
                || !kernel.map_size.is_empty()
            {
                let builder = kernel.map_size.iter().fold(
                    Vm::builder().engine(vm.engine).budget(vm.budget),
                    |b, (name, n)| b.map_max_entries(name, *n),
                );
                let args = packet::PacketRun {
                    builder: hardening.apply(builder),
                    packet: kernel.packet.as_deref(),
                    maps_init: kernel.maps_init.as_deref(),
                    maps_dump: kernel.maps_dump,
                };
                let out = packet::run(&program, &elf.choice(), &args)?;
                return write_stdout(out.as_bytes());
            }
            let builder = hardening.apply(ebpf_cli::vm_builder(vm.engine, vm.budget));
            run_program(&program, &input, builder, &elf.choice(), &show)
        }
        Command::Cfg {
            program,
            dot: _,
            svg,
            output,
            elf,
        } => draw_cfg(&program, svg, output.as_deref(), &elf.choice()),
        Command::Test { files, vm } => vectors::test(&files, vm.engine, vm.budget),
        Command::Verify {
            program,
            strict,
            helpers,
        } => verify(&program, strict, helpers),
        Command::Compile {
            program,
            target,
            output,
            symbol,
            cache_dir,
            elf,
        } => compile(
            &program,
            &target,
            &output,
            &symbol,
            cache_dir.as_deref(),
            &elf.choice(),
        ),
        Command::Bench {
            program,
            input,
            elf,
            engine,
            iterations,
            budget,
            hardening,
            json,
            profile,
        } => {
            let config = bench::Config {
                engines: &engine.0,
                builder: hardening.apply(ebpf_cli::vm_builder(Engine::Interpreter, budget)),
                budget,
                iterations,
                json,
            };
            bench_program(&program, &input, &elf.choice(), &config, profile)
        }
    }
}

/// `ebpf run`.
fn run_program(
    path: &Path,
    input: &InputArgs,
    builder: ebpf_vm::VmBuilder,
    choice: &ElfChoice,
    show: &ShowArgs,
) -> Result<()> {
    let (vm, mem) = ebpf_cli::load_vm(path, builder, choice)?;
    let mut input = resolve_input(input, mem)?;
    let input = match input.as_deref_mut() {
        Some(data) => Input::new(data),
        None => Input::none(),
    };
    let form = match (show.trace, show.trace_json) {
        (true, _) => Some(trace::Form::Text),
        (false, true) => Some(trace::Form::Json),
        (false, false) => None,
    };
    // A trap is reported as is: `error: <what> at pc N`, after what the trace or the profile
    // saw.
    let exit = if let Some(form) = form {
        let mut tracer = trace::Tracer::new(io::BufWriter::new(io::stdout().lock()), form);
        let result = vm.run_traced(input, &mut tracer);
        match tracer.finish(&result) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            written => written.context("<stdout>: cannot write")?,
        }
        let exit = result?;
        if form == trace::Form::Json {
            return Ok(());
        }
        exit
    } else if show.profile {
        let mut profile = profile::Profile::new(vm.program().slot_count());
        let result = vm.run_traced(input, &mut profile);
        write_stdout(profile.report(vm.program()).as_bytes())?;
        result?
    } else {
        vm.run_with(input)?
    };
    write_stdout(format!("{:#x}\n", exit.r0).as_bytes())
}

/// `ebpf cfg`: the program as the VM would run it (linked, for an ELF object), unverified so
/// that a broken program can be drawn too.
fn draw_cfg(path: &Path, svg: bool, output: Option<&Path>, choice: &ElfChoice) -> Result<()> {
    let builder = ebpf_cli::vm_builder(Engine::Interpreter, DEFAULT_BUDGET).unverified();
    let (vm, _) = ebpf_cli::load_vm(path, builder, choice)?;
    let mut title = path.display().to_string();
    if let Some(name) = choice.function.as_ref().or(choice.section.as_ref()) {
        title = format!("{title} ({name})");
    }
    let dot = cfg::dot(vm.program(), &title);
    let bytes = if svg {
        cfg::svg(&dot).with_context(|| ebpf_cli::quote_path(path))?
    } else {
        dot.into_bytes()
    };
    write_output(output.unwrap_or(Path::new(STDIO)), &bytes)
}

/// `ebpf bench`, and with `profile` the profile of one run after the table.
fn bench_program(
    path: &Path,
    input: &InputArgs,
    choice: &ElfChoice,
    config: &bench::Config<'_>,
    profile: bool,
) -> Result<()> {
    let source = ebpf_cli::Source::read(path, choice)?;
    let mut input = resolve_input(input, source.mem.clone())?;
    let name = ebpf_cli::quote_path(path);
    bench::bench(&name, &source, input.as_deref(), config)?;
    if !profile {
        return Ok(());
    }
    let vm = source.load(ebpf_cli::vm_builder(Engine::Interpreter, config.budget))?;
    let mut counts = profile::Profile::new(vm.program().slot_count());
    // The timed runs ended normally, so this one does too.
    vm.run_traced(
        match input.as_deref_mut() {
            Some(data) => Input::new(data),
            None => Input::none(),
        },
        &mut counts,
    )?;
    write_stdout(format!("\n{}", counts.report(vm.program())).as_bytes())
}

/// The input of `run` and `bench`: `--mem`, else `--mem-file`, else the memory the program
/// file brings (a `.data` file's `-- mem`), else none.
fn resolve_input(args: &InputArgs, from_file: Option<Vec<u8>>) -> Result<Option<Vec<u8>>> {
    if let Some(Bytes(bytes)) = &args.mem {
        return Ok(Some(bytes.clone()));
    }
    if let Some(path) = &args.mem_file {
        return ebpf_cli::read_input_file(path).map(Some);
    }
    Ok(from_file)
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
    if ebpf_cli::Format::of(input) == Some(ebpf_cli::Format::Elf) {
        return disasm_elf(&name, &bytes);
    }
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

/// `ebpf disasm prog.o`: every program of the object, with its section and function, as
/// linked for running (its local callees follow it), in LLVM syntax with pcs.
fn disasm_elf(name: &str, bytes: &[u8]) -> Result<()> {
    use ebpf_vm::elf::ElfObject;
    let object = ElfObject::parse(bytes).with_context(|| name.to_string())?;
    let mut text = String::new();
    for (i, info) in object.programs().iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let (name, section) = (isa::quoted(&info.name), isa::quoted(&info.section));
        let _ = writeln!(text, "{name} (section {section}):");
        match object.load(ebpf_vm::Selector::Function(&info.name)) {
            Ok(loaded) => {
                for (pc, insn) in loaded.program.iter() {
                    let _ = writeln!(text, "{pc:>6}: {}", insn.llvm());
                }
            }
            Err(e) => {
                let _ = writeln!(text, "  cannot be loaded: {e}");
            }
        }
    }
    write_stdout(text.as_bytes())
}

/// `ebpf maps prog.o`: one line per map definition, under a header.
fn list_maps(input: &Path) -> Result<()> {
    use ebpf_vm::elf::{ElfObject, MapStyle};
    use ebpf_vm::maps::MapType;
    let (name, bytes) = read_input(input)?;
    let object = ElfObject::parse(&bytes).with_context(|| name.clone())?;
    let maps = object.maps().with_context(|| name.clone())?;
    let mut text = format!(
        "{:<20} {:<18} {:>5} {:>6} {:>11} {:>6}  {}\n",
        "NAME", "TYPE", "KEY", "VALUE", "MAX_ENTRIES", "FLAGS", "DEFINED IN"
    );
    for m in &maps {
        let style = match m.style {
            MapStyle::Btf => "BTF",
            MapStyle::Legacy => "legacy",
            MapStyle::GlobalData => "global data",
        };
        let _ = write!(
            text,
            "{:<20} {:<18} {:>5} {:>6} {:>11} {:>6}  {} ({style})",
            m.name,
            MapType::from_kernel(m.map_type).to_string(),
            m.key_size,
            m.value_size,
            m.max_entries,
            format!("{:#x}", m.flags),
            m.section,
        );
        for (slot, name) in m.initial_programs.iter().chain(&m.initial_maps) {
            let _ = write!(text, " [{slot}]={name}");
        }
        text.push('\n');
    }
    if maps.is_empty() {
        text.push_str("(no maps)\n");
    }
    write_stdout(text.as_bytes())
}

/// Whether a path argument is `-`.
fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == STDIO
}

/// Reads a program file, or stdin for `-` (at most [`MAX_PROGRAM_FILE`] bytes); returns the
/// name to use in messages and the bytes.
fn read_input(path: &Path) -> Result<(String, Vec<u8>)> {
    if is_stdio(path) {
        let bytes = read_stdin_bounded(MAX_PROGRAM_FILE, "program file")?;
        Ok(("<stdin>".to_string(), bytes))
    } else {
        let bytes = read_file_bounded(path, MAX_PROGRAM_FILE, "program file")?;
        Ok((ebpf_cli::quote_path(path), bytes))
    }
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
    let fail = || format!("{}: cannot write", ebpf_cli::quote_path(path));
    let file_name = path.file_name().ok_or_else(|| {
        anyhow!(
            "{}: cannot write: not a file name",
            ebpf_cli::quote_path(path)
        )
    })?;
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
