//! The verifier on the hand-written cases of `tests/verifier/*.txt` (at the workspace root):
//! each case is a program (conformance assembly or raw hex bytes), an optional configuration
//! and the exact findings expected, written by hand. See `tests/verifier/README.md` for the
//! format.
//!
//! Every mismatching case is reported at once, with a line diff. `EBPF_BLESS=1` rewrites the
//! `--- expect` sections in place with what the verifier says — for a new case whose
//! expectation was already worked out by hand, never to make a failure go away.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ebpf_isa::{CallKind, Insn};
use ebpf_verifier::{
    Policy, PolicyView, Rejected, Severity, Termination, VerifiedProgram, Verifier, VerifierConfig,
};

/// The directory of the case files.
fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/verifier")
}

/// The program of a case.
enum Input {
    /// Assembly lines with their 1-based line numbers in the case file.
    Asm(Vec<(usize, String)>),
    /// Raw bytes.
    Hex(Vec<u8>),
}

/// One case of a case file.
struct Case {
    file: PathBuf,
    name: String,
    /// 1-based line of the `===` header.
    line: usize,
    config: VerifierConfig,
    policies: Vec<String>,
    input: Input,
    expect: Vec<String>,
    /// 0-based line range of the expectation lines in the file (for blessing).
    expect_lines: std::ops::Range<usize>,
}

fn parse_config(
    text: &str,
    config: &mut VerifierConfig,
    policies: &mut Vec<String>,
) -> Result<(), String> {
    for item in text.split_whitespace() {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("config item `{item}` is not key=value"))?;
        let number = |v: &str| v.parse::<usize>().map_err(|e| format!("`{item}`: {e}"));
        match key {
            "unreachable" => {
                config.unreachable = match value {
                    "error" => Severity::Error,
                    "warning" => Severity::Warning,
                    _ => return Err(format!("`{item}`: expected error or warning")),
                }
            }
            "helpers" => {
                config.helpers = match value {
                    "any" => None,
                    "" => Some(Vec::new()),
                    list => Some(
                        list.split(',')
                            .map(|v| v.parse::<u32>().map_err(|e| format!("`{item}`: {e}")))
                            .collect::<Result<_, _>>()?,
                    ),
                }
            }
            "max_depth" => config.max_call_depth = number(value)?,
            "max_slots" => config.max_slots = number(value)?,
            "policy" => {
                make_policy(value)?;
                policies.push(value.to_string());
            }
            _ => return Err(format!("unknown config key `{key}`")),
        }
    }
    Ok(())
}

fn parse_hex(lines: &[(usize, String)]) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for (line, text) in lines {
        let text = text.split('#').next().unwrap_or("");
        for token in text.split_whitespace() {
            let b = u8::from_str_radix(token, 16)
                .map_err(|_| format!("line {line}: `{token}` is not a hex byte"))?;
            bytes.push(b);
        }
    }
    Ok(bytes)
}

fn parse_file(path: &Path) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut cases = Vec::new();
    let mut i = 0;
    let err = |line: usize, msg: String| format!("{}:{}: {msg}", path.display(), line + 1);
    // Skip the file's preamble (comments) up to the first case.
    while i < lines.len() && !lines[i].starts_with("===") {
        i += 1;
    }
    while i < lines.len() {
        let header = i;
        let name = lines[i].trim_start_matches('=').trim().to_string();
        if name.is_empty() {
            return Err(err(i, "case without a name".into()));
        }
        i += 1;
        let mut config = VerifierConfig::default();
        let mut policies = Vec::new();
        let mut asm = None;
        let mut hex = None;
        let mut expect = None;
        let mut expect_lines = 0..0;
        while i < lines.len() && !lines[i].starts_with("===") {
            let line = lines[i];
            let trimmed = line.trim();
            if let Some(section) = trimmed.strip_prefix("---") {
                let section = section.trim();
                i += 1;
                let start = i;
                while i < lines.len()
                    && !lines[i].trim_start().starts_with("---")
                    && !lines[i].starts_with("===")
                {
                    i += 1;
                }
                let body: Vec<(usize, String)> =
                    (start..i).map(|j| (j + 1, lines[j].to_string())).collect();
                match section {
                    "asm" => asm = Some(body),
                    "hex" => hex = Some(body),
                    "expect" => {
                        // The expectation ends at its last non-blank line.
                        let mut end = i;
                        while end > start && lines[end - 1].trim().is_empty() {
                            end -= 1;
                        }
                        expect_lines = start..end;
                        expect = Some(
                            body.iter()
                                .map(|(_, l)| l.trim().to_string())
                                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                                .collect::<Vec<_>>(),
                        );
                    }
                    _ => return Err(err(start - 1, format!("unknown section `{section}`"))),
                }
                continue;
            }
            if let Some(cfg) = trimmed.strip_prefix("config:") {
                parse_config(cfg, &mut config, &mut policies).map_err(|e| err(i, e))?;
            } else if !trimmed.is_empty() && !trimmed.starts_with('#') {
                return Err(err(i, format!("unexpected line `{trimmed}`")));
            }
            i += 1;
        }
        let input = match (asm, hex) {
            (Some(a), None) => Input::Asm(a),
            (None, Some(h)) => Input::Hex(parse_hex(&h).map_err(|e| err(header, e))?),
            _ => {
                return Err(err(
                    header,
                    format!("case `{name}` needs one asm or hex section"),
                ));
            }
        };
        let expect =
            expect.ok_or_else(|| err(header, format!("case `{name}` has no expect section")))?;
        cases.push(Case {
            file: path.to_path_buf(),
            name,
            line: header + 1,
            config,
            policies,
            input,
            expect,
            expect_lines,
        });
    }
    Ok(cases)
}

