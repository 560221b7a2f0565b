//! The text format of `tests/contract/*.txt` (see `tests/contract/README.md`): reading a file
//! into [`Case`]s, and writing the `--- expect` section back (for `EBPF_BLESS=1`).

use std::fmt::Write as _;
use std::path::Path;

use ebpf_abi::{InvalidReason, Trap, TrapKind};

use crate::case::{Case, Config, Expect, Mem, Meta, RunRegion};

/// A parsed `--- expect` section: the result and the memories after the run.
type Expectation = (Expect, Vec<(Mem, Vec<u8>)>);

/// Bytes per line when memory is written out.
const BYTES_PER_LINE: usize = 16;

/// Parses the text of one case file. `category` prefixes every case name; errors carry the
/// file's path and the 1-based line.
pub(crate) fn parse_file(path: &Path, category: &str, text: &str) -> Result<Vec<Case>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let err = |line: usize, msg: String| format!("{}:{}: {msg}", path.display(), line + 1);
    let mut cases = Vec::new();
    let mut i = 0;
    // The file's preamble (comments) up to the first case.
    while i < lines.len() && !lines[i].starts_with("===") {
        let t = lines[i].trim();
        if !t.is_empty() && !t.starts_with('#') {
            return Err(err(
                i,
                format!("unexpected line before the first case: `{t}`"),
            ));
        }
        i += 1;
    }
    while i < lines.len() {
        let header = i;
        let name = lines[i].trim_start_matches('=').trim();
        if name.is_empty() {
            return Err(err(i, "case without a name".into()));
        }
        i += 1;
        let mut config = Config::default();
        let mut asm: Option<(String, Vec<usize>)> = None;
        let mut input = None;
        let mut metadata_buffer = None;
        let mut run_regions = Vec::new();
        let mut expect: Option<Expectation> = None;
        let mut expect_lines = 0..0;
        while i < lines.len() && !lines[i].starts_with("===") {
            let trimmed = lines[i].trim();
            if let Some(section) = trimmed.strip_prefix("---") {
                let section = section.trim();
                let at = i;
                i += 1;
                let start = i;
                while i < lines.len()
                    && !lines[i].trim_start().starts_with("---")
                    && !lines[i].starts_with("===")
                {
                    i += 1;
                }
                let body = &lines[start..i];
                let hex = || parse_hex(body).map_err(|(j, e)| err(start + j, e));
                match section {
                    "asm" => {
                        let mut text = String::new();
                        let mut numbers = Vec::new();
                        for (j, l) in body.iter().enumerate() {
                            if l.trim().is_empty() {
                                continue;
                            }
                            text.push_str(l.trim());
                            text.push('\n');
                            numbers.push(start + j + 1);
                        }
                        asm = Some((text, numbers));
                    }
                    "input" | "metadata" => {
                        let slot = if section == "input" {
                            &mut input
                        } else {
                            &mut metadata_buffer
                        };
                        if slot.replace(hex()?).is_some() {
                            return Err(err(at, format!("a second `{section}` section")));
                        }
                    }
                    "vm-region" => config.read_only.push(hex()?),
                    "run-region" => run_regions.push(RunRegion::ReadOnly(hex()?)),
                    "run-region-mut" => run_regions.push(RunRegion::Writable(hex()?)),
                    "expect" => {
                        // The expectation ends at its last non-blank line.
                        let mut end = i;
                        while end > start && lines[end - 1].trim().is_empty() {
                            end -= 1;
                        }
                        expect_lines = start..end;
                        expect = Some(
                            parse_expect(&lines[start..end]).map_err(|(j, e)| err(start + j, e))?,
                        );
                    }
                    _ => return Err(err(at, format!("unknown section `{section}`"))),
                }
                continue;
            }
            if let Some(items) = trimmed.strip_prefix("config:") {
                parse_config(items, &mut config).map_err(|e| err(i, e))?;
            } else if !trimmed.is_empty() && !trimmed.starts_with('#') {
                return Err(err(i, format!("unexpected line `{trimmed}`")));
            }
            i += 1;
        }
        let (asm, asm_lines) =
            asm.ok_or_else(|| err(header, format!("case `{name}` has no asm section")))?;
        let (expect, memory_after) =
            expect.ok_or_else(|| err(header, format!("case `{name}` has no expect section")))?;
        cases.push(Case {
            file: path.to_path_buf(),
            line: header + 1,
            name: format!("{category}/{name}"),
            asm,
            asm_lines,
            input,
            metadata_buffer,
            run_regions,
            config,
            expect,
            memory_after,
            expect_lines,
        });
    }
    Ok(cases)
}

