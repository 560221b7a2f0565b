//! Strategies for registers, immediates, offsets and single instructions of every form.
//!
//! The forms come from [`SPECS`], so a row added to the table is generated without a change
//! here (and a new [`Form`] variant fails to compile until [`insn_of_form_using`] handles it).

use ebpf_isa::table::{Form, SPECS, Spec};
use ebpf_isa::{Insn, Operand, PacketAddr, Reg};
use proptest::prelude::*;
use proptest::sample::select;

/// 32-bit immediates that tend to find bugs: zero, ±1, the extremes, sign and width boundaries,
/// shift counts around 32 and 64.
pub static INTERESTING_I32: [i32; 24] = [
    0,
    1,
    -1,
    2,
    -2,
    7,
    8,
    31,
    32,
    63,
    64,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    i32::MAX,
    i32::MIN,
    i32::MAX - 1,
    i32::MIN + 1,
    0x1234_5678,
];

/// 16-bit offsets that tend to find bugs: zero, ±1, the extremes, stack-sized values.
pub static INTERESTING_I16: [i16; 16] = [
    0,
    1,
    -1,
    2,
    -2,
    4,
    -4,
    8,
    -8,
    0x7f,
    -0x80,
    512,
    -512,
    i16::MAX,
    i16::MIN,
    i16::MIN + 1,
];

/// 64-bit immediates that tend to find bugs: the extremes, values whose halves differ in sign,
/// values that do and do not survive sign-extension from 32 bits.
pub static INTERESTING_U64: [u64; 14] = [
    0,
    1,
    u64::MAX,
    u64::MAX - 1,
    i64::MAX as u64,
    i64::MIN as u64,
    0xffff_ffff,
    0x1_0000_0000,
    0x8000_0000,
    0xffff_ffff_8000_0000,
    0x7fff_ffff,
    0x0000_0001_ffff_ffff,
    0x1122_3344_5566_7788,
    0x8877_6655_4433_2211,
];

/// Any register, `r0` to `r10`, each equally likely.
pub fn any_reg() -> impl Strategy<Value = Reg> + Clone {
    select(Reg::ALL.to_vec())
}

/// A register among `regs` (each equally likely).
///
/// # Panics
///
/// If `regs` is empty.
pub fn reg_in(regs: &[Reg]) -> impl Strategy<Value = Reg> + Clone + use<> {
    select(regs.to_vec())
}

/// A 32-bit immediate: interesting values ([`INTERESTING_I32`]) 30% of the time, small values
/// (-64..=64) 30%, any `i32` otherwise.
pub fn any_imm() -> impl Strategy<Value = i32> + Clone {
    prop_oneof![
        3 => select(&INTERESTING_I32[..]),
        3 => -64i32..=64,
        4 => any::<i32>(),
    ]
}

/// A 16-bit offset: interesting values ([`INTERESTING_I16`]) 30% of the time, small values
/// (-32..=32) 30%, any `i16` otherwise.
pub fn any_off() -> impl Strategy<Value = i16> + Clone {
    prop_oneof![
        3 => select(&INTERESTING_I16[..]),
        3 => -32i16..=32,
        4 => any::<i16>(),
    ]
}

/// A 64-bit immediate: interesting values ([`INTERESTING_U64`]), small signed values,
/// sign-extended 32-bit values, or any `u64`.
pub fn any_imm64() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![
        3 => select(&INTERESTING_U64[..]),
        2 => (-64i64..=64).prop_map(i64::cast_unsigned),
        2 => any_imm().prop_map(|i| i64::from(i).cast_unsigned()),
        3 => any::<u64>(),
    ]
}

/// A 32-bit immediate at the edges of the x86 JIT's constant blinding half of the time (it
/// leaves -32768..=65535 plain, as it left -128..=127 before), near them or any `i32`
/// otherwise.
pub fn blinding_edge_imm() -> impl Strategy<Value = i32> + Clone {
    prop_oneof![
        2 => select(&[
            127, 128, -128, -129, 0x7fff, 0x8000, 0xffff, 0x1_0000, -0x8000, -0x8001, -1,
            0xff00, 0xff_ffff, i32::MIN, i32::MAX,
        ][..]),
        1 => -70_000..70_000i32,
        1 => any::<i32>(),
    ]
}

