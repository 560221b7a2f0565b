//! The arithmetic of RFC 9669, as plain functions: what each ALU, byte-order and jump
//! operation computes. The interpreter's dispatch loop calls these with constant operations, so
//! they fold away; the verifier folds constants with them; the JITs' tests use them as the
//! definition.
//!
//! The rules that are easy to get wrong: division by zero gives 0 and modulo by zero leaves
//! `dst`; `MIN / -1 = MIN` and `MIN % -1 = 0`; shift counts are masked to the width; 32-bit
//! results zero-extend; `le` truncates, `be` and `bswap` swap and truncate; a 32-bit atomic
//! works on the low halves of its operands and zero-extends what it fetches.

use ebpf_isa::{AluOp, AtomicOp, ByteOrder, Cond, SignExtend, SwapWidth, Width};

/// `dst op src` on 64 bits.
#[inline(always)]
pub fn alu64(op: AluOp, dst: u64, src: u64) -> u64 {
    match op {
        AluOp::Add => dst.wrapping_add(src),
        AluOp::Sub => dst.wrapping_sub(src),
        AluOp::Mul => dst.wrapping_mul(src),
        AluOp::Div => dst.checked_div(src).unwrap_or(0),
        AluOp::Sdiv => {
            if src == 0 {
                0
            } else {
                (dst as i64).wrapping_div(src as i64) as u64
            }
        }
        AluOp::Or => dst | src,
        AluOp::And => dst & src,
        AluOp::Lsh => dst.wrapping_shl(src as u32),
        AluOp::Rsh => dst.wrapping_shr(src as u32),
        AluOp::Mod => dst.checked_rem(src).unwrap_or(dst),
        AluOp::Smod => {
            if src == 0 {
                dst
            } else {
                (dst as i64).wrapping_rem(src as i64) as u64
            }
        }
        AluOp::Xor => dst ^ src,
        AluOp::Mov => src,
        AluOp::Arsh => (dst as i64).wrapping_shr(src as u32) as u64,
    }
}

/// `dst op src` on the low 32 bits; the result is zero-extended.
#[inline(always)]
pub fn alu32(op: AluOp, dst: u64, src: u64) -> u64 {
    let (d, s) = (dst as u32, src as u32);
    let r = match op {
        AluOp::Add => d.wrapping_add(s),
        AluOp::Sub => d.wrapping_sub(s),
        AluOp::Mul => d.wrapping_mul(s),
        AluOp::Div => d.checked_div(s).unwrap_or(0),
        AluOp::Sdiv => {
            if s == 0 {
                0
            } else {
                (d as i32).wrapping_div(s as i32) as u32
            }
        }
        AluOp::Or => d | s,
        AluOp::And => d & s,
        AluOp::Lsh => d.wrapping_shl(s),
        AluOp::Rsh => d.wrapping_shr(s),
        AluOp::Mod => d.checked_rem(s).unwrap_or(d),
        AluOp::Smod => {
            if s == 0 {
                d
            } else {
                (d as i32).wrapping_rem(s as i32) as u32
            }
        }
        AluOp::Xor => d ^ s,
        AluOp::Mov => s,
        AluOp::Arsh => (d as i32).wrapping_shr(s) as u32,
    };
    u64::from(r)
}

/// `-dst` on 64 or (zero-extended) 32 bits.
#[inline(always)]
pub fn neg(wide: bool, dst: u64) -> u64 {
    if wide {
        dst.wrapping_neg()
    } else {
        u64::from((dst as u32).wrapping_neg())
    }
}

/// Sign-extending move: the low bits of `src`, sign-extended to 64 bits, or to 32 bits and then
/// zero-extended.
#[inline(always)]
pub fn movsx(wide: bool, from: SignExtend, src: u64) -> u64 {
    let v = match from {
        SignExtend::From8 => i64::from(src as i8),
        SignExtend::From16 => i64::from(src as i16),
        SignExtend::From32 => i64::from(src as i32),
    };
    if wide { v as u64 } else { u64::from(v as u32) }
}

