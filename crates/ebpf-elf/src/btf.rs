//! The little of BTF (`.BTF`) the loader needs: the type table, to read BTF-defined map
//! definitions (the `.maps` data section and the anonymous structs its variables have).
//!
//! Every offset and count is checked against the section; a malformed table is an
//! [`ElfErrorKind::BadBtf`] with the file offset of the bad record, never a panic.

use crate::error::{ElfError, ElfErrorKind};
use crate::parse::{NameError, NameReader};

/// `BTF_KIND_*` numbers.
pub(crate) mod kind {
    pub(crate) const INT: u32 = 1;
    pub(crate) const PTR: u32 = 2;
    pub(crate) const ARRAY: u32 = 3;
    pub(crate) const STRUCT: u32 = 4;
    pub(crate) const UNION: u32 = 5;
    pub(crate) const ENUM: u32 = 6;
    pub(crate) const FWD: u32 = 7;
    pub(crate) const TYPEDEF: u32 = 8;
    pub(crate) const VOLATILE: u32 = 9;
    pub(crate) const CONST: u32 = 10;
    pub(crate) const RESTRICT: u32 = 11;
    pub(crate) const FUNC: u32 = 12;
    pub(crate) const FUNC_PROTO: u32 = 13;
    pub(crate) const VAR: u32 = 14;
    pub(crate) const DATASEC: u32 = 15;
    pub(crate) const FLOAT: u32 = 16;
    pub(crate) const DECL_TAG: u32 = 17;
    pub(crate) const TYPE_TAG: u32 = 18;
    pub(crate) const ENUM64: u32 = 19;
}

/// One member of a struct, or one variable of a data section.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    /// Its name (empty for a data section's variables).
    pub(crate) name: String,
    /// Its type id.
    pub(crate) type_id: u32,
    /// Struct members: bit offset; data-section variables: byte offset.
    pub(crate) offset: u32,
    /// Data-section variables: size in bytes (0 for struct members).
    pub(crate) size: u32,
}

/// One type of the table.
#[derive(Clone, Debug)]
pub(crate) struct Type {
    pub(crate) kind: u32,
    pub(crate) name: String,
    /// `size` (INT, STRUCT, UNION, ENUM, DATASEC, FLOAT) or `type` (the others).
    pub(crate) size_or_type: u32,
    /// ARRAY: (element type, element count).
    pub(crate) array: Option<(u32, u32)>,
    /// STRUCT, UNION and DATASEC members.
    pub(crate) members: Vec<Member>,
    /// File offset of the record (for errors).
    pub(crate) at: u64,
}

/// A parsed `.BTF` section: types by id (id 0 is `void`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Btf {
    types: Vec<Type>,
}

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

