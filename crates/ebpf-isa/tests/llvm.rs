//! The LLVM-syntax disassembler ([`Insn::llvm`]) against the real LLVM 19 tools.
//!
//! - `golden_lines`: a fixed sample of `llvm-objdump-19 -d --mcpu=v4` output, checked without
//!   the tools.
//! - `matches_llvm_objdump`: every conformance program plus a generated program with every row
//!   of [`table::SPECS`] (eleven instances each, all registers, negative and positive offsets
//!   and immediates) is written into one `.text` section with `llvm-mc`, disassembled by
//!   `llvm-objdump`, and compared instruction by instruction with our text.
//! - `round_trips_through_llvm_mc`: our text for the same programs, assembled by `llvm-mc`,
//!   gives back our bytes — except for the forms whose LLVM text drops a field (see
//!   [`as_llvm_reads_it`]).
//!
//! The tools are `/usr/lib/llvm-19/bin/{llvm-mc,llvm-objdump}`, or those in `$EBPF_LLVM_BIN`.
//! Without them the tests print a skip message and pass, unless `CI` is set: then they fail.
//! Each tool runs once per test, on all programs at once.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use ebpf_isa::table::{self, Form};
use ebpf_isa::{
    CallKind, Imm64Kind, Insn, PacketAddr, Program, Reg, assemble_lines, decode, disassemble_llvm,
};

