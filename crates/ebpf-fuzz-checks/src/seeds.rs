//! The seed corpus: inputs for every target made from the bpf_conformance vectors and the ELF
//! fixtures, in each target's input format — only the programs (and a vector's memory), not
//! whole files, so the committed corpus stays small.
//!
//! `cargo xtask fuzz --seeds` writes it to `fuzz/seeds/<target>/` (through the `fuzz-seeds`
//! binary of this crate); a test checks that the committed files are what [`seeds`] makes.

use std::collections::BTreeMap;
use std::path::Path;

use ebpf_isa::Program;

use crate::Target;
use crate::generate::EntryKind;

/// Seed inputs by target, then by file name.
pub type Seeds = BTreeMap<Target, BTreeMap<String, Vec<u8>>>;

/// The setup bytes [`crate::generate::setup`] reads as "no options, this input" (or no input).
fn setup_bytes(mem: Option<&[u8]>) -> Vec<u8> {
    let mem = mem.unwrap_or_default();
    let len = u16::try_from(mem.len()).unwrap_or(u16::MAX).min(512);
    let mut out = vec![if mem.is_empty() { 1 } else { 0 }];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&mem[..usize::from(len)]);
    out
}

/// The differential target's flags for one setup, raw slots, and row `row` of
/// [`crate::targets::DIFFERENTIAL_SHAPES`] (which must be `shape`).
const fn shape_flags(row: usize, shape: (EntryKind, bool)) -> u8 {
    let (kind, checked) = crate::targets::DIFFERENTIAL_SHAPES[row];
    assert!(kind as u8 == shape.0 as u8 && checked == shape.1);
    2 | ((row * 3) << 3) as u8
}

/// The facts' entry made from the setup's input, Cranelift checking its dropped checks.
const OWN_ENTRY_FLAGS: u8 = shape_flags(7, (EntryKind::Own, true));

/// An entry the setup does not satisfy: every run takes the JITs' fallback code.
const FOREIGN_ENTRY_FLAGS: u8 = shape_flags(5, (EntryKind::Foreign, false));

/// Adds the seeds of one program (with its input memory) to every target that runs programs.
fn add_program(seeds: &mut Seeds, name: &str, program: &Program, mem: Option<&[u8]>) {
    let code = program.to_bytes();
    let mut put = |target: Target, bytes: Vec<u8>| {
        seeds
            .entry(target)
            .or_default()
            .insert(name.to_string(), bytes);
    };
    put(Target::Isa, [&[0u8][..], &code].concat());
    // Raw mode (2) for the verifier and the differential target: one setup, then the code.
    let setup = setup_bytes(mem);
    put(Target::Verifier, [&[2u8][..], &setup, &code].concat());
    put(Target::Differential, [&[2u8][..], &setup, &code].concat());
    // The facade: unverified with a budget of 255 * 64 instructions, the input, the code.
    let mem = mem.unwrap_or_default();
    let len = u16::try_from(mem.len()).unwrap_or(u16::MAX).min(256);
    let facade = [
        &[1u8, 255][..],
        &len.to_le_bytes(),
        &mem[..usize::from(len)],
        &code,
    ]
    .concat();
    put(Target::Facade, facade);
    // With an input, twice more: with the JITs' facts proven from it (and Cranelift checking
    // the checks they drop), the facade's own configuration, and from an entry it does not
    // satisfy, which runs the JITs' fallback code.
    if !mem.is_empty() {
        let differential = seeds.entry(Target::Differential).or_default();
        for (suffix, flags) in [
            ("entry", OWN_ENTRY_FLAGS),
            ("fallback", FOREIGN_ENTRY_FLAGS),
        ] {
            differential.insert(
                format!("{name}-{suffix}"),
                [&[flags][..], &setup, &code].concat(),
            );
        }
    }
}

/// Every seed: from each conformance vector (its program; its assembly text when it does not
/// assemble; the file when it does not parse) and each ELF fixture (the object; each program it
/// links).
pub fn seeds(conformance: &[&Path], elf_fixtures: &[&Path]) -> Result<Seeds, String> {
    let mut seeds = Seeds::new();
    for path in conformance {
        let stem = stem(path);
        let name = format!("conformance-{stem}");
        let Ok(vector) = ebpf_testdata::read(path) else {
            // A file the reader refuses is itself the seed (the `.data` mode of `isa`).
            let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let isa = [&[2u8][..], &text].concat();
            seeds.entry(Target::Isa).or_default().insert(name, isa);
            continue;
        };
        let program = match &vector.raw {
            Some(raw) if !raw.is_empty() => ebpf_isa::decode(raw).map_err(|e| e.to_string()),
            _ => ebpf_isa::assemble_lines(&vector.asm_lines()).map_err(|e| e.to_string()),
        };
        match program {
            Ok(program) => add_program(&mut seeds, &name, &program, vector.mem.as_deref()),
            Err(_) => {
                // Rejected: the raw bytes or the text are the seed (for the decoder, the
                // assembler, and the facade's error paths).
                let (isa, code) = match &vector.raw {
                    Some(raw) => ([&[0u8][..], raw].concat(), raw.clone()),
                    None => {
                        let text: Vec<&str> = vector.asm.iter().map(|(_, l)| l.as_str()).collect();
                        (
                            [&[1u8][..], text.join("\n").as_bytes()].concat(),
                            Vec::new(),
                        )
                    }
                };
                let isa_seeds = seeds.entry(Target::Isa).or_default();
                isa_seeds.insert(name.clone(), isa);
                if !code.is_empty() {
                    let facade = [&[1u8, 255, 0, 0][..], &code].concat();
                    seeds
                        .entry(Target::Facade)
                        .or_default()
                        .insert(name, facade);
                }
            }
        }
    }
    for path in elf_fixtures {
        let stem = stem(path);
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        seeds
            .entry(Target::Elf)
            .or_default()
            .insert(format!("elf-{stem}"), bytes.clone());
        let Ok(object) = ebpf_elf::ElfObject::parse(&bytes) else {
            continue;
        };
        for info in object.programs() {
            if let Ok(loaded) = object.load(ebpf_elf::Selector::Function(&info.name)) {
                let name = format!("elf-{stem}-{}", info.name);
                add_program(&mut seeds, &name, &loaded.program, Some(&[0; 64]));
            }
        }
    }
    Ok(seeds)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The conformance vectors (positive and negative) and the ELF fixtures (`tests/elf/*.o` and
/// `tests/elf/unsupported/*.o` under `root`), sorted: what [`seeds`] reads. `Err` when the
/// conformance suite is not where `ebpf-testdata` looks for it.
pub fn sources(root: &Path) -> Result<(Vec<std::path::PathBuf>, Vec<std::path::PathBuf>), String> {
    let dir = ebpf_testdata::conformance_dir();
    let mut vectors = ebpf_testdata::data_files(&dir)?;
    vectors.extend(ebpf_testdata::data_files(&dir.join("negative"))?);
    let mut objects = Vec::new();
    for dir in [root.join("tests/elf"), root.join("tests/elf/unsupported")] {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        objects.extend(
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "o")),
        );
    }
    objects.sort();
    Ok((vectors, objects))
}
