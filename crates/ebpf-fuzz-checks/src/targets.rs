//! The check of each fuzz target: what must hold for any input bytes. Each returns a
//! [`Finding`] when something does not (a panic inside is a finding too: libFuzzer and
//! `cargo test` both report it).

use arbitrary::Unstructured;
use ebpf_abi::{Limits, Trap, TrapKind};
use ebpf_elf::{ElfObject, Selector};
use ebpf_isa::{Insn, Program};
use ebpf_jit_cranelift::OptLevel;
use ebpf_verifier::{Termination, Verifier, VerifierConfig};
use ebpf_vm::{Engine, Input, Vm};

use crate::Finding;
use crate::engines::{EngineOptions, Engines, HELPER_IDS, HELPERS, Outcome, Setup, compile_cached};
use crate::generate::{EntryKind, buffer, byte, entry, setup, structured_program, wild_program};

/// Longest program the verifier and differential targets generate or take: small, so that
/// the Cranelift JIT compiles each input in about a millisecond.
pub const MAX_INSNS: usize = 48;

/// Most slots of a raw program in the differential and verifier targets.
pub const MAX_RAW_SLOTS: usize = 128;

/// A message shown to a person must contain no control character and no invisible formatting
/// character: whatever the input, `what` prints as plain text.
pub fn printable(what: &str, message: &str) -> Result<(), Finding> {
    let bad = message.chars().find(|&c| {
        c.is_control()
            || ('\u{200b}'..='\u{200f}').contains(&c)
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2060}'..='\u{206f}').contains(&c)
            || c == '\u{feff}'
    });
    match bad {
        Some(c) => Err(Finding::new(format!(
            "{what} message contains {c:?}: {message:?}"
        ))),
        None => Ok(()),
    }
}

fn ensure(holds: bool, what: impl FnOnce() -> String) -> Result<(), Finding> {
    if holds {
        Ok(())
    } else {
        Err(Finding::new(what()))
    }
}

/// `isa`: the first byte picks what the rest is — bytecode, assembly text, or a `.data` test
/// vector. Bytecode that decodes encodes back to the same bytes and survives both text
/// round trips; text that assembles disassembles and assembles back to the same program; every
/// error names a position inside the input and prints as plain text.
pub fn isa(data: &[u8]) -> Result<(), Finding> {
    let Some((&mode, rest)) = data.split_first() else {
        return Ok(());
    };
    match mode % 3 {
        0 => bytecode(rest),
        1 => assembly(&String::from_utf8_lossy(rest)),
        _ => vector(&String::from_utf8_lossy(rest)),
    }
}

fn bytecode(bytes: &[u8]) -> Result<(), Finding> {
    let slots = bytes.len().div_ceil(ebpf_isa::SLOT_SIZE);
    let program = match ebpf_isa::decode(bytes) {
        Ok(p) => p,
        Err(e) => {
            printable("decode", &e.to_string())?;
            return ensure(e.pc <= slots, || format!("decode error past the end: {e}"));
        }
    };
    ensure(program.to_bytes() == bytes, || {
        format!("decode then encode changed the bytes of {program:?}")
    })?;
    for (pc, insn) in program.iter() {
        let at = ebpf_isa::decode_at(bytes, pc).map_err(|e| Finding::new(e.to_string()))?;
        ensure(at == *insn, || {
            format!("decode_at({pc}) = {at:?}, decode gave {insn:?}")
        })?;
    }
    round_trip_text(&program)?;
    let _ = ebpf_isa::disassemble_llvm(&program);
    let _ = program.requirements();
    Ok(())
}

/// Disassembly assembles back to the same program.
fn round_trip_text(program: &Program) -> Result<(), Finding> {
    let text = ebpf_isa::disassemble(program);
    match ebpf_isa::assemble(&text) {
        Ok(again) if again == *program => Ok(()),
        other => Err(Finding::new(format!(
            "disassembly does not assemble back:\n{text}\n{other:?}"
        ))),
    }
}