/// Lines of `llvm-objdump-19 -d --mcpu=v4` output (raw bytes, tab, text; target annotations
/// removed), captured from the real tool.
const GOLDEN: &str = "\
04 03 00 00 ff ff ff ff\tw3 += -0x1\n\
04 03 00 00 00 00 00 80\tw3 += -0x80000000\n\
0c 53 00 00 00 00 00 00\tw3 += w5\n\
1c 53 00 00 00 00 00 00\tw3 -= w5\n\
24 03 00 00 ff 00 00 00\tw3 *= 0xff\n\
34 03 00 00 01 00 00 00\tw3 /= 0x1\n\
74 03 00 00 f0 ff ff ff\tw3 >>= -0x10\n\
94 03 00 00 00 00 00 00\tw3 %= 0x0\n\
94 03 01 00 f9 ff ff ff\tw3 s%= -0x7\n\
9c 53 01 00 00 00 00 00\tw3 s%= w5\n\
b4 03 00 00 ff ff ff 7f\tw3 = 0x7fffffff\n\
84 04 00 00 00 00 00 00\tw4 = -w4\n\
bc 21 08 00 00 00 00 00\tw1 = (s8)w2\n\
bc 21 10 00 00 00 00 00\tw1 = (s16)w2\n\
07 03 00 00 01 00 00 00\tr3 += 0x1\n\
07 03 00 00 00 00 00 80\tr3 += -0x80000000\n\
17 03 00 00 00 00 00 00\tr3 -= 0x0\n\
2f 53 00 00 00 00 00 00\tr3 *= r5\n\
37 03 01 00 f9 ff ff ff\tr3 s/= -0x7\n\
3f 53 01 00 00 00 00 00\tr3 s/= r5\n\
47 03 00 00 f0 ff ff ff\tr3 |= -0x10\n\
57 03 00 00 0a 00 00 00\tr3 &= 0xa\n\
67 03 00 00 ff 00 00 00\tr3 <<= 0xff\n\
af 53 00 00 00 00 00 00\tr3 ^= r5\n\
b7 03 00 00 00 00 00 80\tr3 = -0x80000000\n\
cf 53 00 00 00 00 00 00\tr3 s>>= r5\n\
87 04 00 00 00 00 00 00\tr4 = -r4\n\
bf 21 20 00 00 00 00 00\tr1 = (s32)r2\n\
d4 06 00 00 20 00 00 00\tr6 = le32 r6\n\
dc 06 00 00 10 00 00 00\tr6 = be16 r6\n\
d7 06 00 00 40 00 00 00\tr6 = bswap64 r6\n\
05 00 03 00 00 00 00 00\tgoto +0x3\n\
05 00 00 80 00 00 00 00\tgoto -0x8000\n\
06 00 00 00 fd ff ff ff\tgotol -0x3\n\
06 00 00 00 64 00 00 00\tgotol +0x64\n\
15 01 02 00 fb ff ff ff\tif r1 == -0x5 goto +0x2\n\
25 01 fe ff 07 00 00 00\tif r1 > 0x7 goto -0x2\n\
2d 21 03 00 00 00 00 00\tif r1 > r2 goto +0x3\n\
45 01 fe ff 07 00 00 00\tif r1 & 0x7 goto -0x2\n\
7d 21 01 00 00 00 00 00\tif r1 s>= r2 goto +0x1\n\
ad 21 01 00 00 00 00 00\tif r1 < r2 goto +0x1\n\
b5 01 02 00 fb ff ff ff\tif r1 <= -0x5 goto +0x2\n\
c5 01 fe ff 07 00 00 00\tif r1 s< 0x7 goto -0x2\n\
1e 21 01 00 00 00 00 00\tif w1 == w2 goto +0x1\n\
26 01 02 00 fb ff ff ff\tif w1 > -0x5 goto +0x2\n\
5e 21 01 00 00 00 00 00\tif w1 != w2 goto +0x1\n\
de 21 01 00 00 00 00 00\tif w1 s<= w2 goto +0x1\n\
85 00 00 00 05 00 00 00\tcall 0x5\n\
85 10 00 00 fd ff ff ff\tcall -0x3\n\
8d 03 00 00 00 00 00 00\tcallx r3\n\
95 00 00 00 00 00 00 00\texit\n\
18 01 00 00 fb ff ff ff 00 00 00 00 ff ff ff ff\tr1 = -0x5 ll\n\
18 01 00 00 89 67 45 23 00 00 00 00 01 00 00 00\tr1 = 0x123456789 ll\n\
18 01 00 00 ff ff ff ff 00 00 00 00 00 00 00 00\tr1 = 0xffffffff ll\n\
18 01 00 00 00 00 00 00 00 00 00 00 00 00 00 80\tr1 = -0x8000000000000000 ll\n\
18 11 00 00 05 00 00 00 00 00 00 00 00 00 00 00\tld_pseudo\tr1, 0x1, 0x5\n\
18 21 00 00 fb ff ff ff 00 00 00 00 ff ff ff ff\tld_pseudo\tr1, 0x2, 0xfffffffb\n\
61 72 04 00 00 00 00 00\tw2 = *(u32 *)(r7 + 0x4)\n\
71 72 00 80 00 00 00 00\tw2 = *(u8 *)(r7 - 0x8000)\n\
81 72 04 00 00 00 00 00\tr2 = *(s32 *)(r7 + 0x4)\n\
89 72 ff 7f 00 00 00 00\tr2 = *(s16 *)(r7 + 0x7fff)\n\
62 0a 00 00 fd ff ff ff\t*(u32 *)(r10 + 0x0) = -0x3\n\
72 0a f8 ff 2c 01 00 00\t*(u8 *)(r10 - 0x8) = 0x12c\n\
6b 9a ff 7f 00 00 00 00\t*(u16 *)(r10 + 0x7fff) = w9\n\
7b 9a f8 ff 00 00 00 00\t*(u64 *)(r10 - 0x8) = r9\n\
c3 1a f8 ff 40 00 00 00\tlock *(u32 *)(r10 - 0x8) |= w1\n\
c3 1a f8 ff 41 00 00 00\tw1 = atomic_fetch_or((u32 *)(r10 - 0x8), w1)\n\
c3 1a f8 ff e1 00 00 00\tw1 = xchg32_32(r10 - 0x8, w1)\n\
c3 1a f8 ff f1 00 00 00\tw0 = cmpxchg32_32(r10 - 0x8, w0, w1)\n\
db 1a f8 ff 00 00 00 00\tlock *(u64 *)(r10 - 0x8) += r1\n\
db 1a f8 ff 01 00 00 00\tr1 = atomic_fetch_add((u64 *)(r10 - 0x8), r1)\n\
db 1a 08 00 a1 00 00 00\tr1 = atomic_fetch_xor((u64 *)(r10 + 0x8), r1)\n\
db 1a f8 ff e1 00 00 00\tr1 = xchg_64(r10 - 0x8, r1)\n\
db 1a 08 00 f1 00 00 00\tr0 = cmpxchg_64(r10 + 0x8, r0, r1)\n\
20 00 00 00 0c 00 00 00\tr0 = *(u32 *)skb[0xc]\n\
30 00 00 00 f4 ff ff ff\tr0 = *(u8 *)skb[-0xc]\n\
40 40 00 00 f4 ff ff ff\tr0 = *(u32 *)skb[r4]\n\
";