fn parse_config(items: &str, config: &mut Config) -> Result<(), String> {
    for item in items.split_whitespace() {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("config item `{item}` is not key=value"))?;
        let bad = |e: String| format!("config item `{item}`: {e}");
        match key {
            "budget" => config.budget = Some(parse_u64(value).map_err(bad)?),
            "max_depth" => config.max_call_depth = Some(parse_usize(value).map_err(bad)?),
            "metadata" => {
                let parts: Vec<&str> = value.split(',').collect();
                let [len, data, end] = parts[..] else {
                    return Err(bad("expected LEN,DATA_OFFSET,DATA_END_OFFSET".into()));
                };
                config.metadata = Some(Meta {
                    len: parse_usize(len).map_err(bad)?,
                    data_offset: parse_usize(data).map_err(bad)?,
                    data_end_offset: parse_usize(end).map_err(bad)?,
                });
            }
            _ => return Err(format!("unknown config key `{key}`")),
        }
    }
    Ok(())
}

/// Whitespace-separated hex bytes; `#` starts a comment. Errors carry the 0-based line.
fn parse_hex(lines: &[&str]) -> Result<Vec<u8>, (usize, String)> {
    let mut bytes = Vec::new();
    for (j, line) in lines.iter().enumerate() {
        let text = line.split('#').next().unwrap_or("");
        bytes.extend(hex_bytes(text).map_err(|e| (j, e))?);
    }
    Ok(bytes)
}

fn hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    text.split_whitespace()
        .map(|t| {
            (t.len() == 2)
                .then(|| u8::from_str_radix(t, 16).ok())
                .flatten()
                .ok_or_else(|| format!("`{t}` is not a hex byte"))
        })
        .collect()
}

fn parse_u64(text: &str) -> Result<u64, String> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => text.replace('_', "").parse(),
    }
    .map_err(|e| format!("`{text}`: {e}"))
}

