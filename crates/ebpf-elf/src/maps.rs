//! Map definitions: BTF-defined maps (`.maps`, what libbpf's `bpf_helpers.h` emits) and legacy
//! ones (`struct bpf_map_def` in `maps` / `maps/*`), described for the embedder; the loader
//! creates none.
//!
//! A BTF-defined map is a variable of the `.maps` data section whose type is a struct of
//! members that encode the attributes in their types: `__uint(name, n)` is `int (*name)[n]`
//! (a pointer to an array of `n` elements), `__type(name, T)` is `T *name` (the size of `T`
//! is the key or value size), and `__array(values, T)` is an array of pointers whose
//! relocations initialise a prog array's slots with programs. `pinning`, `numa_node` and
//! `map_extra` are read and ignored.

use std::collections::HashMap;

use goblin::elf::sym::{STT_FUNC, STT_SECTION};

use ebpf_isa::quoted;

use crate::btf::{Btf, kind};
use crate::error::{ElfError, ElfErrorKind};
use crate::parse::{Parsed, Place, R_BPF_64_ABS64, Section, SectionKind};
use crate::{MAX_IMAGE_SIZE, link};

/// How an object defines a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapStyle {
    /// A variable of `.maps`, described by BTF.
    Btf,
    /// A `struct bpf_map_def` in `maps` or `maps/*`.
    Legacy,
    /// A global data section (`.data*`, `.bss*`, `.rodata*`) as the single-element array map
    /// libbpf makes of it: see [`crate::ElfObject::load_with_data_maps`].
    GlobalData,
}

/// A map an object defines: what a loader needs to create it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MapDefinition {
    /// Its name (the variable's symbol).
    pub name: String,
    /// The kernel's map type number (`BPF_MAP_TYPE_*`: 1 hash, 2 array, …).
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity (elements; bytes for a ring buffer).
    pub max_entries: u32,
    /// `map_flags`.
    pub flags: u32,
    /// How the object defines it.
    pub style: MapStyle,
    /// The section it is defined in (`.maps`, `maps`, …).
    pub section: String,
    /// A prog array's initial slots (`.values = { [slot] = &function }`): slot and function.
    pub initial_programs: Vec<(u32, String)>,
    /// A global data map's initial value: its section's bytes as the file holds them (zeroes
    /// for `.bss*`). `None` for every other map.
    pub initial_value: Option<Vec<u8>>,
    /// For an array or hash of maps (types 12, 13): the template its inner maps must match,
    /// from BTF `__array(values, struct { … })` (named `OUTER.inner`, as libbpf names it).
    pub inner: Option<Box<MapDefinition>>,
    /// For an array or hash of maps: the slots the object initialises
    /// (`.values = { [slot] = &map }`), with the map's name.
    pub initial_maps: Vec<(u32, String)>,
}

impl std::fmt::Display for MapDefinition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: type {} key {} value {} max_entries {} flags {:#x} ({}, {})",
            self.name,
            self.map_type,
            self.key_size,
            self.value_size,
            self.max_entries,
            self.flags,
            match self.style {
                MapStyle::Btf => "BTF",
                MapStyle::Legacy => "legacy",
                MapStyle::GlobalData => "global data",
            },
            self.section
        )
    }
}

/// A definition and where it lies, for the relocations that refer to it.
#[derive(Clone, Debug)]
pub(crate) struct Placed {
    pub(crate) section: usize,
    pub(crate) offset: u64,
    pub(crate) size: u64,
    pub(crate) definition: MapDefinition,
}

fn bad_map(at: u64, map: &str, reason: impl Into<String>) -> ElfError {
    ElfError::at(
        at,
        ElfErrorKind::BadMap {
            map: map.to_string(),
            reason: reason.into(),
        },
    )
}

