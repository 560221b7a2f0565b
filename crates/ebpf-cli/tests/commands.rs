//! Integration tests of `ebpf run`, `ebpf test`, `ebpf bench` and `ebpf-conformance-plugin`:
//! each test runs the built executables and checks their exit status and output.
//!
//! Covered: `run` on each program format, with input from `--mem` (every hex spelling),
//! `--mem-file` or a vector's `-- mem`, and its error paths (a trap, a runaway loop stopped by
//! the budget, bad hex, bad files); `test` on hand-made vectors (every outcome and the summary)
//! and on the whole conformance suite; `bench` as a table and as JSON; and the plugin, driven
//! over the whole suite exactly as the bpf_conformance runner drives it (README §5).

mod common;
// `ebpf cfg`, traces and profiles: the commands that help people see.
#[path = "commands/pictures.rs"]
mod pictures;
#[path = "commands/trace.rs"]
mod trace;

use std::path::{Path, PathBuf};
use std::time::Instant;
use std::{fs, thread};

use common::{
    TempDir, ebpf, example_path, ok, one_line_error, one_line_failure, plugin, stderr, stdout,
    usage_error,
};
use ebpf_vm::{Engine, isa};

/// Fletcher-16, written out independently of the example program.
fn fletcher16(data: &[u8]) -> u16 {
    let (mut sum1, mut sum2) = (0u16, 0u16);
    for &byte in data {
        sum1 = (sum1 + u16::from(byte)) % 255;
        sum2 = (sum2 + sum1) % 255;
    }
    (sum2 << 8) | sum1
}

/// Bytes in the runner's hex format: two lower-case digits and two spaces per byte, including
/// after the last (conformance README §5.1).
fn runner_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}  ")).collect()
}

/// The bytecode the runner sends for a vector: its `-- raw` slots, else its assembled `-- asm`.
fn vector_bytes(vector: &ebpf_testdata::TestVector) -> Vec<u8> {
    match &vector.raw {
        Some(raw) if !raw.is_empty() => raw.clone(),
        _ => isa::assemble_lines(&vector.asm_lines()).unwrap().to_bytes(),
    }
}

#[test]
fn run_prints_the_example_checksum() {
    let dir = TempDir::new("run-example");
    let want = fletcher16(b"abcdefgh");
    assert_eq!(want, 0x627);
    let out = ok(&ebpf(&dir, &["run", &example_path()]));
    assert_eq!(out, format!("{want:#x}\n"));

    // The same program as bytecode, and with an explicit engine and budget.
    let bytes = isa::assemble(&fs::read_to_string(example_path()).unwrap())
        .unwrap()
        .to_bytes();
    dir.write("checksum.bin", &bytes);
    for engine in Engine::ALL {
        let out = ebpf(
            &dir,
            &[
                "run",
                "checksum.bin",
                "--engine",
                engine.name(),
                "--budget",
                "75",
            ],
        );
        assert_eq!(ok(&out), "0x627\n", "{engine}");
    }
    // 75 instructions are exactly enough; 74 are not.
    let out = ebpf(&dir, &["run", "checksum.bin", "--budget", "74"]);
    one_line_failure(
        &out,
        "error: ",
        &["instruction budget of 74 exhausted at pc "],
    );
}

#[test]
fn run_takes_its_input_from_mem_a_file_or_the_vector() {
    let dir = TempDir::new("run-input");
    // r0 = r2 (the length) << 16 | the little-endian halfword at offset 1.
    let program = "ldxh %r0, [%r1+1]\nlsh %r2, 16\nor %r0, %r2\nexit\n";
    dir.write("p.s", program);
    dir.write(
        "v.data",
        format!("-- asm\n{program}-- mem\n11 22 33\n-- result\n0x33322\n"),
    );
    let run = |args: &[&str]| ok(&ebpf(&dir, args));
    assert_eq!(run(&["run", "v.data"]), "0x33322\n");
    for mem in ["aa bb cc dd", "aabbccdd", "aa  bb  cc  dd  ", "AA BB\nCCDD"] {
        assert_eq!(
            run(&["run", "v.data", "--mem", mem]),
            "0x4ccbb\n",
            "{mem:?}"
        );
        assert_eq!(run(&["run", "p.s", "--mem", mem]), "0x4ccbb\n", "{mem:?}");
    }
    dir.write("input.bin", [0u8, 0x34, 0x12, 0, 0, 0]);
    assert_eq!(
        run(&["run", "v.data", "--mem-file", "input.bin"]),
        "0x61234\n"
    );
    assert_eq!(run(&["run", "p.s", "--mem-file", "input.bin"]), "0x61234\n");

    // Without input, r1 and r2 are 0.
    dir.write("regs.s", "mov %r0, %r1\nor %r0, %r2\nexit\n");
    assert_eq!(run(&["run", "regs.s"]), "0x0\n");
    // Helper 5 returns its first argument.
    dir.write("helper.s", "mov %r1, 0xab\ncall 5\nexit\n");
    assert_eq!(run(&["run", "helper.s"]), "0xab\n");
    // r0 is printed in full, 64 bits.
    dir.write("wide.s", "mov %r0, -10\nexit\n");
    assert_eq!(run(&["run", "wide.s"]), "0xfffffffffffffff6\n");
}

#[test]
fn run_reports_a_trap_on_one_line() {
    let dir = TempDir::new("run-trap");
    dir.write("oob.s", "mov %r0, 0\nldxw %r0, [%r1+2]\nexit\n");
    let out = ebpf(&dir, &["run", "oob.s", "--mem", "00 00 00 00"]);
    let line = one_line_failure(&out, "error: ", &[]);
    assert_eq!(
        line,
        "error: out-of-bounds read of 4 bytes at 0x400000002 at pc 1\n"
    );
    // With no input at all, r1 is 0 and the read is of address 2.
    let out = ebpf(&dir, &["run", "oob.s"]);
    one_line_failure(
        &out,
        "error: ",
        &["out-of-bounds read of 4 bytes at 0x2 at pc 1"],
    );

    dir.write(
        "loop.s",
        "mov %r0, 0\nloop:\nadd %r0, 1\njne %r0, 0, loop\nexit\n",
    );
    let out = ebpf(&dir, &["run", "loop.s", "--budget", "1000"]);
    let line = one_line_failure(&out, "error: ", &[]);
    assert!(
        line.starts_with("error: instruction budget of 1000 exhausted at pc "),
        "{line}"
    );
}