impl Btf {
    /// Parses `bytes`, the contents of `.BTF`, which starts at `file_offset` in the file.
    pub(crate) fn parse(bytes: &[u8], file_offset: u64) -> Result<Btf, ElfError> {
        let bad = |at: usize, reason: &'static str| {
            ElfError::at(file_offset + at as u64, ElfErrorKind::BadBtf { reason })
        };
        let magic = bytes
            .get(..2)
            .map(|m| u16::from_le_bytes([m[0], m[1]]))
            .ok_or_else(|| bad(0, "the section is shorter than its header"))?;
        if magic != MAGIC {
            return Err(bad(0, "bad magic (not 0xeb9f little-endian)"));
        }
        let field = |i: usize| {
            u32_at(bytes, 4 + 4 * i).ok_or_else(|| bad(0, "the section is shorter than its header"))
        };
        let hdr_len = field(0)? as usize;
        let (type_off, type_len) = (field(1)? as usize, field(2)? as usize);
        let (str_off, str_len) = (field(3)? as usize, field(4)? as usize);
        if hdr_len < HEADER_LEN {
            return Err(bad(4, "hdr_len is shorter than the header"));
        }
        let region = |off: usize, len: usize, what| {
            let start = hdr_len.checked_add(off).ok_or_else(|| bad(8, what))?;
            let end = start.checked_add(len).ok_or_else(|| bad(8, what))?;
            bytes
                .get(start..end)
                .map(|b| (start, b))
                .ok_or_else(|| bad(8, what))
        };
        let (types_start, types) = region(
            type_off,
            type_len,
            "the type table lies outside the section",
        )?;
        let (_, strings) = region(
            str_off,
            str_len,
            "the string table lies outside the section",
        )?;
        let mut reader = NameReader::new(bytes.len());
        let mut name = |off: u32, at: usize| -> Result<String, ElfError> {
            reader.read(strings, u64::from(off)).map_err(|e| match e {
                NameError::Outside => bad(at, "a name lies outside the string table"),
                NameError::Unterminated => bad(at, "a name is not NUL-terminated"),
                NameError::TooLarge(kind) => ElfError::at(file_offset + at as u64, kind),
            })
        };
        let mut out = vec![Type {
            kind: 0,
            name: String::new(),
            size_or_type: 0,
            array: None,
            members: Vec::new(),
            at: file_offset,
        }];
        let mut pos = 0usize;
        while pos < types.len() {
            let at = types_start + pos;
            let word = |i: usize| {
                u32_at(types, pos + 4 * i).ok_or_else(|| bad(at, "a type record is truncated"))
            };
            let (name_off, info, size_or_type) = (word(0)?, word(1)?, word(2)?);
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let mut ty = Type {
                kind,
                name: name(name_off, at)?,
                size_or_type,
                array: None,
                members: Vec::new(),
                at: file_offset + at as u64,
            };
            pos += 12;
            // The `n`-th word after the common record.
            let rec = |n: usize| -> Result<u32, ElfError> {
                u32_at(types, pos + n * 4).ok_or_else(|| bad(at, "a type record is truncated"))
            };
            let extra = match kind {
                kind::INT | kind::VAR | kind::DECL_TAG => 4,
                kind::PTR
                | kind::FWD
                | kind::TYPEDEF
                | kind::VOLATILE
                | kind::CONST
                | kind::RESTRICT
                | kind::FUNC
                | kind::FLOAT
                | kind::TYPE_TAG => 0,
                kind::ARRAY => {
                    ty.array = Some((rec(0)?, rec(2)?));
                    12
                }
                kind::STRUCT | kind::UNION | kind::DATASEC => {
                    for m in 0..vlen {
                        let w = |i| rec(m * 3 + i);
                        let (a, b, c) = (w(0)?, w(1)?, w(2)?);
                        ty.members.push(if kind == kind::DATASEC {
                            Member {
                                name: String::new(),
                                type_id: a,
                                offset: b,
                                size: c,
                            }
                        } else {
                            Member {
                                name: name(a, at)?,
                                type_id: b,
                                offset: c,
                                size: 0,
                            }
                        });
                    }
                    vlen * 12
                }
                kind::ENUM | kind::FUNC_PROTO => vlen * 8,
                kind::ENUM64 => vlen * 12,
                _ => return Err(bad(at, "an unknown type kind")),
            };
            if pos.checked_add(extra).is_none_or(|end| end > types.len()) {
                return Err(bad(at, "a type record is truncated"));
            }
            pos += extra;
            out.push(ty);
        }
        Ok(Btf { types: out })
    }

    /// The type with id `id`.
    pub(crate) fn get(&self, id: u32) -> Option<&Type> {
        self.types.get(id as usize)
    }

    /// The data section named `name`.
    pub(crate) fn datasec(&self, name: &str) -> Option<&Type> {
        self.types
            .iter()
            .find(|t| t.kind == kind::DATASEC && t.name == name)
    }

    /// `id` with typedefs and qualifiers (const, volatile, restrict, type tags) peeled off.
    pub(crate) fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..64 {
            let t = self.get(id)?;
            match t.kind {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// The size in bytes of type `id`, if it has one.
    pub(crate) fn size_of(&self, id: u32) -> Option<u64> {
        self.size_of_depth(id, 0)
    }

    fn size_of_depth(&self, id: u32, depth: usize) -> Option<u64> {
        if depth > 64 {
            return None;
        }
        let t = self.resolve(id)?;
        match t.kind {
            kind::INT | kind::STRUCT | kind::UNION | kind::ENUM | kind::ENUM64 | kind::FLOAT => {
                Some(u64::from(t.size_or_type))
            }
            kind::PTR => Some(8),
            kind::ARRAY => {
                let (elem, n) = t.array?;
                self.size_of_depth(elem, depth + 1)?
                    .checked_mul(u64::from(n))
            }
            _ => None,
        }
    }
}
