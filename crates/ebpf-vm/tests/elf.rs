//! clang-compiled ELF fixtures (`tests/elf/`) through the facade on every engine: each result
//! equals the native C result recorded in `expected.txt`, with verification on, and `.data`
//! persists from run to run (a second run sees the first one's globals) the same way on every
//! engine.

use std::path::PathBuf;

use ebpf_vm::{
    CONFORMANCE_HELPER_ID, Engine, Input, Selector, Severity, VerifierConfig, Vm,
    conformance_helper, layout,
};

fn elf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/elf")
}

/// A `.hex` input: two-digit hex bytes, `#` comments.
fn input(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(elf_dir().join(format!("inputs/{name}.hex"))).unwrap();
    text.lines()
        .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
        .map(|t| u8::from_str_radix(t, 16).unwrap())
        .collect()
}

#[test]
fn the_loader_and_the_contract_agree_on_the_data_regions() {
    assert_eq!(
        ebpf_vm::elf::RODATA_BASE,
        layout::vm_addr(layout::RODATA, 0)
    );
    assert_eq!(ebpf_vm::elf::DATA_BASE, layout::vm_addr(layout::DATA, 0));
}

#[test]
fn every_fixture_gives_the_native_result_on_every_engine() {
    let text = std::fs::read_to_string(elf_dir().join("expected.txt")).unwrap();
    let mut checked = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (object, program, input_name) = (f[0], f[1], f[2]);
        let want = u64::from_str_radix(f[3].trim_start_matches("0x"), 16).unwrap();
        let bytes = std::fs::read(elf_dir().join(format!("{object}.o"))).unwrap();
        let mut second_runs = Vec::new();
        for &engine in Engine::ALL {
            let vm = Vm::builder()
                .engine(engine)
                .helper(CONFORMANCE_HELPER_ID, conformance_helper)
                .budget(10_000_000)
                // `calls.c` recurses on purpose (the call-depth limit bounds it).
                .verifier_config(VerifierConfig {
                    recursion: Severity::Warning,
                    ..VerifierConfig::default()
                })
                .load_elf(&bytes, Selector::Function(program))
                .unwrap_or_else(|e| panic!("{object} {program}: {e}"));
            // The first run starts from the object's initial globals, as the native run did.
            let got = vm.run(&mut input(input_name));
            assert_eq!(got, Ok(want), "{object} {program} {input_name} on {engine}");
            // The second sees what the first left in them, as in the kernel.
            second_runs.push((engine, vm.run(&mut input(input_name))));
        }
        let (reference, second) = &second_runs[0];
        for (engine, got) in &second_runs {
            assert_eq!(
                got, second,
                "{object} {program} {input_name}, second run: {engine} against {reference}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 80, "only {checked} expectations");
}

/// The looping programs of `tests/elf/loops/` (the `loops` bench) on their benchmark inputs,
/// thousands of iterations each, where the JITs charge the budget per block or per loop rather
/// than per instruction: with a budget of exactly the instructions the interpreter executes,
/// every engine returns the native result, and with a budget that runs out before the end
/// (one short, about half, a third) every engine stops with the interpreter's trap, at the
/// same pc.
#[test]
fn the_loop_programs_spend_the_budget_exactly_on_every_engine() {
    let text = std::fs::read_to_string(elf_dir().join("expected.txt")).unwrap();
    let mut programs = 0;
    for line in text.lines().filter(|l| l.starts_with("loops/")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (object, program, input_name) = (f[0], f[1], f[2]);
        if !input_name.ends_with("/bench") {
            continue;
        }
        let want = u64::from_str_radix(f[3].trim_start_matches("0x"), 16).unwrap();
        let bytes = std::fs::read(elf_dir().join(format!("{object}.o"))).unwrap();
        let load = |engine: Engine, budget: u64| {
            Vm::builder()
                .engine(engine)
                .budget(budget)
                .load_elf(&bytes, Selector::Function(program))
                .unwrap_or_else(|e| panic!("{object} {program}: {e}"))
        };
        let exit = load(Engine::Interpreter, 10_000_000)
            .run_with(Input::new(&mut input(input_name)))
            .unwrap_or_else(|t| panic!("{object}: {t}"));
        assert_eq!(exit.r0, want, "{object} on the interpreter");
        let n = exit.instructions;
        assert!(n > 2_000, "{object}: only {n} instructions");
        for budget in [n - 1, n / 2, n / 3 + 7] {
            let trap = load(Engine::Interpreter, budget).run(&mut input(input_name));
            assert!(
                trap.is_err(),
                "{object}: budget {budget} of {n} did not run out"
            );
            for &engine in Engine::ALL {
                let got = load(engine, budget).run(&mut input(input_name));
                assert_eq!(got, trap, "{object}, budget {budget} of {n}, on {engine}");
            }
        }
        for &engine in Engine::ALL {
            let got = load(engine, n).run(&mut input(input_name));
            assert_eq!(got, Ok(want), "{object}, budget {n} (exact), on {engine}");
        }
        programs += 1;
    }
    assert!(programs >= 8, "only {programs} loop programs");
}

/// Without kernel helpers, an object's `.data`/`.bss` are still one map the VM's runs share
/// ([`Vm::global_data`]): the host sees what a run left there, and what the host writes is
/// what the next run starts from — writing back the initial values gives the native result
/// again, on every engine.
#[test]
fn the_host_reads_and_writes_the_globals_of_a_plain_vm() {
    let bytes = std::fs::read(elf_dir().join("globals.o")).unwrap();
    let native = 0x2dc609f5129f8c41; // expected.txt: globals histogram globals/ascending
    for &engine in Engine::ALL {
        let vm = Vm::builder()
            .engine(engine)
            .budget(10_000_000)
            .load_elf(&bytes, Selector::Function("histogram"))
            .unwrap();
        let globals = vm.global_data().unwrap();
        let key = 0u32.to_le_bytes();
        let initial = globals.lookup(&key).unwrap().unwrap();
        // `total_bytes` (the first `.data` variable) starts at 1000.
        assert_eq!(initial[..8], 1000u64.to_le_bytes(), "{engine}");
        let run = || vm.run(&mut input("globals/ascending"));
        assert_eq!(run(), Ok(native), "{engine}");
        let after = globals.lookup(&key).unwrap().unwrap();
        assert_eq!(
            after[..8],
            1064u64.to_le_bytes(),
            "{engine}: 64 input bytes added"
        );
        assert_ne!(
            run(),
            Ok(native),
            "{engine}: the second run starts from the first's globals"
        );
        globals
            .update(&key, &initial, ebpf_vm::maps::UpdateFlags::Any)
            .unwrap();
        assert_eq!(run(), Ok(native), "{engine}: restored by the host");
    }
}

#[test]
fn unsupported_objects_are_load_errors_naming_the_symbol() {
    let bytes = std::fs::read(elf_dir().join("unsupported/kfunc.o")).unwrap();
    let object = ebpf_vm::elf::ElfObject::parse(&bytes).unwrap();
    for program in object.programs() {
        let result = Vm::builder().load_elf(&bytes, Selector::Function(&program.name));
        if let Err(e) = result {
            assert!(e.to_string().contains("unsupported"), "{e}");
        }
    }
}

#[test]
fn programs_of_other_kernel_types_are_refused_naming_the_type() {
    let bytes = std::fs::read(elf_dir().join("unsupported/program_types.o")).unwrap();
    for (function, section, program_type) in [
        ("probe", "kprobe/do_sys_open", "BPF_PROG_TYPE_KPROBE"),
        (
            "trace",
            "tracepoint/syscalls/sys_enter_openat",
            "BPF_PROG_TYPE_TRACEPOINT",
        ),
        ("entry", "fentry/tcp_connect", "BPF_PROG_TYPE_TRACING"),
    ] {
        let e = Vm::builder()
            .kernel_helpers(ebpf_vm::KernelHelpers::new())
            .load_elf(&bytes, Selector::Function(function))
            .unwrap_err();
        assert_eq!(
            e,
            ebpf_vm::LoadError::UnsupportedProgramType {
                section: section.to_string(),
                program_type,
            }
        );
        assert_eq!(
            e.to_string(),
            format!(
                "section `{section}` holds a {program_type} program; this VM runs XDP, \
                 socket-filter and TC programs only"
            )
        );
    }
}

/// `bytes` (an ELF64 object) with one `SHT_NOBITS` section header per entry of `bss` (name,
/// size) appended: the section names go at the end of a copy of `.shstrtab`, and the header
/// table after it.
fn with_nobits_sections(mut bytes: Vec<u8>, bss: &[(&str, u64)]) -> Vec<u8> {
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let shoff = u64_at(&bytes, 0x28) as usize;
    let (count, shstrndx) = (u16_at(&bytes, 0x3c), u16_at(&bytes, 0x3e) as usize);
    let mut headers = bytes[shoff..shoff + 64 * count as usize].to_vec();
    let names_header = 64 * shstrndx;
    let names_at = u64_at(&headers, names_header + 0x18) as usize;
    let names_len = u64_at(&headers, names_header + 0x20) as usize;
    let mut names = bytes[names_at..names_at + names_len].to_vec();
    for (name, size) in bss {
        let mut h = Vec::with_capacity(64);
        h.extend_from_slice(&(names.len() as u32).to_le_bytes());
        h.extend_from_slice(&8u32.to_le_bytes()); // SHT_NOBITS
        h.extend_from_slice(&3u64.to_le_bytes()); // SHF_WRITE | SHF_ALLOC
        h.extend_from_slice(&0u64.to_le_bytes()); // sh_addr
        h.extend_from_slice(&0x40u64.to_le_bytes()); // sh_offset
        h.extend_from_slice(&size.to_le_bytes());
        h.extend_from_slice(&[0; 8]); // sh_link, sh_info
        h.extend_from_slice(&8u64.to_le_bytes()); // sh_addralign
        h.extend_from_slice(&0u64.to_le_bytes()); // sh_entsize
        headers.extend(h);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    while !bytes.len().is_multiple_of(8) {
        bytes.push(0);
    }
    let new_names_at = bytes.len() as u64;
    headers[names_header + 0x18..names_header + 0x20].copy_from_slice(&new_names_at.to_le_bytes());
    let new_names_len = names.len() as u64;
    headers[names_header + 0x20..names_header + 0x28].copy_from_slice(&new_names_len.to_le_bytes());
    bytes.extend(names);
    while !bytes.len().is_multiple_of(8) {
        bytes.push(0);
    }
    let new_shoff = bytes.len() as u64;
    bytes.extend(headers);
    bytes[0x28..0x30].copy_from_slice(&new_shoff.to_le_bytes());
    let new_count = count + bss.len() as u16;
    bytes[0x3c..0x3e].copy_from_slice(&new_count.to_le_bytes());
    bytes
}

/// Two 48 MiB `.bss.*` headers pass the per-section limit but not the image's: every way of
/// loading the object refuses it with the image's error (it built both maps, 96 MiB, before
/// the check), and the same headers within the limit load.
#[test]
fn nobits_sections_past_the_image_limit_are_refused() {
    let globals = std::fs::read(elf_dir().join("globals.o")).unwrap();
    let size = 48 << 20;
    let bytes = with_nobits_sections(globals.clone(), &[(".bss.a", size), (".bss.b", size)]);
    let object = Vm::builder().load_object(&bytes).map(|_| ()).unwrap_err();
    let elf = Vm::builder().load_elf(&bytes, Selector::Only).map(|_| ());
    let kernel = Vm::builder()
        .kernel_helpers(ebpf_vm::KernelHelpers::new())
        .load_elf(&bytes, Selector::Only)
        .map(|_| ());
    for e in [object, elf.unwrap_err(), kernel.unwrap_err()] {
        let ebpf_vm::LoadError::Elf(e) = &e else {
            panic!("{e}")
        };
        assert!(
            matches!(
                e.kind,
                ebpf_vm::elf::ElfErrorKind::TooLarge {
                    what: "the .data/.bss image",
                    ..
                }
            ),
            "{e}"
        );
    }
    let small = with_nobits_sections(globals, &[(".bss.a", 4096), (".bss.b", 4096)]);
    let object = Vm::builder().budget(1 << 20).load_object(&small).unwrap();
    assert!(object.maps().get(".bss.b").is_some());
}
