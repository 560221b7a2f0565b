//! A whole BPF object in the kernel: [`KernelObject::load`] creates its maps, loads each of its
//! programs with the maps' descriptors patched in, fills prog arrays with the loaded programs,
//! and maps each ring buffer for reading — what libbpf's `bpf_object__load` does, from
//! definitions and linked code the caller parsed (this crate reads no ELF).
//!
//! Programs come as their loader links them: a map reference is `lddw dst, N` with source 1
//! (`BPF_PSEUDO_MAP_FD`) or 2 (`BPF_PSEUDO_MAP_VALUE`, `imm2` the offset), `N` the map's index
//! in the list given; [`KernelObject::load`] puts the map's descriptor in place of `N`. A
//! callback's address (`lddw` with source 4, `BPF_PSEUDO_FUNC`, for `bpf_loop`) is already
//! relative to the instruction, as the kernel wants it, and is left alone; such a program is
//! loaded with BTF function information ([`callback_btf`], one record per subprogram), which
//! the kernel's verifier requires before it accepts a callback.

use std::fmt;

use crate::ring::RingReader;
use crate::{
    BPF_F_RDONLY_PROG, Btf, CALLBACK_FUNC_TYPE, Command, FuncInfo, KernelError, LoadOptions, Map,
    MapSpec, PatchError, Program, ProgramType, UpdateFlags, callback_btf, create_map,
    create_map_of_maps, load_btf, load_program, patch_map_fd, patch_map_value, subprogram_starts,
};

/// `BPF_MAP_TYPE_RINGBUF`.
const RINGBUF: u32 = 27;
/// `BPF_MAP_TYPE_PROG_ARRAY`.
const PROG_ARRAY: u32 = 3;

/// One map of an object, as its definition says (a BTF `.maps` variable or a legacy
/// `struct bpf_map_def`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMap {
    /// Its name in the object (shortened and cleaned to the kernel's rules when created).
    pub name: String,
    /// The kernel's map type number.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// `map_flags`.
    pub flags: u32,
    /// For a prog array: the slots the object initialises, with the program for each.
    pub initial_programs: Vec<(u32, String)>,
    /// For a global data map (`.data`, `.bss`, `.rodata`: an array with one element): the
    /// element's initial value, written before any program loads; a map with
    /// [`BPF_F_RDONLY_PROG`] is then frozen (`BPF_MAP_FREEZE`), as libbpf freezes `.rodata`,
    /// so that the verifier knows its contents are constant.
    pub initial_value: Option<Vec<u8>>,
    /// For an array or hash of maps (types 12, 13): the template of its inner maps, created
    /// only to be the outer map's `inner_map_fd` (and closed after, as libbpf does).
    pub inner: Option<Box<ObjectMap>>,
    /// For an array or hash of maps: the slots the object initialises, each with the name of
    /// a map of the object, filled once every map exists.
    pub initial_maps: Vec<(u32, String)>,
}

/// One program of an object, linked, with map references by index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectProgram {
    /// Its name (the function's), by which prog arrays name it.
    pub name: String,
    /// What the kernel loads it as.
    pub program_type: ProgramType,
    /// The linked instructions, 8-byte slots.
    pub insns: Vec<u8>,
}

/// Why an object could not be loaded: what failed, and the kernel's error (with its errno, and
/// the verifier's log for a rejected program).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectError {
    /// Creating a map failed.
    Map {
        /// The map.
        map: String,
        /// The kernel's error.
        error: KernelError,
    },
    /// Loading a program failed (a rejection carries the verifier's log).
    Program {
        /// The program.
        program: String,
        /// The kernel's error.
        error: KernelError,
    },
    /// A program refers to a map index the object does not have, or its `lddw` is malformed.
    MapReference {
        /// The program.
        program: String,
        /// The `lddw`'s slot.
        pc: usize,
        /// What is wrong.
        reason: String,
    },
    /// A prog array names a program the object does not have, or filling a slot failed.
    ProgArray {
        /// The prog array.
        map: String,
        /// The slot.
        slot: u32,
        /// The program it names.
        program: String,
        /// The kernel's error, if it refused the update.
        error: Option<KernelError>,
    },
    /// Mapping a ring buffer's pages for reading failed.
    Ring {
        /// The ring buffer.
        map: String,
        /// The kernel's error.
        error: KernelError,
    },
}

impl ObjectError {
    /// Whether the kernel refused BPF altogether (skip, do not fail).
    pub fn is_refusal(&self) -> bool {
        self.kernel_error().is_some_and(KernelError::is_refusal)
    }