fn parse_usize(text: &str) -> Result<usize, String> {
    parse_u64(text).and_then(|v| usize::try_from(v).map_err(|e| format!("`{text}`: {e}")))
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{text}` is not true or false")),
    }
}

/// The `--- expect` body: one result line, then the memories after the run. Errors carry the
/// 0-based line within the body.
fn parse_expect(lines: &[&str]) -> Result<Expectation, (usize, String)> {
    let mut result = None;
    let mut memory: Vec<(Mem, Vec<u8>)> = Vec::new();
    for (j, raw) in lines.iter().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |e: String| (j, e);
        if raw.starts_with(char::is_whitespace) {
            // A continuation of the memory on the previous line.
            let Some((_, bytes)) = memory.last_mut() else {
                return Err(fail(format!("`{line}` continues no memory line")));
            };
            bytes.extend(hex_bytes(line).map_err(fail)?);
        } else if let Some(rest) = line.strip_prefix("exit ") {
            let fields = fields(rest, &["r0", "instructions"]).map_err(fail)?;
            let r0 = parse_u64(fields[0]).map_err(fail)?;
            let instructions = parse_u64(fields[1]).map_err(fail)?;
            set_result(&mut result, Expect::Exit { r0, instructions }).map_err(fail)?;
        } else if let Some(rest) = line.strip_prefix("trap ") {
            let trap = parse_trap(rest).map_err(fail)?;
            set_result(&mut result, Expect::Trap(trap)).map_err(fail)?;
        } else if let Some((what, bytes)) = line.split_once(':') {
            let mem = match what.split_whitespace().collect::<Vec<_>>()[..] {
                ["input"] => Mem::Input,
                ["metadata"] => Mem::Metadata,
                ["run-region", i] => Mem::RunRegion(parse_usize(i).map_err(fail)?),
                _ => return Err(fail(format!("unknown memory `{what}`"))),
            };
            if memory.iter().any(|(m, _)| *m == mem) {
                return Err(fail(format!("`{what}` twice")));
            }
            memory.push((mem, hex_bytes(bytes).map_err(fail)?));
        } else {
            return Err(fail(format!("unexpected line `{line}`")));
        }
    }
    let result = result.ok_or((0, "no `exit` or `trap` line".to_string()))?;
    Ok((result, memory))
}

fn set_result(slot: &mut Option<Expect>, value: Expect) -> Result<(), String> {
    match slot.replace(value) {
        Some(_) => Err("more than one `exit` or `trap` line".into()),
        None => Ok(()),
    }
}

/// The values of `key=value` fields, which must be exactly `keys`, in that order.
fn fields<'t>(text: &'t str, keys: &[&str]) -> Result<Vec<&'t str>, String> {
    let items: Vec<&str> = text.split_whitespace().collect();
    if items.len() != keys.len() {
        return Err(format!("`{text}`: expected the fields {keys:?}"));
    }
    items
        .iter()
        .zip(keys)
        .map(|(item, key)| match item.split_once('=') {
            Some((k, v)) if k == *key => Ok(v),
            _ => Err(format!("`{item}`: expected `{key}=…`")),
        })
        .collect()
}

/// `pc=N KIND FIELD=VALUE…`, as [`render_trap`] writes it.
fn parse_trap(text: &str) -> Result<Trap, String> {
    let (pc, rest) = text.split_once(' ').unwrap_or((text, ""));
    let pc = parse_usize(fields(pc, &["pc"])?[0])?;
    let (kind, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let kind = match kind {
        "out-of-bounds" => {
            let f = fields(rest, &["addr", "len", "write"])?;
            TrapKind::OutOfBounds {
                addr: parse_u64(f[0])?,
                len: parse_u64(f[1])?,
                write: parse_bool(f[2])?,
            }
        }
        "misaligned-atomic" => {
            let f = fields(rest, &["addr", "len"])?;
            TrapKind::MisalignedAtomic {
                addr: parse_u64(f[0])?,
                len: parse_u64(f[1])?,
            }
        }
        "budget-exhausted" => TrapKind::BudgetExhausted {
            budget: parse_u64(fields(rest, &["budget"])?[0])?,
        },
        "call-depth-exceeded" => TrapKind::CallDepthExceeded {
            max_depth: parse_usize(fields(rest, &["max_depth"])?[0])?,
        },
        "unknown-helper" => TrapKind::UnknownHelper {
            id: parse_u64(fields(rest, &["id"])?[0])?,
        },
        "helper-failed" => {
            // The message is the rest of the line.
            let (id, message) = rest
                .split_once(" message=")
                .ok_or_else(|| format!("`{rest}`: expected `id=N message=…`"))?;
            let id = parse_u64(fields(id, &["id"])?[0])?;
            TrapKind::HelperFailed {
                id: u32::try_from(id).map_err(|e| format!("helper id {id}: {e}"))?,
                message: message.to_string(),
            }
        }
        "invalid-instruction" => {
            let reason = fields(rest, &["reason"])?[0];
            TrapKind::InvalidInstruction {
                reason: REASONS
                    .iter()
                    .find(|(slug, _)| *slug == reason)
                    .map(|(_, r)| *r)
                    .ok_or_else(|| format!("unknown reason `{reason}`"))?,
            }
        }
        _ => return Err(format!("unknown trap kind `{kind}`")),
    };
    Ok(Trap { pc, kind })
}

/// Every `InvalidReason` and its name in the files.
const REASONS: &[(&str, InvalidReason)] = &[
    ("fell-off-end", InvalidReason::FellOffEnd),
    ("target-out-of-range", InvalidReason::TargetOutOfRange),
    ("lddw-tail", InvalidReason::LddwTail),
    ("unsupported-lddw", InvalidReason::UnsupportedLddw),
    ("unsupported-call", InvalidReason::UnsupportedCall),
    ("undecodable", InvalidReason::Undecodable),
];

/// A trap as the files write it: `pc=N KIND FIELD=VALUE…` (addresses and `r0` in hex).
pub(crate) fn render_trap(trap: &Trap) -> String {
    let kind = match &trap.kind {
        TrapKind::OutOfBounds { addr, len, write } => {
            format!("out-of-bounds addr={addr:#x} len={len} write={write}")
        }
        TrapKind::MisalignedAtomic { addr, len } => {
            format!("misaligned-atomic addr={addr:#x} len={len}")
        }
        TrapKind::BudgetExhausted { budget } => format!("budget-exhausted budget={budget}"),
        TrapKind::CallDepthExceeded { max_depth } => {
            format!("call-depth-exceeded max_depth={max_depth}")
        }
        TrapKind::UnknownHelper { id } if *id > u64::from(u32::MAX) => {
            format!("unknown-helper id={id:#x}")
        }
        TrapKind::UnknownHelper { id } => format!("unknown-helper id={id}"),
        TrapKind::HelperFailed { id, message } => {
            format!("helper-failed id={id} message={message}")
        }
        TrapKind::InvalidInstruction { reason } => {
            let slug = REASONS
                .iter()
                .find(|(_, r)| r == reason)
                .map_or("unknown", |(slug, _)| slug);
            format!("invalid-instruction reason={slug}")
        }
        // A kind this format does not know yet: a line that does not parse, so it is noticed.
        other => format!("unknown-kind {other:?}"),
    };
    format!("pc={} {kind}", trap.pc)
}

/// The lines of a `--- expect` section: the result, then each memory in `memory_after`.
pub(crate) fn render_expect(expect: &Expect, memory_after: &[(Mem, Vec<u8>)]) -> Vec<String> {
    let mut out = vec![match expect {
        Expect::Exit { r0, instructions } => {
            format!("exit r0={r0:#x} instructions={instructions}")
        }
        Expect::Trap(trap) => format!("trap {}", render_trap(trap)),
    }];
    for (mem, bytes) in memory_after {
        let label = match mem {
            Mem::Input => "input".to_string(),
            Mem::Metadata => "metadata".to_string(),
            Mem::RunRegion(i) => format!("run-region {i}"),
        };
        let mut chunks = bytes.chunks(BYTES_PER_LINE);
        out.push(format!(
            "{label}:{}",
            hex_line(chunks.next().unwrap_or(&[]))
        ));
        out.extend(chunks.map(|c| format!("   {}", hex_line(c))));
    }
    out
}

/// Bytes as ` aa bb cc` (each with a leading space).
fn hex_line(bytes: &[u8]) -> String {
    let mut s = String::new();
    for b in bytes {
        let _ = write!(s, " {b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Case>, String> {
        parse_file(Path::new("t.txt"), "t", text)
    }

    #[test]
    fn every_trap_kind_round_trips() {
        let mut kinds = vec![
            TrapKind::OutOfBounds {
                addr: 0x4_0000_0010,
                len: 8,
                write: true,
            },
            TrapKind::MisalignedAtomic {
                addr: 0x2_0000_11f4,
                len: 4,
            },
            TrapKind::BudgetExhausted { budget: 7 },
            TrapKind::CallDepthExceeded { max_depth: 8 },
            TrapKind::UnknownHelper { id: 999 },
            TrapKind::UnknownHelper { id: u64::MAX },
            TrapKind::HelperFailed {
                id: 2,
                message: "it failed: message=with spaces".into(),
            },
        ];
        kinds.extend(
            REASONS
                .iter()
                .map(|(_, reason)| TrapKind::InvalidInstruction { reason: *reason }),
        );
        for kind in kinds {
            let trap = Trap { pc: 3, kind };
            let text = render_trap(&trap);
            assert_eq!(parse_trap(&text), Ok(trap), "{text}");
        }
    }

    #[test]
    fn sections_config_and_long_memory() {
        let memory: Vec<u8> = (0..40).collect();
        let expect = render_expect(
            &Expect::Exit {
                r0: 0x1234,
                instructions: 3,
            },
            &[(Mem::Input, memory.clone()), (Mem::RunRegion(1), vec![])],
        );
        let text = format!(
            "# preamble\n\n=== a/b\n# comment\nconfig: budget=5 max_depth=0x2\nconfig: metadata=32,8,16\n\
             --- asm\nmov %r0, 1\n\nexit\n--- input\n00 01 # comment\n02\n--- vm-region\nff\n\
             --- run-region-mut\n--- run-region\n01\n--- expect\n{}\n\n=== c\n--- asm\n--- expect\n\
             trap pc=0 invalid-instruction reason=fell-off-end\n",
            expect.join("\n")
        );
        let cases = parse(&text).unwrap();
        assert_eq!(cases.len(), 2);
        let a = &cases[0];
        assert_eq!(a.name, "t/a/b");
        assert_eq!(a.line, 3);
        assert_eq!(a.asm, "mov %r0, 1\nexit\n");
        assert_eq!(a.asm_lines, vec![8, 10]);
        assert_eq!(a.input, Some(vec![0, 1, 2]));
        assert_eq!(a.config.budget, Some(5));
        assert_eq!(a.config.max_call_depth, Some(2));
        assert_eq!(
            a.config.metadata,
            Some(Meta {
                len: 32,
                data_offset: 8,
                data_end_offset: 16
            })
        );
        assert_eq!(a.config.read_only, vec![vec![0xff]]);
        assert_eq!(
            a.run_regions,
            vec![RunRegion::Writable(vec![]), RunRegion::ReadOnly(vec![1])]
        );
        assert_eq!(
            a.memory_after,
            vec![(Mem::Input, memory), (Mem::RunRegion(1), vec![])]
        );
        assert_eq!(cases[1].asm, "");
        assert_eq!(cases[1].program(), ebpf_isa::Program::default());
    }

    #[test]
    fn errors_name_the_line() {
        let bad = [
            (
                "=== a\n--- asm\nexit\n",
                "t.txt:1: case `a` has no expect section",
            ),
            (
                "=== a\n--- expect\nexit r0=0 instructions=1\n",
                "no asm section",
            ),
            (
                "stray\n=== a\n",
                "t.txt:1: unexpected line before the first case",
            ),
            (
                "=== a\nconfig: depth=3\n",
                "t.txt:2: unknown config key `depth`",
            ),
            ("=== a\n--- input\n0g\n", "t.txt:3: `0g` is not a hex byte"),
            ("=== a\n--- stack\n", "t.txt:2: unknown section `stack`"),
            (
                "=== a\n--- input\n--- input\n",
                "t.txt:3: a second `input` section",
            ),
            (
                "=== a\n--- asm\n--- expect\nexit r0=0\n",
                "t.txt:4: `r0=0`: expected the fields",
            ),
            (
                "=== a\n--- asm\n--- expect\nexit r0=0 instructions=1\ntrap pc=0 budget-exhausted budget=0\n",
                "t.txt:5: more than one",
            ),
            (
                "=== a\n--- asm\n--- expect\ntrap pc=0 out-of-bounds addr=0 len=1\n",
                "t.txt:4: `addr=0 len=1`: expected the fields",
            ),
            (
                "=== a\n--- asm\n--- expect\ntrap pc=0 invalid-instruction reason=odd\n",
                "unknown reason `odd`",
            ),
            (
                "=== a\n--- asm\n--- expect\n   00\n",
                "t.txt:4: `00` continues no memory line",
            ),
            ("=== a\n--- asm\n--- expect\n", "no `exit` or `trap` line"),
        ];
        for (text, want) in bad {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
