//! The runtime contract as a table: each [`Case`] is a program in conformance syntax, the
//! memory it runs on, the VM configuration, and the exact outcome — `r0` and the instruction
//! count, or the exact [`Trap`] (kind with every field, and pc).
//!
//! The table is engine-agnostic and depends only on `ebpf-abi` and `ebpf-isa`, so any crate
//! can include this file (`#[path = ".../ebpf-vm/tests/contract/cases.rs"] mod cases;`):
//!
//! - through the facade, `ebpf-vm`'s `tests/contract/main.rs` runs every case on every
//!   engine of `Engine::ALL`, so a JIT added there is checked against the table with no new
//!   code;
//! - at the engine level, [`Case::run_raw`] builds the regions and entry registers of a run
//!   from the contract (the layout of `ebpf_abi::layout`), independently of the facade, and
//!   hands them to any function with the signature of `Interpreter::run` — what
//!   `ebpf-interp`'s `tests/contract/main.rs` does, and what a JIT crate can do.
//!
//! Addresses are spelled out as numbers on purpose: they are part of the contract (input at
//! `0x4_0000_0000`, metadata at `0x5_0000_0000`, extra regions from `0x6_0000_0000`, the
//! stack in region 2 with frames of 512 bytes tiling down from its top).

use ebpf_abi::{
    Exit, HelperError, HelperFn, Helpers, InvalidReason, Limits, MemoryMap, Region, Trap, TrapKind,
    VmMemory, layout,
};
use ebpf_isa::Program;

/// The stack region (region 2).
pub(crate) const STACK: u64 = 0x2_0000_0000;
/// The input region (region 4).
pub(crate) const INPUT: u64 = 0x4_0000_0000;
/// The metadata region (region 5).
pub(crate) const META: u64 = 0x5_0000_0000;
/// The first extra region (region 6): the first `VmBuilder::read_only_region`, or the first
/// region an `Input` adds when the VM has none.
pub(crate) const EXTRA: u64 = 0x6_0000_0000;
/// Bytes of one call frame.
pub(crate) const FRAME: u64 = 512;
/// `r10` at entry with the default call depth of 8: nine frames, the entry frame on top.
pub(crate) const FP0: u64 = STACK + 9 * FRAME;

/// Helper ids registered in every case's VM ([`HELPERS`]).
pub(crate) const H_SUM: u32 = 1;
/// Always fails with [`FAIL_MESSAGE`].
pub(crate) const H_FAIL: u32 = 2;
/// Returns the little-endian `u64` at `r1`, read through `VmMemory`.
pub(crate) const H_READ64: u32 = 3;
/// Writes `r2` as a little-endian `u64` at `r1` through `VmMemory`; returns 0.
pub(crate) const H_WRITE64: u32 = 4;
/// Returns `r1` (the conformance suite's helper 5).
pub(crate) const H_ECHO: u32 = 5;
/// Returns the sum of the `r2` bytes at `r1` (at most 4096), read through `VmMemory`.
pub(crate) const H_SUM_BYTES: u32 = 6;
/// The message of [`H_FAIL`].
pub(crate) const FAIL_MESSAGE: &str = "helper 2 refuses";

fn h_sum(args: [u64; 5], _: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Ok(args.iter().fold(0u64, |s, a| s.wrapping_add(*a)))
}

fn h_fail(_: [u64; 5], _: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Err(HelperError::failed(FAIL_MESSAGE))
}

fn h_read64(args: [u64; 5], mem: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Ok(mem.read_u64(args[0])?)
}

fn h_write64(args: [u64; 5], mem: &mut dyn VmMemory) -> Result<u64, HelperError> {
    mem.write_u64(args[0], args[1])?;
    Ok(0)
}

fn h_echo(args: [u64; 5], _: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Ok(args[0])
}

fn h_sum_bytes(args: [u64; 5], mem: &mut dyn VmMemory) -> Result<u64, HelperError> {
    let len = usize::try_from(args[1])
        .ok()
        .filter(|&n| n <= 4096)
        .ok_or_else(|| HelperError::failed("too long"))?;
    let mut buf = vec![0u8; len];
    mem.read(args[0], &mut buf)?;
    Ok(buf.iter().map(|&b| u64::from(b)).sum())
}

/// The helpers every case's VM registers, by id.
pub(crate) const HELPERS: [(u32, HelperFn); 6] = [
    (H_SUM, h_sum),
    (H_FAIL, h_fail),
    (H_READ64, h_read64),
    (H_WRITE64, h_write64),
    (H_ECHO, h_echo),
    (H_SUM_BYTES, h_sum_bytes),
];

/// [`HELPERS`] as an `ebpf_abi::Helpers` table.
pub(crate) fn helpers() -> Helpers {
    let mut h = Helpers::new();
    for (id, f) in HELPERS {
        h.insert(id, f);
    }
    h
}

/// What part of the contract a case pins down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Category {
    /// Bounds of every region at every width; null, unmapped and wrapped addresses.
    Memory,
    /// Atomic operations: results, bounds, read-only memory, alignment.
    Atomic,
    /// Frames: edges, callee frames, r6–r9 and r10 across calls.
    Stack,
    /// Local-call nesting limit.
    CallDepth,
    /// Exact instruction budget.
    Budget,
    /// Helper calls: arguments, results, failures, unknown ids, memory, clobbering.
    Helper,
    /// Instructions that cannot execute.
    Invalid,
    /// Legacy packet loads.
    Packet,
    /// Division and modulo edge cases.
    Division,
    /// Entry registers and the metadata-buffer modes.
    Entry,
}

impl Category {
    /// The category's name in case names.
    pub(crate) fn slug(self) -> &'static str {
        match self {
            Category::Memory => "memory",
            Category::Atomic => "atomic",
            Category::Stack => "stack",
            Category::CallDepth => "call-depth",
            Category::Budget => "budget",
            Category::Helper => "helper",
            Category::Invalid => "invalid",
            Category::Packet => "packet",
            Category::Division => "division",
            Category::Entry => "entry",
        }
    }
}

/// A metadata layout (the facade's `MetadataLayout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Size of the buffer the VM allocates when the caller brings none.
    pub(crate) len: usize,
    /// Where the input's start address goes.
    pub(crate) data_offset: usize,
    /// Where the input's end address goes.
    pub(crate) data_end_offset: usize,
}

/// VM configuration (what `VmBuilder` sets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Config {
    /// Instruction budget; `None`: unlimited.
    pub(crate) budget: Option<u64>,
    /// Local-call depth; `None`: the default (8).
    pub(crate) max_call_depth: Option<usize>,
    /// Metadata layout.
    pub(crate) metadata: Option<Meta>,
    /// `VmBuilder::read_only_region`s, in order (regions 6, 7, …).
    pub(crate) read_only: Vec<Vec<u8>>,
}

/// A region an `Input` adds for one run (after the VM's read-only regions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RunRegion {
    /// `Input::region`.
    ReadOnly(Vec<u8>),
    /// `Input::region_mut`.
    Writable(Vec<u8>),
}

impl RunRegion {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            RunRegion::ReadOnly(b) | RunRegion::Writable(b) => b,
        }
    }
}

/// A memory whose bytes after the run a case checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mem {
    /// The input.
    Input,
    /// The caller's metadata buffer.
    Metadata,
    /// The `i`-th run region.
    RunRegion(usize),
}

/// The outcome a case expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// The program exits with this `r0` after exactly this many instructions.
    Exit {
        /// `r0`.
        r0: u64,
        /// Executed instructions (an `lddw` and a call count once).
        instructions: u64,
    },
    /// The program traps exactly so.
    Trap(Trap),
}

/// One case of the contract.
#[derive(Clone, Debug)]
pub(crate) struct Case {
    /// What it pins down.
    pub(crate) category: Category,
    /// A unique name.
    pub(crate) name: String,
    /// The program, in conformance syntax.
    pub(crate) asm: String,
    /// The input (`Input::new`), or none (`Input::none`, `run_no_data`).
    pub(crate) input: Option<Vec<u8>>,
    /// The caller's metadata buffer (`Input::metadata`).
    pub(crate) metadata_buffer: Option<Vec<u8>>,
    /// Regions added for the run.
    pub(crate) run_regions: Vec<RunRegion>,
    /// The VM configuration.
    pub(crate) config: Config,
    /// The outcome.
    pub(crate) expect: Expect,
    /// Memory contents after the run.
    pub(crate) memory_after: Vec<(Mem, Vec<u8>)>,
}

/// A case with no input, the default configuration, and an outcome still to set.
fn case(category: Category, name: impl Into<String>, asm: impl Into<String>) -> Case {
    Case {
        category,
        name: format!("{}/{}", category.slug(), name.into()),
        asm: asm.into(),
        input: None,
        metadata_buffer: None,
        run_regions: Vec::new(),
        config: Config::default(),
        expect: Expect::Exit {
            r0: u64::MAX,
            instructions: u64::MAX,
        },
        memory_after: Vec::new(),
    }
}

impl Case {
    fn input(mut self, bytes: impl Into<Vec<u8>>) -> Case {
        self.input = Some(bytes.into());
        self
    }

    fn metadata_buffer(mut self, bytes: impl Into<Vec<u8>>) -> Case {
        self.metadata_buffer = Some(bytes.into());
        self
    }

    fn region_mut(mut self, bytes: impl Into<Vec<u8>>) -> Case {
        self.run_regions.push(RunRegion::Writable(bytes.into()));
        self
    }

    fn region(mut self, bytes: impl Into<Vec<u8>>) -> Case {
        self.run_regions.push(RunRegion::ReadOnly(bytes.into()));
        self
    }

    fn budget(mut self, budget: u64) -> Case {
        self.config.budget = Some(budget);
        self
    }

    fn depth(mut self, depth: usize) -> Case {
        self.config.max_call_depth = Some(depth);
        self
    }

    fn meta(mut self, len: usize, data_offset: usize, data_end_offset: usize) -> Case {
        self.config.metadata = Some(Meta {
            len,
            data_offset,
            data_end_offset,
        });
        self
    }

    fn read_only(mut self, bytes: impl Into<Vec<u8>>) -> Case {
        self.config.read_only.push(bytes.into());
        self
    }

    fn ok(mut self, r0: u64, instructions: u64) -> Case {
        self.expect = Expect::Exit { r0, instructions };
        self
    }

    fn trap(mut self, pc: usize, kind: TrapKind) -> Case {
        self.expect = Expect::Trap(Trap { pc, kind });
        self
    }

    fn after(mut self, mem: Mem, bytes: impl Into<Vec<u8>>) -> Case {
        self.memory_after.push((mem, bytes.into()));
        self
    }

    /// The assembled program (the table only holds text that assembles).
    pub(crate) fn program(&self) -> Program {
        ebpf_isa::assemble(&self.asm)
            .unwrap_or_else(|e| panic!("case {}: does not assemble: {e}\n{}", self.name, self.asm))
    }