#[test]
fn run_without_a_budget_stops_a_runaway_loop() {
    let help = ok(&ebpf(&TempDir::new("run-help"), &["run", "--help"]));
    assert!(help.contains("[default: 100000000]"), "{help}");
    assert!(help.contains("runaway"), "{help}");
    let dir = TempDir::new("run-default-budget");
    // A loop the verifier accepts (it has an exit) that practically never ends: after the mov,
    // odd-numbered instructions are the jne at pc 2, so the 100,000,001st traps there.
    dir.write(
        "loop.s",
        "mov %r0, 0\nloop:\nadd %r0, 1\njne %r0, 0, loop\nexit\n",
    );
    let out = ebpf(&dir, &["run", "loop.s"]);
    one_line_failure(
        &out,
        "error: ",
        &["instruction budget of 100000000 exhausted at pc 2"],
    );
}

#[test]
fn run_rejects_bad_hex_and_bad_files() {
    let dir = TempDir::new("run-errors");
    dir.write("p.s", "mov %r0, 0\nexit\n");
    usage_error(
        &ebpf(&dir, &["run", "p.s", "--mem", "aa bbc"]),
        &["`bbc` has an odd number of hex digits (3)"],
    );
    usage_error(
        &ebpf(&dir, &["run", "p.s", "--mem", "aabbc"]),
        &["odd number of hex digits"],
    );
    usage_error(
        &ebpf(&dir, &["run", "p.s", "--mem", "zz"]),
        &["`z` is not a hex digit"],
    );
    dir.write("m.bin", [1u8]);
    usage_error(
        &ebpf(&dir, &["run", "p.s", "--mem", "aa", "--mem-file", "m.bin"]),
        &["cannot be used with"],
    );
    usage_error(
        &ebpf(&dir, &["run", "p.s", "--engine", "nope"]),
        &["nope", "interp"],
    );

    let out = ebpf(&dir, &["run", "p.s", "--mem-file", "missing.bin"]);
    one_line_failure(&out, "error: missing.bin: cannot read", &[]);
    let out = ebpf(&dir, &["run", "missing.s"]);
    one_line_failure(&out, "error: missing.s: cannot read", &[]);
    dir.write("p.txt", "exit\n");
    let out = ebpf(&dir, &["run", "p.txt"]);
    one_line_failure(
        &out,
        "error: p.txt: unknown program format",
        &[".bin", ".data"],
    );
    dir.write("bad.asm", "exit\nmov %r11, 1\n");
    let out = ebpf(&dir, &["run", "bad.asm"]);
    one_line_failure(&out, "error: bad.asm: line 2: invalid register: %r11", &[]);
    dir.write("bad.bin", [0xffu8, 0, 0, 0, 0, 0, 0, 0]);
    let out = ebpf(&dir, &["run", "bad.bin"]);
    one_line_failure(&out, "error: bad.bin: pc 0: unknown opcode 0xff", &[]);
    // A vector's line numbers are the file's.
    dir.write(
        "bad.data",
        "# header\n-- asm\nexit\nldxq %r0, [%r1]\n-- result\n0x0\n",
    );
    let out = ebpf(&dir, &["run", "bad.data"]);
    one_line_failure(&out, "error: bad.data: line 4: invalid mnemonic: ldxq", &[]);
    dir.write("empty.data", "-- result\n0x0\n");
    let out = ebpf(&dir, &["run", "empty.data"]);
    one_line_failure(&out, "error: empty.data: no program", &[]);
}

