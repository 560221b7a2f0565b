//! The differential harness: a program on the reference engine (the interpreter) and on one or
//! more engines under test, over identical memory, compared on everything observable — `r0`,
//! the trap (kind with every field, and pc), the instruction count, the input and writable
//! data after the run, and the stack as the [`DUMP_STACK`] helper last saw it.
//!
//! Where the contract cases pin down fixed programs and outcomes, this module covers what has
//! no fixed outcome: generated matrices of operations and edge values, budget sweeps, deep
//! recursion, large programs, and every contract case again with its final stack compared.
//! [`FAMILIES`] lists them; each JIT crate's `tests/contract/differential.rs` runs them all with
//! [`check_families`], and its property tests use [`Differential::compare`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use ebpf_abi::{
    Exit, HelperError, Helpers, InvalidReason, Limits, MemoryMap, Region, Trap, TrapKind, VmMemory,
    layout,
};
use ebpf_isa::{CallKind, Imm64Kind, Insn, Program, Reg};

use crate::case::RawEngine;

/// The helper id that copies the whole stack region into the run's [`Outcome::stack`];
/// [`with_stack_dumps`] calls it before every `exit`.
pub const DUMP_STACK: u32 = 0x100;

/// The memory and limits of one differential run.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// The input (region 4, writable); `None`: not mapped.
    pub input: Option<Vec<u8>>,
    /// Read-only data (region 1).
    pub rodata: Option<Vec<u8>>,
    /// Writable data (region 3).
    pub data: Option<Vec<u8>>,
    /// `[r1, r2]`; by default the input's address and length (0 and 0 without an input).
    pub args: Option<[u64; 2]>,
    /// Budget and call depth.
    pub limits: Limits,
}

impl Setup {
    /// No memory but the stack; `r1 = r2 = 0`; default limits.
    pub fn none() -> Setup {
        Setup::default()
    }

    /// `bytes` as the input, `r1`/`r2` its address and length; default limits.
    pub fn input(bytes: impl Into<Vec<u8>>) -> Setup {
        Setup {
            input: Some(bytes.into()),
            ..Setup::default()
        }
    }

    /// With read-only data (region 1).
    pub fn rodata(mut self, bytes: impl Into<Vec<u8>>) -> Setup {
        self.rodata = Some(bytes.into());
        self
    }

    /// With writable data (region 3).
    pub fn data(mut self, bytes: impl Into<Vec<u8>>) -> Setup {
        self.data = Some(bytes.into());
        self
    }

    /// With this instruction budget.
    pub fn budget(mut self, budget: Option<u64>) -> Setup {
        self.limits.budget = budget;
        self
    }

    /// With this local-call depth.
    pub fn depth(mut self, max_call_depth: usize) -> Setup {
        self.limits.max_call_depth = max_call_depth;
        self
    }

    fn args(&self) -> [u64; 2] {
        self.args.unwrap_or(match &self.input {
            Some(input) => layout::input_args(input.len() as u64),
            None => [0, 0],
        })
    }

    /// Runs `engine` on a fresh copy of this memory, with [`helpers`].
    pub fn run(&self, program: &Program, engine: RawEngine<'_>) -> Outcome {
        let snapshot = Arc::new(Mutex::new(Vec::new()));
        let helpers = helpers(snapshot.clone(), self.limits.stack_size());
        let mut input = self.input.clone().unwrap_or_default();
        let mut data = self.data.clone().unwrap_or_default();
        let rodata = self.rodata.clone().unwrap_or_default();
        let mut map = MemoryMap::new();
        if self.input.is_some() {
            map.insert(layout::INPUT, Region::Writable(&mut input));
        }
        if self.rodata.is_some() {
            map.insert(layout::RODATA, Region::ReadOnly(&rodata));
        }
        if self.data.is_some() {
            map.insert(layout::DATA, Region::Writable(&mut data));
        }
        let result = engine(program, map, self.args(), &helpers, &self.limits);
        let stack = snapshot.lock().map(|s| s.clone()).unwrap_or_default();
        Outcome {
            result,
            input,
            data,
            stack,
        }
    }
}

/// What one engine did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `r0` and the count, or the trap.
    pub result: Result<Exit, Trap>,
    /// The input after the run (empty when none was mapped).
    pub input: Vec<u8>,
    /// The writable data after the run (empty when none was mapped).
    pub data: Vec<u8>,
    /// The whole stack region at the last [`DUMP_STACK`] call (empty if none ran).
    pub stack: Vec<u8>,
}

impl Outcome {
    /// The exit, or a panic naming the trap.
    pub fn exit(&self) -> Exit {
        match &self.result {
            Ok(exit) => *exit,
            Err(trap) => panic!("expected an exit, got {trap}"),
        }
    }

    /// The trap, or a panic naming the exit.
    pub fn trap(&self) -> Trap {
        match &self.result {
            Ok(exit) => panic!("expected a trap, got {exit:?}"),
            Err(trap) => trap.clone(),
        }
    }
}

