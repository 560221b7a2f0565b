//! Differential tests against the interpreter: hand-written programs for every trap kind and
//! edge case of the contract, each run on the interpreter and on the JIT (with and without
//! constant blinding) and compared on `r0`, the trap (kind and pc), the instruction count, the
//! final input memory and the final stack. Each case also states what it must produce, so a
//! case cannot silently stop exercising what it is about.

#![cfg(all(target_arch = "x86_64", any(target_os = "linux", target_os = "macos")))]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{asm, check, check_with, with_stack_dumps};
use ebpf_abi::{Helpers, Limits, MemoryMap, TrapKind};
use ebpf_isa::{CallKind, Imm64Kind, Insn, Program, Reg};
use ebpf_jit_x86::{JitOptions, compile};

/// What a case must produce.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Exit with this `r0`.
    R0(u64),
    /// A trap at this pc whose kind's `Debug` starts with this text.
    Trap(usize, &'static str),
    /// Anything, as long as both engines agree.
    Agree,
}

fn input() -> Vec<u8> {
    (0u8..16).collect()
}

fn limits(budget: Option<u64>) -> Limits {
    Limits {
        budget,
        ..Limits::default()
    }
}

fn expect(name: &str, program: &Program, want: Want, budget: Option<u64>, map_input: bool) {
    let out = check_with(
        &with_stack_dumps(program),
        &input(),
        &limits(budget),
        map_input,
    );
    // The stack-dump rewrite shifts pcs; check the kind and pc on the program itself too.
    let plain = check_with(program, &input(), &limits(budget), map_input);
    match (want, &plain.result) {
        (Want::R0(r0), Ok(exit)) => assert_eq!(exit.r0, r0, "{name}"),
        (Want::Trap(pc, kind), Err(trap)) => {
            assert_eq!(trap.pc, pc, "{name}: {trap:?}");
            let got = format!("{:?}", trap.kind);
            assert!(got.starts_with(kind), "{name}: got {got}, want {kind}");
        }
        (Want::Agree, _) => {}
        (want, got) => panic!("{name}: got {got:?}, want {want:?}"),
    }
    let _ = out;
}

fn case(name: &str, src: &str, want: Want) {
    expect(name, &asm(src), want, Some(100_000), true);
}

#[test]
fn alu_results_that_rbpf_gets_wrong() {
    case("mov32 imm", "mov32 %r0, -1\nexit", Want::R0(0xffff_ffff));
    case(
        "mov32 reg",
        "lddw %r1, 0xffffffff00000005\nmov32 %r0, %r1\nexit",
        Want::R0(5),
    );
    case(
        "mov32 self",
        "lddw %r0, 0xffffffff00000005\nmov32 %r0, %r0\nexit",
        Want::R0(5),
    );
    let v = "lddw %r0, 0x1122334455667788\n";
    case("le16", &format!("{v}le16 %r0\nexit"), Want::R0(0x7788));
    case("le32", &format!("{v}le32 %r0\nexit"), Want::R0(0x5566_7788));
    case(
        "le64",
        &format!("{v}le64 %r0\nexit"),
        Want::R0(0x1122_3344_5566_7788),
    );
    case("be16", &format!("{v}be16 %r0\nexit"), Want::R0(0x8877));
    case("be32", &format!("{v}be32 %r0\nexit"), Want::R0(0x8877_6655));
    case(
        "be64",
        &format!("{v}be64 %r0\nexit"),
        Want::R0(0x8877_6655_4433_2211),
    );
    case(
        "bswap16",
        &format!("{v}bswap16 %r0\nexit"),
        Want::R0(0x8877),
    );
    case(
        "bswap32",
        &format!("{v}bswap32 %r0\nexit"),
        Want::R0(0x8877_6655),
    );
    case(
        "bswap64",
        &format!("{v}bswap64 %r0\nexit"),
        Want::R0(0x8877_6655_4433_2211),
    );
    case(
        "neg32",
        "mov %r0, 1\nneg32 %r0\nexit",
        Want::R0(0xffff_ffff),
    );
    case("neg", "mov %r0, 1\nneg %r0\nexit", Want::R0(u64::MAX));
}

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

