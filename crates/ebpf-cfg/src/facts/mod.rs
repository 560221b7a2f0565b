//! Facts: what holds at each instruction on every path the program can take, so that an
//! engine may drop a check it makes impossible — the one analysis both JITs and the verifier
//! share.
//!
//! [`Facts::analyse`] runs an abstract interpretation of the program over its *execution
//! graph* (the interpreter's control flow: jumps between functions, falling into the next
//! function, calls and returns), starting from what the embedder guarantees at entry
//! ([`Entry`]). Per register it tracks value ranges (unsigned, signed), known bits (so a
//! stride of 8 is known), and relations — to other registers (`i < n`), to the run-time end
//! of a region (`p + 14 <= data_end`), and exact affine links (`p = base + (i << 3)`) — with
//! widening to the program's own constants at loop heads and one narrowing sweep. Every
//! conditional jump refines both of its sides, 32- and 64-bit, signed and unsigned, against
//! a constant or another register.
//!
//! What comes out ([`Facts`]):
//!
//! - [`Access`]: a load, store or atomic that is in bounds of one region on every path (and
//!   writable, and aligned for an atomic) — the bounds check can go;
//! - [`Division`]: a divisor register that is never zero, and never `-1` when the dividend
//!   can be the smallest signed value — the division needs no test;
//! - whether an instruction is reached at all.
//!
//! Facts depend on the entry: with [`Entry::input`], `r1 + r2` is the input's end and every
//! guard against it is a proof; with [`Entry::unknown`] only the stack is known. An engine
//! compiled with facts for an entry must run that code only when [`Entry::admits`] the run
//! (it checks the arguments and the region table in a few comparisons), and fall back to
//! checked code otherwise — with the `std` feature, `Gate` is that mechanism, which both JITs
//! use. See `docs/facts.md`.

#[cfg(feature = "std")]
mod gate;
mod graph;
mod loops;
mod num;
mod solve;
mod state;
mod transfer;

use alloc::vec::Vec;
use core::fmt;

use ebpf_abi::{MemoryMap, layout};
use ebpf_isa::Program;

#[cfg(feature = "std")]
pub use gate::Gate;
pub use loops::{
    Bound, Charge, Condition, Counter, LoopFact, MAX_AT_ENTRY_TRIPS, TripCount, Version,
};
pub use solve::{Analysis, Registers, Relation, ValueFacts};

/// What an argument register holds at entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Arg {
    /// Nothing is assumed.
    #[default]
    Unknown,
    /// The VM address of the first byte of a region (`region << 32`).
    Start(u8),
    /// The length of a region, in bytes.
    Len(u8),
}

/// What a region is, as far as facts may assume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RegionSpec {
    /// Nothing is assumed; no access to it is proven.
    #[default]
    Unknown,
    /// Its length is only known at run time (below 4 GiB; 0 if unmapped).
    Dynamic {
        /// Whether stores are allowed.
        writable: bool,
    },
    /// At least this many bytes long (the same every run: an ELF image, a table).
    Fixed {
        /// The length.
        len: u64,
        /// Whether stores are allowed.
        writable: bool,
    },
}

/// Where the metadata buffer holds the addresses of the data in the input, as little-endian
/// `u64`s at byte offsets `data` and `data_end` of the metadata region, and what they are:
/// rbpf's "mbuff" layout (`packet: None`: the input's first byte and one past its last) or
/// a kernel context's packet (`packet: Some(offset)`: a packet inside the input, after
/// `offset` bytes of headroom, ending anywhere before the input's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataFields {
    /// Offset of the data's start address.
    pub data: u32,
    /// Offset of the data's end address.
    pub data_end: u32,
    /// `None`: `data` is the input's start and `data_end` its end, exactly. `Some(offset)`:
    /// `data` is the input's start plus `offset` and `data_end` lies between `data` and the
    /// input's end (`Vm::run_packet`'s layout: headroom before the packet, tailroom after
    /// it, `data_end` known only at run time) — so a guard `data + n <= data_end` proves `n`
    /// bytes at `data`, through `data_end <= end(input)`.
    pub packet: Option<u32>,
}

impl MetadataFields {
    /// rbpf's "mbuff" layout: the input's start at `data`, its end at `data_end`.
    pub const fn input(data: u32, data_end: u32) -> MetadataFields {
        MetadataFields {
            data,
            data_end,
            packet: None,
        }
    }