/// Inputs are read only up to what a run accepts (4 GiB): a larger file is refused before it is
/// read, a stream (`/dev/zero`) after one byte more, or when memory runs out — with an error,
/// never an abort. Program files and stdin are bounded the same way (256 MiB).
#[test]
fn run_refuses_inputs_larger_than_a_region_without_reading_them() {
    let dir = TempDir::new("run-bounded");
    dir.write("p.s", "mov %r0, 0\nexit\n");
    let big = std::fs::File::create(dir.join("big.bin")).unwrap();
    // Sparse: no block is written.
    big.set_len((1 << 32) + 1).unwrap();
    let out = ebpf(&dir, &["run", "p.s", "--mem-file", "big.bin"]);
    one_line_error(
        &out,
        &["big.bin: 4294967297 bytes, more than 4294967296, the largest input accepted"],
    );
    // A stream: bounded by the read itself, and by memory (here 1.5 GB of address space).
    let shell = |script: &str| {
        std::process::Command::new("bash")
            .args(["-c", script, "sh", env!("CARGO_BIN_EXE_ebpf")])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = shell(r#"ulimit -v 1500000; exec "$1" run p.s --mem-file /dev/zero"#);
    one_line_error(&out, &["/dev/zero: cannot read: ", "memory"]);
    let out = shell(r#"exec "$1" asm - -o out.bin < /dev/zero"#);
    one_line_error(
        &out,
        &["<stdin>: more than 268435456 bytes, the largest program file accepted"],
    );
    assert!(!dir.join("out.bin").exists());
}

/// Nothing a message echoes from the user reaches the terminal raw: a NUL inside a number, a
/// screen clear, an OSC title (in a file or in its name), invalid UTF-8.
#[test]
fn messages_escape_what_they_echo() {
    let dir = TempDir::new("escapes");
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "nul.s",
            b"mov %r0, 1\0\nexit\n",
            "error: nul.s: line 1: invalid number: \"1\\0\"\n",
        ),
        (
            "clear.s",
            b"exit\nja \x1b[2J\n",
            "error: clear.s: line 2: invalid label: \"\\u{1b}[2J\"\n",
        ),
        (
            "title\x1b]0;pwned\x07.s",
            b"exit\nldxq %r0, [%r1]\n",
            "error: \"title\\u{1b}]0;pwned\\u{7}.s\": line 2: invalid mnemonic: ldxq\n",
        ),
        (
            "latin1.s",
            b"mov %r0, 1\nmov %r0, \xe9\n",
            "error: latin1.s: line 2: not valid UTF-8\n",
        ),
    ];
    for (name, text, message) in cases {
        dir.write(name, text);
        let out = ebpf(&dir, &["run", name]);
        assert_eq!(out.status.code(), Some(1), "{name:?}");
        assert_eq!(stderr(&out), message, "{name:?}");
    }
    let out = plugin(&["--engine", "\x1b[2J"], b"95 00 00 00 00 00 00 00");
    one_line_failure(&out, "unknown engine `\"\\u{1b}[2J\"`", &[]);
}

#[test]
fn test_reports_every_outcome_and_a_summary() {
    let dir = TempDir::new("test-outcomes");
    fs::create_dir(dir.path().join("more")).unwrap();
    dir.write("pass.data", "-- asm\nmov %r0, 7\nexit\n-- result\n0x7\n");
    dir.write(
        "more/raw.data",
        "-- raw\n0x00000007000000b7\n0x0000000000000095\n-- result\n7\n",
    );
    dir.write(
        "more/mem.data",
        "-- asm\nldxb %r0, [%r1+1]\nexit\n-- mem\n01 02\n-- result\n0x2\n",
    );
    dir.write("more/notes.txt", "not a vector");
    dir.write("wrong.data", "-- asm\nmov %r0, 7\nexit\n-- result\n0x8\n");
    dir.write(
        "trap.data",
        "-- asm\nldxb %r0, [%r1]\nexit\n-- result\n0x0\n",
    );
    dir.write("badasm.data", "-- asm\nexit\nmov %r50, 1\n-- result\n0x0\n");
    dir.write("rejected.data", "-- asm\nldxb %r0, [%r1]\nexit\n-- error\n");
    dir.write(
        "named.data",
        "-- asm\nldxb %r0, [%r1]\nexit\n-- error\nInvalid\n",
    );
    dir.write("accepted.data", "-- asm\nmov %r0, 1\nexit\n-- error\n");
    dir.write("noprog.data", "-- result\n0x0\n");
    dir.write("noresult.data", "-- asm\nexit\n");
    dir.write("directive.data", "-- asm\nexit\n-- frobnicate\n");
    let out = ebpf(
        &dir,
        &[
            "test",
            "pass.data",
            "more",
            "wrong.data",
            "trap.data",
            "badasm.data",
            "rejected.data",
            "named.data",
            "accepted.data",
            "noprog.data",
            "noresult.data",
            "directive.data",
            "missing.data",
        ],
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "PASS pass",
            "PASS mem",
            "PASS raw",
            "FAIL wrong: got 0x7, expected 0x8",
            "FAIL trap: out-of-bounds read of 1 bytes at 0x0 at pc 0",
            "FAIL badasm: line 3: invalid register: %r50 (expected %r0..%r10)",
            "PASS rejected",
            "PASS named: failed as expected: out-of-bounds read of 1 bytes at 0x0 at pc 0 \
             (expected error: Invalid)",
            "FAIL accepted: got 0x1, expected an error",
            "SKIP noprog: no program (no `-- asm` or `-- raw` instructions)",
            "SKIP noresult: no `-- result` or `-- error` to compare with",
            "SKIP directive: line 3: unknown directive \"-- frobnicate\"",
            lines[12],
            "5 passed, 5 failed, 3 skipped",
        ],
        "{text}"
    );
    assert!(
        lines[12].starts_with("FAIL missing: cannot read: "),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: 5 of 10 test vectors failed\n");

    // All passing: exit 0, no `skipped` in the summary.
    let out = ebpf(&dir, &["test", "more", "pass.data"]);
    assert_eq!(
        ok(&out),
        "PASS mem\nPASS raw\nPASS pass\n3 passed, 0 failed\n"
    );

    fs::create_dir(dir.path().join("none")).unwrap();
    let out = ebpf(&dir, &["test", "none"]);
    one_line_failure(&out, "error: none: no .data files", &[]);
    usage_error(&ebpf(&dir, &["test"]), &["FILES"]);
}

#[test]
fn test_passes_the_whole_conformance_suite() {
    let Some((files, _)) = ebpf_testdata::suite() else {
        return;
    };
    assert_eq!(files.len(), 313);
    let dir = TempDir::new("test-suite");
    let suite = ebpf_testdata::conformance_dir();
    let out = ebpf(&dir, &["test", suite.to_str().unwrap()]);
    let text = ok(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"313 passed, 0 failed"), "{text}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("PASS ")).count(), 313);
}

#[test]
fn plugin_passes_the_whole_conformance_suite_as_the_runner_drives_it() {
    let Some((files, _)) = ebpf_testdata::suite() else {
        return;
    };
    let started = Instant::now();
    // Two threads: the machine has two cores and each test is one process.
    let halves: Vec<Vec<PathBuf>> = vec![
        files.iter().step_by(2).cloned().collect(),
        files.iter().skip(1).step_by(2).cloned().collect(),
    ];
    let checked: usize = thread::scope(|s| {
        let workers: Vec<_> = halves
            .iter()
            .map(|half| s.spawn(move || half.iter().map(|p| check_with_plugin(p)).sum::<usize>()))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(checked, files.len());
    eprintln!(
        "plugin: {checked} vectors in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Runs one vector through the plugin as the runner would; returns 1.
fn check_with_plugin(path: &Path) -> usize {
    let name = path.file_name().unwrap().to_string_lossy();
    let vector = ebpf_testdata::read(path).unwrap();
    let want = vector.result.unwrap_or_else(|| panic!("{name}: no result"));
    let mem = vector.mem.clone().unwrap_or_default();
    let mem_arg = runner_hex(&mem);
    let args: Vec<&str> = if mem.is_empty() {
        vec![]
    } else {
        vec![mem_arg.as_str()]
    };
    let stdin = format!("{}\n", runner_hex(&vector_bytes(&vector)));
    let out = plugin(&args, stdin.as_bytes());
    let got = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{name}: {got}{}", stderr(&out));
    // The runner strips one newline and parses the rest as hex; we print exactly `{:x}\n`.
    let digits = got
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("{name}: {got:?}"));
    assert_eq!(digits, format!("{want:x}"), "{name}");
    1
}

#[test]
fn plugin_follows_the_protocol() {
    let program =
        |text: &str| format!("{}\n", runner_hex(&isa::assemble(text).unwrap().to_bytes()));
    // No memory: r1 = r2 = 0; lower-case hex without 0x.
    let regs = program("lddw %r0, 0xABCDEF00\nadd %r0, %r1\nadd %r0, %r2\nexit");
    let out = plugin(&[], regs.as_bytes());
    assert_eq!(ok(&out), "abcdef00\n");
    // Options without memory: the first argument starts with `--`, so it is not memory.
    let out = plugin(&["--engine", "interp"], regs.as_bytes());
    assert_eq!(ok(&out), "abcdef00\n");
    // Two spaces in --plugin_options make an empty argument, which is ignored.
    let out = plugin(&["", "--engine=interp", ""], regs.as_bytes());
    assert_eq!(ok(&out), "abcdef00\n");

    // Memory first, then options; the memory is writable; r2 is its length.
    let write = program("stb [%r1+1], 0x7f\nldxh %r0, [%r1]\nlsh %r2, 32\nor %r0, %r2\nexit");
    let out = plugin(&["aa  bb  cc  ", "--engine", "interp"], write.as_bytes());
    assert_eq!(ok(&out), "300007faa\n");
    // The program may also come as --program, in any hex spelling.
    let hex = regs.replace("  ", "");
    let out = plugin(&["--program", hex.trim()], b"");
    assert_eq!(ok(&out), "abcdef00\n");
    // Helper 5 returns r1.
    let out = plugin(&[], program("mov %r1, -1\ncall 5\nexit").as_bytes());
    assert_eq!(ok(&out), "ffffffffffffffff\n");

    let help = ok(&plugin(&["--help"], b""));
    assert!(
        help.starts_with("usage: ebpf-conformance-plugin [MEM]"),
        "{help}"
    );

    // Failures: one line on stderr, exit status 1, nothing on stdout.
    let oob = program("ldxw %r0, [%r1+2]\nexit");
    let out = plugin(&["00  00  00  00  "], oob.as_bytes());
    one_line_failure(
        &out,
        "out-of-bounds read of 4 bytes at 0x400000002 at pc 0",
        &[],
    );
    let looping = program("mov %r0, 0\nloop:\nadd %r0, 1\njne %r0, 0, loop\nexit");
    let out = plugin(&[], looping.as_bytes());
    one_line_failure(
        &out,
        "instruction budget of 100000000 exhausted at pc 2",
        &[],
    );
    // A self loop never reaches its exit: the verifier refuses it before it runs.
    let out = plugin(&[], program("ja -1\nexit").as_bytes());
    one_line_failure(
        &out,
        "rejected by the verifier: pc 0: no exit is reachable",
        &[],
    );
    let out = plugin(&["--budget", "10"], looping.as_bytes());
    one_line_failure(&out, "instruction budget of 10 exhausted", &[]);
    // --elf: stdin is an ELF object in the same hex format; bytecode is not one.
    let out = plugin(&["--elf"], regs.as_bytes());
    one_line_failure(&out, "invalid ELF object", &[]);
    let object = std::fs::read(elf_fixture("ip_filter.o")).unwrap();
    let hex: String = object
        .iter()
        .map(|b| format!("{b:02x}  "))
        .collect::<String>()
        + "\n";
    let frame = std::fs::read_to_string(elf_fixture("inputs/frames/ipv4_from_10net.hex")).unwrap();
    let mem: String = frame
        .lines()
        .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
        .map(|b| format!("{b}  "))
        .collect();
    let out = plugin(&[&mem, "--elf"], hex.as_bytes());
    assert_eq!(ok(&out), "1\n", "XDP_DROP through the plugin's ELF mode");
    let out = plugin(&["--jit"], regs.as_bytes());
    one_line_failure(&out, "unknown option `--jit`", &[]);
    let out = plugin(&["--engine", "nope"], regs.as_bytes());
    one_line_failure(&out, "unknown engine `nope` (available: interp", &[]);
    let out = plugin(&["aa  b  "], regs.as_bytes());
    one_line_failure(&out, "memory: `b` has an odd number of hex digits", &[]);
    let out = plugin(&[], b"ff  00  00  00  00  00  00  00  \n");
    one_line_failure(
        &out,
        "rejected by the verifier: pc 0: unknown opcode 0xff",
        &[],
    );
    let out = plugin(&[], b"\n");
    one_line_failure(&out, "no program", &[]);
    let out = plugin(&[], b"9g\n");
    one_line_failure(&out, "program: `9g` is not hex", &[]);
}

#[test]
fn bench_prints_a_table_for_every_engine() {
    let dir = TempDir::new("bench-table");
    let out = ebpf(
        &dir,
        &[
            "bench",
            &example_path(),
            "--engine",
            "all",
            "--iterations",
            "10",
        ],
    );
    let text = ok(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].ends_with("checksum.s: 19 instructions, no input"),
        "{text}"
    );
    // Columns are padded to the longest engine name.
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "engine",
            "load",
            "ns",
            "load",
            "µs/insn",
            "code",
            "bytes",
            "runs",
            "insns/run",
            "median",
            "ns",
            "min",
            "ns",
            "ns/insn",
            "r0"
        ],
        "{text}"
    );
    assert_eq!(lines.len(), 2 + Engine::ALL.len(), "{text}");
    for (line, engine) in lines[2..].iter().zip(Engine::ALL) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.len(), 10, "{line}");
        assert_eq!(cells[0], engine.name());
        // The load per instruction: the load time over the program's 19 instructions.
        let load_ns: f64 = cells[1].parse().unwrap();
        let per_insn: f64 = cells[2].parse().unwrap();
        assert!((per_insn - load_ns / 1000.0 / 19.0).abs() < 0.001, "{line}");
        // Machine code from the JITs only.
        let code_bytes: u64 = cells[3].parse().unwrap();
        assert_eq!(code_bytes > 0, *engine != Engine::Interpreter, "{line}");
        assert_eq!(cells[4], "10");
        assert_eq!(cells[5], "75");
        assert_eq!(cells[9], "0x627");
        for number in [cells[1], cells[3], cells[4], cells[5], cells[6], cells[7]] {
            number.parse::<u64>().unwrap();
        }
        cells[8].parse::<f64>().unwrap();
    }

    // A vector's memory, a trap.
    dir.write(
        "v.data",
        "-- asm\nldxb %r0, [%r1+1]\nexit\n-- mem\n01 02\n-- result\n0x2\n",
    );
    let text = ok(&ebpf(&dir, &["bench", "v.data", "--iterations", "3"]));
    assert!(
        text.starts_with("v.data: 2 instructions, 2 bytes of input\n"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("0x2"), "{text}");
    let out = ebpf(
        &dir,
        &["bench", "v.data", "--mem", "01", "--iterations", "3"],
    );
    one_line_failure(
        &out,
        "error: interp: the program does not end normally: out-of-bounds read",
        &[],
    );
    usage_error(
        &ebpf(&dir, &["bench", "v.data", "--iterations", "0"]),
        &["0"],
    );
    // Runs are timed in batches, each on a fresh copy of the input: a program that changes
    // its input gives every run the same result (or the bench fails: "runs disagree").
    dir.write(
        "inc.s",
        "ldxb %r0, [%r1]\nadd %r0, 1\nstxb [%r1], %r0\nexit\n",
    );
    for engine in Engine::ALL {
        let args = [
            "bench",
            "inc.s",
            "--mem",
            "05",
            "--engine",
            engine.name(),
            "--iterations",
            "1000",
        ];
        let text = ok(&ebpf(&dir, &args));
        let cells: Vec<&str> = text.lines().nth(2).unwrap().split_whitespace().collect();
        assert_eq!((cells[4], cells[9]), ("1000", "0x6"), "{text}");
    }
}