const IMMS: [i32; 10] = [0, 1, -1, 2, 8, 7, -7, i32::MIN, i32::MAX, 1 << 30];

#[test]
fn every_alu_operation_on_edge_values() {
    let ops = [
        "add", "sub", "mul", "div", "sdiv", "or", "and", "lsh", "rsh", "mod", "smod", "xor", "mov",
        "arsh",
    ];
    for op in ops {
        for suffix in ["", "32"] {
            for &a in &VALUES {
                for &b in &VALUES {
                    let src =
                        format!("lddw %r0, {a:#x}\nlddw %r1, {b:#x}\n{op}{suffix} %r0, %r1\nexit");
                    case(&src, &src, Want::Agree);
                }
                for imm in IMMS.iter().chain(&[31, 32, 33, 63, 64, 65, 4096, -4096]) {
                    let src = format!("lddw %r0, {a:#x}\n{op}{suffix} %r0, {imm}\nexit");
                    case(&src, &src, Want::Agree);
                }
            }
        }
    }
}

#[test]
fn division_edge_cases() {
    let min64 = "lddw %r0, 0x8000000000000000\n";
    case(
        "div by 0",
        "mov %r0, 7\nmov %r1, 0\ndiv %r0, %r1\nexit",
        Want::R0(0),
    );
    case(
        "mod by 0",
        "mov %r0, 7\nmov %r1, 0\nmod %r0, %r1\nexit",
        Want::R0(7),
    );
    case("div imm 0", "mov %r0, 7\ndiv %r0, 0\nexit", Want::R0(0));
    case("mod imm 0", "mov %r0, 7\nmod %r0, 0\nexit", Want::R0(7));
    case(
        "mod32 by 0 zeroes the upper half",
        "lddw %r0, 0xdeadbeef00000007\nmov %r1, 0\nmod32 %r0, %r1\nexit",
        Want::R0(7),
    );
    case(
        "mod32 imm 0 zeroes the upper half",
        "lddw %r0, 0xdeadbeef00000007\nmod32 %r0, 0\nexit",
        Want::R0(7),
    );
    case(
        "div32 zeroes the upper half",
        "lddw %r0, 0xdeadbeef00000008\ndiv32 %r0, 2\nexit",
        Want::R0(4),
    );
    case(
        "sdiv MIN/-1",
        &format!("{min64}mov %r1, -1\nsdiv %r0, %r1\nexit"),
        Want::R0(1 << 63),
    );
    case(
        "smod MIN%-1",
        &format!("{min64}mov %r1, -1\nsmod %r0, %r1\nexit"),
        Want::R0(0),
    );
    case(
        "sdiv imm MIN/-1",
        &format!("{min64}sdiv %r0, -1\nexit"),
        Want::R0(1 << 63),
    );
    case(
        "smod imm MIN%-1",
        &format!("{min64}smod %r0, -1\nexit"),
        Want::R0(0),
    );
    case(
        "sdiv32 MIN/-1",
        "mov32 %r0, 0x80000000\nmov32 %r1, -1\nsdiv32 %r0, %r1\nexit",
        Want::R0(0x8000_0000),
    );
    case(
        "smod32 MIN%-1",
        "mov32 %r0, 0x80000000\nsmod32 %r0, -1\nexit",
        Want::R0(0),
    );
    case(
        "smod sign of the dividend",
        "mov %r0, -7\nsmod %r0, 2\nexit",
        Want::R0(u64::MAX),
    );
    case(
        "unsigned div by a negative immediate",
        "mov %r0, -1\ndiv %r0, -1\nexit",
        Want::R0(1),
    );
    case(
        "div by a power of two",
        "mov %r0, 100\ndiv %r0, 8\nexit",
        Want::R0(12),
    );
    case(
        "mod by a power of two",
        "mov %r0, 100\nmod %r0, 8\nexit",
        Want::R0(4),
    );
    case(
        "div32 by 1 zeroes the upper half",
        "lddw %r0, 0x100000005\ndiv32 %r0, 1\nexit",
        Want::R0(5),
    );
    case("div self", "mov %r0, 9\ndiv %r0, %r0\nexit", Want::R0(1));
}