fn hex_bytes(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn golden_lines() {
    let mut n = 0;
    for line in GOLDEN.lines() {
        let (bytes, text) = line.split_once('\t').unwrap();
        let program = decode(&hex_bytes(bytes)).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(program.len(), 1, "{line}");
        assert_eq!(disassemble_llvm(&program), format!("{text}\n"), "{bytes}");
        n += 1;
    }
    assert!(n > 70);
}

// ---------------------------------------------------------------------------------------------
// The corpus.

/// A program with a name for messages.
struct Named {
    name: String,
    program: Program,
}

/// Every conformance program (none when the suite is absent and `CI` is unset).
fn conformance_programs() -> Vec<Named> {
    let Some((files, _)) = ebpf_testdata::suite() else {
        return Vec::new();
    };
    files
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let v = ebpf_testdata::read(path).unwrap();
            let program = match &v.raw {
                Some(raw) if v.asm.is_empty() => decode(raw).unwrap(),
                _ => assemble_lines(&v.asm_lines()).unwrap_or_else(|e| panic!("{name}: {e}")),
            };
            Named { name, program }
        })
        .collect()
}

const IMMS: [i32; 9] = [0, 1, -1, 0x10, -300, 12345, i32::MAX, i32::MIN, 0x7f];
const OFFS: [i16; 8] = [0, 1, -1, 8, -8, 0x7ff0, i16::MAX, i16::MIN];
const IMM64S: [u64; 8] = [
    0,
    5,
    5u64.wrapping_neg(),
    0x1_2345_6789,
    0xffff_ffff,
    1 << 63,
    i64::MAX as u64,
    0xdead_beef_0000_0001,
];

/// Instance `k` of `form`: registers, immediates and offsets cycle with `k`.
fn sample(form: Form, k: usize) -> Insn {
    form.with_operands(
        Reg::ALL[k % Reg::ALL.len()],
        Reg::ALL[(3 * k + 1) % Reg::ALL.len()],
        OFFS[k % OFFS.len()],
        IMMS[k % IMMS.len()],
        IMM64S[k % IMM64S.len()],
    )
}

/// Every row of the table, eleven times (so that every register appears in every register
/// operand of every form).
fn every_form() -> Named {
    let insns: Vec<Insn> = table::SPECS
        .iter()
        .flat_map(|spec| (0..Reg::ALL.len()).map(move |k| sample(spec.form, k)))
        .collect();
    let program = Program::from_insns(insns);
    let decoded = decode(&program.to_bytes()).expect("generated program decodes");
    assert_eq!(decoded, program, "generated program survives encode/decode");
    let forms: HashSet<Form> = program.insns().iter().map(Form::of).collect();
    assert_eq!(forms.len(), table::SPECS.len(), "every row is generated");
    Named {
        name: "every-form".into(),
        program,
    }
}

// ---------------------------------------------------------------------------------------------
// The tools.

struct Tools {
    mc: PathBuf,
    objdump: PathBuf,
}

/// The LLVM 19 tools, or `None` (after a skip message) when they are missing and `CI` is unset.
fn tools() -> Option<Tools> {
    let dir = std::env::var_os("EBPF_LLVM_BIN")
        .map_or_else(|| PathBuf::from("/usr/lib/llvm-19/bin"), PathBuf::from);
    let tools = Tools {
        mc: dir.join("llvm-mc"),
        objdump: dir.join("llvm-objdump"),
    };
    if tools.mc.is_file() && tools.objdump.is_file() {
        return Some(tools);
    }
    let why = format!(
        "llvm-mc and llvm-objdump not found in {} (install the apt package `llvm-19`, or set \
         EBPF_LLVM_BIN to the directory holding them)",
        dir.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipping: {why}");
    None
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "ebpf-isa-llvm-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a tool; returns its stdout, or its stderr as the error.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Assembles `source` with `llvm-mc -triple bpfel -mcpu=v4` into `dir/name.o`.
fn llvm_mc(tools: &Tools, dir: &Path, name: &str, source: &str) -> Result<PathBuf, String> {
    let src = dir.join(format!("{name}.s"));
    let obj = dir.join(format!("{name}.o"));
    std::fs::write(&src, source).unwrap();
    run(Command::new(&tools.mc)
        .args(["-triple", "bpfel", "-mcpu=v4", "-filetype=obj", "-o"])
        .arg(&obj)
        .arg(&src))?;
    Ok(obj)
}

/// The contents of the `.text` section of an ELF64 little-endian object.
fn text_section(elf: &[u8]) -> Vec<u8> {
    let u16_at = |o: usize| usize::from(u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()));
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(
        &elf[..6],
        b"\x7fELF\x02\x01",
        "an ELF64 little-endian object"
    );
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18);
    for i in 0..shnum {
        let h = header(i);
        let name_at = strtab + u32_at(h);
        let name_len = elf[name_at..].iter().position(|&b| b == 0).unwrap();
        if &elf[name_at..name_at + name_len] == b".text" {
            let (offset, size) = (u64_at(h + 0x18), u64_at(h + 0x20));
            return elf[offset..offset + size].to_vec();
        }
    }
    panic!("no .text section");
}