/// A 64-bit `lddw` value, most often a VM address (`region << 32 | offset`) with a region id
/// up to two past the last and an offset around 2^16, the values the x86 JIT builds from
/// their parts rather than blinding; otherwise a [`blinding_edge_imm`] or any `u64`.
pub fn blinding_edge_imm64() -> impl Strategy<Value = u64> + Clone {
    let region = 0..=ebpf_abi::layout::MAX_REGION + 2;
    let offset = prop_oneof![
        select(&[0u64, 1, 0xff, 0xffff, 0x1_0000, 0xffff_ffff][..]),
        0..0x2_0000u64,
        any::<u32>().prop_map(u64::from),
    ];
    prop_oneof![
        3 => (region, offset).prop_map(|(r, o)| r << 32 | o),
        1 => blinding_edge_imm().prop_map(|i| i64::from(i).cast_unsigned()),
        1 => any::<u64>(),
    ]
}

/// Every form of the instruction table, in table order.
pub fn forms() -> Vec<Form> {
    forms_where(|_| true)
}

/// The forms of the table whose row satisfies `keep`, in table order.
pub fn forms_where(keep: impl Fn(&Spec) -> bool) -> Vec<Form> {
    SPECS.iter().filter(|s| keep(s)).map(|s| s.form).collect()
}

/// Any form of the instruction table, each row equally likely.
pub fn any_form() -> impl Strategy<Value = Form> + Clone {
    select(forms())
}

/// An instruction of the given form with any registers and interesting operands.
pub fn insn_of_form(form: Form) -> BoxedStrategy<Insn> {
    insn_of_form_using(form, any_reg())
}

/// An instruction of the given form whose register fields (all of them: `dst`, `src`, bases,
/// `callx` and `ldind` registers) come from `regs`; immediates from [`any_imm`] or
/// [`any_imm64`], offsets from [`any_off`].
pub fn insn_of_form_using(
    form: Form,
    regs: impl Strategy<Value = Reg> + Clone + 'static,
) -> BoxedStrategy<Insn> {
    let r = regs;
    match form {
        Form::AluImm(width, op) => (r, any_imm())
            .prop_map(move |(dst, i)| Insn::Alu {
                width,
                op,
                dst,
                src: Operand::Imm(i),
            })
            .boxed(),
        Form::AluReg(width, op) => (r.clone(), r)
            .prop_map(move |(dst, src)| Insn::Alu {
                width,
                op,
                dst,
                src: Operand::Reg(src),
            })
            .boxed(),
        Form::Neg(width) => r.prop_map(move |dst| Insn::Neg { width, dst }).boxed(),
        Form::MovSx(width, from) => (r.clone(), r)
            .prop_map(move |(dst, src)| Insn::MovSx {
                width,
                from,
                dst,
                src,
            })
            .boxed(),
        Form::Endian(order, width) => r
            .prop_map(move |dst| Insn::Endian { order, width, dst })
            .boxed(),
        Form::Ja => any_off().prop_map(|off| Insn::Ja { off }).boxed(),
        Form::Ja32 => any_imm().prop_map(|imm| Insn::Ja32 { imm }).boxed(),
        Form::JumpImm(width, cond) => (r, any_imm(), any_off())
            .prop_map(move |(dst, i, off)| Insn::Jump {
                width,
                cond,
                dst,
                src: Operand::Imm(i),
                off,
            })
            .boxed(),
        Form::JumpReg(width, cond) => (r.clone(), r, any_off())
            .prop_map(move |(dst, src, off)| Insn::Jump {
                width,
                cond,
                dst,
                src: Operand::Reg(src),
                off,
            })
            .boxed(),
        Form::Call(kind) => any_imm()
            .prop_map(move |imm| Insn::Call { kind, imm })
            .boxed(),
        Form::CallX => r.prop_map(|reg| Insn::CallX { reg }).boxed(),
        Form::Exit => Just(Insn::Exit).boxed(),
        Form::LoadImm64(kind) => (r, any_imm64())
            .prop_map(move |(dst, imm)| Insn::LoadImm64 { dst, kind, imm })
            .boxed(),
        Form::Load(size, signed) => (r.clone(), r, any_off())
            .prop_map(move |(dst, src, off)| Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            })
            .boxed(),
        Form::StoreImm(size) => (r, any_off(), any_imm())
            .prop_map(move |(dst, off, i)| Insn::Store {
                size,
                dst,
                off,
                src: Operand::Imm(i),
            })
            .boxed(),
        Form::StoreReg(size) => (r.clone(), any_off(), r)
            .prop_map(move |(dst, off, src)| Insn::Store {
                size,
                dst,
                off,
                src: Operand::Reg(src),
            })
            .boxed(),
        Form::Atomic(width, op) => (r.clone(), r, any_off())
            .prop_map(move |(dst, src, off)| Insn::Atomic {
                width,
                op,
                dst,
                src,
                off,
            })
            .boxed(),
        Form::Packet(size, false) => any_imm()
            .prop_map(move |imm| Insn::LoadPacket {
                size,
                addr: PacketAddr::Abs,
                imm,
            })
            .boxed(),
        Form::Packet(size, true) => (r, any_imm())
            .prop_map(move |(src, imm)| Insn::LoadPacket {
                size,
                addr: PacketAddr::Ind(src),
                imm,
            })
            .boxed(),
    }
}