#[test]
fn shifts_mask_and_zero_extend() {
    let base = "lddw %r0, 0xdeadbeef80000001\n";
    for count in [0i64, 1, 31, 32, 33, 63, 64, 65, -1] {
        for op in ["lsh", "rsh", "arsh"] {
            for suffix in ["", "32"] {
                let src = format!("{base}{op}{suffix} %r0, {count}\nexit");
                case(&src, &src, Want::Agree);
                let src = format!("{base}mov %r1, {count}\n{op}{suffix} %r0, %r1\nexit");
                case(&src, &src, Want::Agree);
            }
        }
    }
    case(
        "lsh32 by 0 zeroes the upper half",
        &format!("{base}mov %r1, 0\nlsh32 %r0, %r1\nexit"),
        Want::R0(0x8000_0001),
    );
}

#[test]
fn sign_extension() {
    for op in [
        "movsx832",
        "movsx1632",
        "movsx864",
        "movsx1664",
        "movsx3264",
    ] {
        for &v in &VALUES {
            let src = format!("lddw %r1, {v:#x}\n{op} %r0, %r1\nexit");
            case(&src, &src, Want::Agree);
        }
    }
    for load in ["ldxsb", "ldxsh", "ldxsw"] {
        let src = format!("stdw [%r10-8], -2\n{load} %r0, [%r10-8]\nexit");
        case(&src, &src, Want::R0(u64::MAX - 1));
    }
}

#[test]
fn every_jump_condition() {
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
    for cond in conds {
        for suffix in ["", "32"] {
            for (a, b) in pairs {
                let src = format!(
                    "lddw %r1, {a:#x}\nlddw %r2, {b:#x}\nmov %r0, 0\n{cond}{suffix} %r1, %r2, +1\nexit\nmov %r0, 1\nexit"
                );
                case(&src, &src, Want::Agree);
                for imm in [b as i32, -1, 0] {
                    let src = format!(
                        "lddw %r1, {a:#x}\nmov %r0, 0\n{cond}{suffix} %r1, {imm}, +1\nexit\nmov %r0, 1\nexit"
                    );
                    case(&src, &src, Want::Agree);
                }
            }
        }
    }
}

#[test]
fn out_of_bounds_on_every_region_width_and_edge() {
    for (load, w) in [
        ("ldxb", 1),
        ("ldxh", 2),
        ("ldxw", 4),
        ("ldxdw", 8),
        ("ldxsb", 1),
        ("ldxsh", 2),
        ("ldxsw", 4),
    ] {
        let last = 16 - w;
        case(
            load,
            &format!("{load} %r0, [%r1+{last}]\nexit"),
            Want::Agree,
        );
        case(
            load,
            &format!("{load} %r0, [%r1+{}]\nexit", last + 1),
            Want::Trap(0, "OutOfBounds"),
        );
        case(
            "before the start",
            &format!("{load} %r0, [%r1-1]\nexit"),
            Want::Trap(0, "OutOfBounds"),
        );
    }
    for (store, w) in [("stxb", 1), ("stxh", 2), ("stxw", 4), ("stxdw", 8)] {
        let last = 16 - w;
        case(
            store,
            &format!("lddw %r2, 0x1122334455667788\n{store} [%r1+{last}], %r2\nexit"),
            Want::Agree,
        );
        case(
            store,
            &format!("{store} [%r1+{}], %r2\nexit", last + 1),
            Want::Trap(0, "OutOfBounds"),
        );
        case(
            "store to read-only data",
            &format!("lddw %r3, 0x100000000\n{store} [%r3+0], %r2\nexit"),
            Want::Trap(2, "OutOfBounds { addr: 4294967296, len"),
        );
    }
    for (store, w) in [("stb", 1), ("sth", 2), ("stw", 4), ("stdw", 8)] {
        let last = 16 - w;
        case(
            store,
            &format!("{store} [%r1+{last}], -1234567\nldxdw %r0, [%r1+8]\nexit"),
            Want::Agree,
        );
        case(
            store,
            &format!("{store} [%r1+{}], 1\nexit", last + 1),
            Want::Trap(0, "OutOfBounds"),
        );
        case(
            store,
            &format!("{store} [%r10+0], 1\nexit"),
            Want::Trap(0, "OutOfBounds"),
        );
    }
    case(
        "read-only data is readable",
        "lddw %r3, 0x100000000\nldxdw %r0, [%r3+8]\nexit",
        Want::R0(u64::from_le_bytes(*b"y bytes!")),
    );
    expect(
        "null pointer",
        &asm("ldxb %r0, [%r1+0]\nexit"),
        Want::Trap(0, "OutOfBounds { addr: 0, len: 1"),
        None,
        false,
    );
    case(
        "unmapped region",
        "lddw %r1, 0x300000000\nldxb %r0, [%r1+0]\nexit",
        Want::Trap(2, "OutOfBounds"),
    );
    case(
        "region 64",
        "lddw %r1, 0x4000000004\nldxb %r0, [%r1+0]\nexit",
        Want::Trap(2, "OutOfBounds"),
    );
    case(
        "region 68 aliases nothing",
        "lddw %r1, 0x4400000000\nldxb %r0, [%r1+0]\nexit",
        Want::Trap(2, "OutOfBounds"),
    );
    case(
        "top of the address space",
        "lddw %r1, -8\nldxdw %r0, [%r1+0]\nexit",
        Want::Trap(2, "OutOfBounds"),
    );
    case(
        "wrapping address",
        "lddw %r1, -1\nldxb %r0, [%r1+2]\nexit",
        Want::Trap(2, "OutOfBounds { addr: 1,"),
    );
    case(
        "straddling the end",
        "ldxdw %r0, [%r1+12]\nexit",
        Want::Trap(0, "OutOfBounds"),
    );
    case(
        "straddling a region boundary",
        "lddw %r1, 0x3fffffffc\nldxdw %r0, [%r1+0]\nexit",
        Want::Trap(2, "OutOfBounds"),
    );
}