    /// A packet in the input after `offset` bytes of headroom: its start at `data`, its end
    /// (anywhere from its start to the input's end) at `data_end`.
    pub const fn packet(data: u32, data_end: u32, offset: u32) -> MetadataFields {
        MetadataFields {
            data,
            data_end,
            packet: Some(offset),
        }
    }
}

/// A helper that looks a map's value up (`r0 = lookup(r1 = map, r2 = key)`, the kernel's
/// `map_lookup_elem`) and the maps whose values it returns: after a call with a known map in
/// `r1`, `r0` is NULL or the address of a whole value inside that map's region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapLookup {
    /// The helper's id.
    pub helper: u32,
    /// The maps, by the constant the program passes in `r1`.
    pub maps: Vec<MapRegion>,
}

/// Where one map's values live, as [`MapLookup`] describes it: a lookup in it returns NULL or
/// an address `a` with `region << 32 <= a` and `a + value_size <= (region << 32) + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRegion {
    /// The constant the program holds for the map (what its `lddw` loads).
    pub handle: u64,
    /// The region its values are mapped at.
    pub region: u8,
    /// The region's length, exactly (the admission checks it: a lookup's address is only
    /// bounded by the length the run maps, so the facts need that length to be this one).
    pub len: u64,
    /// Bytes of one value.
    pub value_size: u32,
    /// Whether programs may store to the values.
    pub writable: bool,
    /// Every value's address is a multiple of this: what lets an atomic on a value be proven
    /// aligned. Only its largest power-of-two factor counts (0 and 1 say nothing). The
    /// admission does not check it: the embedder vouches for it, as it does for the helper.
    pub align: u32,
}

/// What holds when the program starts: what facts may rely on. The stack is always known (its
/// size is a run-time length; `r10` is its end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// What `r1` and `r2` hold.
    pub args: [Arg; 2],
    /// What each region is, by region id (the stack's entry is ignored).
    pub regions: [RegionSpec; layout::MAX_REGION as usize + 1],
    /// Where the metadata buffer holds the input's addresses, if it does.
    pub metadata: Option<MetadataFields>,
    /// The map-lookup helper and the regions of the maps' values, if lookups are known
    /// ([`Entry::with_lookup`]).
    pub lookup: Option<MapLookup>,
}

impl Default for Entry {
    fn default() -> Entry {
        Entry::unknown()
    }
}

impl Entry {
    /// Nothing beyond the stack: facts hold for any arguments and any region table.
    pub fn unknown() -> Entry {
        Entry {
            args: [Arg::Unknown; 2],
            regions: [RegionSpec::Unknown; layout::MAX_REGION as usize + 1],
            metadata: None,
            lookup: None,
        }
    }

    /// The facade's plain input: `r1` is the writable input region's start, `r2` its length.
    pub fn input() -> Entry {
        let mut e = Entry::unknown();
        e.args = [
            Arg::Start(layout::INPUT as u8),
            Arg::Len(layout::INPUT as u8),
        ];
        e.regions[layout::INPUT as usize] = RegionSpec::Dynamic { writable: true };
        e
    }

    /// The facade's metadata layout: `r1` is the writable metadata buffer's start, `r2` its
    /// length, and the buffer holds the addresses of the data in the writable input at
    /// `fields` (the input's start and end, or a packet's: see [`MetadataFields`]).
    pub fn metadata(fields: MetadataFields) -> Entry {
        let mut e = Entry::unknown();
        e.args = [
            Arg::Start(layout::METADATA as u8),
            Arg::Len(layout::METADATA as u8),
        ];
        e.regions[layout::INPUT as usize] = RegionSpec::Dynamic { writable: true };
        e.regions[layout::METADATA as usize] = RegionSpec::Dynamic { writable: true };
        e.metadata = Some(fields);
        e
    }

    /// Adds what is known of a region.
    pub fn with_region(mut self, region: u8, spec: RegionSpec) -> Entry {
        if let Some(slot) = self.regions.get_mut(usize::from(region)) {
            *slot = spec;
        }
        self
    }

