//! `ebpf-bench`: the program set every engine is benchmarked on, with reference results.
//!
//! What it is for: one list, [`PROGRAMS`], of realistic eBPF programs — an arithmetic loop,
//! hashing, sorting (which writes its input), packet parsing, division-heavy number theory and a
//! stack-heavy histogram — each with its source (conformance assembly, in `programs/*.s`), a
//! deterministic input generator and a plain Rust reference implementation that computes the
//! expected `r0` without any VM. The benchmarks under `benches/` run every engine (ours and
//! rbpf's) on exactly these programs and inputs, and check the result before timing.
//!
//! What it is not for: measuring anything itself; the timing lives in `benches/`.
//!
//! # Conventions every program follows
//!
//! - The input starts with an 8-byte little-endian header holding the input's total length,
//!   and programs read the length from there rather than from `r2`: rbpf's `EbpfVmRaw` sets
//!   only `r1`, so a program that trusted `r2` would see 0 there. `r1` is the input's address.
//! - Only instructions that rbpf 0.4.1's interpreter runs with the same meaning as RFC 9669:
//!   nothing from CPU v4 (`sdiv`, `smod`, `movsx`, sign-extending loads, `bswap`, `gotol`), no
//!   atomics (rbpf rejects them), no legacy packet loads, no `callx`, and no negative immediate
//!   in a 64-bit `jeq`/`jne`/`jgt`/`jge`/`jlt`/`jle` (rbpf zero-extends it instead of
//!   sign-extending). [`Program::rbpf_compatible`] checks all of this.
//! - Each run executes between 10^4 and 10^6 instructions ([`Program::instructions`] is the
//!   exact count, pinned by a test).
//!
//! What it depends on: `ebpf-isa` and `ebpf-abi` only, so that every engine crate can
//! benchmark itself on these programs without a dependency cycle; the benchmark that compares
//! every engine through the facade lives in `ebpf-vm/benches`. Its build script compiles the C
//! loop programs of `tests/elf/loops/` natively when the host has a C compiler ([`native`]:
//! the native column of the facade's `loops` bench).
//!
//! ```
//! let program = ebpf_bench::by_name("poly").unwrap();
//! let interp = ebpf_interp::Interpreter::new(&program.assemble());
//! let (helpers, limits) = (ebpf_abi::Helpers::new(), ebpf_abi::Limits::default());
//! let r0 = ebpf_bench::run_on_input(&mut program.input(), |map, args| {
//!     interp.run(map, args, &helpers, &limits)
//! });
//! assert_eq!(r0, program.expected());
//! ```

// `deny`, not `forbid`: `native` calls the C programs its build script compiles.
#![deny(unsafe_code)]

use ebpf_isa::{Cond, Insn, Operand, Width};

#[allow(unsafe_code)]
pub mod native;
pub mod shapes;
pub mod timing;

/// One benchmark program.
#[derive(Clone, Copy, Debug)]
pub struct Program {
    /// Short name, used as the benchmark group name.
    pub name: &'static str,
    /// What the program exercises, in a few words.
    pub summary: &'static str,
    /// Conformance-syntax assembly.
    pub source: &'static str,
    /// Exact number of instructions one run executes on [`Program::input`] (the interpreter's
    /// count, which every engine's run shares: same program, same path).
    pub instructions: u64,
    make_input: fn() -> Vec<u8>,
    reference: fn(&[u8]) -> u64,
}

impl Program {
    /// A fresh copy of the program's input (deterministic: the same bytes every call).
    pub fn input(&self) -> Vec<u8> {
        (self.make_input)()
    }

    /// The `r0` a correct engine returns on [`Program::input`], computed in plain Rust.
    pub fn expected(&self) -> u64 {
        (self.reference)(&self.input())
    }

    /// The `r0` a correct engine returns on `input`, computed in plain Rust.
    pub fn reference(&self, input: &[u8]) -> u64 {
        (self.reference)(input)
    }

