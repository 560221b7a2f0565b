//! What parsing and loading an object may cost in memory: a bound proportional to the file (or
//! a documented limit checked before allocating), however its headers, names and tables are
//! arranged to multiply it.
//!
//! Its own test binary because it installs a counting global allocator: it tracks the peak of
//! the bytes the current thread holds while counting is switched on.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{Section, strtab, symbol, write_elf};
use ebpf_elf::{ElfErrorKind, ElfObject, MAX_IMAGE_SIZE, MAX_NAME_LEN, Selector};

/// The system allocator, tracking the live and peak bytes of threads that asked for it.
struct Counting;

std::thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(delta: i64) {
    // `try_with`: thread-locals may be gone while a thread exits.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = LIVE.try_with(|live| {
            live.set(live.get() + delta);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
        });
    }
}

// SAFETY: every method forwards to the system allocator unchanged; the counting touches only
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as i64 - layout.size() as i64);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as i64));
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The peak of the bytes `f` holds at once beyond what was held when it started.
fn peak_bytes<T>(f: impl FnOnce() -> T) -> (T, u64) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, PEAK.with(Cell::get).max(0) as u64)
}

const SHT_NOBITS: u32 = 8;
const SHF_WRITE: u64 = 1;

/// An XDP program `mov r0, 0; exit` (section `xdp`, function `prog`) and one `SHT_NOBITS`
/// section per entry of `bss`: its name and its size (64 bytes of file each, whatever the size).
fn object_with_bss(bss: &[(&str, u64)]) -> Vec<u8> {
    let mut names = vec![".shstrtab", ".symtab", "xdp", "prog"];
    names.extend(bss.iter().map(|(name, _)| *name));
    let (table, off) = strtab(&names);
    let code = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let mut symtab = symbol(0, 0, 0, 0, 0);
    symtab.extend(symbol(off[3], 0x12, 3, 0, code.len() as u64));
    let mut sections = vec![
        Section::names(off[0], table),
        Section::symbols(off[1], symtab, 1),
        Section::code(off[2], &code),
    ];
    for (i, _) in bss.iter().enumerate() {
        sections.push(Section {
            name_offset: off[4 + i],
            sh_type: SHT_NOBITS,
            flags: common::SHF_ALLOC | SHF_WRITE,
            data: Vec::new(),
            link: 0,
            info: 0,
            align: 8,
            entsize: 0,
        });
    }
    let mut bytes = write_elf(&sections, 1);
    // `write_elf` gives each section its data's size; a NOBITS section has none in the file.
    let shoff = common::u64_at(&bytes, 40) as usize;
    for (i, (_, size)) in bss.iter().enumerate() {
        let header = shoff + 64 * (4 + i);
        bytes[header + 32..header + 40].copy_from_slice(&size.to_le_bytes());
    }
    bytes
}

/// Two 48 MiB `.bss.*` headers (a 600-byte file) pass the per-section limit but not the
/// image's: the object is refused with `TooLarge` before either is materialised (it took
/// 96 MiB for the global data maps, then twice that in copies, before the image was checked).
#[test]
fn nobits_sections_past_the_image_limit_are_refused_before_allocation() {
    let size = 48 << 20;
    let bytes = object_with_bss(&[(".bss.a", size), (".bss.b", size)]);
    let (errors, peak) = peak_bytes(|| {
        let object = ElfObject::parse(&bytes).unwrap();
        let maps = object.maps().map(|_| ());
        let load = object.load(Selector::Only).map(|_| ());
        let with_maps = object.load_with_data_maps(Selector::Only).map(|_| ());
        [maps, load, with_maps]
    });
    assert!(
        peak < 64 * bytes.len() as u64 + (64 << 10),
        "{peak} bytes at once for a {}-byte object",
        bytes.len()
    );
    for e in errors {
        let e = e.unwrap_err();
        let what = "the .data/.bss image";
        assert_eq!(
            e.kind,
            ElfErrorKind::TooLarge {
                what,
                size: 2 * size
            },
            "{e}"
        );
    }
}