#[test]
fn bench_takes_elf_objects_with_their_data_and_a_chosen_program() {
    let dir = TempDir::new("bench-elf");
    // .data, .bss and .rodata images: the result native gcc computed for this input, on
    // every run (the globals, which persist, are written back before each).
    let text = ok(&ebpf(
        &dir,
        &[
            "bench",
            &elf_fixture("globals.o"),
            "--mem-file",
            &elf_fixture("inputs/globals/text.hex"),
            "--iterations",
            "3",
        ],
    ));
    assert!(text.trim_end().ends_with("0xf2f2f7928a5a672c"), "{text}");
    // One of two programs of an object, by function.
    let text = ok(&ebpf(
        &dir,
        &[
            "bench",
            &elf_fixture("calls.o"),
            "--function",
            "mix_words",
            "--mem-file",
            &elf_fixture("inputs/calls/seven.hex"),
            "--iterations",
            "3",
        ],
    ));
    assert!(text.trim_end().ends_with("0x9e3779b97f4a7c12"), "{text}");
    let out = ebpf(&dir, &["bench", &example_path(), "--section", "xdp"]);
    one_line_failure(
        &out,
        "error: ",
        &["checksum.s: --section and --function select a program of an ELF object (.o)"],
    );
}

/// The text of the value of `"key": ` in hand-written, flat JSON.
fn json_field<'a>(text: &'a str, key: &str) -> &'a str {
    let start = text
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("{key}: {text}"));
    let rest = &text[start + key.len() + 4..];
    let end = rest.find([',', '}', '\n']).unwrap();
    rest[..end].trim()
}

