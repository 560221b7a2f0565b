//! Programs and run setups built from fuzz bytes, with `arbitrary::Unstructured`.
//!
//! - [`wild_program`]: any instruction of any form of the table (so a new row is fuzzed without
//!   a change here), with operands biased towards what finds bugs — jump and call targets
//!   inside the program (and sometimes not), pointers into every region and near its ends,
//!   registered and unknown helpers, boundary immediates. Such programs trap as often as they
//!   exit, which is the point: every trap must be the same on every engine.
//! - [`structured_program`]: `ebpf-testgen`'s runnable programs (loops, calls, in-bounds
//!   memory), drawn with a generator seeded by the fuzz bytes.
//! - [`setup`]: the memory and limits of a run: budget, call depth, input, metadata buffer and
//!   layout, data images, extra regions.
//! - [`entry`]: what the JITs' facts may assume at entry, made to fit a setup (or not).
//!
//! Everything here reads fixed-size fields with [`Unstructured::bytes`] or picks with
//! [`Unstructured::int_in_range`]; running out of bytes gives the smallest choice (zeros), so
//! any byte string is an input.

use std::cell::RefCell;

use arbitrary::{Result, Unstructured};
use ebpf_abi::{Limits, MAX_CALL_DEPTH, layout};
use ebpf_cfg::facts::{Arg, Entry, MetadataFields, RegionSpec};
use ebpf_isa::table::{Form, SPECS};
use ebpf_isa::{CallKind, Imm64Kind, Insn, Program, Reg};
use ebpf_testgen::{INTERESTING_I16, INTERESTING_I32, INTERESTING_U64};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::engines::{Metadata, Setup};
use crate::recent::Recent;

/// A little-endian `u16` from the next two bytes (zeros past the end).
pub fn u16_le(u: &mut Unstructured<'_>) -> Result<u16> {
    let mut b = [0u8; 2];
    let got = u.bytes(u.len().min(2))?;
    b[..got.len()].copy_from_slice(got);
    Ok(u16::from_le_bytes(b))
}

/// The next byte (0 past the end).
pub fn byte(u: &mut Unstructured<'_>) -> Result<u8> {
    Ok(u.bytes(u.len().min(1))?.first().copied().unwrap_or(0))
}

/// Up to `max` bytes: a length from the next two bytes, then that many bytes (fewer if the
/// input ends).
pub fn buffer(u: &mut Unstructured<'_>, max: usize) -> Result<Vec<u8>> {
    let len = usize::from(u16_le(u)?) % (max + 1);
    Ok(u.bytes(len.min(u.len()))?.to_vec())
}

/// A run's memory and limits, read as a seed expects them: a feature byte (0: none of the
/// optional parts), then the input (`u16` length, bytes), then each optional part the feature
/// byte names, in bit order.
///
/// Feature bits: 0 no input at all (`r1 = r2 = 0`); 1 a budget (else 100,000, far more than
/// the fuzzed programs run without looping); 2 a call depth other than the default;
/// 3 a metadata buffer; 4 read-only data; 5 writable data; 6 extra regions; 7 (with a next
/// byte that is a multiple of 16) a call depth beyond what engines support (clamped by them).
pub fn setup(u: &mut Unstructured<'_>) -> Result<Setup> {
    let features = byte(u)?;
    let has = |bit: u8| features & (1 << bit) != 0;
    let input = buffer(u, 512)?;
    let mut setup = Setup {
        limits: Limits {
            budget: Some(100_000),
            ..Limits::default()
        },
        input: (!has(0)).then_some(input),
        ..Setup::default()
    };
    if has(1) {
        setup.limits.budget = Some(match byte(u)? % 4 {
            0 => u64::from(byte(u)?),
            1 => u64::from(u16_le(u)?),
            2 => 0,
            _ => u64::from(byte(u)? % 16),
        });
    }
    if has(2) {
        setup.limits.max_call_depth = usize::from(byte(u)? % 12);
    }
    if has(3) {
        let buffer = buffer(u, 64)?;
        let layout = match byte(u)? {
            0 => None,
            b => {
                let room = buffer.len().saturating_sub(7).max(1);
                Some(Metadata {
                    data_offset: usize::from(b) % room,
                    data_end_offset: usize::from(byte(u)?) % room,
                })
            }
        };
        setup.metadata = Some((buffer, layout));
    }
    if has(4) {
        setup.rodata = Some(buffer(u, 64)?);
    }
    if has(5) {
        setup.data = Some(buffer(u, 64)?);
    }
    if has(6) {
        for _ in 0..byte(u)? % 4 {
            let writable = byte(u)? % 2 == 0;
            setup.extra.push((writable, buffer(u, 64)?));
        }
    }
    // Rarely (a 32 MiB stack per run and engine is slow to zero).
    if has(7) && byte(u)? % 16 == 0 {
        setup.limits.max_call_depth = match byte(u)? % 3 {
            0 => MAX_CALL_DEPTH + 1,
            1 => 1 << 40,
            _ => usize::MAX,
        };
    }
    Ok(setup)
}