/// The emitter guesses a pointer's region (r1: the input) and checks that region first; a
/// wrong guess must fall back to the full check, with the same result or trap.
#[test]
fn wrongly_guessed_regions_fall_back_to_the_full_check() {
    // r1 + (region 1 - region 4): still "input" to the guess, really read-only data.
    let to_rodata = "lddw %r3, 0xfffffffd00000000\nadd %r1, %r3\n";
    case(
        "load from read-only data through an input-hinted pointer",
        &format!("{to_rodata}ldxdw %r0, [%r1+8]\nexit"),
        Want::R0(u64::from_le_bytes(*b"y bytes!")),
    );
    case(
        "store to read-only data through an input-hinted pointer",
        &format!("{to_rodata}stxw [%r1+0], %r3\nexit"),
        Want::Trap(3, "OutOfBounds { addr: 4294967296, len: 4, write: true"),
    );
    case(
        "loop alternating between the input and the stack",
        "mov %r0, 0\nmov %r6, 0\nstdw [%r10-8], 7\nmov %r2, %r1\nloop:\nldxb %r3, [%r2+0]\n\
         add %r0, %r3\nmov %r2, %r10\nsub %r2, 8\nadd %r6, 1\njlt %r6, 4, loop\nexit",
        Want::R0(21),
    );
    expect(
        "no input: r1 is null",
        &asm("ldxb %r0, [%r1+3]\nexit"),
        Want::Trap(0, "OutOfBounds { addr: 3, len: 1"),
        None,
        false,
    );
}