/// The contract's helpers ([`crate::HELPERS`]) and [`DUMP_STACK`], which copies the stack
/// region (`stack_size` bytes) into `snapshot`.
pub fn helpers(snapshot: Arc<Mutex<Vec<u8>>>, stack_size: u64) -> Helpers {
    let mut h = crate::helpers();
    h.insert(DUMP_STACK, move |_: [u64; 5], m: &mut dyn VmMemory| {
        let len = usize::try_from(stack_size).map_err(|_| HelperError::failed("huge stack"))?;
        let mut buf = vec![0u8; len];
        m.read(layout::vm_addr(layout::STACK, 0), &mut buf)?;
        if let Ok(mut s) = snapshot.lock() {
            *s = buf;
        }
        Ok(0)
    });
    h
}

/// `program` with `call DUMP_STACK` before every `exit`, jump and call offsets adjusted, so
/// the final stack is observable. Targets outside the program keep their distance past the
/// end (or before the start).
pub fn with_stack_dumps(program: &Program) -> Program {
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
        let offset = |delta: i64| new_target(old_pc, delta) - here - 1;
        let fixed = match insn {
            Insn::Ja { off } => Insn::Ja {
                off: offset(off.into()) as i16,
            },
            Insn::Ja32 { imm } => Insn::Ja32 {
                imm: offset(imm.into()) as i32,
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
                off: offset(off.into()) as i16,
            },
            Insn::Call {
                kind: CallKind::Local,
                imm,
            } => Insn::Call {
                kind: CallKind::Local,
                imm: offset(imm.into()) as i32,
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
pub fn asm(text: &str) -> Program {
    ebpf_isa::assemble(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A reference engine and the engines it checks.
pub struct Differential<'e> {
    reference: RawEngine<'e>,
    engines: Vec<(&'e str, RawEngine<'e>)>,
    stride: usize,
}

impl<'e> Differential<'e> {
    /// Checks engines against `reference` (the interpreter).
    pub fn new(reference: RawEngine<'e>) -> Differential<'e> {
        Differential {
            reference,
            engines: Vec::new(),
            stride: 1,
        }
    }

    /// Adds an engine under test, named `label` in reports.
    pub fn engine(mut self, label: &'e str, engine: RawEngine<'e>) -> Differential<'e> {
        self.engines.push((label, engine));
        self
    }

    /// Runs only every `n`-th program (or contract case) of the families that run many small
    /// programs one by one: for engines that compile slowly, under emulation.
    pub fn stride(mut self, n: usize) -> Differential<'e> {
        self.stride = n.max(1);
        self
    }

    /// Runs `program` on the reference and on every engine; the reference's outcome, or a
    /// description of the first difference.
    pub fn compare(&self, program: &Program, setup: &Setup) -> Result<Outcome, String> {
        let want = setup.run(program, self.reference);
        for (label, engine) in &self.engines {
            let got = setup.run(program, *engine);
            if got != want {
                return Err(format!(
                    "the interpreter and {label} differ ({setup:x?})\n  \
                     interpreter: {:x?}\n  {label}: {:x?}\n  input: {}, data: {}, stack: {}\n\
                     program:\n{}",
                    want.result,
                    got.result,
                    same(&want.input, &got.input),
                    same(&want.data, &got.data),
                    same(&want.stack, &got.stack),
                    ebpf_isa::disassemble(program)
                ));
            }
        }
        Ok(want)
    }

    /// [`Differential::compare`], panicking on a difference.
    pub fn check(&self, program: &Program, setup: &Setup) -> Outcome {
        self.compare(program, setup)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Differential::check`] on assembly text.
    pub fn check_asm(&self, text: &str, setup: &Setup) -> Outcome {
        self.check(&asm(text), setup)
    }

    /// Checks each of `programs` (every [`Differential::stride`]-th one).
    fn check_each(&self, programs: &[String], setup: &Setup) {
        for text in programs.iter().step_by(self.stride) {
            self.check_asm(text, setup);
        }
    }
}

/// A [`RawEngine`] that threads may share.
pub type SharedEngine<'e> =
    &'e (dyn Fn(&Program, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap> + Sync);

/// Runs `engine` — one compiled program, shared — on four threads at once, 50 runs each, each
/// run on a fresh copy of `setup`'s memory, and panics unless every run ends exactly as
/// `program` does on `reference`: nothing of one run may leak into another.
pub fn shared_by_threads(
    program: &Program,
    setup: &Setup,
    reference: RawEngine<'_>,
    engine: SharedEngine<'_>,
) {
    let want = setup.run(program, reference);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    assert_eq!(setup.run(program, engine), want);
                }
            });
        }
    });
}

fn same(a: &[u8], b: &[u8]) -> &'static str {
    if a == b { "equal" } else { "differ" }
}

/// One family of differential checks.
pub struct Family {
    /// What it covers.
    pub name: &'static str,
    /// Runs it; panics on a difference or a broken promise.
    pub run: fn(&Differential<'_>),
}

/// Every family, in the order [`check_families`] runs them.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "every contract case with its final stack",
        run: contract_cases_with_stack_dumps,
    },
    Family {
        name: "every ALU operation on edge values",
        run: alu_edge_values,
    },
    Family {
        name: "shift counts, masks and zero extension",
        run: shifts,
    },
    Family {
        name: "sign-extending moves",
        run: sign_extending_moves,
    },
    Family {
        name: "every jump condition",
        run: jump_conditions,
    },
    Family {
        name: "division, modulo, shifts and multiplication folded",
        run: division_and_shifts_folded,
    },
    Family {
        name: "byte order, sign extension and jumps folded",
        run: byte_order_and_jumps_folded,
    },
    Family {
        name: "every atomic operation on the input and the stack",
        run: atomics,
    },
    Family {
        name: "budget sweeps",
        run: budget_sweeps,
    },
    Family {
        name: "loops bounded at run time, under every budget",
        run: run_time_bounded_loops,
    },
    Family {
        name: "recursion against the call-depth limit",
        run: recursion_depths,
    },
    Family {
        name: "programs assembly cannot write",
        run: hand_built_programs,
    },
    Family {
        name: "large programs",
        run: large_programs,
    },
];

/// Runs every family of [`FAMILIES`] and panics listing each one that failed, with its message.
pub fn check_families(d: &Differential<'_>) {
    let mut failures = Vec::new();
    for family in FAMILIES {
        let start = std::time::Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| (family.run)(d)));
        eprintln!("{}: {:.1?}", family.name, start.elapsed());
        if let Err(payload) = result {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}:\n{message}", family.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differential families failed:\n\n{}",
        failures.len(),
        FAMILIES.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The families.

/// Every contract case on its own memory, its program rewritten by [`with_stack_dumps`]: the
/// stack the program leaves behind must be the same on every engine, which the cases
/// themselves do not observe.
fn contract_cases_with_stack_dumps(d: &Differential<'_>) {
    for case in crate::cases().iter().step_by(d.stride) {
        let program = with_stack_dumps(&case.program());
        let snapshot = Arc::new(Mutex::new(Vec::new()));
        let helpers = helpers(snapshot.clone(), case.limits().stack_size());
        let run = |engine: RawEngine<'_>| {
            let outcome = case.run_with(engine, &program, &helpers);
            let stack = snapshot.lock().map(|mut s| std::mem::take(&mut *s));
            (outcome, stack.unwrap_or_default())
        };
        let want = run(d.reference);
        for (label, engine) in &d.engines {
            let got = run(*engine);
            assert!(
                got == want,
                "{}: the interpreter and {label} differ with stack dumps:\n  \
                 interpreter: {:x?}\n  {label}: {:x?}\n  stack: {}",
                case.name,
                want.0,
                got.0,
                same(&want.1, &got.1)
            );
        }
    }
}

/// Values where 32- and 64-bit arithmetic, signedness and overflow differ.
const VALUES: [u64; 10] = [
    0,
    1,
    7,
    0x8000_0000,
    0xffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    0xdead_beef_8000_0001,
    0xffff_ffff_0000_0007,
    100,
];

/// Immediates: the same kinds of edges, and shift counts in and out of range.
const IMMS: [i32; 18] = [
    0,
    1,
    -1,
    2,
    8,
    7,
    -7,
    i32::MIN,
    i32::MAX,
    1 << 30,
    31,
    32,
    33,
    63,
    64,
    65,
    4096,
    -4096,
];

/// Every ALU operation, 32- and 64-bit, register and immediate source, on [`VALUES`] ×
/// ([`VALUES`] ∪ [`IMMS`]), each as its own program (so that constants reach the engines'
/// immediate forms).
fn alu_edge_values(d: &Differential<'_>) {
    let ops = [
        "add", "sub", "mul", "div", "sdiv", "or", "and", "lsh", "rsh", "mod", "smod", "xor", "mov",
        "arsh",
    ];
    let mut programs = Vec::new();
    for op in ops {
        for suffix in ["", "32"] {
            for a in VALUES {
                for b in VALUES {
                    programs.push(format!(
                        "lddw %r0, {a:#x}\nlddw %r1, {b:#x}\n{op}{suffix} %r0, %r1\nexit"
                    ));
                }
                for imm in IMMS {
                    programs.push(format!("lddw %r0, {a:#x}\n{op}{suffix} %r0, {imm}\nexit"));
                }
            }
        }
    }
    d.check_each(&programs, &Setup::input(vec![0; 16]));
}

/// Shifts by counts in and out of range, by immediate and by register, on a value whose halves
/// differ.
fn shifts(d: &Differential<'_>) {
    let base = "lddw %r0, 0xdeadbeef80000001\n";
    let mut programs = Vec::new();
    for count in [0i64, 1, 31, 32, 33, 63, 64, 65, -1] {
        for op in ["lsh", "rsh", "arsh"] {
            for suffix in ["", "32"] {
                programs.push(format!("{base}{op}{suffix} %r0, {count}\nexit"));
                programs.push(format!(
                    "{base}mov %r1, {count}\n{op}{suffix} %r0, %r1\nexit"
                ));
            }
        }
    }
    d.check_each(&programs, &Setup::none());
}

/// `movsx` of every width on [`VALUES`].
fn sign_extending_moves(d: &Differential<'_>) {
    let mut programs = Vec::new();
    for op in [
        "movsx832",
        "movsx1632",
        "movsx864",
        "movsx1664",
        "movsx3264",
    ] {
        for v in VALUES {
            programs.push(format!("lddw %r1, {v:#x}\n{op} %r0, %r1\nexit"));
        }
    }
    d.check_each(&programs, &Setup::none());
}

/// Every condition, 32- and 64-bit, register and immediate, on pairs that separate signed
/// from unsigned and the low half from the whole register.
fn jump_conditions(d: &Differential<'_>) {
    let conds = [
        "jeq", "jgt", "jge", "jset", "jne", "jsgt", "jsge", "jlt", "jle", "jslt", "jsle",
    ];
    let pairs = [
        (0u64, 0u64),
        (1, 2),
        (2, 1),
        (u64::MAX, 1),
        (0x1_0000_0000, 0),
        (0x8000_0000, 0x7fff_ffff),
    ];
    let mut programs = Vec::new();
    for cond in conds {
        for suffix in ["", "32"] {
            for (a, b) in pairs {
                programs.push(format!(
                    "lddw %r1, {a:#x}\nlddw %r2, {b:#x}\nmov %r0, 0\n{cond}{suffix} %r1, %r2, +1\n\
                     exit\nmov %r0, 1\nexit"
                ));
                for imm in [b as i32, -1, 0] {
                    programs.push(format!(
                        "lddw %r1, {a:#x}\nmov %r0, 0\n{cond}{suffix} %r1, {imm}, +1\nexit\n\
                         mov %r0, 1\nexit"
                    ));
                }
            }
        }
    }
    d.check_each(&programs, &Setup::none());
}

/// Division, modulo, shifts and multiplication on edge values, register and immediate: all
/// in one program (each result folded into `r9`), and one by one.
fn division_and_shifts_folded(d: &Differential<'_>) {
    let values: [u64; 9] = [
        0,
        1,
        7,
        u64::MAX,
        i64::MIN as u64,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        (-7i64) as u64,
    ];
    let mut programs = Vec::new();
    for op in ["div", "mod", "sdiv", "smod", "lsh", "rsh", "arsh", "mul"] {
        for w in ["", "32"] {
            for dst in values {
                for src in values {
                    programs.push(format!(
                        "lddw %r0, {dst:#x}\nlddw %r1, {src:#x}\n{op}{w} %r0, %r1\nexit"
                    ));
                }
                for imm in [0i64, 1, -1, 7, -7, i32::MIN as i64, 63, 65] {
                    programs.push(format!("lddw %r0, {dst:#x}\n{op}{w} %r0, {imm}\nexit"));
                }
            }
        }
    }
    let mut folded = String::new();
    for text in &programs {
        folded.push_str(text.strip_suffix("exit").unwrap_or(text));
        folded.push_str("xor %r9, %r0\nmul %r9, 0x1003\n");
    }
    folded.push_str("mov %r0, %r9\nexit");
    d.check_asm(&folded, &Setup::none()).exit();
    d.check_each(&programs, &Setup::none());
}

/// Byte swaps, sign extension, negation and every jump condition in one program, each result
/// folded into `r9`.
fn byte_order_and_jumps_folded(d: &Differential<'_>) {
    let mut text = String::from("lddw %r1, 0x8192a3b4c5d6e7f8\nmov %r9, 0\n");
    for op in [
        "le16", "le32", "le64", "be16", "be32", "be64", "bswap16", "bswap32", "bswap64",
    ] {
        text.push_str(&format!(
            "mov %r0, %r1\n{op} %r0\nxor %r9, %r0\nmul %r9, 3\n"
        ));
    }
    for op in [
        "movsx864",
        "movsx1664",
        "movsx3264",
        "movsx832",
        "movsx1632",
    ] {
        text.push_str(&format!("{op} %r0, %r1\nxor %r9, %r0\nmul %r9, 5\n"));
    }
    text.push_str("neg32 %r1\nxor %r9, %r1\nneg %r1\nxor %r9, %r1\n");
    let conds = [
        "jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset",
    ];
    let mut label = 0;
    for c in conds {
        for w in ["", "32"] {
            for (a, b) in [
                (0u64, 0u64),
                (1, u64::MAX),
                (0x1_0000_0000, 1),
                (i64::MIN as u64, 5),
            ] {
                text.push_str(&format!(
                    "lddw %r2, {a:#x}\nlddw %r3, {b:#x}\nmov %r0, 1\n{c}{w} %r2, %r3, l{label}\n\
                     mov %r0, 2\nl{label}:\nxor %r9, %r0\nmul %r9, 7\n"
                ));
                label += 1;
                text.push_str(&format!(
                    "mov %r0, 1\n{c}{w} %r2, -1, l{label}\nmov %r0, 2\nl{label}:\nxor %r9, %r0\n\
                     mul %r9, 7\n"
                ));
                label += 1;
            }
        }
    }
    text.push_str("mov %r0, %r9\nexit");
    d.check_asm(&text, &Setup::none()).exit();
}

/// Every atomic operation and width through the input pointer and the frame pointer (results,
/// fetched values, memory), a compare-exchange that succeeds, and all of them chained in one
/// program over the input.
fn atomics(d: &Differential<'_>) {
    let ops = [
        "add",
        "or",
        "and",
        "xor",
        "fetch add",
        "fetch or",
        "fetch and",
        "fetch xor",
        "xchg",
        "cmpxchg",
    ];
    let input: Vec<u8> = (0u8..16).collect();
    let setup = "lddw %r2, 0x0f0f0f0ff0f0f0f0\nstxdw [%r1+8], %r2\nstxdw [%r10-16], %r2\n\
                 lddw %r3, 0x123456789abcdef0\n";
    let mut programs = Vec::new();
    for op in ops {
        for suffix in ["", "32"] {
            for (base, off) in [("%r1", 8), ("%r10", -16), ("%r10", -8)] {
                programs.push(format!(
                    "{setup}mov %r0, 0\nlock {op}{suffix} [{base}{off:+}], %r3\n\
                     ldxdw %r4, [{base}{off:+}]\nadd %r0, %r4\nadd %r0, %r3\nexit"
                ));
            }
            // A compare-exchange that succeeds (r0 holds the memory's value).
            programs.push(format!(
                "{setup}mov %r0, %r2\nlock {op}{suffix} [%r1+8], %r3\nldxdw %r0, [%r1+8]\nexit"
            ));
        }
    }
    for text in &programs {
        d.check(&with_stack_dumps(&asm(text)), &Setup::input(input.clone()));
    }
    let mut chained = String::from("mov %r0, 0x55\nlddw %r9, 0x0123456789abcdef\n");
    for (i, op) in ops.iter().enumerate() {
        for (w, off) in [("", 0), ("32", 8), ("32", 12)] {
            chained.push_str(&format!(
                "mov %r2, {}\nxor %r2, %r9\nlock {op}{w} [%r1+{off}], %r2\nxor %r0, %r2\n\
                 mul %r0, 31\nldxdw %r3, [%r1+{}]\nxor %r0, %r3\n",
                i * 0x1111 + 7,
                off & !7,
            ));
        }
        // Compare-exchanges that succeed: r0 equals memory.
        chained.push_str(
            "ldxdw %r0, [%r1]\nlock cmpxchg [%r1], %r9\nldxw %r0, [%r1+8]\n\
             lock cmpxchg32 [%r1+8], %r2\n",
        );
    }
    chained.push_str("exit");
    let input: Vec<u8> = (0u8..16).map(|b| b.wrapping_mul(37)).collect();
    d.check_asm(&chained, &Setup::input(input)).exit();
}

/// A loop with local calls, stack traffic, a helper (5), a packet load, an `lddw` and an atomic
/// on the input (at least 2 bytes): one of the budget sweeps' programs, and a busy program for
/// engines' own tests (threads, for one).
pub const BUSY: &str = "
    mov %r9, %r1
    mov %r6, 0
    mov %r7, 3
loop:
    stxdw [%r10-8], %r7
    mov %r1, %r9
    call local f
    ldxdw %r2, [%r10-8]
    add %r6, %r2
    lddw %r3, 0x100000001
    add %r6, %r3
    mov %r1, %r6
    call 5
    add %r6, %r0
    ldabsb 1
    sub %r7, 1
    jne %r7, 0, loop
    mov %r0, %r6
    exit
f:
    stdw [%r10-16], 5
    ldxdw %r0, [%r10-16]
    lock add [%r1+0], %r0
    jgt %r0, 3, +1
    exit
    mov %r0, 2
    exit
";

const LOCAL_CALLS: &str = "
    mov %r6, 6
    mov %r7, 7
    mov %r8, 8
    mov %r9, 9
    stdw [%r10-8], 100
    call local fn
    ldxdw %r1, [%r10-8]
    add %r0, %r6
    add %r0, %r7
    add %r0, %r8
    add %r0, %r9
    add %r0, %r1
    exit
fn:
    mov %r6, 60
    mov %r7, 70
    mov %r8, 80
    mov %r9, 90
    stdw [%r10-8], 5
    mov %r0, %r10
    exit
";

/// A loop with nested local calls, stack traffic and a helper (4) writing the input (at least
/// 40 bytes): one of the budget sweeps' programs, and a busy program for engines' own tests.
pub const LOOPS_AND_CALLS: &str = "
    mov %r9, %r1
    mov %r6, 0
    mov %r0, 0
loop:
    mov %r1, %r6
    call local f
    add %r0, %r1
    stxdw [%r10-8], %r0
    mov %r7, %r6
    lsh %r7, 3
    and %r7, 31
    mov %r1, %r9
    add %r1, %r7
    mov %r2, %r0
    call 4
    add %r6, 1
    jlt %r6, 5, loop
    ldxdw %r0, [%r10-8]
    lddw %r2, 0x1234
    add %r0, %r2
    exit
f:
    mov %r2, %r1
    mul %r2, 3
    stxdw [%r10-16], %r2
    lsh %r1, 1
    jeq %r1, 4, skip
    call local g
    add %r1, 7
skip:
    mov %r0, %r2
    exit
g:
    add %r1, 1
    exit
";

/// Stores, `lddw`s (two slots, one instruction) and a helper in one block: a budget trap must
/// come at the right pc, after exactly the right stores.
const EFFECTS_BETWEEN_LDDW: &str = "mov %r6, %r1\nlddw %r2, 0x1122334455667788\nstxdw [%r1], %r2\n\
    lddw %r3, 7\nstb [%r1+8], 9\nmov %r5, 1\nlddw %r4, 3\nmov %r2, 0\ncall 4\nstw [%r6+12], 5\n\
    lddw %r0, 42\nexit";

/// Every budget from 0 to two past what each program needs: below it the run traps with
/// `BudgetExhausted { budget }` (at the same pc, after the same memory effects, on every
/// engine), from it on the run ends exactly as without a budget.
fn budget_sweeps(d: &Differential<'_>) {
    let input: Vec<u8> = (0u8..40).collect();
    for text in [
        BUSY,
        LOCAL_CALLS,
        LOOPS_AND_CALLS,
        EFFECTS_BETWEEN_LDDW,
        "mov %r0, 1\nexit",
        "lddw %r0, 1\nja +0\nexit",
    ] {
        let program = asm(text);
        let dumped = with_stack_dumps(&program);
        let full = d.check(&program, &Setup::input(input.clone())).exit();
        let mut exhausted = 0;
        for budget in 0..=full.instructions + 2 {
            let setup = Setup::input(input.clone()).budget(Some(budget));
            d.check(&dumped, &setup);
            match d.check(&program, &setup).result {
                Ok(exit) => {
                    assert!(budget >= full.instructions, "{text}: budget {budget}");
                    assert_eq!(exit, full, "{text}: budget {budget}");
                }
                Err(trap) => {
                    assert!(
                        budget < full.instructions,
                        "{text}: budget {budget}: {trap}"
                    );
                    assert_eq!(trap.kind, TrapKind::BudgetExhausted { budget }, "{text}");
                    exhausted += 1;
                }
            }
        }
        assert_eq!(exhausted, full.instructions, "{text}");
    }
}

/// Loops whose trip count the registers give at their entry (`r2`, the input's length or a
/// chosen value, against a counter from a constant or from `r1`), which a JIT may charge once
/// at the entry: the bottom test `<`, the top test `>=` (zero trips when the bound is 0), `!=`
/// (poly's), down by 8 to a signed `>=`, up by 4 to `<=` from `r1`, and `hash`'s loop over the
/// input's bytes (a pointer to an end pointer).
const RUN_TIME_LOOPS: [&str; 6] = [
    "mov %r0, 0\nmov %r3, 0\nloop:\nadd %r0, %r3\nadd %r3, 1\njlt %r3, %r2, loop\nexit",
    "mov %r0, 0\nmov %r3, 0\nloop:\njge %r3, %r2, out\nadd %r0, %r3\nadd %r3, 1\nja loop\n\
     out:\nexit",
    "mov %r0, 0\nmov %r3, 0\njeq %r2, 0, out\nloop:\nmul %r0, 3\nadd %r0, %r3\nadd %r3, 1\n\
     jne %r3, %r2, loop\nout:\nexit",
    "mov %r0, 0\nmov %r3, %r2\nloop:\nadd %r0, 1\nadd %r3, -8\njsge %r3, -3, loop\nexit",
    "mov %r0, 0\nmov %r3, %r1\nloop:\nadd %r3, 4\nadd %r0, %r3\njle %r3, %r2, loop\nexit",
    "mov %r3, %r1\nadd %r3, %r2\nmov %r0, 0\njge %r1, %r3, out\nloop:\nldxb %r4, [%r1]\n\
     xor %r0, %r4\nmul %r0, 31\nadd %r1, 1\njlt %r1, %r3, loop\nout:\nexit",
];

/// [`RUN_TIME_LOOPS`] under every budget from 0 to two past the run's count (for a long run:
/// its first and last hundred and fifty more between), for input lengths 0, 1, 7, 64 and 4096:
/// a JIT that charges a loop at its entry when the budget has it all, and otherwise lets it
/// run charged as it goes, traps where the interpreter does with the same count. Then bounds
/// no closed form covers — the counter behind a `!=` bound (it wraps), more than 2^32 trips,
/// `<=` the largest value — under small budgets (these runs would not end without one), and
/// every condition and step with the counter and the bound near the edges of both orders.
fn run_time_bounded_loops(d: &Differential<'_>) {
    for text in RUN_TIME_LOOPS {
        let program = asm(text);
        for len in [0usize, 1, 7, 64, 4096] {
            let input: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let full = d.check(&program, &Setup::input(input.clone())).exit();
            let total = full.instructions;
            let budgets: Vec<u64> = if total <= 600 {
                (0..=total + 2).collect()
            } else {
                (0..=100)
                    .chain((100..total - 100).step_by((total / 150) as usize))
                    .chain(total - 100..=total + 2)
                    .collect()
            };
            for budget in budgets {
                let setup = Setup::input(input.clone()).budget(Some(budget));
                match d.check(&program, &setup).result {
                    Ok(exit) => assert_eq!(exit, full, "{text}: {len}: budget {budget}"),
                    Err(trap) => {
                        assert!(budget < total, "{text}: {len}: budget {budget}: {trap}");
                        assert_eq!(trap.kind, TrapKind::BudgetExhausted { budget }, "{text}");
                    }
                }
            }
        }
    }
    let endless = [
        (RUN_TIME_LOOPS[0], [0, u32::MAX as u64]),
        (RUN_TIME_LOOPS[0], [0, u32::MAX as u64 + 1]),
        (RUN_TIME_LOOPS[0], [0, u64::MAX]),
        (RUN_TIME_LOOPS[1], [0, 1 << 40]),
        (RUN_TIME_LOOPS[2], [0, 1 << 63]),
        (RUN_TIME_LOOPS[3], [0, i64::MAX as u64]),
        (RUN_TIME_LOOPS[4], [0, u64::MAX]),
        (RUN_TIME_LOOPS[4], [9, 5]),
        (RUN_TIME_LOOPS[4], [u64::MAX - 2, u64::MAX - 1]),
        // Behind the `!=` bound: the counter goes round.
        (
            "mov %r0, 0\nmov %r3, %r1\nloop:\nadd %r3, 1\njne %r3, %r2, loop\nexit",
            [7, 3],
        ),
    ];
    // Every condition and step, counter and bound near the edges of both orders (where the
    // closed form must decline: wrap, `<=` the largest value): a budget that covers short
    // loops, then, where the loop ended, one short of its count.
    let conds = [
        ("jlt", 1),
        ("jle", 1),
        ("jslt", 1),
        ("jsle", 1),
        ("jne", 1),
        ("jgt", -1),
        ("jge", -1),
        ("jsgt", -1),
        ("jsge", -1),
        ("jne", -1),
    ];
    for (cond, sign) in conds {
        for step in [1i64, 4, 64] {
            if cond == "jne" && step != 1 {
                continue;
            }
            let text = format!(
                "mov %r0, 0\nmov %r3, %r1\nloop:\nadd %r0, 1\nadd %r3, {}\n\
                 {cond} %r3, %r2, loop\nexit",
                sign * step
            );
            let program = asm(&text);
            for base in [0u64, (1 << 63) - 40, u64::MAX - 130] {
                for delta in [-70i64, -1, 0, 1, 5, 64, 65, 129] {
                    let (x, b) = if sign > 0 {
                        (base, base.wrapping_add(delta as u64))
                    } else {
                        (base.wrapping_add(delta as u64), base)
                    };
                    let setup = |budget| {
                        Setup {
                            args: Some([x, b]),
                            ..Setup::none()
                        }
                        .budget(Some(budget))
                    };
                    if let Ok(exit) = d.check(&program, &setup(2_000)).result {
                        let short = d.check(&program, &setup(exit.instructions - 1));
                        assert!(short.result.is_err(), "{text}: {x:#x} {b:#x}");
                    }
                }
            }
        }
    }
    for (text, args) in endless {
        let program = asm(text);
        for budget in (0..=40).chain([1000, 100_000]) {
            let setup = Setup {
                args: Some(args),
                ..Setup::none()
            }
            .budget(Some(budget));
            let outcome = d.check(&program, &setup);
            if let Err(trap) = outcome.result {
                assert_eq!(trap.kind, TrapKind::BudgetExhausted { budget }, "{text}");
            }
        }
    }
}

/// `f(n)` recurses `n` times, each level writing its own frame: below the call-depth limit it
/// returns `n(n+1)/2`, at or above it the run traps with `CallDepthExceeded`.
fn recursion_depths(d: &Differential<'_>) {
    let body = asm("mov %r1, %r6\ncall local f\nexit\n\
         f:\nstxdw [%r10-8], %r1\njeq %r1, 0, done\nsub %r1, 1\ncall local f\n\
         ldxdw %r2, [%r10-8]\nadd %r0, %r2\nexit\ndone:\nmov %r0, 0\nexit");
    for max_call_depth in [0usize, 1, 2, 3, 8, 20] {
        for n in 0..12u64 {
            let mut insns = asm(&format!("mov %r6, {n}")).into_insns();
            insns.extend(body.insns().iter().copied());
            let program = Program::from_insns(insns);
            let setup = Setup::none().depth(max_call_depth);
            d.check(&with_stack_dumps(&program), &setup);
            let outcome = d.check(&program, &setup);
            if (n as usize) < max_call_depth {
                assert_eq!(outcome.exit().r0, n * (n + 1) / 2, "n {n}");
            } else {
                assert_eq!(
                    outcome.trap().kind,
                    TrapKind::CallDepthExceeded {
                        max_depth: max_call_depth
                    },
                    "n {n}, depth {max_call_depth}"
                );
            }
        }
    }
}

/// Instructions the assembler does not write (a 64-bit legacy packet load), and programs that
/// can only trap under every budget: the invalid instruction wins over the budget except where
/// the budget runs out before it.
fn hand_built_programs(d: &Differential<'_>) {
    let input: Vec<u8> = (0u8..16).collect();
    let packet_dw = Program::from_insns(vec![
        Insn::LoadPacket {
            size: ebpf_isa::Size::DW,
            addr: ebpf_isa::PacketAddr::Abs,
            imm: 13,
        },
        Insn::Exit,
    ]);
    let trap = d.check(&packet_dw, &Setup::input(input.clone())).trap();
    assert!(
        matches!(trap.kind, TrapKind::OutOfBounds { .. }) && trap.pc == 0,
        "{trap}"
    );
    let kfunc = Program::from_insns(vec![
        Insn::Call {
            kind: CallKind::Btf,
            imm: 1,
        },
        Insn::Exit,
    ]);
    let pseudo = Program::from_insns(vec![
        Insn::Alu {
            width: ebpf_isa::Width::W64,
            op: ebpf_isa::AluOp::Mov,
            dst: Reg::R0,
            src: ebpf_isa::Operand::Imm(1),
        },
        Insn::LoadImm64 {
            dst: Reg::R1,
            kind: Imm64Kind::MapFd,
            imm: 3,
        },
        Insn::Exit,
    ]);
    let invalid = |pc, reason| Trap {
        pc,
        kind: TrapKind::InvalidInstruction { reason },
    };
    for budget in [None, Some(0), Some(1), Some(2)] {
        let setup = Setup::input(input.clone()).budget(budget);
        assert_eq!(
            d.check(&kfunc, &setup).trap(),
            invalid(0, InvalidReason::UnsupportedCall)
        );
        let want = if budget == Some(0) {
            Trap {
                pc: 0,
                kind: TrapKind::BudgetExhausted { budget: 0 },
            }
        } else {
            invalid(1, InvalidReason::UnsupportedLddw)
        };
        assert_eq!(d.check(&pseudo, &setup).trap(), want, "budget {budget:?}");
        assert_eq!(
            d.check(&asm("ja +100"), &setup).trap(),
            invalid(0, InvalidReason::TargetOutOfRange)
        );
        assert_eq!(
            d.check(&Program::default(), &setup).trap(),
            invalid(0, InvalidReason::FellOffEnd)
        );
    }
}

/// Programs past the sizes simple JITs handle (rbpf's panics past ~575 instructions): 3,000
/// instructions in a loop, and 7,500 (1,500 under emulation, `EBPF_CROSS_EMULATED`) with
/// branches every few instructions, stack traffic and a call, cut short by budgets too.
fn large_programs(d: &Differential<'_>) {
    let mut text = String::from("mov %r0, 0\nmov %r6, 3\ntop:\n");
    for i in 0..1000 {
        text.push_str(&format!(
            "add %r0, {i}\nxor %r0, %r6\nstxdw [%r10-{}], %r0\n",
            8 + (i % 60) * 8
        ));
    }
    text.push_str("sub %r6, 1\njne %r6, 0, top\nexit\n");
    d.check_asm(&text, &Setup::none()).exit();

    let groups = if std::env::var_os("EBPF_CROSS_EMULATED").is_some() {
        300
    } else {
        1_500
    };
    let mut text = String::from("mov %r6, 0\nmov %r0, 1\nouter:\n");
    for i in 0..groups {
        text.push_str(&format!(
            "add %r0, {i}\nstxdw [%r10-{}], %r0\njgt %r0, {}, s{i}\nxor %r0, 0x55\ns{i}:\n\
             mul %r0, 3\n",
            8 * (i % 60 + 1),
            i * 7
        ));
    }
    text.push_str(
        "call local f\nadd %r6, 1\njlt %r6, 3, outer\nexit\nf:\nldxdw %r1, [%r10+8]\n\
         add %r0, %r1\nexit",
    );
    let program = asm(&text);
    assert!(program.len() > groups * 5);
    let full = groups as u64 * 15;
    for budget in [None, Some(full / 2), Some(full - 1)] {
        d.compare(&program, &Setup::none().budget(budget))
            .unwrap_or_else(|e| panic!("{}", &e[..e.len().min(2000)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine that ignores the program: writes `byte` to the input's first byte and exits
    /// with `r0`.
    fn fake(
        r0: u64,
        byte: u8,
    ) -> impl Fn(&Program, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap> {
        move |_, mut map, args, _, _| {
            map.write(args[0], &[byte]).ok();
            Ok(Exit {
                r0,
                instructions: 1,
            })
        }
    }

    #[test]
    fn the_harness_notices_every_difference() {
        let program = asm("exit");
        let setup = Setup::input(vec![0; 4]);
        let same = fake(1, 7);
        let outcome = Differential::new(&same)
            .engine("same", &same)
            .compare(&program, &setup)
            .unwrap();
        assert_eq!(outcome.input, [7, 0, 0, 0]);
        for (other, what) in [(fake(2, 7), "r0"), (fake(1, 8), "memory")] {
            let d = Differential::new(&same).engine("other", &other);
            assert!(d.compare(&program, &setup).is_err(), "{what}");
        }
    }

    #[test]
    fn stack_dumps_keep_every_target() {
        // Jumps and calls across inserted dumps, and targets outside the program, keep pointing
        // at the same instructions (or the same distance outside).
        let program = asm("ja +1\nexit\ncall local f\njeq %r0, 0, -4\nja +5\nf:\nexit");
        let dumped = with_stack_dumps(&program);
        let want = asm(&format!(
            "ja +2\ncall {DUMP_STACK}\nexit\ncall local f\njeq %r0, 0, -5\nja +6\nf:\ncall {DUMP_STACK}\nexit"
        ));
        assert_eq!(dumped, want, "{}", ebpf_isa::disassemble(&dumped));
    }
}