/// The maps of an object: every definition that could be read, in section order, then by
/// offset, and for each map section that could not be read, why.
#[derive(Clone, Debug, Default)]
pub(crate) struct Definitions {
    pub(crate) maps: Vec<Placed>,
    /// Sorted by section (one entry at most for each).
    pub(crate) failed: Vec<(usize, ElfError)>,
    /// The global data maps, after `maps` in the object's list (as libbpf appends its
    /// internal maps): each with its section.
    pub(crate) globals: Vec<(usize, MapDefinition)>,
}

impl Definitions {
    /// Every definition, in the object's list order: the maps, then the global data maps.
    pub(crate) fn all(&self) -> impl Iterator<Item = &MapDefinition> {
        let maps = self.maps.iter().map(|p| &p.definition);
        maps.chain(self.globals.iter().map(|(_, d)| d))
    }

    /// The index in that list of the global data map of section `s`.
    pub(crate) fn global_index(&self, s: usize) -> Option<usize> {
        // In section order: a search, not a scan per relocation.
        let i = self.globals.binary_search_by_key(&s, |(g, _)| *g).ok()?;
        Some(self.maps.len() + i)
    }

    /// Why the maps of section `s` cannot be used, if they cannot.
    pub(crate) fn failure(&self, s: usize) -> Option<&ElfError> {
        // Sorted by section (stably): a search, not a scan per relocation.
        let first = self.failed.partition_point(|(f, _)| *f < s);
        self.failed
            .get(first)
            .filter(|(f, _)| *f == s)
            .map(|(_, e)| e)
    }
}

/// Reads every map section; a section that cannot be read fails only the programs that use
/// one of its maps.
pub(crate) fn definitions(parsed: &Parsed, bytes: &[u8]) -> Definitions {
    let mut out = Definitions::default();
    for (s, section) in parsed.sections.iter().enumerate() {
        if section.kind != SectionKind::Maps {
            continue;
        }
        let mut maps = Vec::new();
        let read = if section.name == ".maps" {
            btf_maps(parsed, bytes, s, &mut maps)
        } else {
            legacy_maps(parsed, bytes, s, &mut maps)
        };
        match read {
            Ok(()) => out.maps.extend(maps),
            Err(e) => out.failed.push((s, e)),
        }
    }
    out.maps.sort_by_key(|p| (p.section, p.offset));
    // The global data maps hold what the images would: past the images' limit, nothing of
    // them is allocated (the headers alone may claim gigabytes; linking would refuse them).
    if let Err((s, e)) = link::data_layout(parsed) {
        out.failed.push((s, e));
        out.failed.sort_by_key(|(s, _)| *s);
        return out;
    }
    for (s, section) in parsed.sections.iter().enumerate() {
        match global_data(section, bytes) {
            Ok(Some(definition)) => out.globals.push((s, definition)),
            Ok(None) => {}
            Err(e) => out.failed.push((s, e)),
        }
    }
    out.failed.sort_by_key(|(s, _)| *s);
    out
}

/// `BPF_MAP_TYPE_ARRAY`.
const ARRAY: u32 = 2;
/// `BPF_F_RDONLY_PROG`: programs may only read the map (libbpf's flag for `.rodata`).
pub(crate) const RDONLY_PROG: u32 = 1 << 7;