fn assembly(text: &str) -> Result<(), Finding> {
    match ebpf_isa::assemble(text) {
        Ok(program) => {
            let decoded = ebpf_isa::decode(&program.to_bytes());
            ensure(decoded.as_ref() == Ok(&program), || {
                format!("assembled program does not decode back: {decoded:?}")
            })?;
            round_trip_text(&program)
        }
        Err(e) => {
            printable("assembler", &e.to_string())?;
            let lines = text.lines().count().max(1);
            ensure((1..=lines).contains(&e.line), || {
                format!("assembler error on line {} of {lines}: {e}", e.line)
            })
        }
    }
}

fn vector(text: &str) -> Result<(), Finding> {
    let v = match ebpf_testdata::parse(text) {
        Ok(v) => v,
        Err(e) => return printable(".data", &e.to_string()),
    };
    if !v.asm.is_empty() {
        match ebpf_isa::assemble_lines(&v.asm_lines()) {
            Ok(program) => round_trip_text(&program)?,
            Err(e) => printable("assembler", &e.to_string())?,
        }
    }
    if let Some(raw) = &v.raw {
        bytecode(raw)?;
    }
    Ok(())
}

/// `elf`: any bytes as a BPF ELF object. Parsing either fails with a plain message or lists
/// programs, each of which links (or fails plainly) into a program that round-trips through
/// its encoding and runs on the interpreter within a budget.
pub fn elf(data: &[u8]) -> Result<(), Finding> {
    let object = match ElfObject::parse(data) {
        Ok(o) => o,
        Err(e) => return printable("ELF", &e.to_string()),
    };
    let mut selectors = vec![Selector::Only];
    for info in object.programs().iter().take(8) {
        selectors.push(Selector::Function(&info.name));
        selectors.push(Selector::Section(&info.section));
    }
    for selector in selectors {
        let loaded = match object.load(selector) {
            Ok(l) => l,
            Err(e) => {
                printable("ELF", &e.to_string())?;
                continue;
            }
        };
        let bytes = loaded.program.to_bytes();
        ensure(
            ebpf_isa::decode(&bytes).as_ref() == Ok(&loaded.program),
            || "a linked program does not decode back".to_string(),
        )?;
        let setup = Setup {
            limits: Limits {
                budget: Some(10_000),
                ..Limits::default()
            },
            input: Some(vec![0; 64]),
            rodata: Some(loaded.rodata),
            data: Some(loaded.data),
            ..Setup::default()
        };
        let engines = Engines::compile(
            &loaded.program,
            &EngineOptions {
                x86: false,
                cranelift: false,
                ..EngineOptions::default()
            },
        )?;
        let outcome = engines.interpret(&setup)?;
        if let Err(trap) = &outcome.result {
            printable("trap", &trap.to_string())?;
        }
    }
    Ok(())
}

/// The program of a verifier or differential input: the mode picks a generated program, raw
/// slots (the rest of the input), or a structured one (choices from the rest); a structured
/// program's input replaces the first setup's. `None` when raw slots do not decode.
fn program_from(
    mode: u8,
    mut u: Unstructured<'_>,
    setups: &mut [Setup],
) -> Result<Option<Program>, Finding> {
    let fuzz = |e: arbitrary::Error| Finding::new(format!("reading fuzz input: {e}"));
    match mode % 4 {
        0 | 1 => wild_program(&mut u, MAX_INSNS).map(Some).map_err(fuzz),
        2 => {
            let rest = u.take_rest();
            let len = (rest.len() / 8).min(MAX_RAW_SLOTS) * 8;
            Ok(ebpf_isa::decode(&rest[..len]).ok())
        }
        _ => {
            let Some((program, input, _)) = structured_program(u.take_rest()) else {
                return Ok(None);
            };
            if let Some(first) = setups.first_mut() {
                first.input = Some(input);
                first.metadata = None;
            }
            Ok(Some(program))
        }
    }
}

