//! `ebpf bench`: times loading a program and running it many times, per engine, and prints
//! the numbers as an aligned table or as JSON (written by hand: the crate has no serde).
//!
//! Each engine loads the program once (timed: decoding plus the engine's compile step, never
//! taken from the code cache; also shown per instruction of the program), runs it once untimed
//! to check that it ends (a trap is an error), then runs it N times in batches, as criterion
//! does: a batch of runs is timed with one clock read at each end, its size doubled until a
//! batch lasts [`BATCH`], so the clock's own cost (tens of nanoseconds) is spread over
//! thousands of short runs. Every run is on a fresh copy of the input, with the object's
//! globals (which persist from run to run, [`Vm::global_data`]) written back to their initial
//! values; a batch of those refreshes alone is timed beside each batch of runs and taken off,
//! so a sample is the time of the runs alone. N is `--iterations`, or as many runs as fit in
//! about a second. While that lasts longer than half a second, a dot goes to stderr every half
//! second, when stderr is a terminal.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ebpf_cli::Source;
use ebpf_vm::maps::{Map, UpdateFlags};
use ebpf_vm::{Engine, Exit, Input, Trap, Vm, VmBuilder};

/// How long the timed runs of one engine last without `--iterations`.
const TARGET: Duration = Duration::from_secs(1);

/// How long a batch of runs lasts at least (unless `--iterations` asks for fewer runs): long
/// enough that two clock reads are a small part of it.
const BATCH: Duration = Duration::from_millis(1);

/// How often the progress indicator moves.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// What `ebpf bench` was asked to do.
#[derive(Debug)]
pub(crate) struct Config<'a> {
    /// The engines to time, in order.
    pub(crate) engines: &'a [Engine],
    /// The configuration to load with (budget, hardening), for every engine.
    pub(crate) builder: VmBuilder,
    /// The instruction budget of every run (what `builder` sets).
    pub(crate) budget: u64,
    /// How many timed runs; `None`: about a second's worth.
    pub(crate) iterations: Option<u64>,
    /// JSON instead of a table.
    pub(crate) json: bool,
}

/// The numbers for one engine.
#[derive(Debug)]
struct Measurement {
    engine: Engine,
    load_ns: u64,
    /// Bytes of machine code the engine generated (0 for the interpreter).
    code_bytes: usize,
    runs: u64,
    r0: u64,
    instructions: u64,
    median_ns: u64,
    min_ns: u64,
}

impl Measurement {
    /// The load time in microseconds per instruction of the program (`insns` of them).
    fn load_us_per_instruction(&self, insns: usize) -> f64 {
        self.load_ns as f64 / 1000.0 / insns.max(1) as f64
    }

    /// The median run time divided by the instructions a run executes.
    fn ns_per_instruction(&self) -> f64 {
        self.median_ns as f64 / self.instructions.max(1) as f64
    }
}

/// `ebpf bench`: `name` is how to call the program in the output, `input` its input memory.
pub(crate) fn bench(
    name: &str,
    source: &Source,
    input: Option<&[u8]>,
    config: &Config<'_>,
) -> Result<()> {
    let mut results = Vec::new();
    let mut insns = 0;
    for &engine in config.engines {
        let (measurement, loaded) = measure(engine, source, input, config)?;
        insns = loaded;
        results.push(measurement);
    }
    let text = if config.json {
        json(name, insns, input, &results)
    } else {
        table(name, insns, input, &results)
    };
    crate::write_stdout(text.as_bytes())
}