    /// Adds what a map lookup returns: each map's region becomes a [`RegionSpec::Fixed`] of
    /// its length, and the admission checks that length exactly (a map whose region is the
    /// stack, region 0 or beyond the last region is left out).
    pub fn with_lookup(mut self, mut lookup: MapLookup) -> Entry {
        lookup.maps.retain(|m| {
            let r = u64::from(m.region);
            r != layout::STACK && r != layout::NULL_REGION && r <= layout::MAX_REGION
        });
        for m in &lookup.maps {
            self.regions[usize::from(m.region)] = RegionSpec::Fixed {
                len: m.len,
                writable: m.writable,
            };
        }
        self.lookup = Some(lookup);
        self
    }

    /// Whether a run with this memory and these arguments satisfies the entry, so that code
    /// compiled with its facts may run it (see [`Admission::admits`], which checks the same
    /// without looking at the regions the entry says nothing of).
    pub fn admits(&self, memory: &MemoryMap<'_>, args: [u64; 2]) -> bool {
        self.admission().admits(memory, args)
    }

    /// What [`Entry::admits`] checks, kept compact for checking before every run.
    pub fn admission(&self) -> Admission {
        Admission {
            regions: self
                .regions
                .iter()
                .enumerate()
                .filter(|&(r, spec)| {
                    *spec != RegionSpec::Unknown
                        && r as u64 != layout::STACK
                        && r as u64 != layout::NULL_REGION
                })
                .map(|(r, spec)| (r as u8, *spec))
                .collect(),
            args: self.args,
            metadata: self.metadata,
            exact: self
                .lookup
                .iter()
                .flat_map(|l| &l.maps)
                .map(|m| (m.region, m.len))
                .collect(),
            input_only: None,
        }
        .with_input_only()
    }

    /// What the entry says of region `r`: the stack is always a writable region whose length
    /// is known at run time.
    /// The length of region `r` in every run the entry admits, where the admission checks it
    /// exactly (a map's values, [`Entry::with_lookup`]); `None` where the entry knows only a
    /// minimum or nothing.
    pub(crate) fn exact_len(&self, r: u64) -> Option<u64> {
        let lookup = self.lookup.as_ref()?;
        lookup
            .maps
            .iter()
            .find(|m| u64::from(m.region) == r)
            .map(|m| m.len)
    }

    pub(crate) fn spec(&self, r: u64) -> RegionSpec {
        if r == layout::STACK {
            return RegionSpec::Dynamic { writable: true };
        }
        self.regions
            .get(usize::try_from(r).unwrap_or(usize::MAX))
            .copied()
            .unwrap_or_default()
    }
}

/// What is proven about a load, store or atomic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No proof: the engine checks it. `region` is the region its address lies in on every
    /// path, when that much is known (a check against that one region suffices).
    Checked {
        /// The region of every address, if one.
        region: Option<u8>,
    },
    /// In bounds of `region` on every path, writable if it stores, aligned if it is atomic:
    /// no check.
    InBounds {
        /// The region.
        region: u8,
        /// The proof holds on every path a CPU may run, mispredicted branches included: it
        /// uses no refinement from a conditional jump (a frame slot at a constant offset from
        /// `r10`, an index masked by `x & 31`). `false` when the proof rests on a branch (a
        /// guard `if (p + 14 > end) return`, a loop bound `i < n`): on the path a
        /// mispredicted guard leads to, the access may be out of bounds, so a JIT hardening
        /// against Spectre v1 clamps it without a branch (facts.md, "Speculation").
        speculation_safe: bool,
    },
}

/// What is proven about a division or modulo by a register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Division {
    /// The divisor is never zero.
    pub nonzero: bool,
    /// Signed: never `-1` while the dividend is the smallest signed value.
    pub no_overflow: bool,
}

/// Per instruction, compact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct InsnFact {
    pub(crate) reached: bool,
    /// `NO_REGION` or the region every address lies in.
    pub(crate) region: u8,
    /// `NO_REGION` or the region the base register was derived from (a guess).
    pub(crate) guess: u8,
    pub(crate) in_bounds: bool,
    /// `in_bounds`, and proven again with no branch refining anything.
    pub(crate) speculation_safe: bool,
    pub(crate) nonzero: bool,
    pub(crate) no_overflow: bool,
}

/// No region.
pub(crate) const NO_REGION: u8 = u8::MAX;

/// The facts of a program under an [`Entry`]: what every engine may rely on.
#[derive(Clone, PartialEq, Eq)]
pub struct Facts {
    entry: Entry,
    /// The program they are about: facts are trusted only for it (`Facts::is_for`).
    program: Program,
    insns: Vec<InsnFact>,
    versions: Vec<Version>,
    loops: Vec<LoopFact>,
}