    /// The limits of the case's configuration.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            budget: self.config.budget,
            max_call_depth: self
                .config
                .max_call_depth
                .unwrap_or(ebpf_abi::DEFAULT_MAX_CALL_DEPTH),
        }
    }

    /// Runs the case on an engine with the signature of `Interpreter::run`, setting up the
    /// regions and entry registers as the contract says (independently of the facade).
    pub(crate) fn run_raw(&self, engine: RawEngine<'_>) -> Outcome {
        let program = self.program();
        let mut input = self.input.clone();
        let mut metadata = self
            .metadata_buffer
            .clone()
            .or_else(|| self.config.metadata.map(|m| vec![0; m.len]));
        let mut regions = self.run_regions.clone();
        let result = self.run_in(
            engine,
            &program,
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
        input: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        regions: &mut [RunRegion],
    ) -> Result<Exit, Trap> {
        let mut map = MemoryMap::new();
        let ro = &self.config.read_only;
        for (i, bytes) in ro.iter().enumerate() {
            map.insert(layout::FIRST_EXTRA + i as u64, Region::ReadOnly(bytes));
        }
        for (i, region) in regions.iter_mut().enumerate() {
            let id = layout::FIRST_EXTRA + (ro.len() + i) as u64;
            match region {
                RunRegion::ReadOnly(b) => map.insert(id, Region::ReadOnly(b)),
                RunRegion::Writable(b) => map.insert(id, Region::Writable(b)),
            }
        }
        let (start, len) = match &input {
            Some(d) => (INPUT, d.len() as u64),
            None => (0, 0),
        };
        if let Some(d) = input {
            map.insert(layout::INPUT, Region::Writable(d));
        }
        let args = match metadata {
            Some(buf) => {
                if let Some(m) = self.config.metadata {
                    for (off, value) in [(m.data_offset, start), (m.data_end_offset, start + len)] {
                        let Some(slot) = buf.get_mut(off..off + 8) else {
                            return Err(Trap {
                                pc: 0,
                                kind: TrapKind::OutOfBounds {
                                    addr: META + off as u64,
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
                [META, n]
            }
            None => [start, len],
        };
        engine(program, map, args, &helpers(), &self.limits())
    }

    /// Whether `outcome` is what the case expects; the error says how it differs.
    pub(crate) fn check(&self, outcome: &Outcome) -> Result<(), String> {
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
            let got = match mem {
                Mem::Input => outcome.input.as_deref(),
                Mem::Metadata => outcome.metadata.as_deref(),
                Mem::RunRegion(i) => outcome.regions.get(*i).map(Vec::as_slice),
            };
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

/// An engine at the level of `Interpreter::run`: program, regions, `r1`/`r2`, helpers, limits.
pub(crate) type RawEngine<'e> =
    &'e dyn Fn(&Program, MemoryMap<'_>, [u64; 2], &Helpers, &Limits) -> Result<Exit, Trap>;

/// What one run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// `r0` and the count, or the trap.
    pub(crate) result: Result<Exit, Trap>,
    /// The input after the run.
    pub(crate) input: Option<Vec<u8>>,
    /// The caller's metadata buffer after the run.
    pub(crate) metadata: Option<Vec<u8>>,
    /// The run regions after the run.
    pub(crate) regions: Vec<Vec<u8>>,
}

fn oob(addr: u64, len: u64, write: bool) -> TrapKind {
    TrapKind::OutOfBounds { addr, len, write }
}

fn invalid(reason: InvalidReason) -> TrapKind {
    TrapKind::InvalidInstruction { reason }
}

/// `len` bytes that all have their top bit set (so that sign-extending loads extend ones), no
/// two neighbours equal.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| 0x80 | ((i * 7 + 1) as u8 & 0x7f))
        .collect()
}

fn le(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

fn sign_extend(value: u64, bytes: u64) -> u64 {
    let shift = 64 - 8 * bytes;
    (((value << shift) as i64) >> shift) as u64
}

fn lines(lines: &[&str]) -> String {
    lines.join("\n")
}

/// Every case of the contract.
pub(crate) fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(memory_matrix());
    cases.extend(memory_addresses());
    cases.extend(atomics());
    cases.extend(stack());
    cases.extend(call_depth());
    cases.extend(budget());
    cases.extend(helper_calls());
    cases.extend(invalid_instructions());
    cases.extend(packet_loads());
    cases.extend(division());
    cases.extend(entry());
    cases
}

// ----------------------------------------------------------------------------------------------
// Memory: every region, every width, every edge.

/// A region as the matrix sees it: how a register gets an address, and what lies there.
struct Area {
    name: &'static str,
    /// Instructions that put `base_value` into `base` (none when the entry registers do).
    setup: &'static [&'static str],
    /// Slots and instructions of `setup`.
    setup_slots: usize,
    setup_insns: u64,
    base: &'static str,
    base_value: u64,
    /// First address and contents of the region.
    start: u64,
    bytes: Vec<u8>,
    writable: bool,
    /// Which memory to check after a store, if observable.
    observe: Option<Mem>,
    /// Adds the input, configuration and run regions the area needs.
    apply: fn(Case) -> Case,
}

fn areas() -> Vec<Area> {
    vec![
        Area {
            name: "input",
            setup: &[],
            setup_slots: 0,
            setup_insns: 0,
            base: "%r1",
            base_value: INPUT,
            start: INPUT,
            bytes: pattern(16),
            writable: true,
            observe: Some(Mem::Input),
            apply: |c| c.input(pattern(16)),
        },
        Area {
            name: "stack",
            setup: &[],
            setup_slots: 0,
            setup_insns: 0,
            base: "%r10",
            base_value: FP0,
            start: STACK,
            bytes: vec![0; 9 * 512],
            writable: true,
            observe: None,
            apply: |c| c,
        },
        Area {
            name: "stack-depth-2",
            setup: &[],
            setup_slots: 0,
            setup_insns: 0,
            base: "%r10",
            base_value: STACK + 3 * FRAME,
            start: STACK,
            bytes: vec![0; 3 * 512],
            writable: true,
            observe: None,
            apply: |c| c.depth(2),
        },
        Area {
            name: "metadata",
            setup: &[],
            setup_slots: 0,
            setup_insns: 0,
            base: "%r1",
            base_value: META,
            start: META,
            bytes: pattern(24),
            writable: true,
            observe: Some(Mem::Metadata),
            apply: |c| c.input([0u8; 4]).metadata_buffer(pattern(24)),
        },
        Area {
            name: "vm-read-only-region",
            setup: &["lddw %r1, 0x600000000"],
            setup_slots: 2,
            setup_insns: 1,
            base: "%r1",
            base_value: EXTRA,
            start: EXTRA,
            bytes: pattern(16),
            writable: false,
            observe: None,
            apply: |c| c.input([0u8; 4]).read_only(pattern(16)),
        },
        Area {
            name: "run-region-mut",
            setup: &["lddw %r1, 0x700000000"],
            setup_slots: 2,
            setup_insns: 1,
            base: "%r1",
            base_value: EXTRA + (1 << 32),
            start: EXTRA + (1 << 32),
            bytes: pattern(16),
            writable: true,
            observe: Some(Mem::RunRegion(0)),
            apply: |c| c.read_only([0u8; 8]).region_mut(pattern(16)),
        },
        Area {
            name: "run-region-read-only",
            setup: &["lddw %r1, 0x600000000"],
            setup_slots: 2,
            setup_insns: 1,
            base: "%r1",
            base_value: EXTRA,
            start: EXTRA,
            bytes: pattern(16),
            writable: false,
            observe: None,
            apply: |c| c.region(pattern(16)),
        },
    ]
}

#[derive(Clone, Copy)]
enum Access {
    Load { size: u64, signed: bool },
    StoreImm { size: u64 },
    StoreReg { size: u64 },
}

fn suffix(size: u64) -> &'static str {
    match size {
        1 => "b",
        2 => "h",
        4 => "w",
        _ => "dw",
    }
}

fn accesses() -> Vec<Access> {
    let mut v = Vec::new();
    for size in [1, 2, 4, 8] {
        v.push(Access::Load {
            size,
            signed: false,
        });
    }
    for size in [1, 2, 4] {
        v.push(Access::Load { size, signed: true });
    }
    for size in [1, 2, 4, 8] {
        v.push(Access::StoreImm { size });
    }
    for size in [1, 2, 4, 8] {
        v.push(Access::StoreReg { size });
    }
    v
}

/// The immediate of `st*` in the matrix, and the register value of `stx*`.
const STORE_IMM: i32 = -0x1234_5679;
const STORE_REG: u64 = 0x8877_6655_4433_2211;

fn mem_operand(base: &str, off: i64) -> String {
    if off < 0 {
        format!("[{base}-{}]", -off)
    } else {
        format!("[{base}+{off}]")
    }
}

fn memory_matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    for area in areas() {
        let len = area.bytes.len() as u64;
        for access in accesses() {
            let (size, name) = match access {
                Access::Load { size, signed } => (
                    size,
                    format!("ldx{}{}", if signed { "s" } else { "" }, suffix(size)),
                ),
                Access::StoreImm { size } => (size, format!("st{}", suffix(size))),
                Access::StoreReg { size } => (size, format!("stx{}", suffix(size))),
            };
            let mut positions = vec![
                ("first-byte", area.start),
                ("last-in-bounds", area.start + len - size),
                ("at-end", area.start + len),
                ("below-start", area.start - 1),
            ];
            if size > 1 {
                positions.push(("straddling-end", area.start + len - size + 1));
            }
            for (where_, addr) in positions {
                let off = addr.wrapping_sub(area.base_value) as i64;
                let operand = mem_operand(area.base, off);
                let mut text: Vec<String> = area.setup.iter().map(|s| s.to_string()).collect();
                let mut pc = area.setup_slots;
                let mut insns = area.setup_insns;
                if let Access::StoreReg { .. } = access {
                    text.push(format!("lddw %r3, {STORE_REG:#x}"));
                    pc += 2;
                    insns += 1;
                }
                let access_pc = pc;
                let in_bounds = addr >= area.start && addr + size <= area.start + len;
                let case_name = format!("{}/{name}/{where_}", area.name);
                let c = match access {
                    Access::Load { signed, .. } => {
                        text.push(format!("{name} %r0, {operand}"));
                        text.push("exit".into());
                        let c = case(Category::Memory, case_name, text.join("\n"));
                        if in_bounds {
                            let at = (addr - area.start) as usize;
                            let raw = le(&area.bytes[at..at + size as usize]);
                            let v = if signed { sign_extend(raw, size) } else { raw };
                            c.ok(v, insns + 2)
                        } else {
                            c.trap(access_pc, oob(addr, size, false))
                        }
                    }
                    Access::StoreImm { .. } | Access::StoreReg { .. } => {
                        let stored = match access {
                            Access::StoreImm { .. } => {
                                text.push(format!("{name} {operand}, {STORE_IMM}"));
                                i64::from(STORE_IMM) as u64
                            }
                            _ => {
                                text.push(format!("{name} {operand}, %r3"));
                                STORE_REG
                            }
                        };
                        text.push(format!("ldx{} %r0, {operand}", suffix(size)));
                        text.push("exit".into());
                        let c = case(Category::Memory, case_name, text.join("\n"));
                        if in_bounds && area.writable {
                            let v = if size == 8 {
                                stored
                            } else {
                                stored & ((1 << (8 * size)) - 1)
                            };
                            let c = c.ok(v, insns + 3);
                            match area.observe {
                                Some(mem) => {
                                    let mut after = area.bytes.clone();
                                    let at = (addr - area.start) as usize;
                                    after[at..at + size as usize]
                                        .copy_from_slice(&stored.to_le_bytes()[..size as usize]);
                                    c.after(mem, after)
                                }
                                None => c,
                            }
                        } else {
                            let c = c.trap(access_pc, oob(addr, size, true));
                            match area.observe {
                                // A store that traps changes nothing.
                                Some(mem) => c.after(mem, area.bytes.clone()),
                                None => c,
                            }
                        }
                    }
                };
                cases.push((area.apply)(c));
            }
        }
    }
    cases
}

fn memory_addresses() -> Vec<Case> {
    use Category::Memory as M;
    let mut v = Vec::new();
    // Null pointer: no input, so r1 = 0, at every width, loads and stores.
    for size in [1u64, 2, 4, 8] {
        let s = suffix(size);
        v.push(
            case(
                M,
                format!("null/ldx{s}"),
                format!("ldx{s} %r0, [%r1]\nexit"),
            )
            .trap(0, oob(0, size, false)),
        );
        v.push(
            case(M, format!("null/st{s}"), format!("st{s} [%r1], 1\nexit"))
                .trap(0, oob(0, size, true)),
        );
        v.push(
            case(
                M,
                format!("null/stx{s}"),
                format!("stx{s} [%r1], %r2\nexit"),
            )
            .trap(0, oob(0, size, true)),
        );
    }
    for size in [1u64, 2, 4] {
        let s = suffix(size);
        v.push(
            case(
                M,
                format!("null/ldxs{s}"),
                format!("ldxs{s} %r0, [%r1]\nexit"),
            )
            .trap(0, oob(0, size, false)),
        );
    }
    v.push(case(M, "null/offset", "ldxb %r0, [%r1+8]\nexit").trap(0, oob(8, 1, false)));
    v.push(case(M, "null/r2-is-zero-too", "mov %r0, %r1\nor %r0, %r2\nexit").ok(0, 3));
    // Any register can hold the address (engines must not special-case r1 and r10).
    let input = pattern(16);
    for n in 0..=9 {
        v.push(
            case(
                M,
                format!("base-register/r{n}/load"),
                format!("mov %r{n}, %r1\nldxb %r0, [%r{n}+3]\nexit"),
            )
            .input(input.clone())
            .ok(u64::from(input[3]), 3),
        );
        v.push(
            case(
                M,
                format!("base-register/r{n}/load-into-itself"),
                format!("mov %r{n}, %r1\nldxdw %r{n}, [%r{n}+8]\nmov %r0, %r{n}\nexit"),
            )
            .input(input.clone())
            .ok(le(&input[8..]), 4),
        );
        v.push(
            case(
                M,
                format!("base-register/r{n}/store-past-end"),
                format!("mov %r{n}, %r1\nstxb [%r{n}+16], %r{n}\nexit"),
            )
            .input(input.clone())
            .trap(1, oob(INPUT + 16, 1, true))
            .after(Mem::Input, input.clone()),
        );
    }
    v.push(
        case(
            M,
            "base-register/copy-of-r10",
            "mov %r2, %r10\nstb [%r2-1], 7\nldxb %r0, [%r10-1]\nexit",
        )
        .ok(7, 4),
    );
    v.push(
        case(
            M,
            "base-register/copy-of-r10-past-top",
            "mov %r2, %r10\nadd %r2, 1\nstb [%r2-1], 7\nexit",
        )
        .trap(2, oob(FP0, 1, true)),
    );
    // Region 0 is never mapped, wherever in its 4 GiB.
    v.push(
        case(M, "region-0/low", "mov %r1, 0x100\nldxw %r0, [%r1]\nexit")
            .input(pattern(16))
            .trap(1, oob(0x100, 4, false)),
    );
    v.push(
        case(
            M,
            "region-0/high",
            "lddw %r1, 0xfffffff8\nldxdw %r0, [%r1]\nexit",
        )
        .input(pattern(16))
        .trap(2, oob(0xffff_fff8, 8, false)),
    );
    // Unmapped region ids, with an input present (and nothing else).
    for id in [1u64, 3, 5, 6, 7, 62, 63, 64, 0xffff_ffff] {
        let addr = id << 32;
        v.push(
            case(
                M,
                format!("unmapped-region/{id}/load"),
                format!("lddw %r1, {addr:#x}\nldxb %r0, [%r1]\nexit"),
            )
            .input(pattern(16))
            .trap(2, oob(addr, 1, false)),
        );
        v.push(
            case(
                M,
                format!("unmapped-region/{id}/store"),
                format!("lddw %r1, {addr:#x}\nstdw [%r1+8], 1\nexit"),
            )
            .input(pattern(16))
            .trap(2, oob(addr + 8, 8, true)),
        );
    }
    // The region after the last configured extra region is unmapped.
    v.push(
        case(
            M,
            "unmapped-region/after-extras",
            "lddw %r1, 0x800000000\nldxb %r0, [%r1]\nexit",
        )
        .read_only([1u8; 4])
        .region_mut([2u8; 4])
        .trap(2, oob(0x8_0000_0000, 1, false)),
    );
    // Regions are numbered: VM read-only regions first, then the run's, in order.
    v.push(
        case(
            M,
            "extra-regions/numbering",
            lines(&[
                "lddw %r1, 0x600000000",
                "ldxb %r0, [%r1]",
                "lddw %r1, 0x700000000",
                "ldxb %r2, [%r1]",
                "lsh %r2, 8",
                "or %r0, %r2",
                "lddw %r1, 0x800000000",
                "ldxb %r2, [%r1]",
                "lsh %r2, 16",
                "or %r0, %r2",
                "lddw %r1, 0x900000000",
                "ldxb %r2, [%r1]",
                "lsh %r2, 24",
                "or %r0, %r2",
                "exit",
            ]),
        )
        .read_only([0x11u8])
        .read_only([0x22u8])
        .region([0x33u8])
        .region_mut([0x44u8])
        .ok(0x4433_2211, 15),
    );
    // Wrapping address arithmetic never reaches another region's bytes.
    v.push(
        case(
            M,
            "wrap/input-minus-one",
            "sub %r1, 1\nldxb %r0, [%r1]\nexit",
        )
        .input(pattern(16))
        .trap(1, oob(INPUT - 1, 1, false)),
    );
    v.push(
        case(M, "wrap/null-minus-eight", "ldxdw %r0, [%r1-8]\nexit")
            .trap(0, oob(u64::MAX - 7, 8, false)),
    );
    v.push(
        case(
            M,
            "wrap/top-of-address-space",
            "lddw %r1, -1\nldxh %r0, [%r1]\nexit",
        )
        .trap(2, oob(u64::MAX, 2, false)),
    );
    v.push(
        case(
            M,
            "wrap/past-top-to-zero",
            "lddw %r1, -1\nldxb %r0, [%r1+1]\nexit",
        )
        .input(pattern(16))
        .trap(2, oob(0, 1, false)),
    );
    v.push(
        case(
            M,
            "wrap/mov32-truncates-pointer",
            "mov32 %r1, %r1\nldxb %r0, [%r1]\nexit",
        )
        .input(pattern(16))
        .trap(1, oob(0, 1, false)),
    );
    v.push(
        case(
            M,
            "wrap/add32-truncates-pointer",
            "add32 %r1, 4\nldxb %r0, [%r1]\nexit",
        )
        .input(pattern(16))
        .trap(1, oob(4, 1, false)),
    );
    v.push(
        case(
            M,
            "wrap/shifted-pointer",
            "lsh %r1, 1\nldxb %r0, [%r1]\nexit",
        )
        .input(pattern(16))
        .trap(1, oob(0x8_0000_0000, 1, false)),
    );
    v.push(
        case(
            M,
            "wrap/negative-offset-from-input",
            "ldxw %r0, [%r1-4]\nexit",
        )
        .input(pattern(16))
        .trap(0, oob(INPUT - 4, 4, false)),
    );
    // An access never spans two regions, even when both are mapped.
    v.push(
        case(
            M,
            "cross-region/input-end-into-metadata",
            "lddw %r1, 0x4ffffffff\nldxh %r0, [%r1]\nexit",
        )
        .input(pattern(16))
        .metadata_buffer(pattern(16))
        .trap(2, oob(0x4_ffff_ffff, 2, false)),
    );
    v.push(
        case(
            M,
            "cross-region/stack-below-into-rodata",
            "ldxdw %r0, [%r10-4612]\nexit",
        )
        .trap(0, oob(STACK - 4, 8, false)),
    );
    // An empty input is mapped, with nothing in it.
    v.push(
        case(
            M,
            "empty-input/pointer-and-length",
            "mov %r0, %r1\nadd %r0, %r2\nexit",
        )
        .input([])
        .ok(INPUT, 3),
    );
    v.push(
        case(M, "empty-input/read", "ldxb %r0, [%r1]\nexit")
            .input([])
            .trap(0, oob(INPUT, 1, false)),
    );
    // Loads zero-extend into the whole register; sign-extending loads fill it.
    v.push(
        case(
            M,
            "load-overwrites-whole-register",
            "lddw %r0, -1\nldxb %r0, [%r1]\nexit",
        )
        .input([0x7fu8])
        .ok(0x7f, 3),
    );
    v.push(
        case(M, "ldxsb/positive", "ldxsb %r0, [%r1]\nexit")
            .input([0x7fu8])
            .ok(0x7f, 2),
    );
    v.push(
        case(M, "ldxsw/negative", "ldxsw %r0, [%r1]\nexit")
            .input([0x00u8, 0x00, 0x00, 0x80])
            .ok(0xffff_ffff_8000_0000, 2),
    );
    // Stores are little-endian and the input the embedder passed sees them.
    v.push(
        case(
            M,
            "stores-are-little-endian",
            "lddw %r2, 0x0102030405060708\nstxdw [%r1], %r2\nsth [%r1+8], 0x1234\nexit",
        )
        .input([0u8; 10])
        .ok(0, 4)
        .after(Mem::Input, [8u8, 7, 6, 5, 4, 3, 2, 1, 0x34, 0x12]),
    );
    v
}

// ----------------------------------------------------------------------------------------------
// Atomics.

/// The memory operand and operand register values of the atomic cases.
const ATOMIC_MEM: u64 = 0xfedc_ba98_7654_3210;
const ATOMIC_SRC: u64 = 0x0f0f_0f0f_f0f1_f2f3;

#[derive(Clone, Copy)]
enum AOp {
    Add,
    Or,
    And,
    Xor,
    Xchg,
    Cmpxchg,
}

fn atomics() -> Vec<Case> {
    use Category::Atomic as A;
    let mut v = Vec::new();
    let ops = [
        (AOp::Add, false, "add"),
        (AOp::Or, false, "or"),
        (AOp::And, false, "and"),
        (AOp::Xor, false, "xor"),
        (AOp::Add, true, "add"),
        (AOp::Or, true, "or"),
        (AOp::And, true, "and"),
        (AOp::Xor, true, "xor"),
        (AOp::Xchg, true, "xchg"),
        (AOp::Cmpxchg, true, "cmpxchg"),
    ];
    for wide in [true, false] {
        for (op, fetch, word) in ops {
            // cmpxchg: once with r0 equal to memory (in the compared width), once not.
            let r0_choices: Vec<(&str, u64)> = match op {
                AOp::Cmpxchg if wide => {
                    vec![("equal", ATOMIC_MEM), ("different", ATOMIC_MEM ^ 1)]
                }
                // Only the low halves are compared: differing upper halves still match.
                AOp::Cmpxchg => vec![
                    ("equal", 0xaaaa_bbbb_0000_0000 | (ATOMIC_MEM & 0xffff_ffff)),
                    ("different", ATOMIC_MEM ^ 1),
                ],
                _ => vec![("", 0)],
            };
            for (variant, r0) in r0_choices {
                let (old, operand, mask) = if wide {
                    (ATOMIC_MEM, ATOMIC_SRC, u64::MAX)
                } else {
                    (
                        ATOMIC_MEM & 0xffff_ffff,
                        ATOMIC_SRC & 0xffff_ffff,
                        0xffff_ffff,
                    )
                };
                let new = match op {
                    AOp::Add => old.wrapping_add(operand) & mask,
                    AOp::Or => old | operand,
                    AOp::And => old & operand,
                    AOp::Xor => old ^ operand,
                    AOp::Xchg => operand,
                    AOp::Cmpxchg => {
                        if old == r0 & mask {
                            operand
                        } else {
                            old
                        }
                    }
                };
                let memory_after = (ATOMIC_MEM & !mask) | new;
                // The register that receives the fetched value, and what it holds after.
                let (fetch_reg, reg_after) = match op {
                    AOp::Cmpxchg => ("%r0", old),
                    _ if fetch => ("%r1", old),
                    _ => ("%r1", ATOMIC_SRC),
                };
                let w = if wide { "" } else { "32" };
                let f = if fetch && !matches!(op, AOp::Xchg | AOp::Cmpxchg) {
                    "fetch "
                } else {
                    ""
                };
                let mnemonic = format!("lock {f}{word}{w}");
                let base = format!(
                    "{}{word}{}",
                    if f.is_empty() { "" } else { "fetch-" },
                    if wide { "64" } else { "32" }
                );
                let base = if variant.is_empty() {
                    base
                } else {
                    format!("{base}/{variant}")
                };
                let prologue = [
                    format!("lddw %r2, {ATOMIC_MEM:#x}"),
                    "stxdw [%r10-8], %r2".to_string(),
                    format!("lddw %r1, {ATOMIC_SRC:#x}"),
                    format!("lddw %r0, {r0:#x}"),
                    format!("{mnemonic} [%r10-8], %r1"),
                ];
                let mut memory = prologue.to_vec();
                memory.push("ldxdw %r0, [%r10-8]".into());
                memory.push("exit".into());
                v.push(case(A, format!("{base}/memory"), memory.join("\n")).ok(memory_after, 7));
                let mut fetched = prologue.to_vec();
                fetched.push(format!("mov %r0, {fetch_reg}"));
                fetched.push("exit".into());
                v.push(case(A, format!("{base}/register"), fetched.join("\n")).ok(reg_after, 7));
            }
        }
    }
    // Bounds: atomics are writes, even those that would not change memory.
    v.push(
        case(A, "bounds/64/at-end", "lock add [%r1+16], %r2\nexit")
            .input(pattern(16))
            .trap(0, oob(INPUT + 16, 8, true))
            .after(Mem::Input, pattern(16)),
    );
    v.push(
        case(
            A,
            "bounds/64/straddling-end",
            "lock fetch add [%r1+8], %r2\nexit",
        )
        .input(pattern(12))
        .trap(0, oob(INPUT + 8, 8, true)),
    );
    v.push(
        case(A, "bounds/32/at-end", "lock xor32 [%r1+16], %r2\nexit")
            .input(pattern(16))
            .trap(0, oob(INPUT + 16, 4, true)),
    );
    v.push(
        case(
            A,
            "bounds/32/straddling-end",
            "lock xchg32 [%r1+4], %r2\nexit",
        )
        .input(pattern(6))
        .trap(0, oob(INPUT + 4, 4, true)),
    );
    v.push(case(A, "bounds/null", "lock or [%r1], %r2\nexit").trap(0, oob(0, 8, true)));
    v.push(
        case(A, "bounds/below-stack", "lock and [%r10-4616], %r1\nexit")
            .trap(0, oob(STACK - 8, 8, true)),
    );
    v.push(
        case(
            A,
            "bounds/in-bounds-last-word",
            "lock add32 [%r1+12], %r2\nldxw %r0, [%r1+12]\nexit",
        )
        .input([0u8; 16])
        .ok(16, 3)
        .after(Mem::Input, {
            let mut b = [0u8; 16];
            b[12] = 16;
            b
        }),
    );
    for (what, asm) in [
        ("add", "lock add [%r1], %r2"),
        ("fetch-or", "lock fetch or [%r1], %r2"),
        ("xchg32", "lock xchg32 [%r1], %r2"),
        (
            "cmpxchg-that-would-fail",
            "lddw %r0, 0x123\nlock cmpxchg [%r1], %r2",
        ),
    ] {
        let pc = if what.starts_with("cmpxchg") { 4 } else { 2 };
        let len = if what.ends_with("32") { 4 } else { 8 };
        v.push(
            case(
                A,
                format!("read-only/{what}"),
                format!("lddw %r1, 0x600000000\n{asm}\nexit"),
            )
            .read_only(pattern(16))
            .trap(pc, oob(EXTRA, len, true)),
        );
    }
    // Alignment, on the VM address (regions start 4 GiB-aligned).
    v.push(
        case(A, "misaligned/64/stack", "lock add [%r10-12], %r1\nexit").trap(
            0,
            TrapKind::MisalignedAtomic {
                addr: FP0 - 12,
                len: 8,
            },
        ),
    );
    v.push(
        case(
            A,
            "misaligned/32/stack",
            "lock fetch add32 [%r10-6], %r1\nexit",
        )
        .trap(
            0,
            TrapKind::MisalignedAtomic {
                addr: FP0 - 6,
                len: 4,
            },
        ),
    );
    v.push(
        case(A, "misaligned/32/input", "lock xchg32 [%r1+1], %r2\nexit")
            .input(pattern(16))
            .trap(
                0,
                TrapKind::MisalignedAtomic {
                    addr: INPUT + 1,
                    len: 4,
                },
            )
            .after(Mem::Input, pattern(16)),
    );
    v.push(
        case(
            A,
            "misaligned/64/4-aligned",
            "lock cmpxchg [%r1+4], %r2\nexit",
        )
        .input(pattern(16))
        .trap(
            0,
            TrapKind::MisalignedAtomic {
                addr: INPUT + 4,
                len: 8,
            },
        ),
    );
    v.push(
        case(
            A,
            "aligned/32/4-aligned",
            "lock add32 [%r1+4], %r2\nldxw %r0, [%r1+4]\nexit",
        )
        .input([0u8; 8])
        .ok(8, 3),
    );
    // The address is computed before the operand register receives the fetched value.
    v.push(
        case(
            A,
            "fetch-add/src-is-base",
            "lock fetch add [%r1], %r1\nmov %r0, %r1\nexit",
        )
        .input([5u8, 0, 0, 0, 0, 0, 0, 0])
        .ok(5, 3)
        .after(Mem::Input, (INPUT + 5).to_le_bytes()),
    );
    v.push(
        case(
            A,
            "xchg32/src-is-base",
            "lock xchg32 [%r1], %r1\nldxw %r2, [%r1]\nmov %r0, %r1\nexit",
        )
        .input([5u8, 0, 0, 0, 0, 0, 0, 0])
        .trap(1, oob(5, 4, false)),
    );
    v.push(
        case(
            A,
            "cmpxchg/src-is-r0/no-match",
            lines(&[
                "stdw [%r10-8], 7",
                "mov %r0, 9",
                "lock cmpxchg [%r10-8], %r0",
                "ldxdw %r1, [%r10-8]",
                "lsh %r0, 8",
                "or %r0, %r1",
                "exit",
            ]),
        )
        .ok(0x707, 7),
    );
    v.push(
        case(
            A,
            "cmpxchg/src-is-r0/match",
            lines(&[
                "stdw [%r10-8], 7",
                "mov %r0, 7",
                "lock cmpxchg [%r10-8], %r0",
                "ldxdw %r1, [%r10-8]",
                "lsh %r0, 8",
                "or %r0, %r1",
                "exit",
            ]),
        )
        .ok(0x707, 7),
    );
    // Bounds before alignment: a misaligned access outside every region is out of bounds,
    // and so is a misaligned one to read-only memory.
    v.push(
        case(
            A,
            "misaligned-and-out-of-bounds",
            "lock add [%r1+13], %r2\nexit",
        )
        .input(pattern(16))
        .trap(0, oob(INPUT + 13, 8, true)),
    );
    v.push(
        case(A, "misaligned-and-null", "lock add32 [%r1+2], %r2\nexit").trap(0, oob(2, 4, true)),
    );
    v.push(
        case(
            A,
            "misaligned-and-read-only",
            "lddw %r1, 0x600000000\nlock add [%r1+1], %r2\nexit",
        )
        .read_only(pattern(16))
        .trap(2, oob(EXTRA + 1, 8, true)),
    );
    v
}

// ----------------------------------------------------------------------------------------------
// Stack and local calls.

/// `lock add` of 1 at `r10 - 256 + (byte & 0xfc)`, with `byte` the input's first: an atomic
/// through a range of frame offsets (pcs 0-6).
const ATOMIC_THROUGH_A_RANGE: &str = "ldxb %r6, [%r1]\nand %r6, 0xfc\nmov %r4, %r10\n\
    sub %r4, 256\nadd %r6, %r4\nmov %r0, 1\nlock add [%r6+0], %r0";

fn stack() -> Vec<Case> {
    use Category::Stack as S;
    vec![
        case(S, "r10-at-entry", "mov %r0, %r10\nexit").ok(FP0, 2),
        case(S, "r10-at-entry/depth-2", "mov %r0, %r10\nexit")
            .depth(2)
            .ok(STACK + 3 * FRAME, 2),
        case(S, "r10-at-entry/depth-0", "mov %r0, %r10\nexit")
            .depth(0)
            .ok(STACK + FRAME, 2),
        case(S, "stack-is-zeroed", "ldxdw %r0, [%r10-8]\nexit").ok(0, 2),
        // Every run gets a fresh stack (the table runs each case twice on one Vm).
        case(
            S,
            "stack-fresh-per-run",
            "ldxdw %r0, [%r10-8]\nstdw [%r10-8], 1\nexit",
        )
        .ok(0, 3),
        case(
            S,
            "edge/r10-512",
            "stdw [%r10-512], 5\nldxdw %r0, [%r10-512]\nexit",
        )
        .ok(5, 3),
        // Frames tile one region: below the entry frame lies the next frame's memory, which
        // the program may use; only the region's ends are bounds.
        case(
            S,
            "edge/r10-513-at-depth-0",
            "stb [%r10-513], 7\nldxb %r0, [%r10-513]\nexit",
        )
        .ok(7, 3),
        case(
            S,
            "edge/r10-513-at-depth-0/depth-0",
            "ldxb %r0, [%r10-513]\nexit",
        )
        .depth(0)
        .trap(0, oob(STACK - 1, 1, false)),
        case(S, "edge/r10-plus-0", "ldxb %r0, [%r10]\nexit").trap(0, oob(FP0, 1, false)),
        case(S, "edge/r10-minus-4-dw", "stxdw [%r10-4], %r1\nexit").trap(0, oob(FP0 - 4, 8, true)),
        case(
            S,
            "edge/deepest-frame/r10-512",
            lines(&[
                "call local f",
                "exit",
                "f:",
                "call local g",
                "exit",
                "g:",
                "stdw [%r10-512], 3",
                "ldxdw %r0, [%r10-512]",
                "exit",
            ]),
        )
        .depth(2)
        .ok(3, 7),
        case(
            S,
            "edge/deepest-frame/r10-513",
            lines(&[
                "call local f",
                "exit",
                "f:",
                "call local g",
                "exit",
                "g:",
                "ldxb %r0, [%r10-513]",
                "exit",
            ]),
        )
        .depth(2)
        .trap(4, oob(STACK - 1, 1, false)),
        case(
            S,
            "callee-r10",
            lines(&["call local f", "exit", "f:", "mov %r0, %r10", "exit"]),
        )
        .ok(FP0 - FRAME, 4),
        case(
            S,
            "callee-r10/nested",
            lines(&[
                "call local f",
                "exit",
                "f:",
                "call local g",
                "exit",
                "g:",
                "mov %r0, %r10",
                "exit",
            ]),
        )
        .ok(FP0 - 2 * FRAME, 6),
        case(
            S,
            "r10-restored",
            lines(&[
                "mov %r6, %r10",
                "call local f",
                "mov %r0, %r10",
                "sub %r0, %r6",
                "exit",
                "f:",
                "mov %r0, 1",
                "exit",
            ]),
        )
        .ok(0, 7),
        case(
            S,
            "r10-restored/callee-overwrites-r10",
            lines(&[
                "call local f",
                "mov %r0, %r10",
                "exit",
                "f:",
                "mov %r10, 0",
                "exit",
            ]),
        )
        .ok(FP0, 5),
        case(
            S,
            "r6-r9-preserved",
            lines(&[
                "mov %r6, 6",
                "mov %r7, 7",
                "mov %r8, 8",
                "mov %r9, 9",
                "call local f",
                "mov %r0, %r6",
                "add %r0, %r7",
                "add %r0, %r8",
                "add %r0, %r9",
                "exit",
                "f:",
                "mov %r6, 60",
                "mov %r7, 70",
                "mov %r8, 80",
                "mov %r9, 90",
                "exit",
            ]),
        )
        .ok(30, 15),
        // Registers are not reset on a call: the callee starts with the caller's r6–r9.
        case(
            S,
            "callee-sees-callers-r6-r9",
            lines(&[
                "mov %r6, 6",
                "mov %r9, 9",
                "call local f",
                "exit",
                "f:",
                "mov %r0, %r6",
                "add %r0, %r9",
                "exit",
            ]),
        )
        .ok(15, 7),
        case(
            S,
            "arguments-r1-r5",
            lines(&[
                "mov %r1, 10",
                "mov %r2, 20",
                "mov %r3, 3",
                "mov %r4, 4",
                "mov %r5, 5",
                "call local f",
                "exit",
                "f:",
                "mov %r0, %r1",
                "add %r0, %r2",
                "add %r0, %r3",
                "add %r0, %r4",
                "add %r0, %r5",
                "exit",
            ]),
        )
        .ok(42, 13),
        // r1–r5 are caller-saved: after a local call they hold what the callee left.
        case(
            S,
            "r1-r5-not-restored",
            lines(&[
                "mov %r1, 1",
                "call local f",
                "mov %r0, %r1",
                "exit",
                "f:",
                "mov %r1, 42",
                "exit",
            ]),
        )
        .ok(42, 6),
        case(
            S,
            "write-callers-frame-through-r1",
            lines(&[
                "stdw [%r10-8], 1",
                "mov %r1, %r10",
                "add %r1, -8",
                "call local f",
                "ldxdw %r0, [%r10-8]",
                "exit",
                "f:",
                "stdw [%r1], 42",
                "exit",
            ]),
        )
        .ok(42, 8),
        // Frames are adjacent: the callee's [r10+504] is the caller's [r10-8].
        case(
            S,
            "callers-frame-is-above-r10",
            lines(&[
                "stdw [%r10-8], 77",
                "call local f",
                "exit",
                "f:",
                "ldxdw %r0, [%r10+504]",
                "exit",
            ]),
        )
        .ok(77, 5),
        case(
            S,
            "frames-distinct/caller-slot-kept",
            lines(&[
                "stdw [%r10-8], 1",
                "call local f",
                "ldxdw %r0, [%r10-8]",
                "exit",
                "f:",
                "stdw [%r10-8], 2",
                "exit",
            ]),
        )
        .ok(1, 6),
        case(
            S,
            "frames-distinct/callee-slot-fresh",
            lines(&[
                "stdw [%r10-8], 1",
                "call local f",
                "exit",
                "f:",
                "ldxdw %r0, [%r10-8]",
                "exit",
            ]),
        )
        .ok(0, 5),
        // Frames are zeroed once per run, not per call: a second call at the same depth sees
        // what the first left in the frame.
        case(
            S,
            "frames-not-rezeroed-per-call",
            lines(&[
                "call local f",
                "call local g",
                "exit",
                "f:",
                "stdw [%r10-8], 99",
                "exit",
                "g:",
                "ldxdw %r0, [%r10-8]",
                "exit",
            ]),
        )
        .ok(99, 7),
        // Tables on the stack indexed by bounded values: the JITs prove these in the frame
        // and skip the check, so each edge of the proof is a case.
        case(
            S,
            "table/masked-byte-index/top-entry",
            lines(&[
                "ldxb %r6, [%r1]",
                "and %r6, 0xf8",
                "mov %r4, %r10",
                "sub %r4, 256",
                "add %r6, %r4",
                "stdw [%r6], 7",
                "ldxdw %r0, [%r6]",
                "ldxdw %r1, [%r10-8]",
                "add %r0, %r1",
                "exit",
            ]),
        )
        .input([0xff])
        .ok(14, 10),
        case(
            S,
            "table/index-reaching-r10",
            lines(&[
                "ldxb %r6, [%r1]",
                "and %r6, 0xff",
                "add %r6, %r10",
                "sub %r6, 256",
                "ldxdw %r0, [%r6]",
                "exit",
            ]),
        )
        .input([0xff])
        .trap(4, oob(FP0 - 1, 8, false)),
        case(
            S,
            "table/subtracted-index",
            lines(&[
                "ldxb %r7, [%r1]",
                "and %r7, 0xf8",
                "mov %r5, %r10",
                "sub %r5, %r7",
                "stdw [%r5-8], 3",
                "ldxdw %r0, [%r10-16]",
                "exit",
            ]),
        )
        .input([8])
        .ok(3, 7),
        case(
            S,
            "table/in-a-callee-frame",
            lines(&[
                "ldxb %r1, [%r1]",
                "call local f",
                "ldxdw %r2, [%r10-8]",
                "add %r0, %r2",
                "exit",
                "f:",
                "and %r1, 0x38",
                "mov %r2, %r10",
                "sub %r2, 64",
                "add %r2, %r1",
                "stxdw [%r2], %r1",
                "ldxdw %r0, [%r2]",
                "exit",
            ]),
        )
        .input([0x3f])
        .ok(56, 12),
        case(
            S,
            "table/atomic-through-a-range/misaligned",
            lines(&[ATOMIC_THROUGH_A_RANGE, "exit"]),
        )
        .input([4])
        .trap(
            6,
            TrapKind::MisalignedAtomic {
                addr: FP0 - 252,
                len: 8,
            },
        ),
        case(
            S,
            "table/atomic-through-a-range/aligned",
            lines(&[ATOMIC_THROUGH_A_RANGE, "ldxdw %r0, [%r6]", "exit"]),
        )
        .input([8])
        .ok(1, 9),
        case(
            S,
            "return-value-in-r0",
            lines(&[
                "mov %r0, 1",
                "call local f",
                "add %r0, 1",
                "exit",
                "f:",
                "mov %r0, 41",
                "exit",
            ]),
        )
        .ok(42, 6),
    ]
}

// ----------------------------------------------------------------------------------------------
// Call depth.

/// `f(n) = n == 0 ? 0 : f(n - 1) + 1`, called from the entry with `n`: `n + 1` nested calls.
/// The recursive call is at pc 6.
fn recursion(n: u32) -> String {
    lines(&[
        &format!("mov %r1, {n}"),
        "call local f",
        "exit",
        "f:",
        "mov %r0, 0",
        "jeq %r1, 0, +3",
        "sub %r1, 1",
        "call local f",
        "add %r0, 1",
        "exit",
    ])
}

/// Instructions `recursion(n)` executes when it does not trap.
fn recursion_count(n: u64) -> u64 {
    2 + 6 * n + 3 + 1
}

fn call_depth() -> Vec<Case> {
    use Category::CallDepth as C;
    let exceeded = |max_depth| TrapKind::CallDepthExceeded { max_depth };
    vec![
        case(C, "default/8-nested-calls", recursion(7)).ok(7, recursion_count(7)),
        case(C, "default/9th-nested-call", recursion(8)).trap(6, exceeded(8)),
        case(C, "default/far-too-deep", recursion(1000)).trap(6, exceeded(8)),
        case(C, "depth-2/2-nested-calls", recursion(1))
            .depth(2)
            .ok(1, recursion_count(1)),
        case(C, "depth-2/3rd-nested-call", recursion(2))
            .depth(2)
            .trap(6, exceeded(2)),
        case(C, "depth-0/no-call", "mov %r0, 3\nexit")
            .depth(0)
            .ok(3, 2),
        case(C, "depth-0/first-call", recursion(0))
            .depth(0)
            .trap(1, exceeded(0)),
        // Depth is nesting, not the number of calls: many sequential calls are fine.
        case(
            C,
            "sequential-calls",
            lines(&[
                "mov %r6, 20",
                "loop:",
                "call local f",
                "sub %r6, 1",
                "jne %r6, 0, loop",
                "exit",
                "f:",
                "add %r0, 2",
                "exit",
            ]),
        )
        .depth(1)
        .ok(40, 1 + 20 * 5 + 1),
    ]
}

// ----------------------------------------------------------------------------------------------
// Budget.

/// A loop of `k` iterations: 3k + 3 instructions, r0 = 2k. The exit is at pc 5.
fn counted_loop(k: u32) -> String {
    lines(&[
        "mov %r0, 0",
        &format!("mov %r1, {k}"),
        "loop:",
        "add %r0, 2",
        "sub %r1, 1",
        "jne %r1, 0, loop",
        "exit",
    ])
}

/// r0 = 10 if the input's first byte is 0 (5 instructions), else 13 (8): a forward branch
/// at pc 2 over pcs 3-5.
const SIDE_EXIT: &str = "ldxb %r2, [%r1]\nmov %r0, 0\njeq %r2, 0, +3\nadd %r0, 1\nadd %r0, 1\n\
    add %r0, 1\nadd %r0, 10\nexit";

fn budget() -> Vec<Case> {
    use Category::Budget as B;
    let exhausted = |budget| TrapKind::BudgetExhausted { budget };
    let k = 10u32;
    let total = 3 * u64::from(k) + 3;
    let mut v = vec![
        case(B, "loop/unlimited", counted_loop(k)).ok(20, total),
        case(B, "loop/exact", counted_loop(k))
            .budget(total)
            .ok(20, total),
        case(B, "loop/generous", counted_loop(k))
            .budget(u64::MAX)
            .ok(20, total),
        case(B, "loop/one-short", counted_loop(k))
            .budget(total - 1)
            .trap(5, exhausted(total - 1)),
        case(B, "loop/two-short", counted_loop(k))
            .budget(total - 2)
            .trap(4, exhausted(total - 2)),
        case(B, "loop/three-short", counted_loop(k))
            .budget(total - 3)
            .trap(3, exhausted(total - 3)),
        case(B, "loop/four-short", counted_loop(k))
            .budget(total - 4)
            .trap(2, exhausted(total - 4)),
        case(B, "zero", counted_loop(k))
            .budget(0)
            .trap(0, exhausted(0)),
        case(B, "one", counted_loop(k))
            .budget(1)
            .trap(1, exhausted(1)),
        case(B, "two", counted_loop(k))
            .budget(2)
            .trap(2, exhausted(2)),
        case(B, "infinite-loop", "ja -1")
            .budget(1000)
            .trap(0, exhausted(1000)),
        case(
            B,
            "infinite-loop/conditional",
            "mov %r0, 0\nloop:\nadd %r0, 1\njne %r0, 0, loop\nexit",
        )
        .budget(1001)
        .trap(1, exhausted(1001)),
        // lddw counts once; pcs count slots.
        case(B, "lddw-counts-once", "lddw %r0, 0x1122334455667788\nexit")
            .budget(2)
            .ok(0x1122_3344_5566_7788, 2),
        case(
            B,
            "lddw-counts-once/short",
            "lddw %r0, 0x1122334455667788\nexit",
        )
        .budget(1)
        .trap(2, exhausted(1)),
        case(B, "lddw-pcs-are-slots", "lddw %r0, 1\nlddw %r1, 2\nexit")
            .budget(1)
            .trap(2, exhausted(1)),
        // A local call counts once, its callee's instructions count, and so does each exit.
        case(B, "local-call", "call local f\nexit\nf:\nmov %r0, 3\nexit")
            .budget(4)
            .ok(3, 4),
        case(
            B,
            "local-call/short-at-return",
            "call local f\nexit\nf:\nmov %r0, 3\nexit",
        )
        .budget(3)
        .trap(1, exhausted(3)),
        case(
            B,
            "local-call/short-in-callee",
            "call local f\nexit\nf:\nmov %r0, 3\nexit",
        )
        .budget(1)
        .trap(2, exhausted(1)),
        // A helper call counts once.
        case(B, "helper-call", "mov %r1, 5\ncall 5\nexit")
            .budget(3)
            .ok(5, 3),
        case(B, "helper-call/short", "mov %r1, 5\ncall 5\nexit")
            .budget(2)
            .trap(2, exhausted(2)),
        case(B, "helper-call/not-reached", "mov %r1, 5\ncall 2\nexit")
            .budget(1)
            .trap(1, exhausted(1)),
        // An instruction that cannot execute traps as such, budget or not.
        case(B, "fell-off-end-beats-budget", "mov %r0, 1")
            .budget(1)
            .trap(1, invalid(InvalidReason::FellOffEnd)),
        case(B, "invalid-beats-budget", "lddw %r1, map_fd 1\nexit")
            .budget(0)
            .trap(0, invalid(InvalidReason::UnsupportedLddw)),
        case(B, "exit-counts", "exit").budget(1).ok(0, 1),
        case(B, "exit-counts/short", "exit")
            .budget(0)
            .trap(0, exhausted(0)),
        // A forward branch's not-taken side (pcs 3-5) may be charged with the code before it
        // (the x86 JIT's chains): taken or not, short or not, the counts stay exact.
        case(B, "side-exit/taken/exact", SIDE_EXIT)
            .input([0])
            .budget(5)
            .ok(10, 5),
        case(B, "side-exit/taken/one-short", SIDE_EXIT)
            .input([0])
            .budget(4)
            .trap(7, exhausted(4)),
        case(B, "side-exit/taken/short-at-branch", SIDE_EXIT)
            .input([0])
            .budget(2)
            .trap(2, exhausted(2)),
        case(B, "side-exit/not-taken/exact", SIDE_EXIT)
            .input([1])
            .budget(8)
            .ok(13, 8),
        case(B, "side-exit/not-taken/short-inside", SIDE_EXIT)
            .input([1])
            .budget(4)
            .trap(4, exhausted(4)),
    ];
    // Exact counts for several loop lengths, at the budget and one below.
    for k in [1u32, 2, 7, 100] {
        let n = 3 * u64::from(k) + 3;
        v.push(
            case(B, format!("loop-{k}/exact"), counted_loop(k))
                .budget(n)
                .ok(2 * u64::from(k), n),
        );
        v.push(
            case(B, format!("loop-{k}/one-short"), counted_loop(k))
                .budget(n - 1)
                .trap(5, exhausted(n - 1)),
        );
    }
    v
}

// ----------------------------------------------------------------------------------------------
// Helpers.

fn helper_calls() -> Vec<Case> {
    use Category::Helper as H;
    let unknown = |id| TrapKind::UnknownHelper { id };
    let failed = || TrapKind::HelperFailed {
        id: H_FAIL,
        message: FAIL_MESSAGE.to_string(),
    };
    let input = pattern(16);
    let first8 = le(&input[..8]);
    vec![
        case(
            H,
            "arguments",
            "mov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\nmov %r5, 5\ncall 1\nexit",
        )
        .ok(15, 7),
        case(
            H,
            "result-replaces-r0",
            "mov %r0, 99\nmov %r1, 7\ncall 5\nexit",
        )
        .ok(7, 4),
        case(
            H,
            "r1-r5-zeroed-after-call",
            lines(&[
                "mov %r1, 1",
                "mov %r2, 2",
                "mov %r3, 3",
                "mov %r4, 4",
                "mov %r5, 5",
                "call 1",
                "mov %r0, %r1",
                "or %r0, %r2",
                "or %r0, %r3",
                "or %r0, %r4",
                "or %r0, %r5",
                "exit",
            ]),
        )
        .ok(0, 12),
        case(
            H,
            "r1-r5-zeroed-after-callx",
            lines(&[
                "mov %r1, 1",
                "mov %r5, 5",
                "mov %r6, 1",
                "call %r6",
                "mov %r0, %r1",
                "or %r0, %r5",
                "exit",
            ]),
        )
        .ok(0, 7),
        case(
            H,
            "r6-r9-preserved",
            lines(&[
                "mov %r6, 6",
                "mov %r7, 7",
                "mov %r8, 8",
                "mov %r9, 9",
                "call 1",
                "mov %r0, %r6",
                "add %r0, %r7",
                "add %r0, %r8",
                "add %r0, %r9",
                "exit",
            ]),
        )
        .ok(30, 10),
        case(
            H,
            "r10-preserved",
            "mov %r6, %r10\ncall 1\nmov %r0, %r10\nsub %r0, %r6\nexit",
        )
        .ok(0, 5),
        case(H, "failed", "mov %r0, 1\ncall 2\nmov %r0, 2\nexit").trap(1, failed()),
        case(H, "failed/callx", "mov %r6, 2\ncall %r6\nexit").trap(1, failed()),
        case(
            H,
            "failed/in-callee",
            "call local f\nexit\nf:\nmov %r0, 1\ncall 2\nexit",
        )
        .trap(3, failed()),
        case(H, "unknown/999", "call 999\nexit").trap(0, unknown(999)),
        case(H, "unknown/0", "mov %r0, 1\ncall 0\nexit").trap(1, unknown(0)),
        case(H, "unknown/max-i32", "call 0x7fffffff\nexit").trap(0, unknown(0x7fff_ffff)),
        case(H, "unknown/minus-1-is-u32-max", "call -1\nexit").trap(0, unknown(0xffff_ffff)),
        case(H, "unknown/callx", "mov %r6, 999\ncall %r6\nexit").trap(1, unknown(999)),
        // callx names the helper by the register's full value: 2^32 + 1 is not helper 1.
        case(
            H,
            "unknown/callx-above-u32",
            "lddw %r6, 0x100000001\ncall %r6\nexit",
        )
        .trap(2, unknown(0x1_0000_0001)),
        case(H, "unknown/callx-minus-1", "mov %r6, -1\ncall %r6\nexit").trap(1, unknown(u64::MAX)),
        case(H, "callx", "mov %r1, 7\nmov %r6, 5\ncall %r6\nexit").ok(7, 4),
        case(H, "callx/id-in-r1", "mov %r1, 5\ncall %r1\nexit").ok(5, 3),
        case(
            H,
            "callx/r0",
            "mov %r0, 1\nmov %r1, 2\nmov %r2, 3\ncall %r0\nexit",
        )
        .ok(5, 5),
        case(H, "memory/read-input", "call 3\nexit")
            .input(input.clone())
            .ok(first8, 2),
        case(H, "memory/read-input-last-8", "add %r1, 8\ncall 3\nexit")
            .input(input.clone())
            .ok(le(&input[8..]), 3),
        case(H, "memory/read-straddling-end", "add %r1, 12\ncall 3\nexit")
            .input(input.clone())
            .trap(1, oob(INPUT + 12, 8, false)),
        case(H, "memory/read-null", "call 3\nexit").trap(0, oob(0, 8, false)),
        case(
            H,
            "memory/read-stack",
            "stdw [%r10-8], 1234\nmov %r1, %r10\nadd %r1, -8\ncall 3\nexit",
        )
        .ok(1234, 5),
        case(H, "memory/read-length-exact", "mov %r2, 16\ncall 6\nexit")
            .input(input.clone())
            .ok(input.iter().map(|&b| u64::from(b)).sum(), 3),
        case(
            H,
            "memory/read-length-one-over",
            "mov %r2, 17\ncall 6\nexit",
        )
        .input(input.clone())
        .trap(1, oob(INPUT, 17, false)),
        case(
            H,
            "memory/write-input",
            "mov %r6, %r1\nlddw %r2, 0x0102030405060708\ncall 4\nldxdw %r0, [%r6]\nexit",
        )
        .input(input.clone())
        .ok(0x0102_0304_0506_0708, 5)
        .after(Mem::Input, {
            let mut b = input.clone();
            b[..8].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
            b
        }),
        case(
            H,
            "memory/write-stack",
            "mov %r1, %r10\nadd %r1, -8\nmov %r2, 77\ncall 4\nldxdw %r0, [%r10-8]\nexit",
        )
        .ok(77, 6),
        case(
            H,
            "memory/write-straddling-end",
            "add %r1, 12\nmov %r2, -1\ncall 4\nexit",
        )
        .input(input.clone())
        .trap(2, oob(INPUT + 12, 8, true))
        .after(Mem::Input, input.clone()),
        case(
            H,
            "memory/write-read-only",
            "lddw %r1, 0x600000000\ncall 4\nexit",
        )
        .read_only(pattern(16))
        .trap(2, oob(EXTRA, 8, true)),
        case(
            H,
            "memory/write-run-region",
            "lddw %r1, 0x600000000\nmov %r2, 5\ncall 4\nexit",
        )
        .region_mut([0u8; 8])
        .ok(0, 4)
        .after(Mem::RunRegion(0), [5u8, 0, 0, 0, 0, 0, 0, 0]),
        case(H, "memory/read-metadata", "call 3\nexit")
            .metadata_buffer(input.clone())
            .ok(first8, 2),
        case(
            H,
            "memory/trap-in-callee-at-call-pc",
            "call local f\nexit\nf:\ncall 3\nexit",
        )
        .trap(2, oob(0, 8, false)),
    ]
}

// ----------------------------------------------------------------------------------------------
// Instructions that cannot execute.

fn invalid_instructions() -> Vec<Case> {
    use Category::Invalid as I;
    use InvalidReason::*;
    vec![
        case(I, "ja/past-end", "ja +5\nexit").trap(0, invalid(TargetOutOfRange)),
        case(I, "ja/before-start", "ja -2\nexit").trap(0, invalid(TargetOutOfRange)),
        case(I, "ja/to-length", "mov %r0, 1\nja +0").trap(1, invalid(TargetOutOfRange)),
        case(I, "ja32/past-end", "ja32 +100\nexit").trap(0, invalid(TargetOutOfRange)),
        case(
            I,
            "jeq/taken-out-of-range",
            "mov %r0, 1\njeq %r0, 1, +10\nexit",
        )
        .trap(1, invalid(TargetOutOfRange)),
        case(
            I,
            "jeq/not-taken-out-of-range",
            "mov %r0, 1\njeq %r0, 2, +10\nexit",
        )
        .ok(1, 3),
        case(
            I,
            "jne32/taken-before-start",
            "mov %r0, 1\njne32 %r0, 0, -5\nexit",
        )
        .trap(1, invalid(TargetOutOfRange)),
        case(I, "jgt/taken-to-length", "mov %r0, 2\njgt %r0, 1, +1\nexit")
            .trap(1, invalid(TargetOutOfRange)),
        case(I, "fell-off-end", "mov %r0, 1").trap(1, invalid(FellOffEnd)),
        case(
            I,
            "fell-off-end/after-jump",
            "mov %r0, 1\nja +1\nexit\nmov %r0, 2",
        )
        .trap(4, invalid(FellOffEnd)),
        case(I, "fell-off-end/after-lddw", "lddw %r0, 5").trap(2, invalid(FellOffEnd)),
        case(
            I,
            "fell-off-end/after-call-returns",
            "ja +1\nexit\ncall local -2",
        )
        .trap(3, invalid(FellOffEnd)),
        case(I, "empty-program", "").trap(0, invalid(FellOffEnd)),
        case(I, "lddw-tail/ja", "ja +1\nlddw %r0, 1\nexit").trap(2, invalid(LddwTail)),
        case(
            I,
            "lddw-tail/jeq",
            "mov %r0, 0\njeq %r0, 0, +1\nlddw %r0, 1\nexit",
        )
        .trap(3, invalid(LddwTail)),
        case(
            I,
            "lddw-tail/call-local",
            "call local +1\nlddw %r0, 1\nexit",
        )
        .trap(2, invalid(LddwTail)),
        case(
            I,
            "lddw-tail/not-reached",
            "ja +2\nlddw %r0, 1\nmov %r0, 7\nexit",
        )
        .ok(7, 3),
        case(
            I,
            "lddw-pseudo/map-fd",
            "mov %r0, 1\nlddw %r1, map_fd 3\nexit",
        )
        .trap(1, invalid(UnsupportedLddw)),
        case(I, "lddw-pseudo/map-value", "lddw %r1, map_value 3\nexit")
            .trap(0, invalid(UnsupportedLddw)),
        case(I, "lddw-pseudo/var-addr", "lddw %r1, var_addr 3\nexit")
            .trap(0, invalid(UnsupportedLddw)),
        case(I, "lddw-pseudo/code", "lddw %r1, code 3\nexit").trap(0, invalid(UnsupportedLddw)),
        case(I, "lddw-pseudo/map-idx", "lddw %r1, map_idx 3\nexit")
            .trap(0, invalid(UnsupportedLddw)),
        case(
            I,
            "lddw-pseudo/map-idx-value",
            "lddw %r1, map_idx_value 3\nexit",
        )
        .trap(0, invalid(UnsupportedLddw)),
        case(
            I,
            "lddw-pseudo/not-reached",
            "ja +2\nlddw %r1, map_fd 3\nmov %r0, 7\nexit",
        )
        .ok(7, 3),
        case(I, "kfunc", "mov %r0, 1\ncall runtime 5\nexit").trap(1, invalid(UnsupportedCall)),
        case(I, "call-local/past-end", "call local +10\nexit").trap(0, invalid(TargetOutOfRange)),
        case(I, "call-local/before-start", "call local -5\nexit")
            .trap(0, invalid(TargetOutOfRange)),
        case(I, "call-local/to-length", "call local +0").trap(0, invalid(TargetOutOfRange)),
    ]
}

// ----------------------------------------------------------------------------------------------
// Legacy packet loads.

fn packet_loads() -> Vec<Case> {
    use Category::Packet as P;
    let pkt = [0x11u8, 0x22, 0x33, 0x44, 0x55, 0x66];
    vec![
        case(P, "ldabsb/0", "ldabsb 0\nexit").input(pkt).ok(0x11, 2),
        case(P, "ldabsb/last", "ldabsb 5\nexit")
            .input(pkt)
            .ok(0x66, 2),
        case(P, "ldabsb/at-end", "ldabsb 6\nexit")
            .input(pkt)
            .trap(0, oob(INPUT + 6, 1, false)),
        case(P, "ldabsh/big-endian", "ldabsh 0\nexit")
            .input(pkt)
            .ok(0x1122, 2),
        case(P, "ldabsh/last", "ldabsh 4\nexit")
            .input(pkt)
            .ok(0x5566, 2),
        case(P, "ldabsh/straddling-end", "ldabsh 5\nexit")
            .input(pkt)
            .trap(0, oob(INPUT + 5, 2, false)),
        case(P, "ldabsw/big-endian", "ldabsw 0\nexit")
            .input(pkt)
            .ok(0x1122_3344, 2),
        case(P, "ldabsw/last", "ldabsw 2\nexit")
            .input(pkt)
            .ok(0x3344_5566, 2),
        case(P, "ldabsw/straddling-end", "ldabsw 3\nexit")
            .input(pkt)
            .trap(0, oob(INPUT + 3, 4, false)),
        case(P, "ldabsw/len-2-of-4", "ldabsw 2\nexit")
            .input([1u8, 2, 3, 4])
            .trap(0, oob(INPUT + 2, 4, false)),
        case(P, "ldabsw/negative-imm", "ldabsw -1\nexit")
            .input(pkt)
            .trap(0, oob(INPUT + 0xffff_ffff, 4, false)),
        case(P, "ldabsb/no-input", "ldabsb 0\nexit").trap(0, oob(INPUT, 1, false)),
        case(
            P,
            "ldindb/register-offset",
            "mov %r2, 3\nldindb %r2, 1\nexit",
        )
        .input(pkt)
        .ok(0x55, 3),
        case(
            P,
            "ldindh/register-offset",
            "mov %r2, 2\nldindh %r2, 1\nexit",
        )
        .input(pkt)
        .ok(0x4455, 3),
        case(P, "ldindw/negative-imm", "mov %r2, 2\nldindw %r2, -2\nexit")
            .input(pkt)
            .ok(0x1122_3344, 3),
        case(
            P,
            "ldindw/straddling-end",
            "mov %r2, 2\nldindw %r2, 1\nexit",
        )
        .input(pkt)
        .trap(1, oob(INPUT + 3, 4, false)),
        // The offset is 32-bit: the register's upper half is ignored.
        case(
            P,
            "ldindb/offset-is-32-bit",
            "lddw %r2, 0x100000002\nldindb %r2, 0\nexit",
        )
        .input(pkt)
        .ok(0x33, 3),
        case(
            P,
            "ldindb/wraps-at-32-bits",
            "mov %r2, -1\nldindb %r2, 1\nexit",
        )
        .input(pkt)
        .ok(0x11, 3),
        case(
            P,
            "ldindb/negative-total",
            "mov %r2, 0\nldindb %r2, -1\nexit",
        )
        .input(pkt)
        .trap(1, oob(INPUT + 0xffff_ffff, 1, false)),
        // The result replaces all of r0; no other register changes.
        case(P, "replaces-r0", "lddw %r0, -1\nldabsb 0\nexit")
            .input(pkt)
            .ok(0x11, 3),
        case(
            P,
            "other-registers-kept",
            "mov %r2, 7\nmov %r5, 9\nldabsb 1\nadd %r0, %r2\nadd %r0, %r5\nexit",
        )
        .input(pkt)
        .ok(0x22 + 16, 6),
        // Packet loads read the input, not what r1 points to.
        case(P, "reads-input-with-metadata", "ldabsh 1\nexit")
            .input(pkt)
            .meta(16, 0, 8)
            .ok(0x2233, 2),
        case(
            P,
            "reads-input-after-r1-changes",
            "mov %r1, 0\nldabsb 2\nexit",
        )
        .input(pkt)
        .ok(0x33, 3),
    ]
}

// ----------------------------------------------------------------------------------------------
// Division.

fn division() -> Vec<Case> {
    use Category::Division as D;
    let min64 = i64::MIN as u64;
    let prog = |setup: &str, op: &str| format!("{setup}\n{op}\nexit");
    let mut v = Vec::new();
    let mut add = |name: &str, setup: &str, op: &str, r0: u64| {
        let insns = setup.lines().count() as u64 + 2;
        v.push(case(D, name, prog(setup, op)).ok(r0, insns));
    };
    // By zero, immediate and register, every width and signedness.
    add("div64/zero-imm", "mov %r0, 7", "div %r0, 0", 0);
    add(
        "div64/zero-reg",
        "mov %r0, 7\nmov %r1, 0",
        "div %r0, %r1",
        0,
    );
    add("mod64/zero-imm", "mov %r0, 7", "mod %r0, 0", 7);
    add(
        "mod64/zero-reg",
        "lddw %r0, 0xdeadbeef00000007\nmov %r1, 0",
        "mod %r0, %r1",
        0xdead_beef_0000_0007,
    );
    add("sdiv64/zero-imm", "mov %r0, -7", "sdiv %r0, 0", 0);
    add(
        "sdiv64/zero-reg",
        "mov %r0, -7\nmov %r1, 0",
        "sdiv %r0, %r1",
        0,
    );
    add(
        "smod64/zero-imm",
        "mov %r0, -7",
        "smod %r0, 0",
        -7i64 as u64,
    );
    add(
        "smod64/zero-reg",
        "mov %r0, -7\nmov %r1, 0",
        "smod %r0, %r1",
        -7i64 as u64,
    );
    add(
        "div32/zero-imm",
        "lddw %r0, 0xdeadbeef00000007",
        "div32 %r0, 0",
        0,
    );
    add(
        "div32/zero-reg",
        "lddw %r0, 0xdeadbeef00000007\nmov %r1, 0",
        "div32 %r0, %r1",
        0,
    );
    // 32-bit modulo by zero leaves the low half and zeroes the upper half.
    add(
        "mod32/zero-imm",
        "lddw %r0, 0xdeadbeef00000007",
        "mod32 %r0, 0",
        7,
    );
    add(
        "mod32/zero-reg",
        "lddw %r0, 0xdeadbeef00000007\nmov %r1, 0",
        "mod32 %r0, %r1",
        7,
    );
    add(
        "sdiv32/zero-imm",
        "lddw %r0, 0xdeadbeeffffffff9",
        "sdiv32 %r0, 0",
        0,
    );
    add(
        "smod32/zero-imm",
        "lddw %r0, 0xdeadbeeffffffff9",
        "smod32 %r0, 0",
        0xffff_fff9,
    );
    add(
        "smod32/zero-reg",
        "lddw %r0, 0xdeadbeeffffffff9\nmov %r1, 0",
        "smod32 %r0, %r1",
        0xffff_fff9,
    );
    // A divisor register with a zero low half is zero for the 32-bit forms.
    add(
        "div32/upper-half-divisor",
        "mov %r0, 9\nlddw %r1, 0x100000000",
        "div32 %r0, %r1",
        0,
    );
    add(
        "mod32/upper-half-divisor",
        "mov %r0, 9\nlddw %r1, 0x100000000",
        "mod32 %r0, %r1",
        9,
    );
    // INT_MIN / -1 and INT_MIN % -1.
    add(
        "sdiv64/min-by-minus-1-imm",
        "lddw %r0, 0x8000000000000000",
        "sdiv %r0, -1",
        min64,
    );
    add(
        "sdiv64/min-by-minus-1-reg",
        "lddw %r0, 0x8000000000000000\nmov %r1, -1",
        "sdiv %r0, %r1",
        min64,
    );
    add(
        "smod64/min-by-minus-1-imm",
        "lddw %r0, 0x8000000000000000",
        "smod %r0, -1",
        0,
    );
    add(
        "smod64/min-by-minus-1-reg",
        "lddw %r0, 0x8000000000000000\nmov %r1, -1",
        "smod %r0, %r1",
        0,
    );
    add(
        "sdiv32/min-by-minus-1-imm",
        "mov32 %r0, 0x80000000",
        "sdiv32 %r0, -1",
        0x8000_0000,
    );
    add(
        "sdiv32/min-by-minus-1-reg",
        "mov32 %r0, 0x80000000\nmov %r1, -1",
        "sdiv32 %r0, %r1",
        0x8000_0000,
    );
    add(
        "smod32/min-by-minus-1-imm",
        "mov32 %r0, 0x80000000",
        "smod32 %r0, -1",
        0,
    );
    add(
        "smod32/min-by-minus-1-reg",
        "mov32 %r0, 0x80000000\nmov %r1, -1",
        "smod32 %r0, %r1",
        0,
    );
    // Signs: the remainder takes the dividend's sign; division truncates toward zero.
    add(
        "smod64/negative-dividend",
        "mov %r0, -7",
        "smod %r0, 2",
        -1i64 as u64,
    );
    add("smod64/negative-divisor", "mov %r0, 7", "smod %r0, -2", 1);
    add(
        "sdiv64/truncates",
        "mov %r0, -7",
        "sdiv %r0, 2",
        -3i64 as u64,
    );
    add(
        "sdiv32/negative",
        "mov32 %r0, -7",
        "sdiv32 %r0, 2",
        0xffff_fffd,
    );
    add(
        "smod32/negative",
        "mov32 %r0, -7",
        "smod32 %r0, 2",
        0xffff_ffff,
    );
    // Unsigned forms see the immediate sign-extended (64) or as 32 bits (32).
    add("div64/imm-minus-1", "mov %r0, -1", "div %r0, -1", 1);
    add(
        "div64/imm-minus-1-small-dividend",
        "mov %r0, 5",
        "div %r0, -1",
        0,
    );
    add("mod64/imm-minus-1", "mov %r0, 5", "mod %r0, -1", 5);
    add("div32/imm-minus-1", "mov32 %r0, -1", "div32 %r0, -1", 1);
    add(
        "div32/operands-are-low-halves",
        "lddw %r0, 0x700000010",
        "div32 %r0, 4",
        4,
    );
    v
}

// ----------------------------------------------------------------------------------------------
// Entry registers and metadata modes (rbpf's four kinds of VM).

fn entry() -> Vec<Case> {
    use Category::Entry as E;
    let pkt = [0x10u8, 0x21, 0x32, 0x43, 0x54, 0x65];
    let bounds_checked = lines(&[
        "ldxdw %r2, [%r1+8]",
        "ldxdw %r3, [%r1+16]",
        "mov %r0, 0",
        "mov %r4, %r2",
        "add %r4, 6",
        "jgt %r4, %r3, +1",
        "ldxb %r0, [%r2+5]",
        "exit",
    ]);
    let data_len = "ldxdw %r2, [%r1+8]\nldxdw %r0, [%r1+16]\nsub %r0, %r2\nexit";
    let mut mbuff_after = Vec::new();
    mbuff_after.extend_from_slice(&INPUT.to_le_bytes());
    mbuff_after.extend_from_slice(&(INPUT + 6).to_le_bytes());
    mbuff_after.extend_from_slice(&pattern(24)[16..]);
    vec![
        case(E, "r0-is-zero", "exit").input(pkt).ok(0, 1),
        case(
            E,
            "r3-r9-are-zero",
            lines(&[
                "mov %r0, %r3",
                "or %r0, %r4",
                "or %r0, %r5",
                "or %r0, %r6",
                "or %r0, %r7",
                "or %r0, %r8",
                "or %r0, %r9",
                "exit",
            ]),
        )
        .input(pkt)
        .ok(0, 8),
        // Raw (rbpf's EbpfVmRaw): r1 = the input, r2 = its length.
        case(E, "raw/r1", "mov %r0, %r1\nexit")
            .input(pkt)
            .ok(INPUT, 2),
        case(E, "raw/r2", "mov %r0, %r2\nexit").input(pkt).ok(6, 2),
        case(E, "raw/read", "ldxh %r0, [%r1+4]\nexit")
            .input(pkt)
            .ok(0x6554, 2),
        // No data (EbpfVmNoData): r1 = r2 = 0, nothing mapped but the stack.
        case(E, "no-data/r1", "mov %r0, %r1\nexit").ok(0, 2),
        case(E, "no-data/r2", "mov %r0, %r2\nexit").ok(0, 2),
        case(
            E,
            "no-data/input-unmapped",
            "lddw %r1, 0x400000000\nldxb %r0, [%r1]\nexit",
        )
        .trap(2, oob(INPUT, 1, false)),
        // Fixed metadata buffer (EbpfVmFixedMbuff): a fresh buffer holding data/data_end.
        case(E, "fixed-mbuff/r1", "mov %r0, %r1\nexit")
            .input(pkt)
            .meta(32, 8, 16)
            .ok(META, 2),
        case(E, "fixed-mbuff/r2", "mov %r0, %r2\nexit")
            .input(pkt)
            .meta(32, 8, 16)
            .ok(32, 2),
        case(E, "fixed-mbuff/data", "ldxdw %r0, [%r1+8]\nexit")
            .input(pkt)
            .meta(32, 8, 16)
            .ok(INPUT, 2),
        case(E, "fixed-mbuff/data-end", "ldxdw %r0, [%r1+16]\nexit")
            .input(pkt)
            .meta(32, 8, 16)
            .ok(INPUT + 6, 2),
        case(E, "fixed-mbuff/data-end-minus-data", data_len)
            .input(pkt)
            .meta(32, 8, 16)
            .ok(6, 4),
        case(
            E,
            "fixed-mbuff/rest-zero",
            "ldxdw %r0, [%r1]\nldxdw %r2, [%r1+24]\nor %r0, %r2\nexit",
        )
        .input(pkt)
        .meta(32, 8, 16)
        .ok(0, 4),
        case(E, "fixed-mbuff/bounds-checked-read", bounds_checked.clone())
            .input(pkt)
            .meta(32, 8, 16)
            .ok(0x65, 8),
        case(E, "fixed-mbuff/bounds-check-fails", bounds_checked.clone())
            .input(&pkt[..5])
            .meta(32, 8, 16)
            .ok(0, 7),
        case(E, "fixed-mbuff/end-of-buffer", "ldxb %r0, [%r1+32]\nexit")
            .input(pkt)
            .meta(32, 8, 16)
            .trap(0, oob(META + 32, 1, false)),
        case(E, "fixed-mbuff/layout-exactly-fits", data_len)
            .input(pkt)
            .meta(24, 8, 16)
            .ok(6, 4),
        // The buffer the VM allocates is fresh for every run (each case runs twice).
        case(
            E,
            "fixed-mbuff/fresh-per-run",
            lines(&[
                "ldxdw %r0, [%r1+24]",
                "stdw [%r1+24], 1",
                "stdw [%r1+8], 0",
                "exit",
            ]),
        )
        .input(pkt)
        .meta(32, 8, 16)
        .ok(0, 4),
        case(
            E,
            "fixed-mbuff/data-rewritten-per-run",
            "ldxdw %r0, [%r1+8]\nstdw [%r1+8], 0\nexit",
        )
        .input(pkt)
        .meta(32, 8, 16)
        .ok(INPUT, 3),
        case(E, "fixed-mbuff/no-input", data_len)
            .meta(32, 8, 16)
            .ok(0, 4),
        case(
            E,
            "fixed-mbuff/no-input-read",
            "ldxdw %r2, [%r1+8]\nldxb %r0, [%r2]\nexit",
        )
        .meta(32, 8, 16)
        .trap(1, oob(0, 1, false)),
        case(E, "fixed-mbuff/empty-input", data_len)
            .input([])
            .meta(32, 8, 16)
            .ok(0, 4),
        // Caller's metadata buffer (EbpfVmMbuff): r1 = the buffer, r2 = its length.
        case(E, "mbuff/r1", "mov %r0, %r1\nexit")
            .input(pkt)
            .metadata_buffer(pattern(16))
            .ok(META, 2),
        case(E, "mbuff/r2", "mov %r0, %r2\nexit")
            .input(pkt)
            .metadata_buffer(pattern(16))
            .ok(16, 2),
        case(E, "mbuff/read", "ldxw %r0, [%r1+4]\nexit")
            .input(pkt)
            .metadata_buffer(pattern(16))
            .ok(le(&pattern(16)[4..8]), 2),
        case(E, "mbuff/write-visible-to-caller", "stb [%r1+15], 1\nexit")
            .metadata_buffer(pattern(16))
            .ok(0, 2)
            .after(Mem::Metadata, {
                let mut b = pattern(16);
                b[15] = 1;
                b
            }),
        case(
            E,
            "mbuff/input-still-mapped",
            "lddw %r1, 0x400000000\nldxb %r0, [%r1+1]\nexit",
        )
        .input(pkt)
        .metadata_buffer(pattern(16))
        .ok(0x21, 3),
        // Caller's buffer and a layout: the VM writes the addresses into the caller's buffer.
        case(
            E,
            "mbuff-with-layout/r2-is-callers-length",
            "mov %r0, %r2\nexit",
        )
        .input(pkt)
        .meta(16, 0, 8)
        .metadata_buffer(pattern(24))
        .ok(24, 2)
        .after(Mem::Metadata, mbuff_after.clone()),
        case(
            E,
            "mbuff-with-layout/data-end-minus-data",
            lines(&[
                "ldxdw %r2, [%r1]",
                "ldxdw %r0, [%r1+8]",
                "sub %r0, %r2",
                "exit",
            ]),
        )
        .input(pkt)
        .meta(16, 0, 8)
        .metadata_buffer(pattern(24))
        .ok(6, 4),
        case(E, "mbuff-with-layout/buffer-too-short", "mov %r0, 1\nexit")
            .input(pkt)
            .meta(32, 8, 16)
            .metadata_buffer(pattern(12))
            .trap(0, oob(META + 8, 8, true)),
        case(
            E,
            "mbuff-with-layout/buffer-too-short-for-end",
            "mov %r0, 1\nexit",
        )
        .input(pkt)
        .meta(32, 8, 16)
        .metadata_buffer(pattern(20))
        .trap(0, oob(META + 16, 8, true)),
    ]
}