/// Loads and times the program on one engine; also returns the loaded program's length in
/// instructions.
fn measure(
    engine: Engine,
    source: &Source,
    input: Option<&[u8]>,
    config: &Config<'_>,
) -> Result<(Measurement, usize)> {
    // Each engine's own compile, not code another engine's load left in the cache.
    let builder = config.builder.clone().engine(engine).no_code_cache();
    let started = Instant::now();
    let vm = source.load(builder).with_context(|| format!("{engine}"))?;
    let load = started.elapsed();

    let mut memory = input.map(<[u8]>::to_vec);
    let globals = vm
        .global_data()
        .map(|map| (map, map.lookup(&GLOBALS_KEY).ok().flatten()));
    let globals = globals
        .as_ref()
        .and_then(|(map, initial)| Some((*map, initial.as_deref()?)));
    let mut run = Refreshed {
        vm: &vm,
        input,
        memory: memory.as_deref_mut(),
        globals,
    };
    let first = run
        .once()
        .with_context(|| format!("{engine}: the program does not end normally"))?;
    let wanted = config.iterations;
    // Double the batch until it lasts `BATCH` (or holds every run asked for).
    let mut size: u64 = 1;
    loop {
        let time = run.batch(size, &first, engine)?;
        if time >= BATCH || wanted.is_some_and(|n| size >= n) {
            break;
        }
        size *= 2;
    }
    let mut per_run = Vec::new();
    let mut runs = 0u64;
    let mut progress = Progress::new(engine);
    let started = Instant::now();
    loop {
        let this = wanted.map_or(size, |n| size.min(n - runs));
        let time = run.batch(this, &first, engine)?;
        let refresh = run.refreshes(this);
        per_run.push(nanos(time.saturating_sub(refresh)) / this);
        runs += this;
        let done = match wanted {
            Some(n) => runs >= n,
            None => started.elapsed() >= TARGET,
        };
        if done {
            break;
        }
        progress.tick();
    }
    progress.finish();
    per_run.sort_unstable();
    let n = per_run.len();
    let measurement = Measurement {
        engine,
        load_ns: nanos(load),
        code_bytes: vm.code_size(),
        runs,
        r0: first.r0,
        instructions: first.instructions,
        median_ns: (per_run[(n - 1) / 2] + per_run[n / 2]) / 2,
        min_ns: per_run[0],
    };
    Ok((measurement, vm.program().len()))
}

/// The key of the one element of a global data map.
const GLOBALS_KEY: [u8; 4] = 0u32.to_le_bytes();

/// A VM and what each of its runs starts from: a fresh copy of `input` in `memory`, and the
/// globals at their initial values.
struct Refreshed<'a> {
    vm: &'a Vm,
    input: Option<&'a [u8]>,
    memory: Option<&'a mut [u8]>,
    globals: Option<(&'a Map, &'a [u8])>,
}

impl Refreshed<'_> {
    /// Puts back the input and the globals; returns the input to run on.
    #[inline(always)]
    fn refresh(&mut self) -> Input<'_> {
        if let Some((map, initial)) = self.globals {
            // The map and the value are the VM's own: the update cannot fail.
            let _ = map.update(&GLOBALS_KEY, initial, UpdateFlags::Any);
        }
        match (self.memory.as_deref_mut(), self.input) {
            (Some(memory), Some(input)) => {
                memory.copy_from_slice(input);
                Input::new(memory)
            }
            _ => Input::none(),
        }
    }

    /// One run, untimed.
    fn once(&mut self) -> Result<Exit, Trap> {
        let vm = self.vm;
        let input = self.refresh();
        vm.run_with(input)
    }

    /// `size` runs, each refreshed and checked against `first`: how long they took.
    fn batch(&mut self, size: u64, first: &Exit, engine: Engine) -> Result<Duration> {
        let vm = self.vm;
        let started = Instant::now();
        for _ in 0..size {
            let input = self.refresh();
            let exit = vm
                .run_with(input)
                .with_context(|| format!("{engine}: a later run trapped"))?;
            if exit != *first {
                bail!(
                    "{engine}: runs disagree: r0 = {:#x} after {} instructions, then {:#x} \
                     after {}",
                    first.r0,
                    first.instructions,
                    exit.r0,
                    exit.instructions
                );
            }
        }
        Ok(started.elapsed())
    }

    /// How long `size` refreshes take alone (what [`Refreshed::batch`] spends besides the runs).
    fn refreshes(&mut self, size: u64) -> Duration {
        let started = Instant::now();
        for _ in 0..size {
            black_box(self.refresh());
        }
        started.elapsed()
    }
}

/// A duration in whole nanoseconds (saturating: 584 years is plenty).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Dots on stderr while an engine's runs last, if stderr is a terminal.
struct Progress {
    engine: Engine,
    enabled: bool,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new(engine: Engine) -> Progress {
        Progress {
            engine,
            enabled: io::stderr().is_terminal(),
            last: Instant::now(),
            shown: false,
        }
    }