impl fmt::Debug for Facts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proven = self.insns.iter().filter(|i| i.in_bounds).count();
        f.debug_struct("Facts")
            .field("instructions", &self.insns.len())
            .field("accesses_in_bounds", &proven)
            .field("versions", &self.versions)
            .field("loops", &self.loops)
            .finish()
    }
}

impl Facts {
    /// Analyses `program` from `entry`. Linear in the program for loop-free code; loops add a
    /// few passes over their bodies (widening settles them).
    pub fn analyse(program: &Program, entry: &Entry) -> Facts {
        Analysis::solve(program, entry, false, true).into_facts()
    }

    /// [`Facts::analyse`] without its second, speculative solve: every access proven in
    /// bounds is reported as not [`speculation_safe`](Access::InBounds) (the cautious
    /// answer), everything else is the same. For consumers that do not clamp proven accesses
    /// (a JIT without `spectre_clamp_proven`), to which the flag makes no difference: it
    /// saves about a quarter of the analysis.
    pub fn analyse_without_speculation(program: &Program, entry: &Entry) -> Facts {
        Analysis::solve(program, entry, false, false).into_facts()
    }

    pub(crate) fn new(
        entry: Entry,
        program: Program,
        insns: Vec<InsnFact>,
        mut versions: Vec<Version>,
        mut loops: Vec<LoopFact>,
    ) -> Facts {
        versions.sort_unstable_by_key(|v| v.entry);
        loops.sort_unstable_by_key(|l| l.entry);
        Facts {
            entry,
            program,
            insns,
            versions,
            loops,
        }
    }

    /// Loops with an unchecked version and the conditions that select it, by entry.
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    /// Loops whose whole work is known at entry, by entry.
    pub fn loops(&self) -> &[LoopFact] {
        &self.loops
    }

    /// Whether these are the facts of `program` (an engine handed facts with a program must
    /// check this before trusting them: facts of another program prove nothing about it).
    /// Linear in the program.
    pub fn is_for(&self, program: &Program) -> bool {
        self.program == *program
    }

    /// The entry the facts assume.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// Number of instructions covered.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether there are no instructions.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Whether instruction `index` (into `Program::insns`) can be reached at all.
    pub fn reached(&self, index: usize) -> bool {
        self.insns.get(index).is_some_and(|i| i.reached)
    }

    /// What is proven about the load, store or atomic at instruction `index` (`Checked` for
    /// anything else).
    pub fn access(&self, index: usize) -> Access {
        let Some(i) = self.insns.get(index) else {
            return Access::Checked { region: None };
        };
        match (i.in_bounds, i.region) {
            (true, r) if r != NO_REGION => Access::InBounds {
                region: r,
                speculation_safe: i.speculation_safe,
            },
            (_, NO_REGION) => Access::Checked { region: None },
            (_, r) => Access::Checked { region: Some(r) },
        }
    }

    /// The region the access at instruction `index` most likely goes to: the one all its
    /// addresses lie in if that is known, else the region its base register was derived from
    /// (a pointer moved or offset by an index). A guess for a JIT to check first; never a
    /// reason to skip a check.
    pub fn likely_region(&self, index: usize) -> Option<u8> {
        let i = self.insns.get(index)?;
        [i.region, i.guess].into_iter().find(|&r| r != NO_REGION)
    }

    /// What is proven about the division or modulo by a register at instruction `index`.
    pub fn division(&self, index: usize) -> Division {
        self.insns
            .get(index)
            .map_or(Division::default(), |i| Division {
                nonzero: i.nonzero,
                no_overflow: i.no_overflow,
            })
    }

    /// Indices of the accesses proven in bounds, in order.
    pub fn accesses_in_bounds(&self) -> impl Iterator<Item = usize> + '_ {
        self.insns
            .iter()
            .enumerate()
            .filter(|(_, i)| i.in_bounds)
            .map(|(k, _)| k)
    }
}