    /// The assembled program.
    ///
    /// # Panics
    ///
    /// If the source does not assemble (a test checks that every one does).
    pub fn assemble(&self) -> ebpf_isa::Program {
        match ebpf_isa::assemble(self.source) {
            Ok(p) => p,
            Err(e) => panic!("benchmark program {}: {e}", self.name),
        }
    }

    /// The program as bytecode (8 bytes per slot, little-endian), as rbpf loads it.
    pub fn bytecode(&self) -> Vec<u8> {
        self.assemble().to_bytes()
    }

    /// Why rbpf 0.4.1's interpreter would not run the program with RFC 9669 semantics, if it
    /// would not (see the crate documentation for the rules).
    pub fn rbpf_compatible(&self) -> Result<(), String> {
        let program = self.assemble();
        for (pc, insn) in program.iter() {
            let bad = match *insn {
                Insn::Atomic { .. } => Some("atomic (rbpf rejects atomics)"),
                Insn::LoadPacket { .. } => Some("legacy packet load (rbpf does not byte-swap)"),
                Insn::CallX { .. } => Some("callx"),
                Insn::Jump {
                    width: Width::W64,
                    cond: Cond::Eq | Cond::Ne | Cond::Gt | Cond::Ge | Cond::Lt | Cond::Le,
                    src: Operand::Imm(imm),
                    ..
                } if imm < 0 => Some("negative immediate in an unsigned 64-bit jump"),
                _ => None,
            };
            if let Some(why) = bad {
                return Err(format!("{} pc {pc}: {why}", self.name));
            }
        }
        let (groups, cpu) = program.requirements();
        if cpu > ebpf_isa::CpuVersion::V3 {
            return Err(format!("{}: needs CPU {cpu:?}", self.name));
        }
        if groups.contains(&ebpf_isa::Group::Packet) {
            return Err(format!("{}: uses legacy packet loads", self.name));
        }
        Ok(())
    }
}

/// The shared program set, in the order the benchmarks report them.
pub const PROGRAMS: &[Program] = &[
    Program {
        name: "poly",
        summary: "arithmetic loop: cubic polynomial with mixing, 64- and 32-bit ALU",
        source: include_str!("../programs/poly.s"),
        instructions: 160_008,
        make_input: inputs::poly,
        reference: reference::poly,
    },
    Program {
        name: "hash",
        summary: "FNV-1a 64 and Jenkins one-at-a-time over 4 KiB",
        source: include_str!("../programs/hash.s"),
        instructions: 49_172,
        make_input: inputs::hash,
        reference: reference::hash,
    },
    Program {
        name: "sort",
        summary: "insertion sort of 256 u32 in place, then a checksum",
        source: include_str!("../programs/sort.s"),
        instructions: 105_722,
        make_input: inputs::sort,
        reference: reference::sort,
    },
    Program {
        name: "packet",
        summary: "Ethernet/VLAN/IPv4/TCP parsing of 1024 frames, port filter",
        source: include_str!("../programs/packet.s"),
        instructions: 46_497,
        make_input: inputs::packet,
        reference: reference::packet,
    },
    Program {
        name: "divmod",
        summary: "gcd, modular exponentiation and digit sums on 256 u64 pairs",
        source: include_str!("../programs/divmod.s"),
        instructions: 130_059,
        make_input: inputs::divmod,
        reference: reference::divmod,
    },
    Program {
        name: "histogram",
        summary: "byte histogram in a stack array (r10), then statistics",
        source: include_str!("../programs/histogram.s"),
        instructions: 37_461,
        make_input: inputs::histogram,
        reference: reference::histogram,
    },
];

/// The program called `name`.
pub fn by_name(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name)
}