/// `verifier`: a program (generated, raw or structured) and a setup. If the verifier accepts
/// it, running it never traps with an invalid instruction, an unknown helper id in `call`, or
/// a call nested too deep, and a `Bounded { n }` verdict means it runs at most `n`
/// instructions. Findings print as plain text; `verify_bytes` agrees with `verify`.
pub fn verifier(data: &[u8]) -> Result<(), Finding> {
    let mut u = Unstructured::new(data);
    let mode = byte(&mut u).unwrap_or(0);
    let Ok(setup) = setup(&mut u) else {
        return Ok(());
    };
    let mut setups = [setup];
    let Some(program) = program_from(mode, u, &mut setups)? else {
        return Ok(());
    };
    let [mut setup] = setups;
    // The call depth the verifier checks is the one the run enforces (and a sane one).
    setup.limits.max_call_depth = setup.limits.max_call_depth.min(16);
    let config = VerifierConfig {
        helpers: Some(HELPER_IDS.to_vec()),
        max_call_depth: setup.limits.max_call_depth,
        ..VerifierConfig::default()
    };
    let verifier = Verifier::new(config);
    let from_bytes = verifier.verify_bytes(&program.to_bytes()).is_ok();
    let verified = match verifier.verify(program.clone()) {
        Ok(v) => v,
        Err(rejected) => {
            for finding in rejected.findings() {
                printable("verifier", &finding.to_string())?;
            }
            return ensure(!from_bytes, || {
                "verify_bytes accepts what verify rejects".to_string()
            });
        }
    };
    ensure(from_bytes, || {
        "verify accepts what verify_bytes rejects".to_string()
    })?;
    let bound = match verified.termination() {
        Termination::Bounded { max_instructions } => Some(max_instructions),
        Termination::Looping => None,
    };
    setup.limits.budget = Some(bound.unwrap_or(10_000));
    let engines = Engines::compile(
        &program,
        &EngineOptions {
            x86: false,
            cranelift: false,
            ..EngineOptions::default()
        },
    )?;
    let Outcome { result, .. } = engines.interpret(&setup)?;
    let broken = |why: &str| {
        Finding::new(format!(
            "accepted program {why}: {result:?}\n{}",
            ebpf_isa::disassemble(&program)
        ))
    };
    match &result {
        Err(Trap {
            kind: TrapKind::InvalidInstruction { .. },
            ..
        }) => return Err(broken("hits an invalid instruction")),
        Err(Trap {
            kind: TrapKind::CallDepthExceeded { .. },
            ..
        }) => return Err(broken("nests calls deeper than allowed")),
        Err(Trap {
            pc,
            kind: TrapKind::UnknownHelper { .. },
        }) if matches!(program.at_pc(*pc), Some(Insn::Call { .. })) => {
            return Err(broken("calls an unknown helper"));
        }
        Err(Trap {
            kind: TrapKind::BudgetExhausted { .. },
            ..
        }) if bound.is_some() => return Err(broken("runs longer than its bound")),
        Ok(exit) if bound.is_some_and(|n| exit.instructions > n) => {
            return Err(broken("runs longer than its bound"));
        }
        _ => {}
    }
    Ok(())
}

/// What the differential target's flags byte picks beyond the program's mode and the number
/// of setups: `(flags >> 3) / 3` indexes this table — the JITs' entry (made to fit the first
/// setup) and whether the Cranelift JIT keeps the checks its facts drop. Row 0 is the stack
/// alone without checked facts (the seeds' flags).
pub const DIFFERENTIAL_SHAPES: [(EntryKind, bool); 11] = [
    (EntryKind::Stack, false),
    (EntryKind::Own, false),
    (EntryKind::Fixed, false),
    (EntryKind::Shorter, false),
    (EntryKind::Packet, false),
    (EntryKind::Foreign, false),
    (EntryKind::Stack, true),
    (EntryKind::Own, true),
    (EntryKind::Fixed, true),
    (EntryKind::Shorter, true),
    (EntryKind::Packet, true),
];

