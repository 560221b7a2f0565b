//! Integration tests of the `ebpf` binary: each test runs the built executable in a fresh
//! temporary directory and checks its exit status, its output and the files it leaves.
//!
//! Covered: `asm` → `disasm` → `asm` round trips (the shipped example and the conformance
//! suite), both syntaxes and `--pcs`, stdin/stdout, the default output path, and every error
//! path — one `error:` line naming the file and the line or pc, exit status 1, no partial
//! output — plus clap's usage errors (exit status 2).

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{TempDir, ebpf, ebpf_with_stdin, example_path, ok, one_line_error, stderr};
use ebpf_vm::isa;

/// `asm` → `disasm` → `asm` on one file in `dir`; checks each step against the library and
/// returns the bytecode.
fn round_trip(dir: &TempDir, name: &str, text: &str) -> Vec<u8> {
    let expected = isa::assemble(text)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .to_bytes();
    dir.write(&format!("{name}.s"), text);
    // Without -o the bytecode lands next to the input.
    ok(&ebpf(dir, &["asm", &format!("{name}.s")]));
    let bytes = fs::read(dir.join(&format!("{name}.bin"))).unwrap();
    assert_eq!(
        bytes, expected,
        "{name}: asm output differs from the library"
    );

    let listing = ok(&ebpf(dir, &["disasm", &format!("{name}.bin")]));
    let program = isa::decode(&bytes).unwrap();
    assert_eq!(listing, isa::disassemble(&program), "{name}");
    dir.write(&format!("{name}.again.s"), &listing);
    ok(&ebpf(
        dir,
        &[
            "asm",
            &format!("{name}.again.s"),
            "-o",
            &format!("{name}.again.bin"),
        ],
    ));
    let again = fs::read(dir.join(&format!("{name}.again.bin"))).unwrap();
    assert_eq!(again, bytes, "{name}: asm(disasm(b)) != b\n{listing}");
    bytes
}

#[test]
fn help_describes_the_commands() {
    let dir = TempDir::new("help");
    let top = ok(&ebpf(&dir, &["--help"]));
    assert!(top.contains("asm") && top.contains("disasm"), "{top}");
    let asm = ok(&ebpf(&dir, &["asm", "--help"]));
    assert!(asm.contains("FILE.bin next to the input"), "{asm}");
    assert!(asm.contains("--output"), "{asm}");
    let disasm = ok(&ebpf(&dir, &["disasm", "--help"]));
    for word in ["--syntax", "conformance", "llvm", "--pcs"] {
        assert!(disasm.contains(word), "{word} missing from:\n{disasm}");
    }
    ok(&ebpf(&dir, &["--version"]));
}