    /// Prints a dot if half a second has passed since the last one.
    fn tick(&mut self) {
        if !self.enabled || self.last.elapsed() < PROGRESS_EVERY {
            return;
        }
        let mut err = io::stderr().lock();
        // Progress is best effort.
        if !self.shown {
            let _ = write!(err, "{}: timing runs ", self.engine);
        }
        let _ = write!(err, ".");
        let _ = err.flush();
        self.shown = true;
        self.last = Instant::now();
    }

    /// Ends the line of dots, if any.
    fn finish(&mut self) {
        if self.shown {
            let _ = writeln!(io::stderr());
            self.shown = false;
        }
    }
}

/// A description of the input for the table.
fn describe_input(input: Option<&[u8]>) -> String {
    match input {
        Some(bytes) => format!("{} bytes of input", bytes.len()),
        None => "no input".to_string(),
    }
}

/// The human-readable output: a header line, then one aligned row per engine.
fn table(name: &str, insns: usize, input: Option<&[u8]>, results: &[Measurement]) -> String {
    let header = [
        "engine",
        "load ns",
        "load µs/insn",
        "code bytes",
        "runs",
        "insns/run",
        "median ns",
        "min ns",
        "ns/insn",
        "r0",
    ];
    let rows: Vec<[String; 10]> = results
        .iter()
        .map(|m| {
            [
                m.engine.to_string(),
                m.load_ns.to_string(),
                format!("{:.3}", m.load_us_per_instruction(insns)),
                m.code_bytes.to_string(),
                m.runs.to_string(),
                m.instructions.to_string(),
                m.median_ns.to_string(),
                m.min_ns.to_string(),
                format!("{:.2}", m.ns_per_instruction()),
                format!("{:#x}", m.r0),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = format!("{name}: {insns} instructions, {}\n", describe_input(input));
    let header = header.map(str::to_string);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            // Text columns (the first and last) align left, numbers right.
            let _ = match i {
                0 => write!(line, "{cell:<width$}"),
                9 => write!(line, "  {cell}"),
                _ => write!(line, "  {cell:>width$}"),
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The JSON output: one object with the program and a `results` array, one object per engine.
fn json(name: &str, insns: usize, input: Option<&[u8]>, results: &[Measurement]) -> String {
    let input_bytes = input.map_or_else(|| "null".to_string(), |b| b.len().to_string());
    let mut out = String::new();
    let _ = writeln!(out, "{{");
    let _ = writeln!(out, "  \"program\": {},", json_string(name));
    let _ = writeln!(out, "  \"program_instructions\": {insns},");
    let _ = writeln!(out, "  \"input_bytes\": {input_bytes},");
    let _ = writeln!(out, "  \"results\": [");
    for (i, m) in results.iter().enumerate() {
        let comma = if i + 1 < results.len() { "," } else { "" };
        let _ = writeln!(
            out,
            "    {{\"engine\": {}, \"load_ns\": {}, \"load_us_per_instruction\": {:.3}, \"code_bytes\": {}, \"runs\": {}, \"instructions_per_run\": {}, \
             \"median_ns\": {}, \"min_ns\": {}, \"ns_per_instruction\": {:.3}, \"r0\": \"{:#x}\"}}{comma}",
            json_string(m.engine.name()),
            m.load_ns,
            m.load_us_per_instruction(insns),
            m.code_bytes,
            m.runs,
            m.instructions,
            m.median_ns,
            m.min_ns,
            m.ns_per_instruction(),
            m.r0,
        );
    }
    let _ = writeln!(out, "  ]");
    let _ = writeln!(out, "}}");
    out
}

/// `text` as a JSON string literal.
pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}é"),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
    }

    #[test]
    fn the_table_is_aligned() {
        let m = Measurement {
            engine: Engine::Interpreter,
            load_ns: 1234,
            code_bytes: 0,
            runs: 10,
            r0: 1,
            instructions: 2,
            median_ns: 100,
            min_ns: 90,
        };
        let text = table("p.s", 2, None, &[m]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "p.s: 2 instructions, no input");
        assert_eq!(
            lines[1],
            "engine  load ns  load µs/insn  code bytes  runs  insns/run  median ns  min ns  ns/insn  r0"
        );
        assert_eq!(
            lines[2],
            "interp     1234         0.617           0    10          2        100      90    50.00  0x1"
        );
    }
}