/// The single-element array map libbpf makes of a global data section (`.data*`, `.bss*`,
/// `.rodata*`; `None` for other and empty sections): 4-byte key, the section as the value,
/// programs' writes refused for `.rodata*`.
fn global_data(section: &Section, bytes: &[u8]) -> Result<Option<MapDefinition>, ElfError> {
    let rodata = match section.kind {
        SectionKind::Rodata => true,
        SectionKind::Data | SectionKind::Bss => false,
        _ => return Ok(None),
    };
    if section.size == 0 {
        return Ok(None);
    }
    let value_size = u32::try_from(section.size)
        .ok()
        .filter(|&size| u64::from(size) <= MAX_IMAGE_SIZE)
        .ok_or_else(|| {
            ElfError::at(
                section.header_offset,
                ElfErrorKind::TooLarge {
                    what: "a global data section",
                    size: section.size,
                },
            )
        })?;
    let initial = match bytes.get(section.contents.clone()) {
        Some(contents) if !section.nobits => {
            let mut value = contents.to_vec();
            value.resize(value_size as usize, 0);
            value
        }
        _ => vec![0; value_size as usize],
    };
    Ok(Some(MapDefinition {
        name: section.name.clone(),
        map_type: ARRAY,
        key_size: 4,
        value_size,
        max_entries: 1,
        flags: if rodata { RDONLY_PROG } else { 0 },
        style: MapStyle::GlobalData,
        section: section.name.clone(),
        initial_programs: Vec::new(),
        initial_value: Some(initial),
        inner: None,
        initial_maps: Vec::new(),
    }))
}