/// What the JITs' facts assume at entry, by how it relates to a run's setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// The stack alone, which every run satisfies.
    Stack,
    /// What the setup passes: the input in `r1`/`r2` ([`Entry::input`]), or the metadata
    /// buffer, with the input's start and end at its layout's offsets ([`Entry::metadata`]).
    Own,
    /// [`EntryKind::Own`] and every data image and extra region as `Fixed` at its mapped
    /// length.
    Fixed,
    /// [`EntryKind::Own`] with the data images as `Fixed` at half their mapped length (an
    /// admitted run may map more than the entry declares) and the extra regions `Dynamic`.
    Shorter,
    /// The metadata layout as a packet with no headroom ([`MetadataFields::packet`]): the
    /// input's end is only known to lie at or after `data_end`.
    Packet,
    /// The entry of the other way to pass the input ([`Entry::metadata`] for a setup without a
    /// metadata buffer, [`Entry::input`] for one with): runs it does not admit take the
    /// JITs' fallback code.
    Foreign,
}

/// The entry of `kind` for a run of `setup` (`None` for [`EntryKind::Stack`]). The setup's
/// own run is admitted for every kind but [`EntryKind::Foreign`] — unless a metadata layout
/// writes both addresses to overlapping words, or the setup has no input where the entry
/// needs one: those runs take the fallback code, as other setups of the same input may.
pub fn entry(kind: EntryKind, setup: &Setup) -> Option<Entry> {
    let layout = setup.metadata.as_ref().and_then(|(_, layout)| *layout);
    let fields = |m: Metadata| {
        let (data, data_end) = (m.data_offset as u32, m.data_end_offset as u32);
        if kind == EntryKind::Packet {
            MetadataFields::packet(data, data_end, 0)
        } else {
            MetadataFields::input(data, data_end)
        }
    };
    let own = match (&setup.metadata, layout) {
        (Some(_), Some(m)) => Entry::metadata(fields(m)),
        // A buffer without a layout: `r1`/`r2` are its start and length, nothing more.
        (Some(_), None) => {
            let mut e = Entry::unknown().with_region(
                layout::METADATA as u8,
                RegionSpec::Dynamic { writable: true },
            );
            e.args = [
                Arg::Start(layout::METADATA as u8),
                Arg::Len(layout::METADATA as u8),
            ];
            e
        }
        (None, _) if setup.input.is_some() => Entry::input(),
        (None, _) => Entry::unknown(),
    };
    let fixed = |len: usize, shorten: bool, writable: bool| RegionSpec::Fixed {
        len: if shorten { len as u64 / 2 } else { len as u64 },
        writable,
    };
    let images = |entry: Entry, shorten: bool| {
        let mut entry = entry;
        if let Some(rodata) = &setup.rodata {
            entry = entry.with_region(layout::RODATA as u8, fixed(rodata.len(), shorten, false));
        }
        if let Some(data) = &setup.data {
            entry = entry.with_region(layout::DATA as u8, fixed(data.len(), shorten, true));
        }
        for (id, (writable, bytes)) in (layout::FIRST_EXTRA..).zip(&setup.extra) {
            let spec = if shorten {
                RegionSpec::Dynamic {
                    writable: *writable,
                }
            } else {
                fixed(bytes.len(), false, *writable)
            };
            entry = entry.with_region(id as u8, spec);
        }
        entry
    };
    match kind {
        EntryKind::Stack => None,
        EntryKind::Own | EntryKind::Packet => Some(own),
        EntryKind::Fixed => Some(images(own, false)),
        EntryKind::Shorter => Some(images(own, true)),
        EntryKind::Foreign if setup.metadata.is_some() => Some(Entry::input()),
        EntryKind::Foreign => Some(Entry::metadata(MetadataFields::input(0, 8))),
    }
}