/// Byte-order conversion. Memory is little-endian on every host, so `le` only truncates.
#[inline(always)]
pub fn endian(order: ByteOrder, width: SwapWidth, dst: u64) -> u64 {
    match (order, width) {
        (ByteOrder::Le, SwapWidth::W16) => u64::from(dst as u16),
        (ByteOrder::Le, SwapWidth::W32) => u64::from(dst as u32),
        (ByteOrder::Le, SwapWidth::W64) => dst,
        (ByteOrder::Be | ByteOrder::Swap, SwapWidth::W16) => u64::from((dst as u16).swap_bytes()),
        (ByteOrder::Be | ByteOrder::Swap, SwapWidth::W32) => u64::from((dst as u32).swap_bytes()),
        (ByteOrder::Be | ByteOrder::Swap, SwapWidth::W64) => dst.swap_bytes(),
    }
}

/// Whether a 64-bit conditional jump is taken.
#[inline(always)]
pub fn cond64(cond: Cond, a: u64, b: u64) -> bool {
    match cond {
        Cond::Eq => a == b,
        Cond::Gt => a > b,
        Cond::Ge => a >= b,
        Cond::Set => a & b != 0,
        Cond::Ne => a != b,
        Cond::Sgt => (a as i64) > (b as i64),
        Cond::Sge => (a as i64) >= (b as i64),
        Cond::Lt => a < b,
        Cond::Le => a <= b,
        Cond::Slt => (a as i64) < (b as i64),
        Cond::Sle => (a as i64) <= (b as i64),
    }
}

/// Whether a 32-bit conditional jump (JMP32) is taken: only the low halves are compared.
#[inline(always)]
pub fn cond32(cond: Cond, a: u64, b: u64) -> bool {
    let (a, b) = (a as u32, b as u32);
    match cond {
        Cond::Eq => a == b,
        Cond::Gt => a > b,
        Cond::Ge => a >= b,
        Cond::Set => a & b != 0,
        Cond::Ne => a != b,
        Cond::Sgt => (a as i32) > (b as i32),
        Cond::Sge => (a as i32) >= (b as i32),
        Cond::Lt => a < b,
        Cond::Le => a <= b,
        Cond::Slt => (a as i32) < (b as i32),
        Cond::Sle => (a as i32) <= (b as i32),
    }
}

/// An atomic read-modify-write of the value `old` found in memory (zero-extended when
/// `width` is 32 bits): the value to store back, and — where the operation fetches — the old
/// value that a register receives (`src`, or `r0` for `cmpxchg`). For 32 bits, `operand` and
/// `r0` count by their low halves and both results are zero-extended.
#[inline(always)]
pub fn atomic(op: AtomicOp, width: Width, old: u64, operand: u64, r0: u64) -> (u64, Option<u64>) {
    let mask = match width {
        Width::W64 => u64::MAX,
        Width::W32 => u64::from(u32::MAX),
    };
    let (old, v) = (old & mask, operand & mask);
    let (new, fetch) = match op {
        AtomicOp::Add { fetch } => (old.wrapping_add(v) & mask, fetch),
        AtomicOp::Or { fetch } => (old | v, fetch),
        AtomicOp::And { fetch } => (old & v, fetch),
        AtomicOp::Xor { fetch } => (old ^ v, fetch),
        AtomicOp::Xchg => (v, true),
        AtomicOp::Cmpxchg => (if old == r0 & mask { v } else { old }, true),
    };
    (new, fetch.then_some(old))
}

