//! `ebpf run --trace` and `--trace-json`: every executed instruction as it happens, one line
//! each, from `ebpf_vm::Vm::run_traced`.
//!
//! The text form is for people: the step number, the pc, the instruction in LLVM syntax
//! (indented by call depth), then what it did — the memory it read or wrote, the helper it
//! called, the registers it changed (`r1: 0x0 -> 0x3`) and, when control does not go to the
//! next instruction, where it goes (`-> pc 2`). The JSON form has one object per line with
//! the same facts (values that can exceed 2^53 as hex strings), for tools.
//!
//! Lines stream to the writer as the program runs; a write error (a closed pipe) stops the
//! writing, not the run, and is returned by `finish`.

use std::fmt::Write as _;
use std::io::{self, Write};

use ebpf_vm::{Access, Effect, Exit, Observer, Step, Trap};

/// The two output forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// Aligned text.
    Text,
    /// JSON lines.
    Json,
}

/// Writes each step of a run to `out` in `form`.
pub(crate) struct Tracer<W: Write> {
    out: W,
    form: Form,
    line: String,
    error: Option<io::Error>,
}

impl<W: Write> Tracer<W> {
    pub(crate) fn new(out: W, form: Form) -> Tracer<W> {
        Tracer {
            out,
            form,
            line: String::new(),
            error: None,
        }
    }

    /// Writes the run's last line — in text, a trap's (the caller prints `r0` as an untraced
    /// run does) —, flushes, and returns the first write error, if any.
    pub(crate) fn finish(mut self, result: &Result<Exit, Trap>) -> io::Result<()> {
        self.line.clear();
        if let (Form::Text, Err(trap)) = (self.form, result) {
            let _ = write!(self.line, "{:>7} {:>5}: trap: {}", "-", trap.pc, trap.kind);
            self.emit();
        }
        if self.form == Form::Json {
            let _ = match result {
                Ok(exit) => write!(
                    self.line,
                    "{{\"exit\":{{\"r0\":\"{:#x}\",\"instructions\":{}}}}}",
                    exit.r0, exit.instructions
                ),
                Err(trap) => write!(
                    self.line,
                    "{{\"trap\":{{\"pc\":{},\"message\":{}}}}}",
                    trap.pc,
                    crate::bench::json_string(&trap.kind.to_string())
                ),
            };
            self.emit();
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        self.out.flush()
    }

    /// Writes `self.line` and a newline, unless an earlier write failed.
    fn emit(&mut self) {
        if self.error.is_some() {
            return;
        }
        self.line.push('\n');
        if let Err(e) = self.out.write_all(self.line.as_bytes()) {
            self.error = Some(e);
        }
    }
}

impl<W: Write> Observer for Tracer<W> {
    fn step(&mut self, step: &Step) {
        if self.error.is_some() {
            return;
        }
        self.line.clear();
        match self.form {
            Form::Text => text(&mut self.line, step),
            Form::Json => json(&mut self.line, step),
        }
        self.emit();
    }
}

/// Whether control leaves `step` other than to the next instruction (a taken jump, a call, a
/// return), and where to.
fn transfer(step: &Step) -> Option<usize> {
    step.next
        .filter(|&next| next != step.pc + step.insn.slots())
}

/// `step` as one line of text (without the newline).
fn text(line: &mut String, step: &Step) {
    // Writing to a String cannot fail.
    let insn = format!(
        "{:indent$}{}",
        "",
        step.insn.llvm(),
        indent = 2 * step.depth
    );
    let _ = write!(line, "{:>7} {:>5}: {insn}", step.executed, step.pc);
    let mut effects = Vec::new();
    match step.effect {
        Effect::None => {}
        Effect::Read(a) => effects.push(format!("load {}", access(a))),
        Effect::Write(a) => effects.push(format!("store {}", access(a))),
        Effect::Atomic { read, after } => effects.push(format!(
            "atomic {} [{:#x}]: {:#x} -> {after:#x}",
            width(read.len),
            read.addr,
            read.value
        )),
        Effect::Helper { id, args, result } => {
            let args: Vec<String> = args.iter().map(|a| format!("{a:#x}")).collect();
            effects.push(format!("helper {id}({}) = {result:#x}", args.join(", ")));
        }
    }
    for (reg, before, after) in step.changed() {
        effects.push(format!("r{reg}: {before:#x} -> {after:#x}"));
    }
    if let Some(next) = transfer(step) {
        effects.push(format!("-> pc {next}"));
    }
    if !effects.is_empty() {
        // Effects start in one column, at least two spaces after the instruction.
        let column = EFFECTS_COLUMN.max(line.len() + 2);
        let _ = write!(
            line,
            "{:pad$}{}",
            "",
            effects.join("  "),
            pad = column - line.len()
        );
    }
}

/// Where a text line's effects start, so that they line up under most instructions.
const EFFECTS_COLUMN: usize = 56;

fn access(a: Access) -> String {
    format!("{} [{:#x}] = {:#x}", width(a.len), a.addr, a.value)
}

/// The type name of an access of `len` bytes, as LLVM's syntax writes it.
fn width(len: u8) -> &'static str {
    match len {
        1 => "u8",
        2 => "u16",
        4 => "u32",
        _ => "u64",
    }
}

/// `step` as one JSON object (without the newline).
fn json(line: &mut String, step: &Step) {
    let _ = write!(
        line,
        "{{\"step\":{},\"pc\":{},\"depth\":{},\"insn\":{}",
        step.executed,
        step.pc,
        step.depth,
        crate::bench::json_string(&step.insn.llvm().to_string())
    );
    let regs: Vec<String> = step
        .changed()
        .map(|(reg, before, after)| format!("\"r{reg}\":[\"{before:#x}\",\"{after:#x}\"]"))
        .collect();
    let _ = write!(line, ",\"regs\":{{{}}}", regs.join(","));
    let object = |a: Access| {
        format!(
            "{{\"addr\":\"{:#x}\",\"len\":{},\"value\":\"{:#x}\"}}",
            a.addr, a.len, a.value
        )
    };
    let _ = match step.effect {
        Effect::None => Ok(()),
        Effect::Read(a) => write!(line, ",\"load\":{}", object(a)),
        Effect::Write(a) => write!(line, ",\"store\":{}", object(a)),
        Effect::Atomic { read, after } => write!(
            line,
            ",\"atomic\":{{\"addr\":\"{:#x}\",\"len\":{},\"before\":\"{:#x}\",\"after\":\"{after:#x}\"}}",
            read.addr, read.len, read.value
        ),
        Effect::Helper { id, args, result } => {
            let args: Vec<String> = args.iter().map(|a| format!("\"{a:#x}\"")).collect();
            write!(
                line,
                ",\"helper\":{{\"id\":{id},\"args\":[{}],\"result\":\"{result:#x}\"}}",
                args.join(",")
            )
        }
    };
    let _ = match step.next {
        Some(next) => write!(line, ",\"next\":{next}}}"),
        None => write!(line, ",\"next\":null}}"),
    };
}