#[test]
fn usage_errors_exit_with_2() {
    let dir = TempDir::new("usage");
    dir.write("x.s", "exit\n");
    for args in [
        &["asm", "--bogus", "x.s"][..],
        &["disasm", "x.bin", "--syntax", "intel"],
        &["asm"],
        &["frobnicate"],
        &[],
    ] {
        let out = ebpf(&dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!out.stderr.is_empty(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(dir.entries(), ["x.s"]);
}

#[test]
fn example_round_trips_in_both_syntaxes() {
    let dir = TempDir::new("example");
    let text = fs::read_to_string(example_path()).unwrap();
    let bytes = round_trip(&dir, "checksum", &text);
    let program = isa::decode(&bytes).unwrap();
    assert!(
        (15..=30).contains(&program.len()),
        "{} insns",
        program.len()
    );

    // The README's command: assemble into another directory, then disassemble as LLVM.
    fs::create_dir(dir.join("target")).unwrap();
    let example = example_path();
    ok(&ebpf(&dir, &["asm", &example, "-o", "target/checksum.bin"]));
    assert_eq!(fs::read(dir.join("target/checksum.bin")).unwrap(), bytes);
    let llvm = ok(&ebpf(
        &dir,
        &["disasm", "target/checksum.bin", "--syntax", "llvm"],
    ));
    assert_eq!(llvm, isa::disassemble_llvm(&program));
    let conformance = ok(&ebpf(
        &dir,
        &["disasm", "target/checksum.bin", "--syntax", "conformance"],
    ));
    assert_eq!(conformance, isa::disassemble(&program));
}

#[test]
fn pcs_prefix_each_instruction_with_its_slot() {
    let dir = TempDir::new("pcs");
    dir.write("p.s", "lddw %r0, 0x100000002\nadd %r0, 1\nexit\n");
    ok(&ebpf(&dir, &["asm", "p.s"]));
    let listing = ok(&ebpf(&dir, &["disasm", "p.bin", "--pcs"]));
    assert_eq!(
        listing,
        "   0: lddw %r0, 0x100000002\n   2: add %r0, 1\n   3: exit\n"
    );
    let llvm = ok(&ebpf(
        &dir,
        &["disasm", "--pcs", "p.bin", "--syntax", "llvm"],
    ));
    let pcs: Vec<&str> = llvm.lines().map(|l| &l[..6]).collect();
    assert_eq!(pcs, ["   0: ", "   2: ", "   3: "], "{llvm}");
}

#[test]
fn conformance_programs_round_trip() {
    let Some((files, _)) = ebpf_testdata::suite() else {
        return;
    };
    let dir = TempDir::new("conformance");
    let mut checked = 0;
    for path in &files {
        let vector = ebpf_testdata::read(path).unwrap();
        if vector.asm.is_empty() {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap();
        let text: String = vector.asm.iter().map(|(_, l)| format!("{l}\n")).collect();
        let bytes = round_trip(&dir, name, &text);
        if let Some(raw) = &vector.raw {
            assert_eq!(&bytes, raw, "{name}: bytes differ from -- raw");
        }
        checked += 1;
    }
    assert!(checked >= 300, "only {checked} programs checked");
}

#[test]
fn stdin_and_stdout() {
    let dir = TempDir::new("stdio");
    let text = "mov32 %r0, 7\nexit\n";
    let expected = isa::assemble(text).unwrap().to_bytes();

    let out = ebpf_with_stdin(&dir, &["asm", "-", "-o", "-"], text.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, expected);
    // Reading stdin without -o also writes stdout.
    let out = ebpf_with_stdin(&dir, &["asm", "-"], text.as_bytes());
    assert_eq!(out.stdout, expected);
    // A file input with `-o -`.
    dir.write("p.s", text);
    assert_eq!(ebpf(&dir, &["asm", "p.s", "-o", "-"]).stdout, expected);

    let out = ebpf_with_stdin(&dir, &["disasm", "-"], &expected);
    assert_eq!(ok(&out), text);
    assert_eq!(dir.entries(), ["p.s"], "nothing but the input was written");

    let out = ebpf_with_stdin(&dir, &["asm", "-"], b"exit\nmov %r11, 1\n");
    one_line_error(&out, &["<stdin>: line 2: invalid register: %r11"]);
    let out = ebpf_with_stdin(&dir, &["disasm", "-"], &[0xff; 8]);
    one_line_error(&out, &["<stdin>: pc 0: unknown opcode 0xff"]);
}

#[test]
fn default_output_is_beside_the_input() {
    let dir = TempDir::new("default-output");
    fs::create_dir(dir.join("sub")).unwrap();
    dir.write("sub/prog.s", "exit\n");
    ok(&ebpf(&dir, &["asm", "sub/prog.s"]));
    assert_eq!(dir.entries(), ["sub"]);
    assert_eq!(
        fs::read(dir.join("sub/prog.bin")).unwrap(),
        isa::assemble("exit").unwrap().to_bytes()
    );

    // An input that already ends in .bin would be its own default output.
    dir.write("prog.bin", "exit\n");
    let out = ebpf(&dir, &["asm", "prog.bin"]);
    one_line_error(&out, &["prog.bin", "-o"]);
    assert_eq!(fs::read(dir.join("prog.bin")).unwrap(), b"exit\n");
}

#[test]
fn success_replaces_an_existing_output_whole() {
    let dir = TempDir::new("replace");
    dir.write("p.s", "exit\n");
    dir.write("p.bin", [0xaa; 100]);
    ok(&ebpf(&dir, &["asm", "p.s"]));
    assert_eq!(
        fs::read(dir.join("p.bin")).unwrap(),
        isa::assemble("exit").unwrap().to_bytes()
    );
    assert_eq!(dir.entries(), ["p.bin", "p.s"]);
}

#[test]
fn asm_error_names_file_and_line_and_keeps_the_old_output() {
    let dir = TempDir::new("asm-error");
    dir.write("prog.s", "mov %r0, 1\n# a comment\nmov %r50, 2\nexit\n");
    dir.write("prog.bin", "old contents");
    let out = ebpf(&dir, &["asm", "prog.s"]);
    let line = one_line_error(&out, &["prog.s", "line 3"]);
    assert_eq!(
        line,
        "error: prog.s: line 3: invalid register: %r50 (expected %r0..%r10)\n"
    );
    assert_eq!(fs::read(dir.join("prog.bin")).unwrap(), b"old contents");

    dir.write("label.s", "ja nowhere\nexit\n");
    let out = ebpf(&dir, &["asm", "label.s", "-o", "out.bin"]);
    one_line_error(&out, &["label.s: line 1: ", "nowhere"]);

    dir.write("utf8.s", b"exit\n\n# caf\xe9\n");
    let out = ebpf(&dir, &["asm", "utf8.s"]);
    one_line_error(&out, &["utf8.s: line 3: ", "UTF-8"]);

    assert_eq!(
        dir.entries(),
        ["label.s", "prog.bin", "prog.s", "utf8.s"],
        "no output or temporary file"
    );
}

#[test]
fn decode_error_names_file_and_pc() {
    let dir = TempDir::new("decode-error");
    let mut bytes = isa::assemble("mov %r0, 1\nadd %r0, 2").unwrap().to_bytes();
    bytes.extend_from_slice(&[0xff, 0, 0, 0, 0, 0, 0, 0]);
    dir.write("prog.bin", &bytes);
    let out = ebpf(&dir, &["disasm", "prog.bin"]);
    let line = one_line_error(&out, &["prog.bin", "pc 2"]);
    assert_eq!(line, "error: prog.bin: pc 2: unknown opcode 0xff\n");

    let out = ebpf(&dir, &["disasm", "prog.bin", "--syntax", "llvm", "--pcs"]);
    one_line_error(&out, &["prog.bin: pc 2: unknown opcode 0xff"]);

    dir.write("short.bin", &bytes[..12]);
    let out = ebpf(&dir, &["disasm", "short.bin"]);
    one_line_error(&out, &["short.bin: pc 1: ", "multiple of 8"]);

    // An lddw without its second slot.
    let lddw = isa::assemble("lddw %r0, 1").unwrap().to_bytes();
    dir.write("lddw.bin", &lddw[..8]);
    let out = ebpf(&dir, &["disasm", "lddw.bin"]);
    one_line_error(&out, &["lddw.bin: pc 0: ", "lddw"]);
}

#[test]
fn missing_and_unreadable_inputs() {
    let dir = TempDir::new("missing");
    let out = ebpf(&dir, &["asm", "missing.s"]);
    one_line_error(&out, &["missing.s: cannot read"]);
    let out = ebpf(&dir, &["asm", "missing.s", "-o", "x.bin"]);
    one_line_error(&out, &["missing.s"]);
    let out = ebpf(&dir, &["disasm", "missing.bin"]);
    one_line_error(&out, &["missing.bin: cannot read"]);

    fs::create_dir(dir.join("folder.s")).unwrap();
    let out = ebpf(&dir, &["asm", "folder.s"]);
    one_line_error(&out, &["folder.s: cannot read"]);
    assert_eq!(dir.entries(), ["folder.s"], "no output file");
}

#[test]
fn write_failures_leave_nothing_behind() {
    let dir = TempDir::new("write-failure");
    dir.write("p.s", "exit\n");

    let target = Path::new("missing").join("p.bin");
    let target = target.to_str().unwrap();
    let out = ebpf(&dir, &["asm", "p.s", "-o", target]);
    one_line_error(&out, &[&format!("{target}: cannot write")]);
    assert_eq!(dir.entries(), ["p.s"]);

    // The target is a directory: the rename fails, the directory survives, the temp file goes.
    fs::create_dir(dir.join("taken")).unwrap();
    dir.write("taken/keep", "kept");
    let out = ebpf(&dir, &["asm", "p.s", "-o", "taken"]);
    one_line_error(&out, &["taken: cannot write"]);
    assert_eq!(dir.entries(), ["p.s", "taken"]);
    assert_eq!(fs::read(dir.join("taken/keep")).unwrap(), b"kept");

    // stdout that cannot be written to.
    if Path::new("/dev/full").exists() {
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ebpf"))
            .args(["asm", "p.s", "-o", "-"])
            .current_dir(dir.path())
            .stdout(full)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.starts_with("error: <stdout>: cannot write") && err.lines().count() == 1,
            "{err:?}"
        );
    }
}