#[test]
fn bench_prints_json() {
    let dir = TempDir::new("bench-json");
    dir.write("p.s", "mov %r0, %r2\nexit\n");
    let out = ebpf(
        &dir,
        &[
            "bench",
            "p.s",
            "--mem",
            "aa bb cc",
            "--iterations",
            "10",
            "--json",
        ],
    );
    let text = ok(&out);
    assert!(
        text.starts_with('{') && text.trim_end().ends_with('}'),
        "{text}"
    );
    let field = |key: &str| json_field(&text, key);
    assert_eq!(field("program"), "\"p.s\"");
    assert_eq!(field("program_instructions"), "2");
    assert_eq!(field("input_bytes"), "3");
    assert_eq!(field("engine"), "\"interp\"");
    assert_eq!(field("runs"), "10");
    assert_eq!(field("instructions_per_run"), "2");
    assert_eq!(field("r0"), "\"0x3\"");
    for key in ["load_ns", "median_ns", "min_ns"] {
        field(key)
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("{key}: {e}: {text}"));
    }
    let median: u64 = field("median_ns").parse().unwrap();
    let min: u64 = field("min_ns").parse().unwrap();
    assert!(min <= median, "{text}");
    let per_insn: f64 = field("ns_per_instruction").parse().unwrap();
    assert!((per_insn - median as f64 / 2.0).abs() < 0.01, "{text}");
    let load: f64 = field("load_ns").parse().unwrap();
    let load_per_insn: f64 = field("load_us_per_instruction").parse().unwrap();
    assert!(
        (load_per_insn - load / 1000.0 / 2.0).abs() < 0.001,
        "{text}"
    );
}

/// `--spectre-masking on|off` reaches both JITs: masked code is larger (a conditional move
/// or mask on every access checked at run time), and the results are the same either way,
/// for a run that stays in bounds and one that traps.
#[test]
fn spectre_masking_switches_the_jits_code_and_changes_no_result() {
    let dir = TempDir::new("spectre-masking");
    dir.write(
        "p.s",
        "ldxw %r0, [%r1+0]\nldxb %r2, [%r1+4]\nadd %r0, %r2\nexit\n",
    );
    for engine in Engine::ALL
        .iter()
        .filter(|e| matches!(e, Engine::X86 | Engine::Cranelift))
    {
        let code_bytes = |switch: &str| -> u64 {
            let out = ebpf(
                &dir,
                &[
                    "bench",
                    "p.s",
                    "--engine",
                    engine.name(),
                    "--mem",
                    "01 02 03 04 05",
                    "--iterations",
                    "2",
                    "--json",
                    "--spectre-masking",
                    switch,
                ],
            );
            let text = ok(&out);
            assert_eq!(
                json_field(&text, "r0"),
                "\"0x4030206\"",
                "{engine} {switch}"
            );
            json_field(&text, "code_bytes").parse().unwrap()
        };
        let (on, off) = (code_bytes("on"), code_bytes("off"));
        assert!(on > off, "{engine}: masked {on} bytes, unmasked {off}");
        for switch in ["on", "off"] {
            let run = |mem: &str| {
                ebpf(
                    &dir,
                    &[
                        "run",
                        "p.s",
                        "--engine",
                        engine.name(),
                        "--spectre-masking",
                        switch,
                        "--mem",
                        mem,
                    ],
                )
            };
            assert_eq!(
                ok(&run("01 02 03 04 05")),
                "0x4030206\n",
                "{engine} {switch}"
            );
            one_line_error(&run("01 02 03 04"), &["out-of-bounds read of 1 bytes"]);
        }
    }
    let out = ebpf(&dir, &["run", "p.s", "--spectre-masking", "maybe"]);
    usage_error(&out, &["--spectre-masking", "on", "off"]);
}

