//! `ebpf run --trace`, `--trace-json`, `--profile` and `ebpf bench --profile`: the steps,
//! counts and effects of small programs worked out by hand, an ELF fixture whose calls its C
//! source spells out, traps, and the flag combinations that are refused.

use crate::common::{TempDir, ebpf, ok, one_line_error, stderr, stdout, usage_error};
use ebpf_vm::Engine;

/// r0 = 3 + 2 + 1 = 6: `mov`, `mov`, three rounds of (`add`, `sub`, `jne`), `exit` — 12
/// instructions, the loop's three taking 9 of them.
const LOOP: &str = "mov %r0, 0\nmov %r1, 3\nloop:\nadd %r0, %r1\nsub %r1, 1\n\
                    jne %r1, 0, loop\nexit\n";

fn fixture(name: &str) -> String {
    format!("{}/../../tests/elf/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The number after `"key":` in a JSON line (`None` for `null` or a missing key).
fn field(line: &str, key: &str) -> Option<u64> {
    let start = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn trace_shows_each_step_with_what_it_changed() {
    let dir = TempDir::new("trace-loop");
    dir.write("loop.s", LOOP);
    for engine in Engine::ALL {
        let out = ok(&ebpf(
            &dir,
            &["run", "loop.s", "--trace", "--engine", engine.name()],
        ));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 13, "{out}");
        assert_eq!(lines[12], "0x6", "r0 comes last");
        let steps: Vec<(u64, usize)> = lines[..12]
            .iter()
            .map(|l| {
                let mut words = l.split_whitespace();
                let step = words.next().unwrap().parse().unwrap();
                let pc = words.next().unwrap().trim_end_matches(':').parse().unwrap();
                (step, pc)
            })
            .collect();
        let pcs: Vec<usize> = steps.iter().map(|&(_, pc)| pc).collect();
        assert_eq!(pcs, [0, 1, 2, 3, 4, 2, 3, 4, 2, 3, 4, 5], "{out}");
        assert!(
            steps.iter().zip(1..).all(|(&(step, _), n)| step == n),
            "{out}"
        );
        // Disassembly in LLVM syntax, then what changed.
        assert!(lines[1].contains("r1 = 0x3") && lines[1].ends_with("r1: 0x0 -> 0x3"));
        assert!(lines[2].ends_with("r0: 0x0 -> 0x3"), "{}", lines[2]);
        assert!(lines[5].ends_with("r0: 0x3 -> 0x5"), "{}", lines[5]);
        assert!(lines[8].ends_with("r0: 0x5 -> 0x6"), "{}", lines[8]);
        // The first two jne go back to pc 2, the last falls through.
        assert!(lines[4].contains("if r1 != 0x0 goto") && lines[4].ends_with("-> pc 2"));
        assert!(lines[7].ends_with("-> pc 2"));
        assert!(lines[10].trim_end().ends_with("goto -0x3"), "{}", lines[10]);
        assert!(lines[11].trim_end().ends_with("exit"));
    }
}

#[test]
fn trace_json_has_memory_helpers_calls_and_the_exit() {
    let dir = TempDir::new("trace-json");
    // Stores 0x1122 at the input's byte 2, reads it back as a u16, calls the identity helper
    // with it, then a function that adds 1 to its argument; the input is four bytes.
    dir.write(
        "mem.s",
        "mov %r6, %r1\nsth [%r6+2], 0x1122\nldxh %r1, [%r6+2]\ncall 5\nmov %r1, %r0\n\
         call local f\nexit\nf:\nmov %r0, %r1\nadd %r0, 1\nexit\n",
    );
    let out = ok(&ebpf(
        &dir,
        &["run", "mem.s", "--trace-json", "--mem", "00 00 00 00"],
    ));
    let lines: Vec<&str> = out.lines().collect();
    let input = 0x4_0000_0000u64;
    assert_eq!(
        lines,
        [
            format!(
                "{{\"step\":1,\"pc\":0,\"depth\":0,\"insn\":\"r6 = r1\",\
                 \"regs\":{{\"r6\":[\"0x0\",\"{input:#x}\"]}},\"next\":1}}"
            ),
            format!(
                "{{\"step\":2,\"pc\":1,\"depth\":0,\"insn\":\"*(u16 *)(r6 + 0x2) = 0x1122\",\
                 \"regs\":{{}},\"store\":{{\"addr\":\"{:#x}\",\"len\":2,\"value\":\"0x1122\"}},\
                 \"next\":2}}",
                input + 2
            ),
            format!(
                "{{\"step\":3,\"pc\":2,\"depth\":0,\"insn\":\"w1 = *(u16 *)(r6 + 0x2)\",\
                 \"regs\":{{\"r1\":[\"{input:#x}\",\"0x1122\"]}},\
                 \"load\":{{\"addr\":\"{:#x}\",\"len\":2,\"value\":\"0x1122\"}},\"next\":3}}",
                input + 2
            ),
            // The helper returns r1 in r0 and zeroes r1..r5 (r2 held the input's length).
            "{\"step\":4,\"pc\":3,\"depth\":0,\"insn\":\"call 0x5\",\
             \"regs\":{\"r0\":[\"0x0\",\"0x1122\"],\"r1\":[\"0x1122\",\"0x0\"],\"r2\":[\"0x4\",\"0x0\"]},\
             \"helper\":{\"id\":5,\"args\":[\"0x1122\",\"0x4\",\"0x0\",\"0x0\",\"0x0\"],\"result\":\"0x1122\"},\
             \"next\":4}"
                .to_string(),
            "{\"step\":5,\"pc\":4,\"depth\":0,\"insn\":\"r1 = r0\",\
             \"regs\":{\"r1\":[\"0x0\",\"0x1122\"]},\"next\":5}"
                .to_string(),
            // The local call moves r10 one 512-byte frame down; its exit moves it back.
            "{\"step\":6,\"pc\":5,\"depth\":0,\"insn\":\"call 0x1\",\
             \"regs\":{\"r10\":[\"0x200001200\",\"0x200001000\"]},\"next\":7}"
                .to_string(),
            "{\"step\":7,\"pc\":7,\"depth\":1,\"insn\":\"r0 = r1\",\"regs\":{},\"next\":8}"
                .to_string(),
            "{\"step\":8,\"pc\":8,\"depth\":1,\"insn\":\"r0 += 0x1\",\
             \"regs\":{\"r0\":[\"0x1122\",\"0x1123\"]},\"next\":9}"
                .to_string(),
            "{\"step\":9,\"pc\":9,\"depth\":1,\"insn\":\"exit\",\
             \"regs\":{\"r10\":[\"0x200001000\",\"0x200001200\"]},\"next\":6}"
                .to_string(),
            "{\"step\":10,\"pc\":6,\"depth\":0,\"insn\":\"exit\",\"regs\":{},\"next\":null}"
                .to_string(),
            "{\"exit\":{\"r0\":\"0x1123\",\"instructions\":10}}".to_string(),
        ]
    );
}

/// The hex string after `"key":"` in a JSON line.
fn hex_field(line: &str, key: &str) -> Option<u64> {
    let start = line.find(&format!("\"{key}\":\"0x"))? + key.len() + 6;
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    u64::from_str_radix(&digits, 16).ok()
}

#[test]
fn trace_of_an_elf_fixture_reads_what_its_source_says() {
    let dir = TempDir::new("trace-elf");
    let out = ok(&ebpf(
        &dir,
        &[
            "run",
            &fixture("calls.o"),
            "--function",
            "mix_words",
            "--mem-file",
            &fixture("inputs/calls/hello.hex"),
            "--trace-json",
        ],
    ));
    let lines: Vec<&str> = out.lines().collect();
    let (last, steps) = lines.split_last().unwrap();
    // The native build's result (tests/elf/expected.txt), and one step per instruction.
    assert!(
        last.starts_with("{\"exit\":{\"r0\":\"0x38c057c34fbff17f\",\"instructions\":"),
        "{last}"
    );
    assert_eq!(field(last, "instructions"), Some(steps.len() as u64));
    // mix_words folds whole 8-byte words: of "hello, world" (12 bytes) it reads bytes 0..8,
    // each loaded value being the input's bytes there; it calls nothing.
    let input = b"hello, world";
    let mut read = [false; 12];
    let mut expected_pc = Some(0);
    for step in steps {
        assert_eq!(field(step, "pc"), expected_pc, "{step}");
        assert_eq!(field(step, "depth"), Some(0), "{step}");
        assert!(!step.contains("\"helper\""), "{step}");
        expected_pc = field(step, "next");
        let Some((_, load)) = step.split_once("\"load\":") else {
            continue;
        };
        let (addr, len) = (
            hex_field(load, "addr").unwrap(),
            field(load, "len").unwrap(),
        );
        let Some(offset) = addr.checked_sub(0x4_0000_0000).filter(|&o| o < 12) else {
            continue; // the stack
        };
        let (offset, len) = (offset as usize, len as usize);
        let mut want = [0u8; 8];
        want[..len].copy_from_slice(&input[offset..offset + len]);
        assert_eq!(
            hex_field(load, "value"),
            Some(u64::from_le_bytes(want)),
            "{step}"
        );
        read[offset..offset + len].fill(true);
    }
    assert_eq!(expected_pc, None, "the last step is the exit");
    let mut want = [false; 12];
    want[..8].fill(true);
    assert_eq!(read, want);
}

#[test]
fn a_trap_ends_the_trace_with_its_pc() {
    let dir = TempDir::new("trace-trap");
    dir.write("oob.s", "mov %r0, 1\nldxw %r0, [%r1+2]\nexit\n");
    let out = ebpf(&dir, &["run", "oob.s", "--trace", "--mem", "aa bb"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].ends_with("r0: 0x0 -> 0x1"), "{text}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>().join(" "),
        "- 1: trap: out-of-bounds read of 4 bytes at 0x400000002"
    );
    assert_eq!(
        stderr(&out),
        "error: out-of-bounds read of 4 bytes at 0x400000002 at pc 1\n"
    );
    let out = ebpf(&dir, &["run", "oob.s", "--trace-json", "--mem", "aa bb"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).ends_with(
        "{\"trap\":{\"pc\":1,\"message\":\"out-of-bounds read of 4 bytes at 0x400000002\"}}\n"
    ));
}

/// The annotated lines of a profile: (count, pc).
fn annotated(profile: &str) -> Vec<(u64, usize)> {
    profile
        .lines()
        .filter(|l| l.contains('%') && l.contains(": ") && !l.contains("instruction"))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let pc = words
                .iter()
                .find(|w| w.ends_with(':'))
                .unwrap()
                .trim_end_matches(':');
            (words[0].parse().unwrap(), pc.parse().unwrap())
        })
        .collect()
}