/// Runs an engine's `run` (`Interpreter::run`, `X86Program::run`, …) as the facade runs these
/// programs: `mem` is the writable input region, `r1` its VM address, `r2` its length. Returns
/// `r0`; a trap panics (the benchmark programs never trap).
pub fn run_on_input(
    mem: &mut [u8],
    run: impl FnOnce(ebpf_abi::MemoryMap<'_>, [u64; 2]) -> Result<ebpf_abi::Exit, ebpf_abi::Trap>,
) -> u64 {
    exit_on_input(mem, run).r0
}

/// [`run_on_input`], returning `r0` and the instruction count.
pub fn exit_on_input(
    mem: &mut [u8],
    run: impl FnOnce(ebpf_abi::MemoryMap<'_>, [u64; 2]) -> Result<ebpf_abi::Exit, ebpf_abi::Trap>,
) -> ebpf_abi::Exit {
    use ebpf_abi::{MemoryMap, Region, layout};
    let len = mem.len() as u64;
    let mut map = MemoryMap::new();
    map.insert(layout::INPUT, Region::Writable(mem));
    match run(map, layout::input_args(len)) {
        Ok(exit) => exit,
        Err(t) => panic!("{t}"),
    }
}

/// `n` instructions of straight-line arithmetic with a stack store every 8, then `exit`: the
/// large program for compile-time limits (rbpf's JIT cannot take it).
pub fn straight_line(n: usize) -> ebpf_isa::Program {
    use ebpf_isa::{AluOp, Reg, Size};
    let mut insns = Vec::with_capacity(n + 1);
    for i in 0..n {
        insns.push(if i % 8 == 7 {
            Insn::Store {
                size: Size::DW,
                dst: Reg::R10,
                off: -8,
                src: Operand::Reg(Reg::R0),
            }
        } else {
            Insn::Alu {
                width: Width::W64,
                op: if i % 2 == 0 { AluOp::Add } else { AluOp::Xor },
                dst: Reg::R0,
                src: Operand::Imm(i as i32),
            }
        });
    }
    insns.push(Insn::Exit);
    ebpf_isa::Program::from_insns(insns)
}

/// A deterministic generator (SplitMix64), so inputs are the same on every machine.
#[derive(Clone, Debug)]
struct Rng(ebpf_abi::SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(ebpf_abi::SplitMix64::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A value in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Input builders: each returns `[len: u64 LE][body]` with `len` the total length.
mod inputs {
    use super::Rng;

    fn with_header(body: &[u8]) -> Vec<u8> {
        let len = body.len() as u64 + 8;
        let mut out = Vec::with_capacity(len as usize);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    pub(super) fn poly() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&10_000u64.to_le_bytes());
        body.extend_from_slice(&0x0123_4567_89ab_cdefu64.to_le_bytes());
        with_header(&body)
    }

    pub(super) fn hash() -> Vec<u8> {
        let mut rng = Rng::new(1);
        let body: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        with_header(&body)
    }

    pub(super) fn sort() -> Vec<u8> {
        let mut rng = Rng::new(2);
        let n = 256u64;
        let mut body = n.to_le_bytes().to_vec();
        for _ in 0..n {
            body.extend_from_slice(&(rng.next() as u32).to_le_bytes());
        }
        with_header(&body)
    }

    /// One captured frame: Ethernet (optionally 802.1Q-tagged), then IPv4 + TCP/UDP or other.
    fn frame(rng: &mut Rng) -> Vec<u8> {
        let kind = rng.below(100);
        let mut f = Vec::new();
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2]);
        if (60..70).contains(&kind) {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&(rng.below(4096) as u16).to_be_bytes());
        }
        let ethertype: u16 = match kind {
            80..88 => 0x86dd,
            88..93 => 0x0806,
            _ => 0x0800,
        };
        f.extend_from_slice(&ethertype.to_be_bytes());
        let payload = rng.below(48) as usize;
        if ethertype != 0x0800 {
            f.extend((0..40 + payload).map(|_| rng.next() as u8));
            return f;
        }
        let udp = (70..80).contains(&kind);
        let ihl: u8 = if (96..98).contains(&kind) {
            6 + rng.below(10) as u8
        } else {
            5
        };
        let l4_len = if udp { 8 } else { 20 };
        let total = u16::from(ihl) * 4 + l4_len + payload as u16;
        f.push(0x40 | ihl);
        f.push(0);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&(rng.next() as u16).to_be_bytes());
        let frag: u16 = if (98..100).contains(&kind) {
            0x2000 | (1 + rng.below(0x1ffe) as u16)
        } else {
            0x4000
        };
        f.extend_from_slice(&frag.to_be_bytes());
        f.push(64);
        f.push(if udp { 17 } else { 6 });
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&[10, 0, rng.below(4) as u8, rng.next() as u8]);
        f.extend_from_slice(&[192, 168, 1, rng.next() as u8]);
        f.extend((0..(usize::from(ihl) - 5) * 4).map(|_| 1u8));
        let sport = 1024 + rng.below(60_000) as u16;
        let dport: u16 = match rng.below(10) {
            0..=3 => 80,
            4..=6 => 443,
            7 => 22,
            8 => 8080,
            _ => rng.next() as u16,
        };
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        if udp {
            f.extend_from_slice(&(8 + payload as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        } else {
            f.extend_from_slice(&(rng.next() as u32).to_be_bytes());
            f.extend_from_slice(&(rng.next() as u32).to_be_bytes());
            f.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        }
        f.extend((0..payload).map(|_| rng.next() as u8));
        if (93..96).contains(&kind) {
            // A capture cut short: somewhere inside the headers.
            let keep = rng.below(f.len().min(60) as u64) as usize;
            f.truncate(keep);
        }
        f
    }

    pub(super) fn packet() -> Vec<u8> {
        let mut rng = Rng::new(3);
        let mut body = Vec::new();
        for _ in 0..1024 {
            let f = frame(&mut rng);
            body.extend_from_slice(&(f.len() as u16).to_le_bytes());
            body.extend_from_slice(&f);
        }
        with_header(&body)
    }

    pub(super) fn divmod() -> Vec<u8> {
        let mut rng = Rng::new(4);
        let count = 256u64;
        let mut body = count.to_le_bytes().to_vec();
        for _ in 0..count {
            // A shared factor now and then, so that gcds are not all 1.
            let k = 1 + rng.below(1 << 16);
            let a = (rng.next() >> 17).wrapping_mul(k);
            let b = (rng.next() >> 17).wrapping_mul(k);
            body.extend_from_slice(&a.to_le_bytes());
            body.extend_from_slice(&b.to_le_bytes());
        }
        with_header(&body)
    }

    pub(super) fn histogram() -> Vec<u8> {
        let mut rng = Rng::new(5);
        // Text-like: mostly lower-case letters and spaces, some digits and punctuation.
        let body: Vec<u8> = (0..4096)
            .map(|_| match rng.below(10) {
                0..=5 => b'a' + rng.below(26) as u8,
                6 => b' ',
                7 => b'0' + rng.below(10) as u8,
                8 => b'A' + rng.below(26) as u8,
                _ => 33 + rng.below(15) as u8,
            })
            .collect();
        with_header(&body)
    }
}