/// What an [`Entry`] asks of a run, without the regions it says nothing of
/// ([`Entry::admission`]): what code compiled with the entry's facts checks before each run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The regions the entry says something of (never the stack or region 0), by id.
    regions: Vec<(u8, RegionSpec)>,
    args: [Arg; 2],
    metadata: Option<MetadataFields>,
    /// Regions whose length must be exactly this (the maps' values: see [`MapRegion::len`]).
    exact: Vec<(u8, u64)>,
    /// `Some(r)` when all the entry asks is what `Vm::run` gives every run: `r1`/`r2` the
    /// start and length of region `r`, writable, below 4 GiB. Such a run is admitted in a
    /// few compares, before any of the general check.
    input_only: Option<u8>,
}

/// Whether region `r` is mapped (a mapped region of length 0 is, and must then be writable
/// where the entry says so).
fn mapped(memory: &MemoryMap<'_>, r: u8) -> bool {
    memory.get(u64::from(r)).is_some()
}

impl Admission {
    /// Finds out whether the entry asks only what `Vm::run` gives (see `input_only`).
    fn with_input_only(mut self) -> Admission {
        if let ([(r, RegionSpec::Dynamic { writable: true })], [Arg::Start(s), Arg::Len(l)], None) =
            (self.regions.as_slice(), self.args, self.metadata)
            && self.exact.is_empty()
            && *r == s
            && s == l
        {
            self.input_only = Some(*r);
        }
        self
    }

    /// `Some(r)` when all the entry asks is what `Vm::run` gives every run: `r1`/`r2` the
    /// start and length of region `r`, writable, below 4 GiB (so a caller that builds such a
    /// run itself knows it is admitted without a map to check).
    pub fn input_only(&self) -> Option<u8> {
        self.input_only
    }

    /// Whether the run `Vm::run` and a JIT session's fast path build — `input` (if any) mapped
    /// writable as region `layout::INPUT`, a metadata buffer if `metadata`, the fixed regions
    /// and the stack — with `args` is admitted, decided in a few compares without a map.
    /// `false` when it is not admitted or when the entry asks more than `Vm::run`'s run
    /// ([`Admission::input_only`]): the caller then builds the run's map and checks it with
    /// [`Admission::admits`]. Shared by both JITs' sessions.
    #[inline]
    pub fn admits_input(&self, input: Option<&[u8]>, metadata: bool, args: [u64; 2]) -> bool {
        match input {
            Some(input) => {
                let len = input.len() as u64;
                self.input_only == Some(layout::INPUT as u8)
                    && !metadata
                    && args == layout::input_args(len)
                    && len <= u64::from(u32::MAX)
            }
            None => false,
        }
    }

    /// Whether a run with this memory and these arguments satisfies the entry, so that code
    /// compiled with its facts may run it. A few comparisons per known region and argument.
    #[inline]
    pub fn admits(&self, memory: &MemoryMap<'_>, args: [u64; 2]) -> bool {
        if let Some(r) = self.input_only {
            let (len, writable) = memory.extent(u64::from(r));
            if writable
                && args == [layout::vm_addr(u64::from(r), 0), len]
                && len <= u64::from(u32::MAX)
            {
                return true;
            }
        }
        self.admits_in_full(memory, args)
    }