fn all_cases() -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/verifier exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for f in &files {
        match parse_file(f) {
            Ok(c) => cases.extend(c),
            Err(e) => errors.push(e),
        }
    }
    assert!(errors.is_empty(), "bad case files:\n{}", errors.join("\n"));
    cases
}

// ---------------------------------------------------------------------------------------------
// The embedder policies that case files can name (`config: policy=NAME[:ARG]`).

/// `no-atomics`: every atomic instruction is an error.
struct NoAtomics;

impl Policy for NoAtomics {
    fn name(&self) -> &str {
        "no-atomics"
    }

    fn check(&self, program: &PolicyView<'_>, out: &mut Vec<(usize, Severity, String)>) {
        for (pc, insn) in program.iter() {
            if matches!(insn, Insn::Atomic { .. }) {
                out.push((
                    pc,
                    Severity::Error,
                    "atomic operations are not allowed".into(),
                ));
            }
        }
    }
}

/// `max-helper-calls:N`: every helper call (`call` of a helper id, or `callx`) after the
/// first N, in pc order, is an error.
struct MaxHelperCalls(usize);

impl Policy for MaxHelperCalls {
    fn name(&self) -> &str {
        "max-helper-calls"
    }

    fn check(&self, program: &PolicyView<'_>, out: &mut Vec<(usize, Severity, String)>) {
        let mut count = 0;
        for (pc, insn) in program.iter() {
            let helper = matches!(
                insn,
                Insn::Call {
                    kind: CallKind::Helper,
                    ..
                } | Insn::CallX { .. }
            );
            if helper {
                count += 1;
                if count > self.0 {
                    let message = format!("helper call {count} exceeds the limit of {}", self.0);
                    out.push((pc, Severity::Error, message));
                }
            }
        }
    }
}

/// `max-loops:N`: a warning at the header of every natural loop after the first N.
struct MaxLoops(usize);

impl Policy for MaxLoops {
    fn name(&self) -> &str {
        "max-loops"
    }

    fn check(&self, program: &PolicyView<'_>, out: &mut Vec<(usize, Severity, String)>) {
        for (i, pc) in program.loop_headers().into_iter().enumerate().skip(self.0) {
            let message = format!("loop {} exceeds the limit of {}", i + 1, self.0);
            out.push((pc, Severity::Warning, message));
        }
    }
}

fn make_policy(spec: &str) -> Result<Box<dyn Policy>, String> {
    let (name, arg) = match spec.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (spec, None),
    };
    let n = || {
        arg.ok_or_else(|| format!("policy `{name}` needs :N"))?
            .parse::<usize>()
            .map_err(|e| format!("policy `{spec}`: {e}"))
    };
    Ok(match name {
        "no-atomics" => Box::new(NoAtomics),
        "max-helper-calls" => Box::new(MaxHelperCalls(n()?)),
        "max-loops" => Box::new(MaxLoops(n()?)),
        _ => return Err(format!("unknown policy `{name}`")),
    })
}

/// Adapts a boxed policy to `with_policy`, which takes `impl Policy`.
struct Boxed(Box<dyn Policy>);

impl Policy for Boxed {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn check(&self, program: &PolicyView<'_>, out: &mut Vec<(usize, Severity, String)>) {
        self.0.check(program, out);
    }
}

// ---------------------------------------------------------------------------------------------
// Running a case.

/// The result as expectation lines. `termination` and `proof` say whether to include those
/// lines for an accepted program.
fn render(
    result: &Result<VerifiedProgram, Rejected>,
    termination: bool,
    proof: bool,
) -> Vec<String> {
    match result {
        Err(rejected) => rejected
            .findings()
            .iter()
            .map(|f| format!("{} {f}", f.severity))
            .collect(),
        Ok(ok) => {
            let mut out: Vec<String> = ok
                .warnings()
                .iter()
                .map(|f| format!("{} {f}", f.severity))
                .collect();
            out.push("ok".into());
            if termination {
                out.push(match ok.termination() {
                    Termination::Bounded { max_instructions } => {
                        format!("bounded {max_instructions}")
                    }
                    Termination::Looping => "looping".into(),
                });
            }
            if proof {
                // The pcs of the accesses the facts prove in bounds.
                let pcs: Vec<usize> = ok.program().iter().map(|(pc, _)| pc).collect();
                let mut line = String::from("proof");
                for i in ok.facts().accesses_in_bounds() {
                    write!(line, " {}", pcs[i]).unwrap();
                }
                out.push(line);
            }
            out
        }
    }
}