/// Any valid instruction: a form of the table (each row equally likely), then its operands.
pub fn any_insn() -> impl Strategy<Value = Insn> + Clone {
    any_form().prop_flat_map(insn_of_form)
}

/// Any valid instruction whose table row satisfies `keep` (e.g. `&|s| s.cpu <= CpuVersion::V3`,
/// or `&|s| s.group != Group::Packet`).
///
/// # Panics
///
/// If no row satisfies `keep`.
pub fn any_insn_where(keep: &dyn Fn(&Spec) -> bool) -> impl Strategy<Value = Insn> + Clone + use<> {
    select(forms_where(keep)).prop_flat_map(insn_of_form)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ebpf_isa::table::Form;
    use ebpf_isa::{CpuVersion, Group, decode, encode};
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    use super::*;

    fn sample<S: Strategy>(s: &S, n: usize) -> Vec<S::Value> {
        let mut runner = TestRunner::deterministic();
        (0..n)
            .map(|_| s.new_tree(&mut runner).unwrap().current())
            .collect()
    }

    #[test]
    fn any_insn_covers_every_row_of_the_table() {
        let seen: BTreeSet<String> = sample(&any_insn(), 20 * SPECS.len())
            .iter()
            .map(|i| format!("{:?}", Form::of(i)))
            .collect();
        for spec in &SPECS {
            assert!(
                seen.contains(&format!("{:?}", spec.form)),
                "{:?}",
                spec.form
            );
        }
    }

    #[test]
    fn generated_instructions_encode_and_decode() {
        for insn in sample(&any_insn(), 4000) {
            assert_eq!(decode(&encode(&[insn])).unwrap().insns(), &[insn]);
        }
    }

    #[test]
    fn values_hit_the_boundaries() {
        let imms: BTreeSet<i32> = sample(&any_imm(), 2000).into_iter().collect();
        let offs: BTreeSet<i16> = sample(&any_off(), 2000).into_iter().collect();
        let wides: BTreeSet<u64> = sample(&any_imm64(), 2000).into_iter().collect();
        for v in [0, 1, -1, i32::MIN, i32::MAX] {
            assert!(imms.contains(&v), "{v}");
        }
        for v in [0, 1, -1, i16::MIN, i16::MAX] {
            assert!(offs.contains(&v), "{v}");
        }
        for v in [0, 1, u64::MAX, 1 << 63, 0xffff_ffff] {
            assert!(wides.contains(&v), "{v:#x}");
        }
        assert!(imms.len() > 800 && offs.len() > 500 && wides.len() > 800);
        let regs: BTreeSet<Reg> = sample(&any_reg(), 500).into_iter().collect();
        assert_eq!(regs.len(), 11);
    }

    #[test]
    fn filters_keep_only_matching_rows() {
        let keep = |s: &Spec| s.cpu <= CpuVersion::V2 && s.group != Group::Packet;
        for insn in sample(&any_insn_where(&keep), 2000) {
            assert!(keep(Form::of(&insn).spec()), "{insn:?}");
        }
        assert_eq!(forms().len(), SPECS.len());
        let only = [Reg::R3, Reg::R7];
        for form in forms() {
            for insn in sample(&insn_of_form_using(form, reg_in(&only)), 5) {
                let e = encode(&[insn]);
                let raw = ebpf_isa::RawInsn::from_bytes(e[..8].try_into().unwrap());
                assert!(
                    matches!(raw.dst, 0 | 3 | 7) && matches!(raw.src, 0..=7),
                    "{insn:?}"
                );
            }
        }
    }
}
