//! The one runner of the bpf_conformance suite: every engine crate's conformance test (and the
//! ELF loader's) calls [`check_suite`] with its own way of preparing and running a program.
//!
//! The suite is read from `../shared/conformance/bpf_conformance` or `$EBPF_CONFORMANCE_DIR`
//! by `ebpf_testdata::suite()`: when it is missing the test says so on stderr and passes,
//! except under `CI`, where it fails.

use ebpf_abi::{Exit, Helpers, Limits, MemoryMap, Region, Trap, layout};
use ebpf_isa::Program;

use crate::case::RawEngine;

/// How many positive programs the suite has: a different number means a different suite.
pub const SUITE_LEN: usize = 313;

/// The instruction budget of every conformance run (the longest program needs far fewer).
pub const BUDGET: u64 = 1_000_000;

/// One positive program of the suite, assembled.
#[derive(Clone, Debug)]
pub struct Vector {
    /// Its position in the sorted suite.
    pub index: usize,
    /// The file name.
    pub name: String,
    /// The assembled `-- asm` section.
    pub program: Program,
    /// The `-- mem` section: the input, if the vector has one.
    pub input: Option<Vec<u8>>,
    /// The `-- result` section: the expected `r0`.
    pub result: Option<u64>,
}

/// What one run of a vector produced: the result and the input memory afterwards.
pub type VectorOutcome = (Result<Exit, Trap>, Vec<u8>);

impl Vector {
    /// Runs `engine` on this vector's memory: the input (empty when the vector has none) in
    /// region 4, `r1`/`r2` its address and length, or 0 and 0 without a `-- mem` section.
    pub fn run(
        &self,
        engine: impl FnOnce(MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap>,
    ) -> VectorOutcome {
        let mut mem = self.input.clone().unwrap_or_default();
        let args = match &self.input {
            Some(m) => layout::input_args(m.len() as u64),
            None => [0, 0],
        };
        let mut map = MemoryMap::new();
        map.insert(layout::INPUT, Region::Writable(&mut mem));
        let limits = Limits {
            budget: Some(BUDGET),
            ..Limits::default()
        };
        let result = engine(map, args, &Helpers::conformance(), &limits);
        (result, mem)
    }
}

/// The suite's positive programs, assembled, in file order; `None` when the suite is missing
/// (see the module comment).
///
/// # Panics
///
/// If the suite does not hold exactly [`SUITE_LEN`] programs, or one does not parse or
/// assemble.
pub fn vectors() -> Option<Vec<Vector>> {
    let (files, _) = ebpf_testdata::suite()?;
    assert_eq!(
        files.len(),
        SUITE_LEN,
        "the conformance suite has {} programs, not {SUITE_LEN}",
        files.len()
    );
    let vectors = files
        .iter()
        .enumerate()
        .map(|(index, path)| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let v = ebpf_testdata::read(path).unwrap_or_else(|e| panic!("{e}"));
            let program =
                ebpf_isa::assemble_lines(&v.asm_lines()).unwrap_or_else(|e| panic!("{name}: {e}"));
            Vector {
                index,
                name,
                program,
                input: v.mem,
                result: v.result,
            }
        })
        .collect();
    Some(vectors)
}

/// Runs every vector of the suite on one engine and panics listing every failure: a program
/// `prepare` refuses, an `r0` other than the vector's result, a trap, or — with a `reference`
/// engine (the interpreter) — any difference from it in the result, the instruction count or
/// the input memory afterwards.
///
/// `prepare` turns a vector into what `run` executes (an interpreter, a compiled program, a
/// program loaded from an ELF object); `label` names the engine in the report.
pub fn check_suite<P>(
    label: &str,
    prepare: impl Fn(&Vector) -> Result<P, String>,
    run: impl Fn(&P, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap>,
    reference: Option<RawEngine<'_>>,
) {
    let Some(vectors) = vectors() else { return };
    let mut failures = Vec::new();
    for v in &vectors {
        let prepared = match prepare(v) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{}: {e}", v.name));
                continue;
            }
        };
        let (got, got_mem) =
            v.run(|map, args, helpers, limits| run(&prepared, map, args, helpers, limits));
        match &got {
            Ok(exit) if Some(exit.r0) == v.result => {}
            _ => {
                failures.push(format!("{}: got {got:x?}, want {:#x?}", v.name, v.result));
                continue;
            }
        }
        if let Some(reference) = reference {
            let want = v.run(|map, args, helpers, limits| {
                reference(&v.program, map, args, helpers, limits)
            });
            if (&got, &got_mem) != (&want.0, &want.1) {
                failures.push(format!(
                    "{}: got {got:x?}, the reference {:x?} (memory {})",
                    v.name,
                    want.0,
                    if got_mem == want.1 {
                        "equal"
                    } else {
                        "differs"
                    }
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "[{label}] {} of {} conformance programs failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}