/// What the verifier says about a case, or why the case cannot run.
fn run(case: &Case, bless: bool) -> Result<Vec<String>, String> {
    let mut verifier = Verifier::new(case.config.clone());
    for p in &case.policies {
        verifier = verifier.with_policy(Boxed(make_policy(p)?));
    }
    let termination = bless
        || case
            .expect
            .iter()
            .any(|l| l.starts_with("bounded ") || l == "looping");
    let proof = case.expect.iter().any(|l| l.starts_with("proof"));
    let (bytes, program) = match &case.input {
        Input::Asm(lines) => {
            let refs: Vec<(usize, &str)> = lines.iter().map(|(n, l)| (*n, l.as_str())).collect();
            let program =
                ebpf_isa::assemble_lines(&refs).map_err(|e| format!("does not assemble: {e}"))?;
            (program.to_bytes(), Some(program))
        }
        Input::Hex(bytes) => (bytes.clone(), ebpf_isa::decode(bytes).ok()),
    };
    let from_bytes = render(&verifier.verify_bytes(&bytes), termination, proof);
    // Both entry points must agree whenever the bytes decode.
    if let Some(program) = program {
        let from_program = render(&verifier.verify(program), termination, proof);
        if from_program != from_bytes {
            return Err(format!(
                "verify and verify_bytes disagree:\n  verify:       {from_program:?}\n  \
                 verify_bytes: {from_bytes:?}"
            ));
        }
    }
    Ok(from_bytes)
}

/// A line diff (longest common subsequence): `-` expected only, `+` actual only.
fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            writeln!(out, "      {}", expected[i]).unwrap();
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            writeln!(out, "    + {}", actual[j]).unwrap();
            j += 1;
        } else {
            writeln!(out, "    - {}", expected[i]).unwrap();
            i += 1;
        }
    }
    out
}

fn bless(cases: &[(&Case, Vec<String>)]) {
    let mut files: Vec<&PathBuf> = cases.iter().map(|(c, _)| &c.file).collect();
    files.dedup();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut edits: Vec<&(&Case, Vec<String>)> =
            cases.iter().filter(|(c, _)| &c.file == file).collect();
        // From the bottom up, so that earlier ranges stay valid.
        edits.sort_by_key(|(c, _)| std::cmp::Reverse(c.expect_lines.start));
        for (case, actual) in edits {
            lines.splice(case.expect_lines.clone(), actual.iter().cloned());
        }
        std::fs::write(file, lines.join("\n") + "\n").unwrap();
    }
}

#[test]
fn every_case_gives_exactly_the_expected_findings() {
    let cases = all_cases();
    let blessing = std::env::var_os("EBPF_BLESS").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    let mut to_bless = Vec::new();
    for case in &cases {
        let place = format!(
            "{}:{}: {}",
            case.file.file_name().unwrap().to_string_lossy(),
            case.line,
            case.name
        );
        match run(case, blessing) {
            Ok(actual) if actual == case.expect => {}
            Ok(actual) => {
                failures.push(format!("{place}\n{}", diff(&case.expect, &actual)));
                to_bless.push((case, actual));
            }
            Err(e) => failures.push(format!("{place}\n    {e}\n")),
        }
    }
    if blessing {
        bless(&to_bless);
        eprintln!("EBPF_BLESS=1: rewrote {} expectations", to_bless.len());
        return;
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases do not match (- expected, + actual):\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_cases_cover_enough_programs() {
    let cases = all_cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let dups: Vec<_> = names
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    assert!(dups.is_empty(), "duplicate case names: {dups:?}");
    let invalid = cases
        .iter()
        .filter(|c| c.expect.iter().any(|l| l.starts_with("error ")))
        .count();
    let valid = cases
        .iter()
        .filter(|c| c.expect.iter().any(|l| l == "ok"))
        .count();
    let malformed: Vec<&str> = cases
        .iter()
        .filter(|c| {
            let errors = c.expect.iter().any(|l| l.starts_with("error "));
            let ok = c.expect.iter().any(|l| l == "ok");
            errors == ok
        })
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        malformed.is_empty(),
        "cases need either error lines or `ok`: {malformed:?}"
    );
    assert!(invalid >= 70, "only {invalid} invalid programs");
    assert!(valid >= 30, "only {valid} valid programs");
}