/// `--spectre-clamp-proven on|off` reaches both JITs: with masking on, a guarded header's
/// loads (proven in bounds by the guard) get a branch-free clamp, so the code is larger (in
/// builds without debug assertions: with them the JITs keep every proven check and clamp
/// nothing, as `spectre_clamp_proven_reaches_the_jits_and_changes_no_result` in the facade
/// says); results are the same either way, on inputs the guard accepts and refuses.
#[test]
fn spectre_clamp_proven_switches_the_jits_code_and_changes_no_result() {
    let dir = TempDir::new("spectre-clamp");
    dir.write(
        "p.s",
        "mov %r3, %r1\nadd %r3, %r2\nmov %r4, %r1\nadd %r4, 8\njgt %r4, %r3, +3\n\
         ldxdw %r0, [%r1+0]\nldxb %r2, [%r1+7]\nexit\nmov %r0, 1\nexit\n",
    );
    let long = "01 02 03 04 05 06 07 08 09";
    for engine in Engine::ALL
        .iter()
        .filter(|e| matches!(e, Engine::X86 | Engine::Cranelift))
    {
        let args = |command: &'static str, clamp: &'static str, mem: &'static str| {
            let mut args = vec![command, "p.s", "--engine", engine.name(), "--mem", mem];
            args.extend(["--spectre-masking", "on", "--spectre-clamp-proven", clamp]);
            args
        };
        let code_bytes = |clamp| -> u64 {
            let mut args = args("bench", clamp, long);
            args.extend(["--iterations", "2", "--json"]);
            let text = ok(&ebpf(&dir, &args));
            assert_eq!(
                json_field(&text, "r0"),
                "\"0x807060504030201\"",
                "{engine} {clamp}"
            );
            json_field(&text, "code_bytes").parse().unwrap()
        };
        let (on, off) = (code_bytes("on"), code_bytes("off"));
        assert!(
            cfg!(debug_assertions) || on > off,
            "{engine}: clamped {on} bytes, plain {off}"
        );
        for clamp in ["on", "off"] {
            let run = |mem| ok(&ebpf(&dir, &args("run", clamp, mem)));
            assert_eq!(run(long), "0x807060504030201\n", "{engine} {clamp}");
            assert_eq!(run("01 02 03 04 05 06 07"), "0x1\n", "{engine} {clamp}");
        }
    }
    let out = ebpf(&dir, &["run", "p.s", "--spectre-clamp-proven", "yes"]);
    usage_error(&out, &["--spectre-clamp-proven", "on", "off"]);
}

#[test]
fn verify_lists_every_finding_and_a_verdict() {
    let dir = TempDir::new("verify");
    dir.write(
        "bad.s",
        "mov %r0, %r10\nor %r0, %r9\njeq %r0, 0, +5\nexit\nexit\n",
    );
    let out = ebpf(&dir, &["verify", "bad.s"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "error: pc 1: r9 is read before it is written\n\
         error: pc 2: jump to pc 8, outside the program\n\
         warning: pc 4: unreachable instructions up to pc 4\n"
    );
    assert_eq!(stderr(&out), "error: bad.s: rejected with 2 errors\n");
    // --strict makes unreachable code an error.
    let out = ebpf(&dir, &["verify", "bad.s", "--strict"]);
    assert!(
        stdout(&out).contains("error: pc 4: unreachable"),
        "{}",
        stdout(&out)
    );

    // Bytecode is checked slot by slot: both bad slots are reported.
    let mut bytes = vec![0xff, 0, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&[0x95, 0x11, 0, 0, 0, 0, 0, 0]);
    dir.write("bad.bin", &bytes);
    let out = ebpf(&dir, &["verify", "bad.bin"]);
    assert_eq!(
        stdout(&out),
        "error: pc 0: unknown opcode 0xff\n\
         error: pc 1: reserved field `dst` of exit (opcode 0x95) must be 0, is 1\n"
    );

    // Helpers: 5 by default, or the given list.
    dir.write("call.s", "mov %r1, 1\ncall 7\nexit\n");
    let out = ebpf(&dir, &["verify", "call.s"]);
    assert!(
        stdout(&out).contains("error: pc 1: call to unknown helper 7"),
        "{}",
        stdout(&out)
    );
    let out = ebpf(&dir, &["verify", "call.s", "--helpers", "5,7"]);
    assert_eq!(
        ok(&out),
        "ok: call.s: loop-free, at most 3 instructions per run\n"
    );

    let out = ebpf(&dir, &["verify", &example_path()]);
    assert!(ok(&out).ends_with("may loop; runs need an instruction budget\n"));
}

fn elf_fixture(name: &str) -> String {
    format!("{}/../../tests/elf/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn run_takes_elf_objects_by_section_or_function() {
    let dir = TempDir::new("elf");
    let frames = |f: &str| elf_fixture(&format!("inputs/frames/{f}.hex"));
    // The README's main job: an XDP filter on a raw Ethernet frame (results from native C).
    for engine in ["interp", "x86"] {
        let args = |frame: &str| {
            vec![
                "run".to_string(),
                elf_fixture("ip_filter.o"),
                "--mem-file".to_string(),
                frames(frame),
                "--engine".to_string(),
                engine.to_string(),
            ]
        };
        let run = |frame: &str| {
            let a = args(frame);
            ok(&ebpf(
                &dir,
                &a.iter().map(String::as_str).collect::<Vec<_>>(),
            ))
        };
        if ebpf(&dir, &["run", "--engine", engine, &example_path()])
            .status
            .code()
            != Some(0)
        {
            continue; // engine not in this build
        }
        assert_eq!(run("ipv4_from_10net"), "0x1\n", "XDP_DROP on {engine}");
        assert_eq!(run("ipv4_tcp_http"), "0x2\n", "XDP_PASS on {engine}");
    }
    // Two programs in section `tc`: a function picks one; the section alone is ambiguous.
    let checksum = elf_fixture("checksum.o");
    let wiki = elf_fixture("inputs/checksum/wikipedia.hex");
    let out = ebpf(
        &dir,
        &[
            "run",
            &checksum,
            "--function",
            "adler32",
            "--mem-file",
            &wiki,
        ],
    );
    assert_eq!(ok(&out), "0x11e60398\n");
    let out = ebpf(
        &dir,
        &["run", &checksum, "--section", "tc", "--mem-file", &wiki],
    );
    one_line_failure(
        &out,
        "error: ",
        &["section `tc`", "inet_checksum", "adler32"],
    );
    // --section on something that is not an ELF object is a clear error.
    let out = ebpf(&dir, &["run", &example_path(), "--section", "xdp"]);
    one_line_failure(&out, "error: ", &["select a program of an ELF object"]);
    // Programs that use maps are refused, naming the maps; a map section that cannot be read
    // is a clear error.
    let maps = elf_fixture("unsupported/maps.o");
    let out = ebpf(&dir, &["run", &maps, "--function", "legacy_lookup"]);
    one_line_failure(&out, "error: ", &["unsupported", "`legacy_table`"]);
    let out = ebpf(&dir, &["run", &maps, "--function", "count_packets"]);
    one_line_failure(&out, "error: ", &["without a .BTF section"]);
}

#[test]
fn maps_lists_the_map_definitions_of_an_elf_object() {
    let dir = TempDir::new("elf-maps");
    let tailcall = elf_fixture("../bpf/xdp_tailcall.o");
    let text = ok(&ebpf(&dir, &["maps", &tailcall]));
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec![
                "NAME",
                "TYPE",
                "KEY",
                "VALUE",
                "MAX_ENTRIES",
                "FLAGS",
                "DEFINED",
                "IN"
            ],
            vec![
                "dispatch",
                "prog_array",
                "4",
                "4",
                "3",
                "0x0",
                ".maps",
                "(BTF)",
                "[0]=handle_tcp",
                "[1]=handle_udp",
                "[2]=handle_icmp"
            ],
            vec!["handled", "array", "4", "8", "4", "0x0", ".maps", "(BTF)"],
        ],
        "{text}"
    );
    let text = ok(&ebpf(&dir, &["maps", &elf_fixture("sort.o")]));
    assert!(text.ends_with("(no maps)\n"), "{text}");
    let out = ebpf(&dir, &["maps", &elf_fixture("unsupported/maps.o")]);
    one_line_failure(&out, "error: ", &["maps.o", "without a .BTF section"]);
}

