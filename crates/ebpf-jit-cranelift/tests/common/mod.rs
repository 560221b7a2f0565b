//! Shared by the integration tests: run one program on the interpreter (the oracle) and on the
//! Cranelift JIT with the same memory, helpers and limits, and compare everything observable.

#![allow(dead_code, unreachable_pub)]

use ebpf_abi::{Exit, HelperError, Helpers, Limits, MemoryMap, Region, Trap, VmMemory, layout};
use ebpf_interp::Interpreter;
use ebpf_isa::Program;
use ebpf_jit_cranelift::{CraneliftProgram, JitOptions};

/// What one engine did: its result and the final bytes of the input and data regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub result: Result<Exit, Trap>,
    pub input: Vec<u8>,
    pub data: Vec<u8>,
}

/// The memory of a run: writable input (region 4, `r1`/`r2` point to it unless `args` says
/// otherwise), optional read-only data (region 1) and writable data (region 3).
#[derive(Clone, Debug, Default)]
pub struct Setup {
    pub input: Vec<u8>,
    pub rodata: Option<Vec<u8>>,
    pub data: Option<Vec<u8>>,
    pub args: Option<[u64; 2]>,
}

impl Setup {
    pub fn input(input: Vec<u8>) -> Setup {
        Setup {
            input,
            ..Setup::default()
        }
    }

    fn args(&self) -> [u64; 2] {
        self.args.unwrap_or(if self.input.is_empty() {
            [0, 0]
        } else {
            [layout::vm_addr(layout::INPUT, 0), self.input.len() as u64]
        })
    }

    /// Runs `f` with a fresh memory map of this setup and returns the outcome.
    pub fn run(&self, f: impl FnOnce(MemoryMap<'_>, [u64; 2]) -> Result<Exit, Trap>) -> Outcome {
        let mut input = self.input.clone();
        let mut data = self.data.clone().unwrap_or_default();
        let rodata = self.rodata.clone().unwrap_or_default();
        let mut map = MemoryMap::new();
        map.insert(layout::INPUT, Region::Writable(&mut input));
        if self.rodata.is_some() {
            map.insert(layout::RODATA, Region::ReadOnly(&rodata));
        }
        if self.data.is_some() {
            map.insert(layout::DATA, Region::Writable(&mut data));
        }
        let result = f(map, self.args());
        Outcome {
            result,
            input,
            data,
        }
    }
}

/// The helpers of the conformance suite (5 returns `r1`) plus a few for the differential
/// tests: 1 sums its arguments, 2 fails, 3 reads 8 bytes at `r1`, 4 writes `r2` at `r1`.
pub fn helpers() -> Helpers {
    let mut h = Helpers::conformance();
    h.insert(1, |a: [u64; 5], _: &mut dyn VmMemory| {
        Ok(a.iter().fold(0u64, |s, x| s.wrapping_add(*x)))
    });
    h.insert(2, |a: [u64; 5], _: &mut dyn VmMemory| {
        Err(HelperError::failed(format!("failed with {}", a[0])))
    });
    h.insert(3, |a: [u64; 5], m: &mut dyn VmMemory| Ok(m.read_u64(a[0])?));
    h.insert(4, |a: [u64; 5], m: &mut dyn VmMemory| {
        m.write_u64(a[0], a[1])?;
        Ok(0)
    });
    h
}

/// Options for tests: the defaults (ISA flags from `EBPF_JIT_ISA_FLAGS`).
pub fn options() -> JitOptions {
    JitOptions::default()
}

pub fn jit(program: &Program) -> CraneliftProgram {
    match ebpf_jit_cranelift::compile(program, &options()) {
        Ok(p) => p,
        Err(e) => panic!("compile failed: {e}\n{program:?}"),
    }
}

/// Runs `program` on both engines; `Err` describes the first difference.
pub fn compare(
    program: &Program,
    setup: &Setup,
    helpers: &Helpers,
    limits: &Limits,
) -> Result<Outcome, String> {
    let jit = jit(program);
    compare_compiled(program, &jit, setup, helpers, limits)
}

/// Like [`compare`], with the JIT's program already compiled.
pub fn compare_compiled(
    program: &Program,
    jit: &CraneliftProgram,
    setup: &Setup,
    helpers: &Helpers,
    limits: &Limits,
) -> Result<Outcome, String> {
    let interp = Interpreter::new(program);
    let want = setup.run(|map, args| interp.run(map, args, helpers, limits));
    let got = setup.run(|map, args| jit.run(map, args, helpers, limits));
    if want == got {
        Ok(got)
    } else {
        Err(format!(
            "interpreter and JIT differ (limits {limits:?})\n  interpreter: {:?}\n  jit:         {:?}\n  input: {:?} vs {:?}\n  data: {:?} vs {:?}\nprogram:\n{}",
            want.result,
            got.result,
            want.input,
            got.input,
            want.data,
            got.data,
            ebpf_isa::disassemble(program)
        ))
    }
}
