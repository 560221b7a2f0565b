//! Shared harness of the JIT's integration tests: run a program on the interpreter (the
//! oracle) and on the JIT (with and without constant blinding) over identical memory, and
//! compare everything observable.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use ebpf_abi::{Exit, HelperError, Helpers, Limits, MemoryMap, Region, Trap, VmMemory, layout};
use ebpf_interp::Interpreter;
use ebpf_isa::{CallKind, Insn, Program};
use ebpf_jit_x86::{JitOptions, compile};

/// Helper ids the tests register.
pub(crate) const RETURN_R1: u32 = 5;
pub(crate) const FAIL: u32 = 1;
pub(crate) const WRITE_U64: u32 = 2;
pub(crate) const READ_U64: u32 = 3;
pub(crate) const SUM: u32 = 4;
pub(crate) const DUMP_STACK: u32 = 6;

/// Read-only data every run maps (region 1).
pub(crate) const RODATA: [u8; 16] = *b"read-only bytes!";

/// What one engine did: its result, the final input memory and the last stack snapshot taken
/// by the `DUMP_STACK` helper.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub result: Result<Exit, Trap>,
    pub input: Vec<u8>,
    pub stack: Vec<u8>,
}

/// The test helpers; `DUMP_STACK` copies the whole stack region into `snapshot`.
pub(crate) fn helpers(snapshot: Arc<Mutex<Vec<u8>>>, stack_size: u64) -> Helpers {
    let mut h = Helpers::new();
    h.insert(RETURN_R1, ebpf_abi::conformance_helper);
    h.insert(FAIL, |a: [u64; 5], _: &mut dyn VmMemory| {
        Err(HelperError::failed(format!("failed with {}", a[0])))
    });
    h.insert(WRITE_U64, |a: [u64; 5], m: &mut dyn VmMemory| {
        m.write_u64(a[0], a[1])?;
        Ok(0)
    });
    h.insert(READ_U64, |a: [u64; 5], m: &mut dyn VmMemory| {
        Ok(m.read_u64(a[0])?)
    });
    h.insert(SUM, |a: [u64; 5], _: &mut dyn VmMemory| {
        Ok(a.iter()
            .fold(0u64, |s, v| s.wrapping_mul(31).wrapping_add(*v)))
    });
    h.insert(DUMP_STACK, move |_: [u64; 5], m: &mut dyn VmMemory| {
        let mut buf = vec![0u8; stack_size as usize];
        m.read(layout::vm_addr(layout::STACK, 0), &mut buf)?;
        if let Ok(mut s) = snapshot.lock() {
            *s = buf;
        }
        Ok(0)
    });
    h
}

/// An engine's `run`, over a map, `[r1, r2]` and helpers.
type Engine<'e> = &'e dyn Fn(MemoryMap<'_>, [u64; 2], &Helpers) -> Result<Exit, Trap>;

/// Runs `engine` over a fresh copy of `input` (region 4, writable) and `RODATA` (region 1).
fn outcome(input: &[u8], limits: &Limits, map_input: bool, engine: Engine<'_>) -> Outcome {
    let snapshot = Arc::new(Mutex::new(Vec::new()));
    let helpers = helpers(snapshot.clone(), limits.stack_size());
    let mut mem = input.to_vec();
    let mut map = MemoryMap::new();
    map.insert(layout::RODATA, Region::ReadOnly(&RODATA));
    let args = if map_input {
        map.insert(layout::INPUT, Region::Writable(&mut mem));
        [layout::vm_addr(layout::INPUT, 0), input.len() as u64]
    } else {
        [0, 0]
    };
    let result = engine(map, args, &helpers);
    let stack = snapshot.lock().map(|s| s.clone()).unwrap_or_default();
    Outcome {
        result,
        input: mem,
        stack,
    }
}

/// Runs `program` on the interpreter and on the JIT with and without blinding; panics with a
/// description unless all three agree. Returns the interpreter's outcome.
pub(crate) fn check_with(
    program: &Program,
    input: &[u8],
    limits: &Limits,
    map_input: bool,
) -> Outcome {
    let interp = Interpreter::new(program);
    let want = outcome(input, limits, map_input, &|m, a, h| {
        interp.run(m, a, h, limits)
    });
    for constant_blinding in [false, true] {
        let jit = compile(program, &JitOptions { constant_blinding })
            .unwrap_or_else(|e| panic!("compile: {e}"));
        let got = outcome(input, limits, map_input, &|m, a, h| {
            jit.run(m, a, h, limits)
        });
        assert_eq!(
            got,
            want,
            "JIT (blinding {constant_blinding}) and interpreter disagree on\n{}",
            ebpf_isa::disassemble(program)
        );
    }
    want
}

/// [`check_with`] with the input mapped.
pub(crate) fn check(program: &Program, input: &[u8], limits: &Limits) -> Outcome {
    check_with(program, input, limits, true)
}

/// `program` with `call DUMP_STACK` before every `exit`, jump and call offsets adjusted, so the
/// final stack is observable. Targets outside the program keep their distance past the end.
pub(crate) fn with_stack_dumps(program: &Program) -> Program {
    let old: Vec<(usize, Insn)> = program.iter().map(|(pc, i)| (pc, *i)).collect();
    let slots = program.slot_count();
    // New pc of each old slot (and of the end).
    let mut map = vec![0usize; slots + 1];
    let mut pc = 0usize;
    for &(old_pc, insn) in &old {
        map[old_pc] = pc;
        if insn == Insn::Exit {
            pc += 1;
        }
        if insn.slots() == 2 {
            map[old_pc + 1] = pc + 1;
        }
        pc += insn.slots();
    }
    map[slots] = pc;
    let new_target = |from_old: usize, delta: i64| -> i64 {
        let t = from_old as i64 + 1 + delta;
        if t >= 0 && (t as usize) <= slots {
            map[t as usize] as i64
        } else if t < 0 {
            t
        } else {
            t - slots as i64 + map[slots] as i64
        }
    };
    let mut out = Vec::new();
    for &(old_pc, insn) in &old {
        let here = map[old_pc] as i64;
        let fixed = match insn {
            Insn::Ja { off } => Insn::Ja {
                off: (new_target(old_pc, off.into()) - here - 1) as i16,
            },
            Insn::Ja32 { imm } => Insn::Ja32 {
                imm: (new_target(old_pc, imm.into()) - here - 1) as i32,
            },
            Insn::Jump {
                width,
                cond,
                dst,
                src,
                off,
            } => Insn::Jump {
                width,
                cond,
                dst,
                src,
                off: (new_target(old_pc, off.into()) - here - 1) as i16,
            },
            Insn::Call {
                kind: CallKind::Local,
                imm,
            } => Insn::Call {
                kind: CallKind::Local,
                imm: (new_target(old_pc, imm.into()) - here - 1) as i32,
            },
            other => other,
        };
        if insn == Insn::Exit {
            out.push(Insn::Call {
                kind: CallKind::Helper,
                imm: DUMP_STACK as i32,
            });
        }
        out.push(fixed);
    }
    Program::from_insns(out)
}

/// Assembles conformance-syntax text, panicking with the error.
pub(crate) fn asm(src: &str) -> Program {
    ebpf_isa::assemble(src).unwrap_or_else(|e| panic!("{e}\n{src}"))
}