/// Registers, `r10` rarely as a destination (writing it is legal bytecode, and the JITs'
/// frame facts must notice).
fn reg(u: &mut Unstructured<'_>, dst: bool) -> Result<Reg> {
    let i = u.int_in_range(0..=if dst { 19u8 } else { 10 })?;
    let i = if i > 10 { i % 10 } else { i };
    Ok(Reg::new(i).unwrap_or(Reg::R0))
}

fn imm(u: &mut Unstructured<'_>) -> Result<i32> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => *u.choose(&INTERESTING_I32)?,
        1 => u.int_in_range(-64..=64)?,
        2 => i32::from(*u.choose(&HELPER_ID_IMMS)?),
        _ => u.arbitrary()?,
    })
}

/// Helper ids a call names: the registered ones, and some that are not.
const HELPER_ID_IMMS: [i16; 8] = [1, 2, 3, 5, 0, 4, 6, -1];

/// Memory offsets: small, around a frame, the 16-bit extremes.
fn off(u: &mut Unstructured<'_>) -> Result<i16> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => *u.choose(&INTERESTING_I16)?,
        1 | 2 => u.int_in_range(-16..=16)? * 8 + u.int_in_range(-1..=1)?,
        _ => u.arbitrary()?,
    })
}

/// A 64-bit immediate: an address in some region near its start or its window's end, or a
/// boundary value.
fn imm64(u: &mut Unstructured<'_>) -> Result<u64> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 | 1 => {
            let region = u.int_in_range(0..=9u64)?;
            let offset = match u.int_in_range(0..=2u8)? {
                0 => u.int_in_range(0..=80u64)?,
                1 => layout::MAX_REGION_LEN - u.int_in_range(1..=8u64)?,
                _ => u64::from(u.arbitrary::<u32>()?),
            };
            layout::vm_addr(region, offset)
        }
        2 => *u.choose(&INTERESTING_U64)?,
        _ => u.arbitrary()?,
    })
}

/// One instruction before its jump or call target is resolved: the target is an instruction
/// index (`n` = one past the last), or a raw offset.
enum Draft {
    Plain(Insn),
    /// A jump-like instruction of `form` to instruction `target`.
    Jump {
        insn: Insn,
        target: usize,
    },
}

/// A program of 1 to `max_insns` instructions of any form (see the module docs); the last is
/// `exit` most of the time.
pub fn wild_program(u: &mut Unstructured<'_>, max_insns: usize) -> Result<Program> {
    let n = u.int_in_range(1..=max_insns.max(1))?;
    let mut drafts = Vec::with_capacity(n + 1);
    for _ in 0..n {
        // A quarter of the instructions set a pointer up; the rest are any form.
        if u.ratio(1u8, 4u8)? {
            let dst = reg(u, false)?;
            let insn = if u.ratio(1u8, 2u8)? {
                // A register plus a small offset: r1, r10 or another pointer.
                Insn::Alu {
                    width: ebpf_isa::Width::W64,
                    op: ebpf_isa::AluOp::Add,
                    dst,
                    src: ebpf_isa::Operand::Imm(i32::from(off(u)?)),
                }
            } else {
                Insn::LoadImm64 {
                    dst,
                    kind: Imm64Kind::Value,
                    imm: imm64(u)?,
                }
            };
            drafts.push(Draft::Plain(insn));
            continue;
        }
        let spec = u.choose(&SPECS)?;
        let (dst, src) = (reg(u, true)?, reg(u, false)?);
        let insn = spec
            .form
            .with_operands(dst, src, off(u)?, imm(u)?, imm64(u)?);
        let target = |u: &mut Unstructured<'_>| -> Result<usize> {
            // Mostly forward (loops end with the budget), sometimes anywhere, one past the end.
            u.int_in_range(0..=n)
        };
        let draft = match spec.form {
            Form::Ja | Form::Ja32 | Form::JumpImm(..) | Form::JumpReg(..)
                if !u.ratio(1u8, 16u8)? =>
            {
                Draft::Jump {
                    insn,
                    target: target(u)?,
                }
            }
            Form::Call(CallKind::Local) if !u.ratio(1u8, 16u8)? => Draft::Jump {
                insn,
                target: target(u)?,
            },
            _ => Draft::Plain(insn),
        };
        drafts.push(draft);
    }
    if !u.ratio(1u8, 8u8)? {
        drafts.push(Draft::Plain(Insn::Exit));
    }
    Ok(resolve(drafts))
}