/// Within the limit the sections are still global data maps and the image holds them.
#[test]
fn nobits_sections_within_the_image_limit_load() {
    let size = MAX_IMAGE_SIZE / 2 - 8;
    let bytes = object_with_bss(&[(".bss.a", size), (".bss.b", size)]);
    let object = ElfObject::parse(&bytes).unwrap();
    let maps = object.maps().unwrap();
    let sizes: Vec<_> = maps
        .iter()
        .map(|m| (m.name.as_str(), m.value_size))
        .collect();
    assert_eq!(sizes, [(".bss.a", size as u32), (".bss.b", size as u32)]);
    let loaded = object.load(Selector::Only).unwrap();
    assert_eq!(loaded.data.len() as u64, 2 * size);
    assert!(loaded.data.iter().all(|&b| b == 0));
}

/// An object whose string table holds one `len`-byte name and whose `count` local symbols all
/// name it (`suffixes`: each names the next suffix of it instead, so no two are equal).
fn object_with_shared_names(len: usize, count: usize, suffixes: bool) -> Vec<u8> {
    let long = "n".repeat(len);
    let (mut table, off) = strtab(&[".shstrtab", ".symtab", "xdp", "prog"]);
    let long_at = table.len() as u32;
    table.extend_from_slice(long.as_bytes());
    table.push(0);
    let code = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let mut symtab = symbol(0, 0, 0, 0, 0);
    for i in 0..count {
        let name = long_at + if suffixes { (i % len) as u32 } else { 0 };
        symtab.extend(symbol(name, 0, 3, 0, 0));
    }
    symtab.extend(symbol(off[3], 0x12, 3, 0, code.len() as u64));
    let sections = [
        Section::names(off[0], table),
        Section::symbols(off[1], symtab, 1 + count as u32),
        Section::code(off[2], &code),
    ];
    write_elf(&sections, 1)
}

/// Memory a parse may hold for an object of `len` bytes: a few copies of it, the records as
/// structures, their names.
fn parse_bound(len: usize) -> u64 {
    16 * len as u64 + (256 << 10)
}

/// 3,000 symbols all named by one 1,000-byte string (a 73 KB object) were 3,000 copies of it
/// (3 MB); now the names may add up to twice the object plus 64 KiB, and the parse stops there.
#[test]
fn symbols_sharing_a_long_name_are_refused_within_a_bound() {
    for suffixes in [false, true] {
        let bytes = object_with_shared_names(1_000, 3_000, suffixes);
        let (parsed, peak) = peak_bytes(|| ElfObject::parse(&bytes).map(|_| ()));
        assert!(
            peak < parse_bound(bytes.len()),
            "{peak} bytes at once for a {}-byte object",
            bytes.len()
        );
        let e = parsed.unwrap_err();
        let max = 2 * bytes.len() as u64 + (64 << 10);
        assert_eq!(e.kind, ElfErrorKind::NamesTooLarge { max }, "{e}");
        assert!(
            e.to_string().contains("the names add up to more than"),
            "{e}"
        );
    }
}

/// An object whose one code section has a `len`-byte name and `count` global functions (each
/// program's description carries its section's name; `section_symbols`: as many `STT_SECTION`
/// symbols without a name of their own, which take the section's).
fn object_with_programs_of_a_long_section(
    len: usize,
    count: usize,
    section_symbols: bool,
) -> Vec<u8> {
    let long = "x".repeat(len);
    let (table, off) = strtab(&[".shstrtab", ".symtab", &long, "p"]);
    let code = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let mut symtab = symbol(0, 0, 0, 0, 0);
    for _ in 0..count {
        if section_symbols {
            symtab.extend(symbol(0, 0x03, 3, 0, 0));
        } else {
            symtab.extend(symbol(off[3], 0x12, 3, 0, code.len() as u64));
        }
    }
    let locals = if section_symbols { 1 + count as u32 } else { 1 };
    let sections = [
        Section::names(off[0], table),
        Section::symbols(off[1], symtab, locals),
        Section::code(off[2], &code),
    ];
    write_elf(&sections, 1)
}