    /// [`Admission::admits`], every region and argument checked.
    fn admits_in_full(&self, memory: &MemoryMap<'_>, args: [u64; 2]) -> bool {
        // The map's kept rows answer each region's length and writability in two loads
        // (`MemoryMap::extent`): this runs before every run of code compiled with the facts.
        for &(r, spec) in &self.regions {
            let (len, writable) = memory.extent(u64::from(r));
            let ok = match spec {
                RegionSpec::Unknown => true,
                // (An unmapped region has length 0 and is not writable: it is admitted.)
                RegionSpec::Dynamic { writable: w } => {
                    len <= u64::from(u32::MAX)
                        && (!w || writable || (len == 0 && !mapped(memory, r)))
                }
                RegionSpec::Fixed {
                    len: l,
                    writable: w,
                } => len >= l && (!w || writable),
            };
            if !ok {
                return false;
            }
        }
        if self
            .exact
            .iter()
            .any(|&(r, len)| memory.extent(u64::from(r)).0 != len)
        {
            return false;
        }
        for (arg, &value) in self.args.iter().zip(&args) {
            let ok = match *arg {
                Arg::Unknown => true,
                Arg::Start(r) => value == layout::vm_addr(u64::from(r), 0),
                Arg::Len(r) => value == memory.extent(u64::from(r)).0,
            };
            if !ok {
                return false;
            }
        }
        if let Some(fields) = self.metadata {
            let input = layout::INPUT;
            let at = |off: u32| {
                memory
                    .load::<8>(layout::vm_addr(layout::METADATA, u64::from(off)))
                    .map(u64::from_le_bytes)
            };
            let start = layout::vm_addr(input, 0);
            let end = start + memory.extent(input).0;
            let (Some(data), Some(data_end)) = (at(fields.data), at(fields.data_end)) else {
                return false;
            };
            let ok = match fields.packet {
                None => data == start && data_end == end,
                // `data_end <= end(input)` is what proves the guards' accesses; `data <=
                // data_end` what lets the analysis take the packet's start as a lower bound.
                Some(offset) => {
                    data == start + u64::from(offset) && data <= data_end && data_end <= end
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use ebpf_abi::Region;

    /// The shortcut for `Vm::run`'s entry admits exactly the runs the full check admits: every
    /// combination of the input region (writable, read-only or unmapped; 0, 1 or 64 bytes) and
    /// of `r1`/`r2` (right, a wrong start, a wrong length, none).
    #[test]
    fn the_input_only_shortcut_agrees_with_the_full_check() {
        let admission = Entry::input().admission();
        assert_eq!(admission.input_only, Some(layout::INPUT as u8));
        let with_rodata = Entry::input()
            .with_region(
                layout::RODATA as u8,
                RegionSpec::Fixed {
                    len: 4,
                    writable: false,
                },
            )
            .admission();
        assert_eq!(with_rodata.input_only, None, "another region: no shortcut");
        assert_eq!(Entry::unknown().admission().input_only, None);
        let start = layout::vm_addr(layout::INPUT, 0);
        for len in [0usize, 1, 64] {
            let mut bytes = vec![0u8; len];
            let rodata = vec![0u8; len];
            let maps: [(&str, MemoryMap<'_>); 3] = [
                ("writable", {
                    let mut m = MemoryMap::new();
                    m.insert(layout::INPUT, Region::Writable(&mut bytes));
                    m
                }),
                ("read-only", {
                    let mut m = MemoryMap::new();
                    m.insert(layout::INPUT, Region::ReadOnly(&rodata));
                    m
                }),
                ("unmapped", MemoryMap::new()),
            ];
            for (what, map) in &maps {
                let l = len as u64;
                for args in [[start, l], [start + 1, l], [start, l + 1], [0, 0], [0, l]] {
                    assert_eq!(
                        admission.admits(map, args),
                        admission.admits_in_full(map, args),
                        "{what} input of {len} bytes, args {args:x?}"
                    );
                }
            }
        }
    }

    /// A packet entry admits a run exactly when the metadata buffer's `data` is the input's
    /// start plus the offset and its `data_end` lies between `data` and the input's end.
    #[test]
    fn a_packet_entry_admits_the_packets_it_describes() {
        let entry = Entry::metadata(MetadataFields::packet(0, 8, 4));
        let start = layout::vm_addr(layout::INPUT, 0);
        for input_len in [0u64, 3, 4, 5, 16] {
            for data in [0u64, 3, 4, 5] {
                for data_end in [0u64, 3, 4, 5, 15, 16, 17] {
                    let mut input = vec![0u8; input_len as usize];
                    let mut meta = vec![0u8; 16];
                    meta[..8].copy_from_slice(&(start + data).to_le_bytes());
                    meta[8..].copy_from_slice(&(start + data_end).to_le_bytes());
                    let mut map = MemoryMap::new();
                    map.insert(layout::INPUT, Region::Writable(&mut input));
                    map.insert(layout::METADATA, Region::Writable(&mut meta));
                    let args = [layout::vm_addr(layout::METADATA, 0), 16];
                    let expected = data == 4 && data <= data_end && data_end <= input_len;
                    assert_eq!(
                        entry.admits(&map, args),
                        expected,
                        "input {input_len}, data {data}, data_end {data_end}"
                    );
                }
            }
        }
        // The fields must be in the buffer.
        let mut input = vec![0u8; 16];
        let mut short = vec![0u8; 12];
        short[..8].copy_from_slice(&(start + 4).to_le_bytes());
        let mut map = MemoryMap::new();
        map.insert(layout::INPUT, Region::Writable(&mut input));
        map.insert(layout::METADATA, Region::Writable(&mut short));
        assert!(!entry.admits(&map, [layout::vm_addr(layout::METADATA, 0), 12]));
    }
}