/// `llvm-objdump -d --mcpu=v4` of `bytes`, as pc → text with the ` <.text+0x..>` jump-target
/// annotation removed (empty when objdump printed no text).
fn objdump(tools: &Tools, dir: &Path, bytes: &[u8]) -> BTreeMap<usize, String> {
    let mut source = String::from("\t.text\n");
    for chunk in bytes.chunks(16) {
        let list: Vec<String> = chunk.iter().map(|b| format!("{b:#04x}")).collect();
        writeln!(source, "\t.byte {}", list.join(", ")).unwrap();
    }
    let obj = llvm_mc(tools, dir, "bytes", &source).unwrap_or_else(|e| panic!("llvm-mc: {e}"));
    let out = run(Command::new(&tools.objdump)
        .args(["-d", "--mcpu=v4"])
        .arg(&obj))
    .unwrap_or_else(|e| panic!("llvm-objdump: {e}"));
    let mut lines = BTreeMap::new();
    for line in out.lines() {
        // `     pc:\tRAW BYTES\tTEXT` (TEXT may itself hold a tab: `ld_pseudo\tr1, ...`).
        let Some((pc, rest)) = line.trim_start().split_once(":\t") else {
            continue;
        };
        let Ok(pc) = pc.parse::<usize>() else {
            continue;
        };
        let mut text = rest.split_once('\t').map_or("", |(_, t)| t);
        if text.ends_with('>')
            && let Some(at) = text.rfind(" <")
        {
            text = &text[..at];
        }
        lines.insert(pc, text.to_string());
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// (a) Our text against llvm-objdump's.

/// Forms our decoder accepts that llvm-objdump-19 cannot print (`<unknown>` or no text). There
/// are none: LLVM 19 prints every form of RFC 9669. (It prints `<unknown>` for encodings that
/// are not in the ISA either, such as a 32-bit `movsx` from 32 bits, `bc` with offset 32.)
const UNPRINTABLE: [&str; 0] = [];

#[test]
fn matches_llvm_objdump() {
    let Some(tools) = tools() else {
        return;
    };
    let dir = TempDir::new("objdump");
    let mut corpus = conformance_programs();
    let conformance = corpus.len();
    corpus.push(every_form());

    let mut bytes = Vec::new();
    let mut bases = Vec::new();
    for p in &corpus {
        bases.push(bytes.len() / 8);
        bytes.extend(p.program.to_bytes());
    }
    let printed = objdump(&tools, &dir.0, &bytes);

    let (mut compared, mut equal) = (0, 0);
    let mut unprintable = BTreeMap::<String, usize>::new();
    let mut mismatches = Vec::new();
    for (p, base) in corpus.iter().zip(bases) {
        for (pc, insn) in p.program.iter() {
            let theirs = printed.get(&(base + pc)).map_or("", String::as_str);
            if theirs.is_empty() || theirs == "<unknown>" {
                *unprintable
                    .entry(format!("{:?}", Form::of(insn)))
                    .or_default() += 1;
                continue;
            }
            compared += 1;
            let ours = insn.llvm().to_string();
            if ours == theirs {
                equal += 1;
            } else {
                mismatches.push(format!(
                    "{} pc {pc}: ours {ours:?}, llvm-objdump {theirs:?}",
                    p.name
                ));
            }
        }
    }
    let unprintable_count: usize = unprintable.values().sum();
    println!(
        "llvm-objdump: {} programs ({conformance} conformance + 1 generated), {compared} \
         instructions compared, {equal} equal, {unprintable_count} unprintable {:?}",
        corpus.len(),
        unprintable
    );
    assert!(
        mismatches.is_empty(),
        "{} of {compared} instructions differ from llvm-objdump:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    let unexpected: Vec<&String> = unprintable
        .keys()
        .filter(|f| !UNPRINTABLE.contains(&f.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "llvm-objdump cannot print {unexpected:?}"
    );
    let total: usize = corpus.iter().map(|p| p.program.len()).sum();
    assert_eq!(equal + unprintable_count, total);
}

// ---------------------------------------------------------------------------------------------
// (b) Our text, assembled by llvm-mc, against our bytes.

/// The instruction LLVM's text for `insn` stands for: the text of three forms drops a field,
/// so `llvm-mc` reads it back as another instruction.
///
/// - `call` prints only `imm`, so a local call or a kfunc call reads back as a helper call
///   (`src` 0). (`llvm-mc` makes a local call only from `call <label>`.)
/// - `ld_pseudo` has no operand for the high half of the immediate, which reads back as 0.
/// - `r0 = *(u32 *)skb[rS]` (`LD_IND`) has no operand for `imm`, which reads back as 0.
fn as_llvm_reads_it(insn: &Insn) -> Insn {
    match *insn {
        Insn::Call { imm, .. } => Insn::Call {
            kind: CallKind::Helper,
            imm,
        },
        Insn::LoadImm64 { dst, kind, imm } if kind != Imm64Kind::Value => Insn::LoadImm64 {
            dst,
            kind,
            imm: imm & 0xffff_ffff,
        },
        Insn::LoadPacket {
            size,
            addr: addr @ PacketAddr::Ind(_),
            ..
        } => Insn::LoadPacket { size, addr, imm: 0 },
        other => other,
    }
}

/// Whether `llvm-mc` accepts the text of `insn`. It does for everything but `gotol` beyond a
/// 16-bit offset: its parser takes only "an identifier or 16-bit signed integer" there, although
/// it prints, and the encoding has, 32 bits.
fn llvm_mc_accepts(insn: &Insn) -> bool {
    match *insn {
        Insn::Ja32 { imm } => i16::try_from(imm).is_ok(),
        _ => true,
    }
}

#[test]
fn round_trips_through_llvm_mc() {
    let Some(tools) = tools() else {
        return;
    };
    let dir = TempDir::new("mc");
    let mut corpus = conformance_programs();
    let conformance = corpus.len();
    let every = every_form();
    let every_insns: Vec<Insn> = every
        .program
        .insns()
        .iter()
        .copied()
        .filter(llvm_mc_accepts)
        .collect();
    let left_out = every.program.len() - every_insns.len();
    corpus.push(Named {
        name: every.name,
        program: Program::from_insns(every_insns),
    });

    // One source file; remember which program and instruction each line is.
    let mut source = String::from("\t.text\n");
    let mut line_of = vec![(String::new(), 0); 2];
    for p in &corpus {
        for (i, insn) in p.program.insns().iter().enumerate() {
            assert!(llvm_mc_accepts(insn), "{}: {}", p.name, insn.llvm());
            writeln!(source, "\t{}", insn.llvm()).unwrap();
            line_of.push((p.name.clone(), i));
        }
    }
    let obj = llvm_mc(&tools, &dir.0, "text", &source).unwrap_or_else(|e| {
        // `text.s:LINE:COL: error: ...`: name the program and instruction.
        let at = e
            .split(':')
            .nth(1)
            .and_then(|l| l.parse::<usize>().ok())
            .and_then(|l| line_of.get(l));
        panic!("llvm-mc rejects our text ({at:?}):\n{e}")
    });
    let text = text_section(&std::fs::read(obj).unwrap());
    assert_eq!(
        text.len(),
        corpus
            .iter()
            .map(|p| p.program.slot_count() * 8)
            .sum::<usize>(),
        "llvm-mc assembled a different number of slots"
    );

    let (mut exact_programs, mut exact, mut lossy) = (0, 0, 0);
    let mut mismatches = Vec::new();
    let mut at = 0;
    for (n, p) in corpus.iter().enumerate() {
        let mut program_exact = true;
        for insn in p.program.insns() {
            let ours = Program::from_insns(vec![*insn]).to_bytes();
            let theirs = &text[at..at + ours.len()];
            at += ours.len();
            if theirs == ours.as_slice() {
                exact += 1;
                continue;
            }
            program_exact = false;
            let expected = Program::from_insns(vec![as_llvm_reads_it(insn)]).to_bytes();
            if theirs == expected.as_slice() {
                lossy += 1;
            } else {
                mismatches.push(format!(
                    "{}: {:?} assembles to {theirs:02x?}, not {ours:02x?}",
                    p.name,
                    insn.llvm().to_string()
                ));
            }
        }
        if program_exact && n < conformance {
            exact_programs += 1;
        }
    }
    println!(
        "llvm-mc: {} programs ({conformance} conformance + 1 generated, {left_out} generated \
         gotol left out); {exact_programs} of the {conformance} conformance programs give back \
         our bytes exactly; {exact} instructions exact, {lossy} lossy as documented",
        corpus.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} instructions do not round-trip:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // Among the conformance programs, only local calls lose anything.
    for p in &corpus[..conformance] {
        assert!(
            p.program.insns().iter().all(|i| as_llvm_reads_it(i) == *i
                || matches!(
                    i,
                    Insn::Call {
                        kind: CallKind::Local,
                        ..
                    }
                )),
            "{}",
            p.name
        );
    }
}