/// 3,000 programs (or section symbols) in one section with a 1,000-byte name (a 73 KB object)
/// were 3,000 copies of that name; the copies now count against the names' bound.
#[test]
fn copies_of_a_long_section_name_are_refused_within_a_bound() {
    for section_symbols in [false, true] {
        let bytes = object_with_programs_of_a_long_section(1_000, 3_000, section_symbols);
        let (parsed, peak) = peak_bytes(|| ElfObject::parse(&bytes).map(|_| ()));
        assert!(
            peak < parse_bound(bytes.len()),
            "{peak} bytes at once for a {}-byte object",
            bytes.len()
        );
        let e = parsed.unwrap_err();
        assert!(matches!(e.kind, ElfErrorKind::NamesTooLarge { .. }), "{e}");
    }
    // A few programs of a long-named section load.
    let object =
        ElfObject::parse(&object_with_programs_of_a_long_section(1_000, 3, false)).unwrap();
    assert_eq!(object.programs().len(), 3);
    assert!(object.programs().iter().all(|p| p.section.len() == 1_000));
}

/// A name longer than `MAX_NAME_LEN` is refused, found without reading past the limit; one
/// of exactly that length, named a few times, loads.
#[test]
fn names_longer_than_the_limit_are_refused() {
    let bytes = object_with_shared_names(MAX_NAME_LEN + 1, 4, false);
    let e = ElfObject::parse(&bytes).unwrap_err();
    assert!(matches!(e.kind, ElfErrorKind::NameTooLong { .. }), "{e}");
    assert!(e.to_string().contains("is longer than 1024 bytes"), "{e}");
    let bytes = object_with_shared_names(MAX_NAME_LEN, 4, false);
    let object = ElfObject::parse(&bytes).unwrap();
    assert_eq!(object.programs().len(), 1);
    object.load(Selector::Only).unwrap();
}

const SHT_PROGBITS: u32 = 1;

/// An object with a `.maps` section and a `.BTF` whose one struct has `members` members all
/// named by one 1,000-byte string.
fn object_with_btf_members(members: u32) -> Vec<u8> {
    let mut strings = vec![0u8];
    strings.extend_from_slice(&[b'm'; 1_000]);
    strings.push(0);
    let mut types = Vec::new();
    const STRUCT: u32 = 4;
    for word in [0, (STRUCT << 24) | members, 8] {
        types.extend_from_slice(&u32::to_le_bytes(word));
    }
    for _ in 0..members {
        for word in [1u32, 0, 0] {
            types.extend_from_slice(&word.to_le_bytes());
        }
    }
    let mut btf = Vec::new();
    btf.extend_from_slice(&0xeb9fu16.to_le_bytes());
    btf.extend_from_slice(&[1, 0]); // version, flags
    let (types_len, strings_len) = (types.len() as u32, strings.len() as u32);
    for word in [24, 0, types_len, types_len, strings_len] {
        btf.extend_from_slice(&u32::to_le_bytes(word));
    }
    btf.extend(types);
    btf.extend(strings);
    let (names, off) = strtab(&[".shstrtab", ".symtab", "xdp", "prog", ".maps", ".BTF"]);
    let code = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let mut symtab = symbol(0, 0, 0, 0, 0);
    symtab.extend(symbol(off[3], 0x12, 3, 0, code.len() as u64));
    let data = |name_offset, data| Section {
        name_offset,
        sh_type: SHT_PROGBITS,
        flags: 0,
        data,
        link: 0,
        info: 0,
        align: 8,
        entsize: 0,
    };
    let sections = [
        Section::names(off[0], names),
        Section::symbols(off[1], symtab, 1),
        Section::code(off[2], &code),
        data(off[4], vec![0; 8]),
        data(off[5], btf),
    ];
    write_elf(&sections, 1)
}

/// 3,000 struct members all named by one 1,000-byte string (a 38 KB object) were 3,000 copies
/// of it; the BTF's names are bounded as the object's are.
#[test]
fn btf_members_sharing_a_long_name_are_refused_within_a_bound() {
    let bytes = object_with_btf_members(3_000);
    let (maps, peak) = peak_bytes(|| ElfObject::parse(&bytes).unwrap().maps().map(|_| ()));
    assert!(
        peak < parse_bound(bytes.len()),
        "{peak} bytes at once for a {}-byte object",
        bytes.len()
    );
    let e = maps.unwrap_err();
    assert!(matches!(e.kind, ElfErrorKind::NamesTooLarge { .. }), "{e}");
}