/// The reference implementations: what each program computes, in plain Rust.
mod reference {
    fn u16_le(b: &[u8], at: usize) -> u64 {
        u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
    }
    fn u16_be(b: &[u8], at: usize) -> u64 {
        u64::from(u16::from_be_bytes([b[at], b[at + 1]]))
    }
    fn u32_le(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
    fn u32_be(b: &[u8], at: usize) -> u64 {
        u64::from(u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
    }
    fn u64_le(b: &[u8], at: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    }

    pub(super) fn poly(input: &[u8]) -> u64 {
        if input.len() < 24 {
            return 0;
        }
        let (n, k) = (u64_le(input, 8), u64_le(input, 16));
        let mut acc = 0u64;
        for i in 0..n {
            let t = 3u64
                .wrapping_mul(i)
                .wrapping_add(5)
                .wrapping_mul(i)
                .wrapping_add(7)
                .wrapping_mul(i)
                .wrapping_add(k);
            acc = acc.wrapping_add(t);
            acc ^= acc >> 29;
            acc = acc.wrapping_add(u64::from((i as u32).wrapping_mul(0x9e37_79b1)));
        }
        acc
    }

    pub(super) fn hash(input: &[u8]) -> u64 {
        let data = input.get(8..).unwrap_or(&[]);
        let mut fnv = 0xcbf2_9ce4_8422_2325u64;
        let mut oaat = 0u32;
        for &b in data {
            fnv = (fnv ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            oaat = oaat.wrapping_add(u32::from(b));
            oaat = oaat.wrapping_add(oaat << 10);
            oaat ^= oaat >> 6;
        }
        oaat = oaat.wrapping_add(oaat << 3);
        oaat ^= oaat >> 11;
        oaat = oaat.wrapping_add(oaat << 15);
        fnv ^ (u64::from(oaat) << 32)
    }

    pub(super) fn sort(input: &[u8]) -> u64 {
        let n = u64_le(input, 8);
        if (n << 2).wrapping_add(16) > input.len() as u64 {
            return 0;
        }
        let mut a: Vec<u32> = (0..n as usize).map(|i| u32_le(input, 16 + 4 * i)).collect();
        a.sort_unstable();
        a.iter().zip(1u64..).fold(0u64, |acc, (&x, i)| {
            acc.wrapping_add(u64::from(x).wrapping_mul(i))
        })
    }

    pub(super) fn packet(input: &[u8]) -> u64 {
        let len = input.len();
        let (mut pos, mut acc, mut count) = (8usize, 0u64, 0u64);
        while pos + 2 <= len {
            let caplen = u16_le(input, pos) as usize;
            let start = pos + 2;
            let end = start + caplen;
            if end > len {
                break;
            }
            pos = end;
            let f = &input[start..end];
            if f.len() < 14 {
                continue;
            }
            let (mut l3, mut ethertype) = (14, u16_be(f, 12));
            if ethertype == 0x8100 {
                l3 = 18;
                if l3 > f.len() {
                    continue;
                }
                ethertype = u16_be(f, 16);
            }
            if ethertype != 0x0800 || l3 + 20 > f.len() {
                continue;
            }
            let (version, ihl) = (f[l3] >> 4, usize::from(f[l3] & 15));
            if version != 4 || ihl < 5 || f[l3 + 9] != 6 || u16_be(f, l3 + 6) & 0x1fff != 0 {
                continue;
            }
            let total = u16_be(f, l3 + 2);
            let l4 = l3 + ihl * 4;
            if l4 + 20 > f.len() {
                continue;
            }
            let dport = u16_be(f, l4 + 2);
            if dport != 80 && dport != 443 {
                continue;
            }
            count += 1;
            let x = u32_be(f, l3 + 12) ^ u32_be(f, l3 + 16) ^ u32_be(f, l4);
            let doff = u64::from(f[l4 + 12] >> 4) * 4;
            let payload = total.wrapping_sub(doff).wrapping_sub(ihl as u64 * 4) & 0xffff;
            acc = acc.wrapping_mul(31).wrapping_add(x).wrapping_add(payload);
        }
        (count << 48) | (acc & ((1 << 48) - 1))
    }

    pub(super) fn divmod(input: &[u8]) -> u64 {
        const M: u64 = 4_294_967_291;
        let count = u64_le(input, 8);
        if (count << 4).wrapping_add(16) > input.len() as u64 {
            return 0;
        }
        let mut acc = 0u64;
        for i in 0..count as usize {
            let (a, b) = (u64_le(input, 16 + 16 * i), u64_le(input, 24 + 16 * i));
            let (mut x, mut y) = (a, b);
            while y != 0 {
                (x, y) = (y, x % y);
            }
            acc = acc.wrapping_mul(31).wrapping_add(x);
            let (mut base, mut exp, mut result) = (a % M, u64::from(b as u32), 1u64);
            while exp != 0 {
                if exp & 1 != 0 {
                    result = result * base % M;
                }
                base = base * base % M;
                exp >>= 1;
            }
            acc ^= result;
            let mut v = a;
            loop {
                acc = acc.wrapping_add(v % 10);
                v /= 10;
                if v == 0 {
                    break;
                }
            }
        }
        acc
    }

    pub(super) fn histogram(input: &[u8]) -> u64 {
        let mut counts = [0u64; 32];
        for &b in input.get(8..).unwrap_or(&[]) {
            counts[usize::from(b >> 3)] += 1;
        }
        let (mut sum, mut max, mut argmax) = (0u64, 0u64, 0u64);
        for (b, &c) in (0u64..).zip(&counts) {
            sum = sum.wrapping_add(c.wrapping_mul(c).wrapping_mul(b + 1));
            if c > max {
                (max, argmax) = (c, b);
            }
        }
        sum ^ (argmax << 48)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebpf_abi::{Exit, Helpers, Limits};
    use ebpf_interp::Interpreter;

    /// `p` on the interpreter over `input`.
    fn interpret(p: &Program, input: &mut [u8]) -> Exit {
        let interp = Interpreter::new(&p.assemble());
        exit_on_input(input, |map, args| {
            interp.run(map, args, &Helpers::new(), &Limits::default())
        })
    }

    #[test]
    fn every_program_matches_its_reference_on_the_interpreter() {
        let mut failures = Vec::new();
        for p in PROGRAMS {
            let mut input = p.input();
            let exit = interpret(p, &mut input);
            println!(
                "{:<10} r0 = {:#018x}, {:>7} instructions, {:>3} slots, {:>6} input bytes",
                p.name,
                exit.r0,
                exit.instructions,
                p.assemble().slot_count(),
                input.len()
            );
            if exit.r0 != p.expected() {
                failures.push(format!(
                    "{}: r0 {:#x}, reference {:#x}",
                    p.name,
                    exit.r0,
                    p.expected()
                ));
            }
            if exit.instructions != p.instructions {
                failures.push(format!(
                    "{}: {} instructions executed, Program::instructions says {}",
                    p.name, exit.instructions, p.instructions
                ));
            }
            if !(10_000..=1_000_000).contains(&exit.instructions) {
                failures.push(format!("{}: {} instructions", p.name, exit.instructions));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn programs_stay_within_what_rbpf_runs() {
        for p in PROGRAMS {
            p.rbpf_compatible().unwrap();
        }
    }

    #[test]
    fn inputs_are_deterministic_and_carry_their_length() {
        for p in PROGRAMS {
            let input = p.input();
            assert_eq!(input, p.input(), "{}", p.name);
            let header = u64::from_le_bytes(input[..8].try_into().unwrap());
            assert_eq!(header, input.len() as u64, "{}", p.name);
        }
    }

    #[test]
    fn sort_sorts_the_input_in_place() {
        let p = by_name("sort").unwrap();
        let mut input = p.input();
        interpret(p, &mut input);
        let words: Vec<u32> = input[16..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(words.len(), 256);
        assert!(words.is_sorted());
        let mut original: Vec<u32> = p.input()[16..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        original.sort_unstable();
        assert_eq!(words, original);
    }

    #[test]
    fn the_references_reject_short_inputs_like_the_programs() {
        for name in ["poly", "sort", "divmod"] {
            let p = by_name(name).unwrap();
            let mut input = p.input();
            let cut = 20;
            input.truncate(cut);
            input[..8].copy_from_slice(&(cut as u64).to_le_bytes());
            let r0 = interpret(p, &mut input.clone()).r0;
            assert_eq!(r0, p.reference(&input), "{name}");
        }
    }

    #[test]
    fn packet_filter_sees_every_kind_of_frame() {
        // The reference's counts: not every frame matches, and not none.
        let p = by_name("packet").unwrap();
        let count = p.expected() >> 48;
        assert!((200..800).contains(&count), "{count} matches of 1024");
    }
}
