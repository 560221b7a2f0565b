//! Strategies for raw byte strings: random bytes, random slots with real opcodes, valid
//! programs, and valid programs with a few mutations — so that a decoder meets every error
//! path, not only "unknown opcode".

use ebpf_isa::RawInsn;
use ebpf_isa::table::SPECS;
use proptest::collection::{SizeRange, vec};
use proptest::prelude::*;
use proptest::sample::{Index, select};

use crate::insn::{any_imm, any_off};
use crate::program::any_program;

/// Any bytes, `len` bytes long (lengths that are not a multiple of 8 included).
pub fn raw_bytes(len: impl Into<SizeRange>) -> impl Strategy<Value = Vec<u8>> + Clone {
    vec(any::<u8>(), len)
}

/// Every opcode byte that the table knows, in table order (with repeats for shared opcodes).
fn known_opcodes() -> Vec<u8> {
    SPECS.iter().map(|s| s.opcode).collect()
}

/// One 8-byte slot that is likely to be almost valid: a known opcode (90%), register fields
/// that are mostly 0..=10, and interesting offsets and immediates.
pub fn near_valid_slot() -> impl Strategy<Value = [u8; 8]> + Clone {
    let opcode = prop_oneof![9 => select(known_opcodes()), 1 => any::<u8>()];
    let nibble = prop_oneof![8 => 0u8..=10, 2 => 11u8..=15];
    let off = prop_oneof![3 => Just(0i16), 7 => any_off()];
    let imm = prop_oneof![3 => Just(0i32), 7 => any_imm()];
    (opcode, nibble.clone(), nibble, off, imm).prop_map(|(opcode, dst, src, off, imm)| {
        RawInsn {
            opcode,
            dst,
            src,
            off,
            imm,
        }
        .to_bytes()
    })
}

/// `slots` slots from [`near_valid_slot`], concatenated.
pub fn near_valid_slots(slots: impl Into<SizeRange>) -> impl Strategy<Value = Vec<u8>> + Clone {
    vec(near_valid_slot(), slots).prop_map(|v| v.concat())
}

/// The bytes of a valid program of `len` instructions ([`any_program`]).
pub fn valid_bytes(len: impl Into<SizeRange>) -> impl Strategy<Value = Vec<u8>> + Clone {
    any_program(len).prop_map(|p| p.to_bytes())
}

/// One change to a byte string.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Flip one bit of one byte.
    FlipBit(Index, u8),
    /// Overwrite one byte.
    SetByte(Index, u8),
    /// Replace the opcode of one slot with another known opcode (its fields now likely wrong).
    SetOpcode(Index, u8),
    /// Set the `dst` (`false`) or `src` (`true`) field of one slot.
    SetRegister(Index, bool, u8),
    /// Set the `offset` field of one slot.
    SetOffset(Index, i16),
    /// Set the `imm` field of one slot.
    SetImm(Index, i32),
    /// Cut the string at a byte (not necessarily a slot boundary).
    Truncate(Index),
    /// Remove one slot (which may split an `lddw`).
    RemoveSlot(Index),
    /// Insert a slot before another one (or at the end).
    InsertSlot(Index, [u8; 8]),
    /// Copy one slot over another.
    CopySlot(Index, Index),
}

