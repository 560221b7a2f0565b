//! One contract case as data ([`Case`]), how it runs on an engine at the level of
//! `Interpreter::run` ([`Case::run_raw`]) and how its outcome is checked ([`Case::check`]).

use std::path::PathBuf;

use ebpf_abi::{Exit, Helpers, Limits, MemoryMap, Region, Trap, TrapKind, layout};
use ebpf_isa::Program;

use crate::helpers::helpers;

/// An engine at the level of `Interpreter::run`: program, regions, `[r1, r2]`, helpers, limits.
pub type RawEngine<'e> =
    &'e dyn Fn(&Program, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap>;

/// An engine from its two halves: how it prepares a program (`Interpreter::new`, a JIT's
/// compile) and how the prepared program runs (`Interpreter::run`). It prepares the program
/// again for every run; an engine that compiles slowly can keep compiled programs itself.
pub fn engine<P>(
    prepare: impl Fn(&Program) -> P,
    run: impl Fn(&P, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap>,
) -> impl Fn(&Program, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap> {
    move |program, map, args, helpers, limits| run(&prepare(program), map, args, helpers, limits)
}

/// A metadata layout (the facade's `MetadataLayout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Size of the buffer the VM allocates when the caller brings none.
    pub len: usize,
    /// Where the input's start address goes.
    pub data_offset: usize,
    /// Where the input's end address goes.
    pub data_end_offset: usize,
}

/// VM configuration (what `VmBuilder` sets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Instruction budget; `None`: unlimited.
    pub budget: Option<u64>,
    /// Local-call depth; `None`: the default (8).
    pub max_call_depth: Option<usize>,
    /// Metadata layout.
    pub metadata: Option<Meta>,
    /// `VmBuilder::read_only_region`s, in order (regions 6, 7, …).
    pub read_only: Vec<Vec<u8>>,
}

/// A region an `Input` adds for one run (after the VM's read-only regions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunRegion {
    /// `Input::region`.
    ReadOnly(Vec<u8>),
    /// `Input::region_mut`.
    Writable(Vec<u8>),
}

impl RunRegion {
    /// The region's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            RunRegion::ReadOnly(b) | RunRegion::Writable(b) => b,
        }
    }
}

/// A memory whose bytes after the run a case checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mem {
    /// The input.
    Input,
    /// The caller's metadata buffer.
    Metadata,
    /// The `i`-th run region.
    RunRegion(usize),
}

/// The outcome a case expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The program exits with this `r0` after exactly this many instructions.
    Exit {
        /// `r0`.
        r0: u64,
        /// Executed instructions (an `lddw` and a call count once).
        instructions: u64,
    },
    /// The program traps exactly so (kind with every field, and pc).
    Trap(Trap),
}

/// One case of the contract: a program in conformance syntax, the memory it runs on, the VM
/// configuration, and the exact outcome.
#[derive(Clone, Debug)]
pub struct Case {
    /// The case file it comes from.
    pub file: PathBuf,
    /// 1-based line of its `===` header.
    pub line: usize,
    /// `<file stem>/<name in the file>`, unique.
    pub name: String,
    /// The program, in conformance syntax (one line per statement, as in the file).
    pub asm: String,
    /// 1-based line in the file of each line of [`Case::asm`] (for assembler errors).
    pub asm_lines: Vec<usize>,
    /// The input (`Input::new`), or none (`Input::none`, `run_no_data`).
    pub input: Option<Vec<u8>>,
    /// The caller's metadata buffer (`Input::metadata`).
    pub metadata_buffer: Option<Vec<u8>>,
    /// Regions added for the run, in order.
    pub run_regions: Vec<RunRegion>,
    /// The VM configuration.
    pub config: Config,
    /// The outcome.
    pub expect: Expect,
    /// Memory contents after the run, for the memories the case observes.
    pub memory_after: Vec<(Mem, Vec<u8>)>,
    /// 0-based line range of the `--- expect` body in the file (what blessing replaces).
    pub(crate) expect_lines: std::ops::Range<usize>,
}

/// What one run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `r0` and the count, or the trap.
    pub result: Result<Exit, Trap>,
    /// The input after the run.
    pub input: Option<Vec<u8>>,
    /// The caller's metadata buffer after the run.
    pub metadata: Option<Vec<u8>>,
    /// The run regions after the run.
    pub regions: Vec<Vec<u8>>,
}

impl Case {
    /// The category: the case file's name without `.txt`.
    pub fn category(&self) -> &str {
        self.name.split('/').next().unwrap_or("")
    }

    /// The assembled program, or the assembler's error with its line in the case file.
    pub fn try_program(&self) -> Result<Program, String> {
        let lines: Vec<(usize, &str)> = self
            .asm_lines
            .iter()
            .copied()
            .zip(self.asm.lines())
            .collect();
        ebpf_isa::assemble_lines(&lines)
            .map_err(|e| format!("{}: does not assemble: {e}", self.name))
    }