#[test]
fn disasm_lists_the_programs_of_an_elf_object() {
    let dir = TempDir::new("elf-disasm");
    let text = ok(&ebpf(&dir, &["disasm", &elf_fixture("checksum.o")]));
    assert!(
        text.starts_with("inet_checksum (section tc):\n     0: "),
        "{text}"
    );
    assert!(text.contains("\nadler32 (section tc):\n     0: "), "{text}");
    assert!(text.contains("exit"), "{text}");
}

#[test]
fn compile_writes_an_object_for_each_target() {
    let dir = TempDir::new("compile");
    // (triple, e_machine, little-endian)
    let targets = [
        ("x86_64-unknown-linux-gnu", 62u16, true),
        ("aarch64-unknown-linux-gnu", 183, true),
        ("riscv64gc-unknown-linux-gnu", 243, true),
        ("s390x-unknown-linux-gnu", 22, false),
    ];
    for (triple, machine, little) in targets {
        let out = ebpf(
            &dir,
            &[
                "compile",
                &example_path(),
                "--target",
                triple,
                "-o",
                "prog.o",
            ],
        );
        assert_eq!(ok(&out), "");
        let object = std::fs::read(dir.path().join("prog.o")).unwrap();
        assert_eq!(&object[..4], b"\x7fELF", "{triple}");
        assert_eq!(
            object[5],
            if little { 1 } else { 2 },
            "{triple}: byte order"
        );
        let half = |at: usize| {
            let b = [object[at], object[at + 1]];
            if little {
                u16::from_le_bytes(b)
            } else {
                u16::from_be_bytes(b)
            }
        };
        assert_eq!(half(16), 1, "{triple}: ET_REL");
        assert_eq!(half(18), machine, "{triple}: e_machine");
    }
    let out = ebpf(
        &dir,
        &["compile", &example_path(), "--target", "nope", "-o", "x.o"],
    );
    one_line_failure(&out, "error: ", &["cannot compile for nope"]);
    assert!(!dir.path().join("x.o").exists());
}

/// `compile --cache-dir`: the second compile reuses the stored object (the entry is not
/// rewritten: same inode), which is byte for byte what a compile without cache writes; a
/// damaged, truncated or foreign entry is a one-line warning, the output is still the fresh
/// object, and the entry is replaced. `EBPF_OBJECT_CACHE` names the directory too.
#[cfg(unix)]
#[test]
fn compile_reuses_objects_from_a_cache_directory() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("compile-cache");
    let cache = dir.path().join("cache");
    let cache_arg = cache.to_str().unwrap().to_string();
    let compile = |out: &str, symbol: &str, cached: bool| {
        let mut args = vec![
            "compile",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--symbol",
            symbol,
            "-o",
            out,
        ];
        if cached {
            args.extend(["--cache-dir", &cache_arg]);
        }
        let path = example_path();
        args.push(&path);
        let output = ebpf(&dir, &args);
        let object = fs::read(dir.path().join(out)).ok();
        (output, object)
    };
    let entries = || {
        let mut names: Vec<PathBuf> = fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names
    };
    let (out, fresh) = compile("fresh.o", "ebpf_main", false);
    assert_eq!(ok(&out), "");
    let fresh = fresh.unwrap();
    let (out, first) = compile("a.o", "ebpf_main", true);
    assert_eq!(ok(&out), "");
    assert_eq!(first.as_ref(), Some(&fresh));
    let [entry] = entries().try_into().unwrap();
    assert!(entry.to_str().unwrap().ends_with(".ebpf-obj"), "{entry:?}");
    let inode = fs::metadata(&entry).unwrap().ino();
    let (out, hit) = compile("b.o", "ebpf_main", true);
    assert_eq!(ok(&out), "");
    assert_eq!(hit.as_ref(), Some(&fresh));
    assert_eq!(
        fs::metadata(&entry).unwrap().ino(),
        inode,
        "a hit writes nothing"
    );

    let whole = fs::read(&entry).unwrap();
    let damages: [(&[u8], &str); 3] = [
        (b"garbage", "not a cache file"),
        (&whole[..whole.len() / 2], "truncated"),
        (
            &[&whole[..whole.len() - 1], &[whole[whole.len() - 1] ^ 1]].concat(),
            "checksum",
        ),
    ];
    for (bytes, what) in damages {
        fs::write(&entry, bytes).unwrap();
        let (out, object) = compile("c.o", "ebpf_main", true);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("warning: object cache ") && err.lines().count() == 1,
            "{what}: {err:?}"
        );
        assert!(err.contains(what), "{what}: {err:?}");
        assert_eq!(object.as_ref(), Some(&fresh), "{what}");
        assert_eq!(
            fs::read(&entry).unwrap(),
            whole,
            "{what}: the entry is replaced"
        );
    }

    // Another symbol is another key; its entry overwritten by the first program's entry is a
    // foreign file, never that program's code.
    let (out, other_fresh) = compile("other-fresh.o", "other", false);
    assert_eq!(ok(&out), "");
    let (out, _) = compile("other.o", "other", true);
    assert_eq!(ok(&out), "");
    let other = entries().into_iter().find(|e| *e != entry).unwrap();
    fs::copy(&entry, &other).unwrap();
    let (out, object) = compile("other2.o", "other", true);
    let err = stderr(&out);
    assert!(err.contains("holds code for another program"), "{err:?}");
    assert_eq!(object, other_fresh);
    assert_ne!(object.as_ref(), Some(&fresh));
    assert_eq!(entries().len(), 2, "no temporary file left behind");

    // The environment variable: same cache, so a hit (same inode).
    let inode = fs::metadata(&entry).unwrap().ino();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebpf"))
        .args([
            "compile",
            &example_path(),
            "--target",
            "x86_64-unknown-linux-gnu",
            "-o",
            "env.o",
        ])
        .current_dir(dir.path())
        .env("EBPF_OBJECT_CACHE", &cache)
        .output()
        .unwrap();
    assert_eq!(ok(&out), "");
    assert_eq!(fs::read(dir.path().join("env.o")).unwrap(), fresh);
    assert_eq!(fs::metadata(&entry).unwrap().ino(), inode);
}