    /// The kernel's error behind this one, if there is one.
    pub fn kernel_error(&self) -> Option<&KernelError> {
        match self {
            ObjectError::Map { error, .. }
            | ObjectError::Program { error, .. }
            | ObjectError::Ring { error, .. } => Some(error),
            ObjectError::ProgArray { error, .. } => error.as_ref(),
            ObjectError::MapReference { .. } => None,
        }
    }
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectError::Map { map, error } => write!(f, "map `{map}`: {error}"),
            ObjectError::Program { program, error } => write!(f, "program `{program}`: {error}"),
            ObjectError::MapReference {
                program,
                pc,
                reason,
            } => write!(f, "program `{program}`, pc {pc}: {reason}"),
            ObjectError::ProgArray {
                map,
                slot,
                program,
                error,
            } => {
                write!(f, "prog array `{map}`, slot {slot} (`{program}`): ")?;
                match error {
                    Some(e) => write!(f, "{e}"),
                    None => write!(f, "the object has no such program"),
                }
            }
            ObjectError::Ring { map, error } => write!(f, "ring buffer `{map}`: {error}"),
        }
    }
}

impl std::error::Error for ObjectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kernel_error()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// An object's maps and programs in the kernel; everything is freed when it is dropped.
#[derive(Debug)]
pub struct KernelObject {
    /// Each map, in the order given, with its name in the object.
    maps: Vec<(String, Map)>,
    /// A reader for each ring buffer map (same order as `maps`; `None` for other types).
    rings: Vec<Option<RingReader>>,
    programs: Vec<(String, Program)>,
}

/// `name` as the kernel accepts it: at most 15 bytes of `[A-Za-z0-9_.]` (others become `_`).
fn kernel_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(15)
        .collect()
}

/// Whether `insns` takes a callback's address (`lddw` with source 4, `BPF_PSEUDO_FUNC`).
fn takes_callback(insns: &[u8]) -> bool {
    let mut pc = 0;
    while let Some(slot) = insns.get(pc * 8..pc * 8 + 8) {
        if slot[0] == 0x18 {
            if slot[1] >> 4 == 4 {
                return true;
            }
            pc += 2;
        } else {
            pc += 1;
        }
    }
    false
}

/// Patches every map reference of `insns` (`lddw` with source 1 or 2, `imm` a map index) to the
/// map's descriptor.
fn patch_maps(program: &str, insns: &mut [u8], maps: &[(String, Map)]) -> Result<(), ObjectError> {
    let bad = |pc, reason: String| ObjectError::MapReference {
        program: program.to_string(),
        pc,
        reason,
    };
    let slots = insns.len() / 8;
    let mut pc = 0;
    while pc < slots {
        let at = pc * 8;
        if insns[at] != 0x18 {
            pc += 1;
            continue;
        }
        let src = insns[at + 1] >> 4;
        if src == 1 || src == 2 {
            let index =
                u32::from_le_bytes([insns[at + 4], insns[at + 5], insns[at + 6], insns[at + 7]]);
            let (_, map) = maps
                .get(index as usize)
                .ok_or_else(|| bad(pc, format!("map index {index}, of {} maps", maps.len())))?;
            let patched = if src == 1 {
                patch_map_fd(insns, pc, map)
            } else {
                let offset = insns
                    .get(at + 12..at + 16)
                    .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                patch_map_value(insns, pc, map, offset)
            };
            patched.map_err(|e: PatchError| bad(pc, e.to_string()))?;
        }
        pc += 2;
    }
    Ok(())
}