#[test]
fn stack_accesses() {
    case(
        "store and load",
        "lddw %r1, 0x1122334455667788\nstxdw [%r10-8], %r1\nldxdw %r0, [%r10-8]\nexit",
        Want::R0(0x1122_3344_5566_7788),
    );
    case(
        "past the top",
        "ldxdw %r0, [%r10+0]\nexit",
        Want::Trap(0, "OutOfBounds"),
    );
    case(
        "straddling the top",
        "ldxdw %r0, [%r10-4]\nexit",
        Want::Trap(0, "OutOfBounds"),
    );
    case(
        "bottom of the frame",
        "ldxdw %r0, [%r10-512]\nexit",
        Want::R0(0),
    );
    case(
        "below the frame",
        "ldxdw %r0, [%r10-520]\nexit",
        Want::R0(0),
    );
    case(
        "bottom of the stack",
        "ldxb %r0, [%r10-4608]\nexit",
        Want::R0(0),
    );
    case(
        "below the stack",
        "ldxb %r0, [%r10-4609]\nexit",
        Want::Trap(0, "OutOfBounds"),
    );
    case(
        "through a copy of r10",
        "mov %r2, %r10\nadd %r2, -8\nstdw [%r2+0], 42\nldxdw %r0, [%r10-8]\nexit",
        Want::R0(42),
    );
    case(
        "a program that writes r10 gets no fast path",
        "mov %r10, %r1\nldxb %r0, [%r10+3]\nstb [%r10-1], 1\nexit",
        Want::Trap(2, "OutOfBounds"),
    );
    case(
        "r10 moved inside the frame",
        "add %r10, -8\nstdw [%r10-8], 7\nldxdw %r0, [%r10-8]\nexit",
        Want::R0(7),
    );
    expect(
        "the next frame down",
        &asm("stdw [%r10-512], 1\nldxdw %r0, [%r10-520]\nexit"),
        Want::R0(0),
        None,
        true,
    );
    let one_frame = Limits {
        budget: None,
        max_call_depth: 0,
    };
    let out = check(
        &asm("stdw [%r10-512], 1\nldxdw %r0, [%r10-520]\nexit"),
        &input(),
        &one_frame,
    );
    assert!(matches!(
        out.result,
        Err(ref t) if t.pc == 1 && matches!(t.kind, TrapKind::OutOfBounds { .. })
    ));
}

#[test]
fn atomics() {
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
    for op in ops {
        for (suffix, w) in [("", 8), ("32", 4)] {
            let setup = "lddw %r2, 0x0f0f0f0ff0f0f0f0\nstxdw [%r1+8], %r2\nstxdw [%r10-16], %r2\nlddw %r3, 0x123456789abcdef0\n";
            for (base, off) in [("%r1", 8), ("%r10", -16), ("%r10", -8)] {
                let src = format!(
                    "{setup}mov %r0, 0\nlock {op}{suffix} [{base}{off:+}], %r3\nldxdw %r4, [{base}{off:+}]\nadd %r0, %r4\nadd %r0, %r3\nexit"
                );
                case(&src, &src, Want::Agree);
            }
            // cmpxchg that succeeds.
            let src = format!(
                "{setup}mov %r0, %r2\nlock {op}{suffix} [%r1+8], %r3\nldxdw %r0, [%r1+8]\nexit"
            );
            case(&src, &src, Want::Agree);
            let mis = if w == 8 { 4 } else { 2 };
            case(
                "misaligned on the input",
                &format!("lock {op}{suffix} [%r1+{mis}], %r3\nexit"),
                Want::Trap(0, "MisalignedAtomic"),
            );
            case(
                "misaligned on the stack",
                &format!("lock {op}{suffix} [%r10-{}], %r3\nexit", 16 - mis),
                Want::Trap(0, "MisalignedAtomic"),
            );
            case(
                "out of bounds before misaligned",
                &format!("lock {op}{suffix} [%r1+{}], %r3\nexit", 16 - w + 2),
                Want::Trap(0, "OutOfBounds"),
            );
            case(
                "atomics write",
                &format!("lddw %r2, 0x100000000\nlock {op}{suffix} [%r2+0], %r3\nexit"),
                Want::Trap(2, "OutOfBounds { addr: 4294967296, len"),
            );
        }
    }
}