/// Any [`Mutation`]; slot-level mutations are the most common.
pub fn any_mutation() -> impl Strategy<Value = Mutation> + Clone {
    prop_oneof![
        2 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        3 => (any::<Index>(), select(known_opcodes())).prop_map(|(i, o)| Mutation::SetOpcode(i, o)),
        2 => (any::<Index>(), any::<bool>(), 0u8..16)
            .prop_map(|(i, s, v)| Mutation::SetRegister(i, s, v)),
        2 => (any::<Index>(), any_off()).prop_map(|(i, v)| Mutation::SetOffset(i, v)),
        2 => (any::<Index>(), any_imm()).prop_map(|(i, v)| Mutation::SetImm(i, v)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => any::<Index>().prop_map(Mutation::RemoveSlot),
        1 => (any::<Index>(), near_valid_slot()).prop_map(|(i, s)| Mutation::InsertSlot(i, s)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::CopySlot(a, b)),
    ]
}

impl Mutation {
    /// Applies the mutation. A mutation that needs a byte or a slot does nothing to a string
    /// that has none.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let slots = bytes.len() / 8;
        let slot = |i: &Index| (slots > 0).then(|| i.index(slots) * 8);
        let mut raw = |i: &Index, f: &dyn Fn(&mut RawInsn)| {
            if let Some(at) = slot(i) {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[at..at + 8]);
                let mut r = RawInsn::from_bytes(b);
                f(&mut r);
                bytes[at..at + 8].copy_from_slice(&r.to_bytes());
            }
        };
        match self {
            Mutation::FlipBit(i, bit) => {
                if !bytes.is_empty() {
                    let at = i.index(bytes.len());
                    bytes[at] ^= 1 << (bit % 8);
                }
            }
            Mutation::SetByte(i, v) => {
                if !bytes.is_empty() {
                    let at = i.index(bytes.len());
                    bytes[at] = *v;
                }
            }
            Mutation::SetOpcode(i, v) => raw(i, &|r| r.opcode = *v),
            Mutation::SetRegister(i, false, v) => raw(i, &|r| r.dst = *v & 0x0f),
            Mutation::SetRegister(i, true, v) => raw(i, &|r| r.src = *v & 0x0f),
            Mutation::SetOffset(i, v) => raw(i, &|r| r.off = *v),
            Mutation::SetImm(i, v) => raw(i, &|r| r.imm = *v),
            Mutation::Truncate(i) => {
                let at = i.index(bytes.len() + 1);
                bytes.truncate(at);
            }
            Mutation::RemoveSlot(i) => {
                if let Some(at) = slot(i) {
                    bytes.drain(at..at + 8);
                }
            }
            Mutation::InsertSlot(i, s) => {
                let at = i.index(slots + 1) * 8;
                bytes.splice(at..at, s.iter().copied());
            }
            Mutation::CopySlot(from, to) => {
                if let (Some(from), Some(to)) = (slot(from), slot(to)) {
                    bytes.copy_within(from..from + 8, to);
                }
            }
        }
    }
}

/// A valid program of `len` instructions ([`valid_bytes`]) with one to three [`Mutation`]s.
///
/// Most results fail to decode somewhere in the middle, with every kind of decode error; some
/// still decode (a mutation can turn one valid instruction into another).
pub fn mutated_bytes(len: impl Into<SizeRange>) -> impl Strategy<Value = Vec<u8>> + Clone {
    (valid_bytes(len), vec(any_mutation(), 1..=3)).prop_map(|(mut bytes, mutations)| {
        for m in &mutations {
            m.apply(&mut bytes);
        }
        bytes
    })
}

/// Byte strings of at most `max_len` bytes for decoders: a mix of [`raw_bytes`] (20%),
/// [`near_valid_slots`] (20%), [`valid_bytes`] (20%) and [`mutated_bytes`] (40%).
pub fn arbitrary_bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> + Clone {
    let max_slots = max_len / 8;
    // Valid programs are measured in instructions: an lddw takes two slots.
    let max_insns = max_slots / 2;
    prop_oneof![
        1 => raw_bytes(0..=max_len),
        1 => near_valid_slots(0..=max_slots),
        1 => valid_bytes(0..=max_insns),
        2 => mutated_bytes(0..=max_insns),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn mutations_apply_to_any_string(mut bytes in raw_bytes(0..40), m in vec(any_mutation(), 0..6)) {
            let len = bytes.len();
            for m in &m {
                m.apply(&mut bytes);
            }
            // Only slot insertions grow the string, by 8 bytes each.
            prop_assert!(bytes.len() <= len + 8 * m.len());
        }

        #[test]
        fn arbitrary_bytes_respect_the_length(bytes in arbitrary_bytes(64)) {
            // Mutations may insert up to three slots into a valid program.
            prop_assert!(bytes.len() <= 64 + 3 * 8);
        }

        #[test]
        fn near_valid_slots_are_whole_slots(bytes in near_valid_slots(0..10)) {
            prop_assert_eq!(bytes.len() % 8, 0);
        }

        #[test]
        fn set_register_keeps_four_bits(i in any::<Index>(), src in any::<bool>(), v in any::<u8>()) {
            let mut bytes = vec![0u8; 8];
            Mutation::SetRegister(i, src, v).apply(&mut bytes);
            let expected = if src { (v & 0x0f) << 4 } else { v & 0x0f };
            prop_assert_eq!(bytes[1], expected);
        }
    }
}
