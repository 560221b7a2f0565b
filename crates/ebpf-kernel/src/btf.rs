//! BTF for programs with callbacks: the kernel's verifier accepts a callback's address
//! (`lddw` with source 4, `BPF_PSEUDO_FUNC`, as `bpf_loop` takes it) only from a program
//! loaded with BTF function information (`func_info`) that gives every subprogram a static
//! function type. [`load_btf`] loads BTF (`BPF_BTF_LOAD`); [`callback_btf`] is the smallest
//! BTF that does, and [`subprogram_starts`] finds the subprograms the kernel will find.
//!
//! Why not the object's own `.BTF` and `.BTF.ext`: our linker lays functions out anew (entry
//! first, then callees), so the object's `func_info` offsets would all need remapping, and its
//! function types would bring checks of global functions' arguments the corpus does not need.

use crate::attr::{self, ptr};
use crate::sys::{self, Fd};
use crate::{Command, KernelError};

/// BTF loaded into the kernel; freed when dropped (unless a program still uses it).
#[derive(Debug)]
pub struct Btf {
    fd: Fd,
}

impl Btf {
    /// The descriptor, for the crate's other modules.
    pub(crate) fn fd(&self) -> &Fd {
        &self.fd
    }
}

/// Loads `bytes` (a BTF blob: header, types, strings) into the kernel.
pub fn load_btf(bytes: &[u8]) -> Result<Btf, KernelError> {
    let command = Command::BtfLoad;
    let size = u32::try_from(bytes.len())
        .map_err(|_| KernelError::invalid(command, "BTF of more than 4 GiB"))?;
    let mut a = attr::BtfLoad {
        btf: ptr(bytes.as_ptr()),
        btf_size: size,
        ..attr::BtfLoad::default()
    };
    // SAFETY: `bytes` is readable for `btf_size` bytes and outlives the call; no log buffer.
    let ret = unsafe { sys::bpf(command, &mut a) }?;
    Ok(Btf {
        fd: Fd::take(command, ret)?,
    })
}

/// The type id of [`callback_btf`]'s static function, for every `func_info` record.
pub const CALLBACK_FUNC_TYPE: u32 = 3;

/// `BTF_KIND_INT`, `BTF_KIND_FUNC`, `BTF_KIND_FUNC_PROTO`.
const KIND_INT: u32 = 1;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;

/// Three types: `[1] int` (signed, 32 bits), `[2] int (void)`, and `[3] static int f(void)`
/// — enough for `func_info` records that make every subprogram a static function, which is
/// all the verifier asks of a callback. (A static function's arguments are not checked
/// against its type.)
pub fn callback_btf() -> Vec<u8> {
    let strings: &[u8] = b"\0int\0f\0";
    let words: [u32; 10] = [
        // [1] int: name "int", size 4, then its encoding (signed, offset 0, 32 bits).
        1,
        KIND_INT << 24,
        4,
        (1 << 24) | 32,
        // [2] a prototype returning [1], no parameters.
        0,
        KIND_FUNC_PROTO << 24,
        1,
        // [3] function "f" of prototype [2], linkage static (vlen 0).
        5,
        KIND_FUNC << 24,
        2,
    ];
    let types: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut out = Vec::new();
    out.extend_from_slice(&0xeb9fu16.to_le_bytes()); // magic
    out.extend_from_slice(&[1, 0]); // version, flags
    let header = [
        24u32,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ];
    for field in header {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&types);
    out.extend_from_slice(strings);
    out
}

/// The first slot of every subprogram the kernel's verifier finds in `insns`: slot 0, and
/// every target of a local call (`call` with source 1) or of a callback address (`lddw` with
/// source 4), both `pc + imm + 1`; sorted, without repeats. Targets outside the program are
/// left out (the kernel rejects them itself).
pub fn subprogram_starts(insns: &[u8]) -> Vec<u32> {
    let slots = insns.len() / 8;
    let mut starts = vec![0u32];
    let mut pc = 0usize;
    while pc < slots {
        let at = pc * 8;
        let (opcode, src) = (insns[at], insns[at + 1] >> 4);
        let imm = i32::from_le_bytes([insns[at + 4], insns[at + 5], insns[at + 6], insns[at + 7]]);
        if (opcode == 0x85 && src == 1) || (opcode == 0x18 && src == 4) {
            let target = (pc as i64) + i64::from(imm) + 1;
            if let Ok(t) = u32::try_from(target)
                && (t as usize) < slots
            {
                starts.push(t);
            }
        }
        pc += if opcode == 0x18 { 2 } else { 1 };
    }
    starts.sort_unstable();
    starts.dedup();
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blob_is_laid_out_as_btf() {
        let b = callback_btf();
        assert_eq!(&b[..4], &[0x9f, 0xeb, 1, 0]);
        let field = |i: usize| u32::from_le_bytes(b[4 + 4 * i..8 + 4 * i].try_into().unwrap());
        let (hdr_len, type_off, type_len, str_off, str_len) =
            (field(0), field(1), field(2), field(3), field(4));
        assert_eq!((hdr_len, type_off, type_len, str_off), (24, 0, 40, 40));
        assert_eq!(b.len() as u32, hdr_len + str_off + str_len);
        let strings = &b[(hdr_len + str_off) as usize..];
        assert_eq!(&strings[1..4], b"int");
        assert_eq!(&strings[5..6], b"f");
    }

    #[test]
    fn subprograms_start_at_calls_and_callbacks() {
        let slot = |opcode: u8, src: u8, imm: i32| {
            let mut s = vec![opcode, src << 4, 0, 0];
            s.extend_from_slice(&imm.to_le_bytes());
            s
        };
        let insns = [
            slot(0x18, 4, 4), // 0: lddw r0, code: 0 + 4 + 1 = 5
            slot(0, 0, 0),
            slot(0x85, 1, 1),   // 2: call 2 + 1 + 1 = 4
            slot(0x85, 0, 1),   // 3: helper 1, not a subprogram
            slot(0x95, 0, 0),   // 4
            slot(0x95, 0, 0),   // 5
            slot(0x85, 1, 100), // 6: out of range
        ]
        .concat();
        assert_eq!(subprogram_starts(&insns), [0, 4, 5]);
        assert_eq!(subprogram_starts(&[]), [0]);
    }
}