fn legacy_maps(
    parsed: &Parsed,
    bytes: &[u8],
    s: usize,
    out: &mut Vec<Placed>,
) -> Result<(), ElfError> {
    let Some(section) = parsed.sections.get(s) else {
        return Ok(());
    };
    let contents = bytes.get(section.contents.clone()).unwrap_or_default();
    let symbols: Vec<_> = parsed
        .symbols
        .iter()
        .filter(|sym| {
            sym.place == Place::Section(s) && sym.st_type != STT_SECTION && !sym.name.is_empty()
        })
        .collect();
    if symbols.is_empty() {
        return Ok(());
    }
    // libbpf's rule: the section holds equal-size definitions, one per symbol.
    let def_size = section.size / symbols.len() as u64;
    for sym in symbols {
        let size = if sym.size > 0 { sym.size } else { def_size };
        let at = section.file_offset.saturating_add(sym.value);
        if size < 16 || sym.value.checked_add(size).is_none_or(|e| e > section.size) {
            return Err(bad_map(
                at,
                &sym.name,
                format!(
                    "a legacy definition of {size} bytes at {:#x} does not fit `struct bpf_map_def` in its section",
                    sym.value
                ),
            ));
        }
        let field = |i: u64| {
            let o = (sym.value + 4 * i) as usize;
            if 4 * i + 4 > size {
                return 0;
            }
            contents
                .get(o..o + 4)
                .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        out.push(Placed {
            section: s,
            offset: sym.value,
            size,
            definition: MapDefinition {
                name: sym.name.clone(),
                map_type: field(0),
                key_size: field(1),
                value_size: field(2),
                max_entries: field(3),
                flags: field(4),
                style: MapStyle::Legacy,
                section: section.name.clone(),
                initial_programs: Vec::new(),
                initial_value: None,
                inner: None,
                initial_maps: Vec::new(),
            },
        });
    }
    Ok(())
}

fn btf_maps(
    parsed: &Parsed,
    bytes: &[u8],
    s: usize,
    out: &mut Vec<Placed>,
) -> Result<(), ElfError> {
    let Some(section) = parsed.sections.get(s) else {
        return Ok(());
    };
    let Some(btf_section) = parsed.sections.iter().find(|x| x.name == ".BTF") else {
        return Err(ElfError::at(
            section.header_offset,
            ElfErrorKind::BadBtf {
                reason: "BTF-defined maps (.maps) without a .BTF section",
            },
        ));
    };
    let btf = Btf::parse(
        bytes.get(btf_section.contents.clone()).unwrap_or_default(),
        btf_section.file_offset,
    )?;
    let Some(datasec) = btf.datasec(".maps") else {
        return Err(ElfError::at(
            btf_section.header_offset,
            ElfErrorKind::BadBtf {
                reason: "no .maps data section in the BTF",
            },
        ));
    };
    // The section's symbols by name (the first of each name), built once: a search of the
    // symbol table per variable was quadratic.
    let mut symbols = HashMap::new();
    for sym in &parsed.symbols {
        if sym.place == Place::Section(s) && sym.st_type != STT_SECTION {
            symbols.entry(sym.name.as_str()).or_insert(sym);
        }
    }
    for var in &datasec.members {
        let Some(v) = btf.get(var.type_id).filter(|t| t.kind == kind::VAR) else {
            return Err(ElfError::at(
                datasec.at,
                ElfErrorKind::BadBtf {
                    reason: "a .maps entry is not a variable",
                },
            ));
        };
        let name = v.name.clone();
        let at = v.at;
        let Some(def) = btf
            .resolve(v.size_or_type)
            .filter(|t| t.kind == kind::STRUCT)
        else {
            return Err(bad_map(at, &name, "its type is not a struct"));
        };
        let (mut d, values_at) = btf_definition(&btf, def, &name, at, &section.name, true)?;
        // clang leaves the data section's offsets to the loader (libbpf fixes them up from
        // the symbol table): the variable's symbol says where the map lies.
        let Some(sym) = symbols.get(name.as_str()) else {
            return Err(bad_map(
                at,
                &name,
                "no symbol in .maps has the variable's name",
            ));
        };
        let (offset, size) = (sym.value, sym.size.max(u64::from(var.size)));
        if let Some(values_at) = values_at {
            let (programs, maps) = initial_slots(parsed, s, offset + values_at, size, &name)?;
            let of_maps = matches!(d.map_type, 12 | 13);
            if (of_maps && !programs.is_empty()) || (!of_maps && !maps.is_empty()) {
                return Err(bad_map(
                    at,
                    &name,
                    if of_maps {
                        "an initial value of a map of maps that is not a map"
                    } else {
                        "an initial value that is a map, in a map that is not a map of maps"
                    },
                ));
            }
            d.initial_programs = programs;
            d.initial_maps = maps;
        }
        out.push(Placed {
            section: s,
            offset,
            size,
            definition: d,
        });
    }
    Ok(())
}

/// A BTF map definition's members (`def`, the variable's struct): the definition, and where
/// its `values` member is (its byte offset and type), if it has one. `outer`: whether it may
/// itself hold maps (an inner map's template may not).
fn btf_definition(
    btf: &Btf,
    def: &crate::btf::Type,
    name: &str,
    at: u64,
    section: &str,
    outer: bool,
) -> Result<(MapDefinition, Option<u64>), ElfError> {
    let mut d = MapDefinition {
        name: name.to_string(),
        map_type: 0,
        key_size: 0,
        value_size: 0,
        max_entries: 0,
        flags: 0,
        style: MapStyle::Btf,
        section: section.to_string(),
        initial_programs: Vec::new(),
        initial_value: None,
        inner: None,
        initial_maps: Vec::new(),
    };
    let mut values_at = None;
    for member in &def.members {
        // `__uint(name, n)`: a pointer to an array of n elements.
        let uint = || -> Result<u32, ElfError> {
            btf.resolve(member.type_id)
                .filter(|t| t.kind == kind::PTR)
                .and_then(|p| btf.resolve(p.size_or_type))
                .and_then(|a| a.array)
                .map(|(_, n)| n)
                .ok_or_else(|| {
                    bad_map(
                        at,
                        name,
                        format!("`{}` is not __uint(…)", quoted(&member.name)),
                    )
                })
        };
        // `__type(name, T)`: a pointer to T; its size.
        let pointee_size = || -> Result<u32, ElfError> {
            btf.resolve(member.type_id)
                .filter(|t| t.kind == kind::PTR)
                .and_then(|p| btf.size_of(p.size_or_type))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    bad_map(
                        at,
                        name,
                        format!(
                            "`{}` is not __type(…) of a sized type",
                            quoted(&member.name)
                        ),
                    )
                })
        };
        let set = |slot: &mut u32, value: u32, what: &str| {
            if *slot != 0 && *slot != value {
                return Err(bad_map(
                    at,
                    name,
                    format!("{what} is given twice ({} and {value})", *slot),
                ));
            }
            *slot = value;
            Ok(())
        };
        match member.name.as_str() {
            "type" => d.map_type = uint()?,
            "max_entries" => d.max_entries = uint()?,
            "map_flags" => d.flags = uint()?,
            "key_size" => set(&mut d.key_size, uint()?, "the key size")?,
            "value_size" => set(&mut d.value_size, uint()?, "the value size")?,
            "key" => set(&mut d.key_size, pointee_size()?, "the key size")?,
            "value" => set(&mut d.value_size, pointee_size()?, "the value size")?,
            "pinning" | "numa_node" | "map_extra" => {
                uint()?;
            }
            "values" => values_at = Some((u64::from(member.offset / 8), member.type_id)),
            other => {
                return Err(bad_map(
                    at,
                    name,
                    format!("unknown attribute `{}`", quoted(other)),
                ));
            }
        }
    }
    // libbpf sets the key and value sizes of these types itself.
    if matches!(d.map_type, 3 | 12 | 13) {
        d.key_size = 4;
        d.value_size = 4;
    }
    if d.map_type == 4 {
        d.key_size = 4;
        d.value_size = 4;
    }
    if let (true, Some((_, values_type))) = (matches!(d.map_type, 12 | 13), values_at) {
        // `__array(values, struct { … })`: an array of pointers to the inner template.
        let template = btf
            .resolve(values_type)
            .and_then(|a| a.array)
            .and_then(|(element, _)| btf.resolve(element))
            .filter(|p| p.kind == kind::PTR)
            .and_then(|p| btf.resolve(p.size_or_type))
            .filter(|t| t.kind == kind::STRUCT);
        let Some(template) = template.filter(|_| outer) else {
            return Err(bad_map(
                at,
                name,
                "a map of maps whose `values` is not __array(values, struct { … }) of one level",
            ));
        };
        let inner_name = format!("{name}.inner");
        let (inner, _) = btf_definition(btf, template, &inner_name, at, section, false)?;
        d.inner = Some(Box::new(inner));
    }
    Ok((d, values_at.map(|(offset, _)| offset)))
}