    /// The assembled program.
    ///
    /// # Panics
    ///
    /// If the program does not assemble (the runner reports such a case as a failure first).
    pub fn program(&self) -> Program {
        self.try_program().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The limits of the case's configuration.
    pub fn limits(&self) -> Limits {
        Limits {
            budget: self.config.budget,
            max_call_depth: self
                .config
                .max_call_depth
                .unwrap_or(ebpf_abi::DEFAULT_MAX_CALL_DEPTH),
        }
    }

    /// Runs the case on an engine with the signature of `Interpreter::run`, setting up the
    /// regions and entry registers as the contract says (independently of the facade): VM
    /// read-only regions from region 6, then the run's regions; the input in region 4; the
    /// metadata buffer (the caller's, or a zeroed one of the layout's length) in region 5,
    /// with the input's start and end written at the layout's offsets; `r1`/`r2` the metadata
    /// buffer and its length when there is one, else the input and its length, else zero.
    pub fn run_raw(&self, engine: RawEngine<'_>) -> Outcome {
        self.run_with(engine, &self.program(), &helpers())
    }

    /// [`Case::run_raw`] with another program (the case's, rewritten) and other helpers.
    pub fn run_with(&self, engine: RawEngine<'_>, program: &Program, helpers: &Helpers) -> Outcome {
        let mut input = self.input.clone();
        let mut metadata = self
            .metadata_buffer
            .clone()
            .or_else(|| self.config.metadata.map(|m| vec![0; m.len]));
        let mut regions = self.run_regions.clone();
        let result = self.run_in(
            engine,
            program,
            helpers,
            input.as_deref_mut(),
            metadata.as_deref_mut(),
            &mut regions,
        );
        Outcome {
            result,
            input,
            // A buffer the VM allocates itself is not observable.
            metadata: metadata.filter(|_| self.metadata_buffer.is_some()),
            regions: regions.iter().map(|r| r.bytes().to_vec()).collect(),
        }
    }

    fn run_in(
        &self,
        engine: RawEngine<'_>,
        program: &Program,
        helpers: &Helpers,
        input: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        regions: &mut [RunRegion],
    ) -> Result<Exit, Trap> {
        let mut map = MemoryMap::new();
        let ro = &self.config.read_only;
        for (id, bytes) in (layout::FIRST_EXTRA..).zip(ro) {
            map.insert(id, Region::ReadOnly(bytes));
        }
        for (id, region) in (layout::FIRST_EXTRA + ro.len() as u64..).zip(regions.iter_mut()) {
            match region {
                RunRegion::ReadOnly(b) => map.insert(id, Region::ReadOnly(b)),
                RunRegion::Writable(b) => map.insert(id, Region::Writable(b)),
            }
        }
        let input_start = layout::vm_addr(layout::INPUT, 0);
        let (start, len) = match &input {
            Some(d) => (input_start, d.len() as u64),
            None => (0, 0),
        };
        if let Some(d) = input {
            map.insert(layout::INPUT, Region::Writable(d));
        }
        let args = match metadata {
            Some(buf) => {
                let meta_start = layout::vm_addr(layout::METADATA, 0);
                if let Some(m) = self.config.metadata {
                    for (off, value) in [(m.data_offset, start), (m.data_end_offset, start + len)] {
                        let Some(slot) = buf.get_mut(off..off + 8) else {
                            return Err(Trap {
                                pc: 0,
                                kind: TrapKind::OutOfBounds {
                                    addr: meta_start + off as u64,
                                    len: 8,
                                    write: true,
                                },
                            });
                        };
                        slot.copy_from_slice(&value.to_le_bytes());
                    }
                }
                let n = buf.len() as u64;
                map.insert(layout::METADATA, Region::Writable(buf));
                [meta_start, n]
            }
            None => [start, len],
        };
        engine(program, map, args, helpers, &self.limits())
    }

    /// Whether `outcome` is what the case expects; the error says how it differs.
    pub fn check(&self, outcome: &Outcome) -> Result<(), String> {
        let result_ok = match (&self.expect, &outcome.result) {
            (Expect::Exit { r0, instructions }, Ok(exit)) => {
                exit.r0 == *r0 && exit.instructions == *instructions
            }
            (Expect::Trap(want), Err(got)) => want == got,
            _ => false,
        };
        if !result_ok {
            return Err(format!(
                "{}: want {:#x?}, got {:#x?}",
                self.name, self.expect, outcome.result
            ));
        }
        for (mem, want) in &self.memory_after {
            let got = outcome.memory(*mem);
            if got != Some(want.as_slice()) {
                return Err(format!(
                    "{}: {mem:?} after the run: want {want:02x?}, got {got:02x?}",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

impl Outcome {
    /// The bytes of `mem` after the run, if the run had that memory.
    pub fn memory(&self, mem: Mem) -> Option<&[u8]> {
        match mem {
            Mem::Input => self.input.as_deref(),
            Mem::Metadata => self.metadata.as_deref(),
            Mem::RunRegion(i) => self.regions.get(i).map(Vec::as_slice),
        }
    }
}