#[test]
fn profile_counts_each_pc_and_puts_the_loop_first() {
    let dir = TempDir::new("profile-loop");
    dir.write("loop.s", LOOP);
    let out = ok(&ebpf(&dir, &["run", "loop.s", "--profile"]));
    assert!(out.starts_with("profile: 12 instructions executed, 6 of 6 instructions ran\n"));
    assert!(out.ends_with("\n0x6\n"), "{out}");
    assert!(
        out.contains("          12 100.0%  function at pc 0 (pcs 0-5)\n"),
        "{out}"
    );
    // Hottest block first: the loop (9 of 12), then the entry (2), then the exit (1).
    let headers: Vec<&str> = out.lines().filter(|l| l.contains(" entered ")).collect();
    assert_eq!(
        headers,
        [
            "pcs 2-4: 9 instructions (75.0%), entered 3 times",
            "pcs 0-1: 2 instructions (16.7%), entered 1 time",
            "pc 5: 1 instruction (8.3%), entered 1 time",
        ]
    );
    assert_eq!(
        annotated(&out),
        [(3, 2), (3, 3), (3, 4), (1, 0), (1, 1), (1, 5)]
    );
    // The hottest instructions get the full bar, the others a third of it.
    let bars: Vec<usize> = out
        .lines()
        .filter(|l| l.contains('#'))
        .map(|l| l.matches('#').count())
        .collect();
    assert_eq!(bars, [20, 20, 20, 7, 7, 7]);
}