/// Initial slots: each slot with the program or map it names.
type Slots = Vec<(u32, String)>;

/// The `values` relocations of a map at `start` (`size` bytes) of section `s`: each is a
/// pointer to a program (a prog array's slot) or to a map of section `s` (a map of maps'
/// slot), slot `(r_offset - start) / 8`. Returns the programs' slots and the maps' slots.
fn initial_slots(
    parsed: &Parsed,
    s: usize,
    start: u64,
    size: u64,
    map: &str,
) -> Result<(Slots, Slots), ElfError> {
    let Some(section) = parsed.sections.get(s) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let (mut programs, mut maps) = (Vec::new(), Vec::new());
    let end = start.saturating_add(size);
    for (&r_offset, reloc) in section.relocs.range(start..end) {
        let sym = parsed
            .symbols
            .get(reloc.sym)
            .filter(|_| reloc.r_type == R_BPF_64_ABS64);
        let slot = u32::try_from((r_offset - start) / 8).unwrap_or(u32::MAX);
        match sym {
            Some(sym)
                if sym.st_type == STT_FUNC
                    && matches!(sym.place, Place::Section(c) if parsed.sections.get(c).map(|x| x.kind) == Some(SectionKind::Code)) =>
            {
                programs.push((slot, sym.name.clone()));
            }
            Some(sym)
                if sym.place == Place::Section(s)
                    && sym.st_type != STT_SECTION
                    && !sym.name.is_empty() =>
            {
                maps.push((slot, sym.name.clone()));
            }
            _ => {
                return Err(bad_map(
                    reloc.entry_offset,
                    map,
                    "an initial value that is not a pointer to a program or a map",
                ));
            }
        }
    }
    Ok((programs, maps))
}