#[test]
fn legacy_packet_loads() {
    case("ldabsb", "ldabsb 3\nexit", Want::R0(3));
    case("ldabsh", "ldabsh 2\nexit", Want::R0(0x0203));
    case("ldabsw", "ldabsw 12\nexit", Want::R0(0x0c0d_0e0f));
    case(
        "ldabsw past the end",
        "ldabsw 13\nexit",
        Want::Trap(0, "OutOfBounds"),
    );
    case(
        "ldabsb far",
        "ldabsb -1\nexit",
        Want::Trap(0, "OutOfBounds { addr: 21474836479, len: 1"),
    );
    case(
        "ldindh",
        "mov %r2, 4\nldindh %r2, 1\nexit",
        Want::R0(0x0506),
    );
    case(
        "ldind wraps in 32 bits",
        "mov32 %r2, -1\nldindb %r2, 3\nexit",
        Want::R0(2),
    );
    case(
        "ldind uses the low half only",
        "lddw %r2, 0x700000004\nldindw %r2, 0\nexit",
        Want::R0(0x0405_0607),
    );
    case(
        "ldind past the end",
        "mov %r2, 10\nldindw %r2, 4\nexit",
        Want::Trap(1, "OutOfBounds"),
    );
    expect(
        "no input",
        &asm("ldabsb 0\nexit"),
        Want::Trap(0, "OutOfBounds { addr: 17179869184, len: 1"),
        None,
        false,
    );
    let dw = Program::from_insns(vec![
        Insn::LoadPacket {
            size: ebpf_isa::Size::DW,
            addr: ebpf_isa::PacketAddr::Abs,
            imm: 13,
        },
        Insn::Exit,
    ]);
    expect(
        "a 64-bit packet load",
        &dw,
        Want::Trap(0, "OutOfBounds"),
        None,
        true,
    );
}

#[test]
fn helpers() {
    case("helper result", "mov %r1, 42\ncall 5\nexit", Want::R0(42));
    case(
        "arguments in order",
        "mov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\nmov %r5, 5\ncall 4\nexit",
        Want::R0((((31 + 2) * 31 + 3) * 31 + 4) * 31 + 5),
    );
    case(
        "r1-r5 are zeroed after a helper",
        "mov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\nmov %r5, 5\ncall 5\nmov %r0, %r1\nor %r0, %r2\nor %r0, %r3\nor %r0, %r4\nor %r0, %r5\nexit",
        Want::R0(0),
    );
    case(
        "r6-r10 survive a helper",
        "mov %r6, 6\nmov %r7, 7\nmov %r8, 8\nmov %r9, 9\nstdw [%r10-8], 10\ncall 5\nldxdw %r0, [%r10-8]\nadd %r0, %r6\nadd %r0, %r7\nadd %r0, %r8\nadd %r0, %r9\nexit",
        Want::R0(40),
    );
    case(
        "unknown helper",
        "mov %r0, 1\ncall 99\nexit",
        Want::Trap(1, "UnknownHelper { id: 99 }"),
    );
    case(
        "unknown negative helper",
        "call -1\nexit",
        Want::Trap(0, "UnknownHelper { id: 4294967295 }"),
    );
    case(
        "callx",
        "mov %r1, 9\nmov %r2, 5\ncall %r2\nexit",
        Want::R0(9),
    );
    case(
        "callx uses all 64 bits",
        "lddw %r2, 0x100000005\ncall %r2\nexit",
        Want::Trap(2, "UnknownHelper { id: 4294967301 }"),
    );
    case(
        "helper failure",
        "mov %r1, 7\ncall 1\nexit",
        Want::Trap(1, "HelperFailed { id: 1, message: \"failed with 7\""),
    );
    case(
        "helper writes memory",
        "mov %r6, %r1\nadd %r1, 8\nlddw %r2, 0x1122334455667788\ncall 2\nldxdw %r0, [%r6+8]\nexit",
        Want::R0(0x1122_3344_5566_7788),
    );
    case(
        "helper writes the stack",
        "mov %r1, %r10\nadd %r1, -8\nmov %r2, 77\ncall 2\nldxdw %r0, [%r10-8]\nexit",
        Want::R0(77),
    );
    case(
        "helper memory error traps at the call",
        "add %r1, 12\nmov %r2, 1\ncall 2\nexit",
        Want::Trap(2, "OutOfBounds"),
    );
    case(
        "helper reads read-only data",
        "lddw %r1, 0x100000000\ncall 3\nexit",
        Want::R0(u64::from_le_bytes(*b"read-onl")),
    );
}

#[test]
fn a_helper_panic_resumes_after_the_generated_code_returned() {
    let program = asm("call 7\nexit");
    let mut helpers = Helpers::new();
    helpers.insert(
        7,
        |_: [u64; 5], _: &mut dyn ebpf_abi::VmMemory| -> Result<u64, _> {
            panic!("helper panicked")
        },
    );
    let jit = compile(&program, &JitOptions::default()).unwrap();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        jit.run(MemoryMap::new(), [0, 0], &helpers, &Limits::default())
    }));
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"helper panicked"));
    // The program still runs afterwards.
    let ok = asm("mov %r0, 3\nexit");
    let jit = compile(&ok, &JitOptions::default()).unwrap();
    let exit = jit
        .run(MemoryMap::new(), [0, 0], &helpers, &Limits::default())
        .unwrap();
    assert_eq!(exit.r0, 3);
}

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