impl KernelObject {
    /// Creates `maps` (in order: a program's map index `N` is `maps[N]`), loads every program
    /// with `options` (whose `name` is replaced by each program's), fills each prog array's
    /// initial slots, and maps each ring buffer for reading.
    pub fn load(
        maps: &[ObjectMap],
        programs: &[ObjectProgram],
        options: &LoadOptions<'_>,
    ) -> Result<KernelObject, ObjectError> {
        let mut created = Vec::with_capacity(maps.len());
        let mut rings = Vec::with_capacity(maps.len());
        for m in maps {
            let name = kernel_name(&m.name);
            let spec = MapSpec {
                map_type: m.map_type,
                key_size: m.key_size,
                value_size: m.value_size,
                max_entries: m.max_entries,
                flags: m.flags,
                name: &name,
            };
            let fail = |error| ObjectError::Map {
                map: m.name.clone(),
                error,
            };
            let map = match &m.inner {
                Some(inner) => {
                    let inner_name = kernel_name(&inner.name);
                    let template = create_map(&MapSpec {
                        map_type: inner.map_type,
                        key_size: inner.key_size,
                        value_size: inner.value_size,
                        max_entries: inner.max_entries,
                        flags: inner.flags,
                        name: &inner_name,
                    })
                    .map_err(fail)?;
                    create_map_of_maps(&spec, &template).map_err(fail)?
                }
                None => create_map(&spec).map_err(fail)?,
            };
            if let Some(value) = &m.initial_value {
                let fail = |error| ObjectError::Map {
                    map: m.name.clone(),
                    error,
                };
                map.update(&0u32.to_le_bytes(), value, UpdateFlags::Any)
                    .map_err(fail)?;
                if m.flags & BPF_F_RDONLY_PROG != 0 {
                    map.freeze().map_err(fail)?;
                }
            }
            let ring = if m.map_type == RINGBUF {
                Some(RingReader::new(&map).map_err(|error| ObjectError::Ring {
                    map: m.name.clone(),
                    error,
                })?)
            } else {
                None
            };
            rings.push(ring);
            created.push((m.name.clone(), map));
        }
        for m in maps {
            for (slot, inner) in &m.initial_maps {
                let fail = |error| ObjectError::Map {
                    map: m.name.clone(),
                    error,
                };
                let find = |name: &str| created.iter().find(|(n, _)| n == name).map(|(_, m)| m);
                let (Some(outer), Some(inner)) = (find(&m.name), find(inner)) else {
                    return Err(fail(KernelError::invalid(
                        Command::MapUpdateElem,
                        format!("slot {slot} names map `{inner}`, which the object does not have"),
                    )));
                };
                outer.set_map(&slot.to_le_bytes(), inner).map_err(fail)?;
            }
        }
        let mut loaded = Vec::with_capacity(programs.len());
        let mut btf: Option<Btf> = None;
        for p in programs {
            let mut insns = p.insns.clone();
            patch_maps(&p.name, &mut insns, &created)?;
            let name = kernel_name(&p.name);
            let records: Vec<(u32, u32)> = if takes_callback(&insns) {
                subprogram_starts(&insns)
                    .into_iter()
                    .map(|slot| (slot, CALLBACK_FUNC_TYPE))
                    .collect()
            } else {
                Vec::new()
            };
            if !records.is_empty() && btf.is_none() {
                btf = Some(
                    load_btf(&callback_btf()).map_err(|error| ObjectError::Program {
                        program: p.name.clone(),
                        error,
                    })?,
                );
            }
            let options = LoadOptions {
                name: &name,
                func_info: btf
                    .as_ref()
                    .filter(|_| !records.is_empty())
                    .map(|btf| FuncInfo {
                        btf,
                        records: &records,
                    }),
                ..*options
            };
            let program = load_program(p.program_type, &insns, &options).map_err(|error| {
                ObjectError::Program {
                    program: p.name.clone(),
                    error,
                }
            })?;
            loaded.push((p.name.clone(), program));
        }
        for (m, (_, map)) in maps.iter().zip(&created) {
            if m.map_type != PROG_ARRAY {
                continue;
            }
            for (slot, name) in &m.initial_programs {
                let fail = |error| ObjectError::ProgArray {
                    map: m.name.clone(),
                    slot: *slot,
                    program: name.clone(),
                    error,
                };
                let (_, program) = loaded
                    .iter()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| fail(None))?;
                map.set_program(*slot, program).map_err(|e| fail(Some(e)))?;
            }
        }
        Ok(KernelObject {
            maps: created,
            rings,
            programs: loaded,
        })
    }

    /// The map of this name in the object.
    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }

    /// Every map with its name, in the order given to [`KernelObject::load`].
    pub fn maps(&self) -> impl Iterator<Item = (&str, &Map)> {
        self.maps.iter().map(|(n, m)| (n.as_str(), m))
    }

    /// The reader of the ring buffer map of this name.
    pub fn ring(&self, name: &str) -> Option<&RingReader> {
        let i = self.maps.iter().position(|(n, _)| n == name)?;
        self.rings.get(i)?.as_ref()
    }

    /// The program of this name.
    pub fn program(&self, name: &str) -> Option<&Program> {
        self.programs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_acceptable() {
        assert_eq!(kernel_name("xdp_tcp_options"), "xdp_tcp_options");
        assert_eq!(kernel_name("a-very-long-map-name"), "a_very_long_map");
        assert_eq!(kernel_name(".rodata.str1.1"), ".rodata.str1.1");
    }

    #[test]
    fn a_map_index_out_of_range_is_an_error_before_the_kernel() {
        // lddw r1, map 3; no maps.
        let mut insns = vec![0x18, 0x11, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let err = patch_maps("p", &mut insns, &[]).unwrap_err();
        assert_eq!(err.to_string(), "program `p`, pc 0: map index 3, of 0 maps");
        // A plain lddw and a callback address are left alone.
        let mut insns = vec![
            0x18, 0x01, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
            0x18, 0x41, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let before = insns.clone();
        patch_maps("p", &mut insns, &[]).unwrap();
        assert_eq!(insns, before);
    }
}