#[test]
fn profile_of_a_run_the_budget_stops_shows_where_it_spun() {
    let dir = TempDir::new("profile-budget");
    dir.write(
        "spin.s",
        "mov %r0, 0\nloop:\nadd %r0, 1\njlt %r0, 1000000, loop\nexit\n",
    );
    // 10 instructions: mov, four rounds of (add, jlt), then the fifth add; the jlt after it
    // is where the budget runs out.
    let out = ebpf(&dir, &["run", "spin.s", "--profile", "--budget", "10"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: instruction budget of 10 exhausted at pc 2\n"
    );
    let text = stdout(&out);
    assert_eq!(annotated(&text), [(5, 1), (4, 2), (1, 0)], "{text}");
    assert!(text.ends_with("\nnever executed: pc 3\n"), "{text}");
}

#[test]
fn profile_of_an_elf_fixture_counts_what_its_source_does() {
    let dir = TempDir::new("profile-elf");
    let out = ok(&ebpf(
        &dir,
        &[
            "run",
            &fixture("sort.o"),
            "--mem-file",
            &fixture("inputs/sort/word.hex"),
            "--profile",
        ],
    ));
    // tests/elf/expected.txt: the native build's result on "sorting".
    assert!(out.ends_with("\n0x6ff1699537698ca7\n"), "{out}");
    // The insertion sort of "sorting" shifts a byte once per inversion (s: 5, o: 3, r: 3,
    // t: 3, i: 1, n: 1 — 16) and stores each of the 6 keys after the first once: 22 one-byte
    // stores in all, whatever code clang made of it.
    let stores: u64 = out
        .lines()
        .filter(|l| l.contains(": *(u8 *)("))
        .map(|l| l.split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(stores, 22, "{out}");
    // The totals add up: functions, blocks and instructions all count the same run.
    let total: u64 = out
        .strip_prefix("profile: ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let counted: u64 = annotated(&out).iter().map(|&(count, _)| count).sum();
    assert_eq!(counted, total);
    let trace = ok(&ebpf(
        &dir,
        &[
            "run",
            &fixture("sort.o"),
            "--mem-file",
            &fixture("inputs/sort/word.hex"),
            "--trace-json",
        ],
    ));
    assert_eq!(
        trace.lines().count() as u64,
        total + 1,
        "one line per step, then the exit"
    );
}

#[test]
fn bench_profile_follows_the_table() {
    let dir = TempDir::new("bench-profile");
    dir.write("loop.s", LOOP);
    let out = ok(&ebpf(
        &dir,
        &["bench", "loop.s", "--iterations", "3", "--profile"],
    ));
    let (table, profile) = out.split_once("\nprofile: ").unwrap();
    assert!(table.contains("interp"), "{table}");
    assert!(profile.starts_with("12 instructions executed"), "{profile}");
    assert_eq!(
        annotated(profile),
        [(3, 2), (3, 3), (3, 4), (1, 0), (1, 1), (1, 5)]
    );
}

#[test]
fn conflicting_trace_and_profile_flags_are_usage_errors() {
    let dir = TempDir::new("trace-flags");
    dir.write("loop.s", LOOP);
    for (args, needles) in [
        (
            &["run", "loop.s", "--trace", "--profile"][..],
            &["'--trace' cannot be used with '--profile'"][..],
        ),
        (
            &["run", "loop.s", "--trace", "--trace-json"],
            &["'--trace' cannot be used with '--trace-json'"],
        ),
        (
            &["run", "loop.s", "--trace-json", "--profile"],
            &["'--trace-json' cannot be used with '--profile'"],
        ),
        (
            &["bench", "loop.s", "--profile", "--json"],
            &["'--profile' cannot be used with '--json'"],
        ),
        (
            &["test", "loop.s", "--trace"],
            &["unexpected argument '--trace'"],
        ),
    ] {
        usage_error(&ebpf(&dir, args), needles);
    }
    // A program that does not load is the usual one-line error, with nothing traced.
    dir.write("bad.s", "mov %r0, %r11\nexit\n");
    one_line_error(
        &ebpf(&dir, &["run", "bad.s", "--trace"]),
        &["bad.s: line 1"],
    );
}