#[test]
fn local_calls() {
    case(
        "frames and callee-saved registers",
        LOCAL_CALLS,
        Want::R0(0x2_0000_0000 + 8 * 512 + 130),
    );
    let recursion = "mov %r0, 0\nrec:\nadd %r0, 1\ncall local rec\nexit";
    for depth in [0usize, 1, 2, 8] {
        let l = Limits {
            budget: Some(10_000),
            max_call_depth: depth,
        };
        let out = check(&with_stack_dumps(&asm(recursion)), &input(), &l);
        let out2 = check(&asm(recursion), &input(), &l);
        assert!(
            matches!(out2.result, Err(ref t) if t.pc == 2 && t.kind == TrapKind::CallDepthExceeded { max_depth: depth }),
            "{out2:?}"
        );
        let _ = out;
    }
    // Exactly at the limit: depth 8 is allowed, 9 is not.
    let chain = |n: usize| {
        let mut s = String::from("mov %r0, 0\ncall local f1\nexit\n");
        for i in 1..=n {
            s += &format!("f{i}:\nadd %r0, 1\n");
            if i < n {
                s += &format!("call local f{}\n", i + 1);
            }
            s += "exit\n";
        }
        s
    };
    case("depth 8", &chain(8), Want::R0(8));
    case("depth 9", &chain(9), Want::Trap(25, "CallDepthExceeded"));
    case(
        "r0 from a nested function",
        "call local a\nexit\na:\ncall local b\nadd %r0, 1\nexit\nb:\nmov %r0, 41\nexit",
        Want::R0(42),
    );
    case(
        "a jump across functions",
        "call local f\nmov %r0, 5\nexit\nf:\nja -3",
        Want::R0(5),
    );
}