/// Turns instruction-index targets into slot offsets (`lddw` takes two slots).
fn resolve(drafts: Vec<Draft>) -> Program {
    let mut pcs = Vec::with_capacity(drafts.len() + 1);
    let mut pc = 0usize;
    for d in &drafts {
        pcs.push(pc);
        let insn = match d {
            Draft::Plain(i) | Draft::Jump { insn: i, .. } => i,
        };
        pc += insn.slots();
    }
    pcs.push(pc);
    let insns = drafts
        .into_iter()
        .enumerate()
        .map(|(i, d)| match d {
            Draft::Plain(insn) => insn,
            Draft::Jump { insn, target } => {
                let from = pcs[i] as i64 + 1;
                let to = pcs.get(target).copied().unwrap_or(pc) as i64;
                retarget(insn, to - from)
            }
        })
        .collect();
    Program::from_insns(insns)
}

/// `insn` with its jump or call offset set to `delta` slots (clamped to what the field holds).
fn retarget(insn: Insn, delta: i64) -> Insn {
    let off = i16::try_from(delta).unwrap_or(if delta < 0 { i16::MIN } else { i16::MAX });
    let imm = i32::try_from(delta).unwrap_or(if delta < 0 { i32::MIN } else { i32::MAX });
    match insn {
        Insn::Ja { .. } => Insn::Ja { off },
        Insn::Ja32 { .. } => Insn::Ja32 { imm },
        Insn::Jump {
            width,
            cond,
            dst,
            src,
            ..
        } => Insn::Jump {
            width,
            cond,
            dst,
            src,
            off,
        },
        Insn::Call {
            kind: CallKind::Local,
            ..
        } => Insn::Call {
            kind: CallKind::Local,
            imm,
        },
        other => other,
    }
}

/// `ebpf-testgen`'s structured program drawn with a random generator seeded by the first 32
/// of `bytes`, and the input it expects. `None` when the strategy gives up (too many
/// rejections).
///
/// (Not proptest's pass-through RNG, which would make the bytes the choices themselves: the
/// recursive statement strategy, fed zeros once the bytes run out, nests without end.)
///
/// The last [`STRUCTURED_CACHE_SIZE`] draws are kept by seed: the draw is a function of the
/// seed alone, and most of libFuzzer's mutations of a structured input change a setup or the
/// bytes past the seed, so the same program comes back. Drawing it is proptest building a
/// whole value tree (a third of a structured input's work before the compile cache, which then
/// finds the program compiled).
pub fn structured_program(bytes: &[u8]) -> Option<Structured> {
    let mut seed = [0u8; 32];
    for (s, b) in seed.iter_mut().zip(bytes) {
        *s = *b;
    }
    STRUCTURED.with(|recent| {
        let mut recent = recent.borrow_mut();
        if let Some(drawn) = recent.find(|s| *s == seed) {
            return drawn;
        }
        let drawn = draw_structured(seed);
        recent.insert(seed, drawn.clone());
        drawn
    })
}

/// A structured program, the input it expects, and the most instructions it runs.
pub type Structured = (Program, Vec<u8>, u64);

/// How many structured draws [`structured_program`] keeps (as many as the compile cache keeps
/// compiles, [`crate::engines::COMPILE_CACHE_SIZE`]).
pub const STRUCTURED_CACHE_SIZE: usize = 16;

thread_local! {
    /// [`structured_program`]'s last draws, by seed (libFuzzer runs inputs on one thread).
    static STRUCTURED: RefCell<Recent<[u8; 32], Option<Structured>>> =
        RefCell::new(Recent::new(STRUCTURED_CACHE_SIZE));
}

/// [`structured_program`] without the cache: draws from `seed`.
pub fn draw_structured(seed: [u8; 32]) -> Option<Structured> {
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let config = ebpf_testgen::StructuredConfig {
        functions: 3,
        ..ebpf_testgen::StructuredConfig::default()
    };
    let tree = ebpf_testgen::structured_with_input(config)
        .new_tree(&mut runner)
        .ok()?;
    let (s, input) = tree.current();
    Some((s.program, input, s.max_steps))
}