/// `differential`: one program (generated, raw or structured) compiled once per engine (or
/// taken from the [`CompileCache`](crate::engines::CompileCache) when one of the last inputs
/// had the same program and options) and run under one to three fuzzed setups (budget, call
/// depth, input, metadata layout, data images, extra regions); the x86 JIT with and without
/// constant blinding and the Cranelift JIT (at the optimisation level the input picks) must
/// each match the interpreter: `r0` or the trap (kind and pc), the instruction count, and
/// every writable region afterwards. The flags also pick ([`DIFFERENTIAL_SHAPES`]) what the
/// JITs' facts assume at entry — the first setup's input, metadata layout or packet, its
/// images and regions at or below their mapped lengths, or an entry it does not satisfy
/// (the other setups satisfy it or not) — and whether Cranelift checks its dropped checks.
/// After every run of every engine, the stack scrubbed as the facade scrubs it must be all
/// zero ([`Engines::check`]).
pub fn differential(data: &[u8]) -> Result<(), Finding> {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u).unwrap_or(0);
    let variant = usize::from(flags >> 3);
    let runs = 1 + variant % 3;
    let (entry_kind, cranelift_checked_facts) = DIFFERENTIAL_SHAPES[variant / 3];
    let mut setups = Vec::with_capacity(runs);
    for _ in 0..runs {
        match setup(&mut u) {
            Ok(s) => setups.push(s),
            Err(_) => return Ok(()),
        }
    }
    let Some(program) = program_from(flags, u, &mut setups)? else {
        return Ok(());
    };
    let options = EngineOptions {
        cranelift_opt: if flags & 4 != 0 {
            OptLevel::None
        } else {
            OptLevel::Speed
        },
        entry: setups.first().and_then(|first| entry(entry_kind, first)),
        cranelift_checked_facts,
        ..EngineOptions::default()
    };
    let engines = compile_cached(&program, &options)?;
    for setup in &setups {
        let outcome = engines.check(setup).map_err(|f| {
            Finding::new(format!(
                "{f}\nentry: {:?}\nprogram:\n{}",
                options.entry,
                ebpf_isa::disassemble(&program)
            ))
        })?;
        if let Err(trap) = &outcome.result {
            printable("trap", &trap.to_string())?;
        }
    }
    Ok(())
}

/// `facade`: raw bytes through `Vm` on every engine of `Engine::ALL`, verified or not (the
/// first byte decides, and whether a budget is set), with a fuzzed input: every engine loads
/// or refuses alike, and every run ends alike (`r0` or trap, count, input bytes). Messages
/// print as plain text.
pub fn facade(data: &[u8]) -> Result<(), Finding> {
    let mut u = Unstructured::new(data);
    let (Ok(flags), Ok(budget), Ok(input)) = (byte(&mut u), byte(&mut u), buffer(&mut u, 256))
    else {
        return Ok(());
    };
    let program = u.take_rest();
    let mut builder = Vm::builder();
    for (id, helper) in HELPERS {
        builder = builder.helper(id, helper);
    }
    let verified = flags & 1 == 0;
    if !verified {
        builder = builder.unverified();
    }
    // Unverified programs may loop: they always get a budget. Verified ones without one are
    // refused if they can loop.
    if !verified || flags & 2 == 0 {
        builder = builder.budget(u64::from(budget) * 64);
    }
    let mut want: Option<(Engine, String)> = None;
    for &engine in Engine::ALL {
        let vm = builder.clone().engine(engine).load(program);
        let (summary, message) = match &vm {
            Ok(vm) => {
                let mut memory = input.clone();
                let result = vm.run_with(Input::new(&mut memory));
                let message = result.as_ref().err().map(Trap::to_string);
                (format!("{result:?} {memory:?}"), message)
            }
            Err(e) => (format!("load error: {e}"), Some(e.to_string())),
        };
        if let Some(message) = message {
            printable("facade", &message)?;
        }
        match &want {
            None => want = Some((engine, summary)),
            Some((first, expected)) => ensure(*expected == summary, || {
                format!(
                    "{engine} differs from {first}\n  {first}: {expected}\n  {engine}: {summary}"
                )
            })?,
        }
    }
    Ok(())
}