#[test]
fn control_flow_traps() {
    case(
        "jump into the second slot of lddw",
        "ja +1\nlddw %r0, 1\nexit",
        Want::Trap(2, "InvalidInstruction { reason: LddwTail }"),
    );
    case(
        "call into the second slot of lddw",
        "call local +1\nlddw %r0, 1\nexit",
        Want::Trap(2, "InvalidInstruction { reason: LddwTail }"),
    );
    case(
        "conditional jump into the second slot of lddw",
        "jeq %r0, 0, +1\nlddw %r0, 1\nexit",
        Want::Trap(2, "InvalidInstruction { reason: LddwTail }"),
    );
    case(
        "falling off the end",
        "mov %r0, 1",
        Want::Trap(1, "InvalidInstruction { reason: FellOffEnd }"),
    );
    case(
        "falling off the end after lddw",
        "lddw %r0, 1",
        Want::Trap(2, "InvalidInstruction { reason: FellOffEnd }"),
    );
    case(
        "returning to the end",
        "ja +1\nexit\ncall local -2",
        Want::Trap(3, "InvalidInstruction { reason: FellOffEnd }"),
    );
    case(
        "a helper call as the last instruction",
        "call 5",
        Want::Trap(1, "InvalidInstruction { reason: FellOffEnd }"),
    );
    case(
        "ja to the end",
        "mov %r0, 1\nja +0",
        Want::Trap(1, "InvalidInstruction { reason: TargetOutOfRange }"),
    );
    case(
        "ja outside",
        "ja +100\nexit",
        Want::Trap(0, "InvalidInstruction { reason: TargetOutOfRange }"),
    );
    case("ja before the start", "exit\nja -5", Want::Agree);
    case(
        "call outside",
        "call local +100\nexit",
        Want::Trap(0, "InvalidInstruction { reason: TargetOutOfRange }"),
    );
    expect(
        "bad target taken",
        &asm("jeq %r1, 0, +100\nmov %r0, 1\nexit"),
        Want::Trap(0, "InvalidInstruction { reason: TargetOutOfRange }"),
        Some(100),
        false,
    );
    expect(
        "bad target taken backwards",
        &asm("jeq %r1, 0, -5\nmov %r0, 1\nexit"),
        Want::Trap(0, "InvalidInstruction { reason: TargetOutOfRange }"),
        Some(100),
        false,
    );
    expect(
        "bad target not taken",
        &asm("jeq %r1, 0, +100\nmov %r0, 1\nexit"),
        Want::R0(1),
        Some(100),
        true,
    );
    expect(
        "bad target taken on the last unit of budget",
        &asm("jeq %r1, 0, +100\nmov %r0, 1\nexit"),
        Want::Trap(0, "InvalidInstruction { reason: TargetOutOfRange }"),
        Some(1),
        false,
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
    for budget in [None, Some(0), Some(1), Some(2)] {
        expect(
            "kfunc",
            &kfunc,
            Want::Trap(0, "InvalidInstruction { reason: UnsupportedCall }"),
            budget,
            true,
        );
        let want = if budget == Some(0) {
            Want::Trap(0, "BudgetExhausted")
        } else {
            Want::Trap(1, "InvalidInstruction { reason: UnsupportedLddw }")
        };
        expect("pseudo lddw", &pseudo, want, budget, true);
        expect(
            "invalid with any budget",
            &asm("ja +100"),
            Want::Trap(0, "InvalidInstruction { reason: TargetOutOfRange }"),
            budget,
            true,
        );
        expect(
            "empty program",
            &Program::default(),
            Want::Trap(0, "InvalidInstruction { reason: FellOffEnd }"),
            budget,
            true,
        );
    }
}

/// A program with a loop, local calls, helpers and memory traffic, for budget sweeps.
const BUSY: &str = "
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

#[test]
fn budget_sweeps_stop_at_the_same_pc_with_the_same_count() {
    for src in [
        BUSY,
        LOCAL_CALLS,
        "mov %r0, 1\nexit",
        "lddw %r0, 1\nja +0\nexit",
    ] {
        let program = asm(src);
        let full = check(&program, &input(), &limits(None));
        let n = match full.result {
            Ok(exit) => exit.instructions,
            Err(t) => panic!("{t}"),
        };
        let mut exhausted = 0;
        for budget in 0..=n + 2 {
            let out = check(&program, &input(), &limits(Some(budget)));
            check(&with_stack_dumps(&program), &input(), &limits(Some(budget)));
            match out.result {
                Ok(exit) => {
                    assert!(budget >= n);
                    assert_eq!(exit.instructions, n);
                }
                Err(t) => {
                    assert!(budget < n, "{t}");
                    assert_eq!(t.kind, TrapKind::BudgetExhausted { budget });
                    exhausted += 1;
                }
            }
        }
        assert_eq!(exhausted, n);
    }
}

#[test]
fn a_program_past_rbpf_limit() {
    // rbpf's JIT panics past ~575 instructions; this one has 3,000, with a loop around them.
    let mut src = String::from("mov %r0, 0\nmov %r6, 3\ntop:\n");
    for i in 0..1000 {
        src += &format!(
            "add %r0, {i}\nxor %r0, %r6\nstxdw [%r10-{}], %r0\n",
            8 + (i % 60) * 8
        );
    }
    src += "sub %r6, 1\njne %r6, 0, top\nexit\n";
    case("3000 instructions", &src, Want::Agree);
}

#[test]
fn runs_share_nothing_and_threads_may_run_one_program() {
    let program = asm(BUSY);
    let jit = compile(&program, &JitOptions::default()).unwrap();
    let jit = &jit;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(move || {
                for _ in 0..50 {
                    let mut mem = input();
                    let mut map = MemoryMap::new();
                    map.insert(
                        ebpf_abi::layout::INPUT,
                        ebpf_abi::Region::Writable(&mut mem),
                    );
                    let mut helpers = Helpers::new();
                    helpers.insert(5, ebpf_abi::conformance_helper);
                    let exit = jit
                        .run(
                            map,
                            [ebpf_abi::layout::vm_addr(4, 0), 16],
                            &helpers,
                            &Limits::default(),
                        )
                        .unwrap();
                    assert!(exit.instructions > 0);
                }
            });
        }
    });
}