/// An atomic read-modify-write of the `N` bytes (4 or 8, one little-endian value) at `addr`
/// in memory the engine owns, as every engine must do it: `bytes` are those bytes if the
/// program may write them (`None` if it may not), bounds are checked first (as a write), then
/// alignment; the arithmetic is [`atomic`]'s. Returns the old value where `op` fetches it
/// (zero-extended for 32 bits).
#[inline(always)]
pub fn atomic_in_place<const N: usize>(
    bytes: Option<&mut [u8; N]>,
    addr: u64,
    op: AtomicOp,
    operand: u64,
    r0: u64,
) -> Result<Option<u64>, crate::TrapKind> {
    let len = N as u64;
    let bytes = bytes.ok_or(crate::TrapKind::OutOfBounds {
        addr,
        len,
        write: true,
    })?;
    if !addr.is_multiple_of(len) {
        return Err(crate::TrapKind::MisalignedAtomic { addr, len });
    }
    let width = if N == 4 { Width::W32 } else { Width::W64 };
    let mut word = [0u8; 8];
    word[..N].copy_from_slice(bytes);
    let (new, fetched) = atomic(op, width, u64::from_le_bytes(word), operand, r0);
    bytes.copy_from_slice(&new.to_le_bytes()[..N]);
    Ok(fetched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_edge_cases_follow_the_rfc() {
        assert_eq!(alu64(AluOp::Div, 7, 0), 0);
        assert_eq!(alu64(AluOp::Mod, 7, 0), 7);
        assert_eq!(
            alu64(AluOp::Sdiv, i64::MIN as u64, -1i64 as u64),
            i64::MIN as u64
        );
        assert_eq!(alu64(AluOp::Smod, i64::MIN as u64, -1i64 as u64), 0);
        assert_eq!(
            alu64(AluOp::Smod, -7i64 as u64, 2),
            -1i64 as u64,
            "sign of the dividend"
        );
        assert_eq!(
            alu32(AluOp::Mod, 0xdead_beef_0000_0007, 0),
            7,
            "upper half zeroed"
        );
        assert_eq!(alu32(AluOp::Div, 0xffff_ffff_0000_0007, 0), 0);
        assert_eq!(alu32(AluOp::Sdiv, 0x8000_0000, 0xffff_ffff), 0x8000_0000);
        assert_eq!(alu32(AluOp::Smod, 0x8000_0000, 0xffff_ffff), 0);
    }

    #[test]
    fn shifts_mask_their_count() {
        assert_eq!(alu64(AluOp::Lsh, 1, 65), 2);
        assert_eq!(alu32(AluOp::Lsh, 1, 33), 2);
        assert_eq!(alu32(AluOp::Arsh, 0x8000_0000, 31 + 32), 0xffff_ffff);
        assert_eq!(alu64(AluOp::Arsh, 1 << 63, 63), u64::MAX);
    }

    #[test]
    fn byte_order_and_sign_extension() {
        assert_eq!(endian(ByteOrder::Le, SwapWidth::W16, 0x1122_3344), 0x3344);
        assert_eq!(endian(ByteOrder::Be, SwapWidth::W16, 0x1122_3344), 0x4433);
        assert_eq!(
            endian(ByteOrder::Swap, SwapWidth::W32, 0xaabb_ccdd_1122_3344),
            0x4433_2211
        );
        assert_eq!(movsx(true, SignExtend::From8, 0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(movsx(false, SignExtend::From16, 0x8000), 0xffff_8000);
        assert_eq!(neg(false, 0x8000_0000), 0x8000_0000);
        assert!(cond32(Cond::Slt, 0x1_ffff_ffff, 0));
        assert!(!cond64(Cond::Slt, 0x1_ffff_ffff, 0));
    }

    #[test]
    fn atomics_work_on_their_width_and_fetch_the_old_value() {
        let add = AtomicOp::Add { fetch: true };
        assert_eq!(
            atomic(add, Width::W32, 0xffff_ffff, 0x1_0000_0002, 0),
            (1, Some(0xffff_ffff))
        );
        assert_eq!(
            atomic(AtomicOp::Or { fetch: false }, Width::W64, 1, 6, 0),
            (7, None)
        );
        // cmpxchg compares the low half of r0 for 32 bits.
        assert_eq!(
            atomic(AtomicOp::Cmpxchg, Width::W32, 5, 9, 0xdead_0000_0005),
            (9, Some(5))
        );
        assert_eq!(
            atomic(AtomicOp::Cmpxchg, Width::W64, 5, 9, 0xdead_0000_0005),
            (5, Some(5))
        );
        assert_eq!(atomic(AtomicOp::Xchg, Width::W64, 5, 9, 0), (9, Some(5)));
    }
}