/// `run prog.o --packet`: the firewall of tests/bpf/ drops a frame from a source the
/// `--maps-init` file blocks, and `--maps-dump` shows the drop counted (5 + 1) and the
/// verdict XDP_DROP (1) counted once.
#[test]
fn run_with_a_packet_seeds_runs_and_dumps_the_maps() {
    let dir = TempDir::new("packet");
    let object = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bpf/xdp_firewall.o");
    let mut frame = vec![0u8; 54];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[26..30].copy_from_slice(&[10, 0, 0, 66]);
    let frame_path = dir.write("frame.bin", &frame);
    let init = dir.write(
        "init.json",
        r#"{"blocked": [{"key": "0a000042", "value": "0500000000000000"}]}"#,
    );
    let args = [
        "run",
        object.to_str().unwrap(),
        "--packet",
        frame_path.to_str().unwrap(),
        "--maps-init",
        init.to_str().unwrap(),
        "--maps-dump",
    ];
    for engine in Engine::ALL {
        let mut args = args.to_vec();
        args.extend(["--engine", engine.name()]);
        let out = ok(&ebpf(&dir, &args));
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("0x1"), "{out}");
        assert_eq!(lines.next(), Some("action: XDP_DROP"));
        let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(lines.next(), Some(format!("packet: {hex}").as_str()));
        let json: String = lines.collect::<Vec<_>>().join("\n");
        let compact: String = json.split_whitespace().collect();
        assert!(
            compact.contains(r#""blocked":[{"key":"0a000042","value":"0600000000000000"}]"#),
            "{json}"
        );
        assert!(
            compact.contains(r#"{"key":"01000000","value":"0100000000000000"}"#),
            "{json}"
        );
    }
    // Several programs: the error names them.
    let tailcall = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bpf/xdp_tailcall.o");
    let out = ebpf(
        &dir,
        &[
            "run",
            tailcall.to_str().unwrap(),
            "--packet",
            frame_path.to_str().unwrap(),
        ],
    );
    one_line_error(&out, &["4 programs match", "xdp_dispatch", "--function"]);
    // A map the object does not have.
    let bad = dir.write("bad.json", r#"{"nope": []}"#);
    let out = ebpf(
        &dir,
        &[
            "run",
            object.to_str().unwrap(),
            "--maps-init",
            bad.to_str().unwrap(),
        ],
    );
    one_line_error(&out, &["nope", "no such map"]);
    // `--map-size`: the verdict counters sized 2 instead of 4; the empty packet (no
    // --packet) is dropped, and the drop's counter (XDP_DROP, key 1) still fits. A map the
    // object does not have, and a size that is no number, are errors.
    let sized = |size: &str| {
        ebpf(
            &dir,
            &[
                "run",
                object.to_str().unwrap(),
                "--maps-dump",
                "--map-size",
                size,
            ],
        )
    };
    let out = ok(&sized("verdicts=2"));
    let compact: String = out.split_whitespace().collect();
    assert!(
        compact.contains(r#""verdicts":[{"key":"00000000","value":"0000000000000000"},{"key":"01000000","value":"0100000000000000"}]"#),
        "{out}"
    );
    one_line_error(&sized("verdict=2"), &["map `verdict`", "does not define"]);
    usage_error(&sized("verdicts=two"), &["--map-size", "verdicts"]);
}

/// `run prog.o --packet` on a TC program prints its `TC_ACT_*` and where it redirected: the
/// classifier of tests/bpf/ redirects UDP to interface 2 after decrementing the TTL.
#[test]
fn run_with_a_packet_names_tc_actions_and_redirects() {
    let dir = TempDir::new("tc-packet");
    let object = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bpf/tc_classifier.o");
    // Ethernet, IPv4 (TTL 64, protocol UDP, checksum 0x26c7), UDP 5 -> 53 with "hi".
    let frame: Vec<u8> = [
        &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0][..],
        &[
            0x45, 0, 0, 30, 0, 1, 0x40, 0, 64, 17, 0x26, 0xc7, 10, 0, 0, 7, 10, 0, 0, 1,
        ],
        &[0, 5, 0, 53, 0, 10, 0, 0, b'h', b'i'],
    ]
    .concat();
    let frame_path = dir.write("frame.bin", &frame);
    let out = ok(&ebpf(
        &dir,
        &[
            "run",
            object.to_str().unwrap(),
            "--packet",
            frame_path.to_str().unwrap(),
        ],
    ));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0x7"), "{out}");
    assert_eq!(lines.next(), Some("action: TC_ACT_REDIRECT"));
    assert_eq!(lines.next(), Some("redirect: interface 2"));
    // TTL 63, the checksum one more (0x27c7).
    let mut expected = frame.clone();
    expected[22] = 63;
    expected[24..26].copy_from_slice(&[0x27, 0xc7]);
    let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(lines.next(), Some(format!("packet: {hex}").as_str()));
}
