//! `ebpf-verifier`: rejects bad programs before they run, with the pc and a reason.
//!
//! What it is for: finding every problem in a program — not only the first — and saying each
//! one in words a person can act on (`pc 12: jump to pc 40 lands inside the second half of
//! lddw at pc 39`). It checks structure (decoding, jump and call targets, falling off the end,
//! reachability, recursion, call depth, helper ids), runs a dataflow analysis over the
//! control-flow graph (uninitialised registers, constant-offset stack accesses out of the
//! frame or misaligned, division by a constant zero; reads of stack bytes never written are a
//! warning, as the kernel allows them to privileged loaders), and
//! classifies termination (loop-free with a bound on executed instructions, or looping).
//! Embedders add their own checks as [`Policy`]s.
//!
//! It loads what the Linux kernel loads: like the kernel's verifier, it follows constants
//! through conditional jumps and checks only code that can run. Code behind a jump that
//! always goes the other way is reported as a warning ([`FindingKind::NeverRuns`]); what is
//! wrong inside it (an uninitialised read, a misaligned access, an unknown helper, even a slot
//! that does not decode) is a warning too, or not checked, never an error. Every engine traps
//! if such code runs after all: a slot that did not decode is compiled as a trap
//! ([`VerifiedProgram::undecodable`]).
//!
//! What it is not for: memory safety. Every engine is safe on unverified input; the verifier
//! is a quality and policy layer. What is proven about the program travels in
//! [`VerifiedProgram::facts`] (`ebpf_cfg::facts`, the one analysis every engine shares, run
//! from the [`VerifierConfig::entry`] the embedder guarantees), so that an engine may skip a
//! check a fact covers.
//!
//! ```
//! use ebpf_verifier::{Verifier, VerifierConfig, Termination};
//!
//! let verifier = Verifier::new(VerifierConfig::default());
//! let ok = verifier.verify(ebpf_isa::assemble("mov %r0, 1\nexit").unwrap()).unwrap();
//! assert_eq!(ok.termination(), Termination::Bounded { max_instructions: 2 });
//!
//! let bad = verifier.verify(ebpf_isa::assemble("or %r0, %r10\nexit").unwrap()).unwrap_err();
//! assert_eq!(bad.errors().next().unwrap().to_string(), "pc 0: r0 is read before it is written");
//! ```

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod dataflow;
mod finding;
mod policy;
mod structure;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use ebpf_cfg::Cfg;
use ebpf_cfg::facts::{Entry, Facts, MapRegion};
use ebpf_isa::Program;

pub use finding::{Finding, FindingKind, Severity};
pub use policy::{Policy, PolicyView};

/// What the verifier checks against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierConfig {
    /// Longest accepted program, in slots (default 1,000,000).
    pub max_slots: usize,
    /// How unreachable instructions are reported (default: a warning).
    pub unreachable: Severity,
    /// How recursion (a cycle of local calls) is reported (default: an error, as the kernel
    /// does; every engine bounds it at run time with the call-depth limit, so a warning is
    /// safe for programs that recurse on purpose).
    pub recursion: Severity,
    /// The helper ids the embedder registered; `None` accepts any id.
    pub helpers: Option<Vec<u32>>,
    /// Deepest allowed local-call nesting (entry = depth 0; default 8).
    pub max_call_depth: usize,
    /// What holds when the program starts (arguments, regions), which the program's facts
    /// may rely on; default: nothing beyond the stack.
    pub entry: Entry,
    /// The map-lookup helper and the maps whose values it returns, so that constant-offset
    /// accesses through a lookup's result are checked against the value size and a result
    /// not checked against NULL is not dereferenced (as the kernel's verifier does);
    /// default: none (helper results are unknown values).
    pub map_lookup: Option<MapLookup>,
}

/// What the verifier knows of an embedder's maps: which helper looks a value up, and each
/// map's value size, by the handle the program passes as the helper's first argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapLookup {
    /// The helper id of `map_lookup_elem` (`r0 = lookup(r1 = map, r2 = key)`, a pointer to
    /// the value or NULL).
    pub helper: u32,
    /// The maps a lookup can return values of.
    pub maps: Vec<MapValues>,
    /// Maps of maps, by handle and name: a lookup in one gives a map (the kernel's
    /// `CONST_PTR_TO_MAP`), which the program may pass to map helpers but never dereference;
    /// and programs may only look them up.
    pub outer_maps: Vec<(u64, String)>,
    /// The helpers whose first argument is a map, other than the lookup: none of them may be
    /// called on a map of maps (the kernel's "cannot pass map_type 12 into func").
    pub map_helpers: Vec<u32>,
}

/// One map, as [`MapLookup`] describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapValues {
    /// The constant the program holds for the map (the value its `lddw` loads, which it
    /// passes in `r1`).
    pub handle: u64,
    /// The map's name, for messages.
    pub name: String,
    /// Bytes of one value: accesses through a lookup's result must stay in `0..value_size`.
    pub value_size: u32,
    /// Whether a lookup may return NULL, so that the program must check the result before
    /// dereferencing it. `false` for maps whose lookups the kernel proves non-NULL itself
    /// (array maps, with a constant key in range, since Linux 6.14): the verifier then checks
    /// only offsets.
    pub may_be_null: bool,
    /// Where the embedder maps the map's values, when every lookup returns NULL or the
    /// address of a whole value in that region (of exactly that length): what the facts
    /// need to prove accesses through a lookup's result (the embedder adds it to the entry
    /// with `Entry::with_lookup`; the verifier itself does not use it). `None`: unknown.
    pub region: Option<MapRegion>,
}

impl Default for VerifierConfig {
    fn default() -> VerifierConfig {
        VerifierConfig {
            max_slots: 1_000_000,
            unreachable: Severity::Warning,
            recursion: Severity::Error,
            helpers: None,
            max_call_depth: 8,
            entry: Entry::unknown(),
            map_lookup: None,
        }
    }
}

/// How a program terminates, as far as its structure tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// No loops and no recursion: every run executes at most this many instructions.
    Bounded {
        /// The longest path, counting each call once plus its callee's longest path.
        max_instructions: u64,
    },
    /// The program has loops: only an instruction budget bounds a run.
    Looping,
}

/// A program that passed verification, with what was proven and the warnings found.
#[derive(Clone, Debug)]
pub struct VerifiedProgram {
    program: Program,
    termination: Termination,
    facts: Facts,
    warnings: Vec<Finding>,
    undecodable: Vec<usize>,
}

impl VerifiedProgram {
    /// The program. Where the bytes given to [`Verifier::verify_bytes`] did not decode — only
    /// in code that never runs — it holds a stand-in that every engine compiles as a trap (a
    /// call by BTF id; see [`VerifiedProgram::undecodable`]).
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The slots (pcs) whose bytes did not decode and hold a stand-in in
    /// [`VerifiedProgram::program`], in order: all in code that never runs. An engine that
    /// somehow reaches one traps with `InvalidInstruction` there; the facade reports that trap
    /// as an undecodable instruction.
    pub fn undecodable(&self) -> &[usize] {
        &self.undecodable
    }

    /// Consumes the verified program, returning the program.
    pub fn into_program(self) -> Program {
        self.program
    }

    /// How it terminates.
    pub fn termination(&self) -> Termination {
        self.termination
    }

    /// What holds on every path, from the configured entry: accesses in bounds, divisors,
    /// loops (see `ebpf_cfg::facts`).
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// The warnings (findings that did not reject it).
    pub fn warnings(&self) -> &[Finding] {
        &self.warnings
    }
}

/// A program that failed verification: every finding, errors and warnings, sorted by pc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    findings: Vec<Finding>,
}

impl Rejected {
    /// Every finding, sorted by pc.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut errors = self.errors();
        match errors.next() {
            Some(first) => {
                write!(f, "{first}")?;
                let more = errors.count();
                if more > 0 {
                    write!(
                        f,
                        " (and {more} more error{})",
                        if more == 1 { "" } else { "s" }
                    )?;
                }
                Ok(())
            }
            None => write!(f, "rejected"),
        }
    }
}

impl core::error::Error for Rejected {}

/// The verifier: a configuration plus the embedder's policies.
pub struct Verifier {
    config: VerifierConfig,
    policies: Vec<Box<dyn Policy>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .field(
                "policies",
                &self.policies.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Verifier {
    /// A verifier with the built-in checks only.
    pub fn new(config: VerifierConfig) -> Verifier {
        Verifier {
            config,
            policies: Vec::new(),
        }
    }

    /// Adds a policy, run after the built-in checks.
    pub fn with_policy(mut self, policy: impl Policy + 'static) -> Verifier {
        self.policies.push(Box::new(policy));
        self
    }

    /// The configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Verifies bytecode: every undecodable slot is a finding (decoding resumes at the next
    /// slot) — an error where it can run, a warning where it never runs — and the program is
    /// verified as by [`Verifier::verify`]. If any slot that can run does not decode, the
    /// findings are the decoding ones only.
    pub fn verify_bytes(&self, bytes: &[u8]) -> Result<VerifiedProgram, Rejected> {
        match structure::decode_lenient(bytes, &self.config) {
            Ok(decoded) => self.verify_decoded(decoded.program, &decoded.undecodable),
            Err(findings) => Err(Rejected { findings }),
        }
    }

    /// Verifies a decoded program.
    pub fn verify(&self, program: Program) -> Result<VerifiedProgram, Rejected> {
        self.verify_decoded(program, &[])
    }

    fn verify_decoded(
        &self,
        program: Program,
        undecodable: &[structure::Undecodable],
    ) -> Result<VerifiedProgram, Rejected> {
        let mut findings = Vec::new();
        if program.is_empty() {
            findings.push(Finding::error(0, FindingKind::Empty));
            return Err(Rejected { findings });
        }
        if program.slot_count() > self.config.max_slots {
            let kind = FindingKind::TooLong {
                slots: program.slot_count(),
                max: self.config.max_slots,
            };
            findings.push(Finding::error(0, kind));
            return Err(Rejected { findings });
        }
        let cfg = Cfg::build(&program);
        let mut flow_findings = Vec::new();
        let analysis = dataflow::check(
            &program,
            &cfg,
            self.config.helpers.as_deref(),
            self.config.map_lookup.as_ref(),
            &mut flow_findings,
        );
        let live = &analysis.live;
        let mut decode_findings: Vec<Finding> = undecodable
            .iter()
            .map(|u| Finding {
                pc: u.pc,
                // Each slot of a malformed `lddw` has its own stand-in, so a jump can reach
                // its second slot alone: the finding is an error if any of its slots runs.
                severity: if (u.pc..u.pc + u.slots).any(|pc| live.pc(&cfg, pc)) {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                kind: FindingKind::Decode(u.kind.clone()),
            })
            .collect();
        if decode_findings
            .iter()
            .any(|f| f.severity == Severity::Error)
        {
            // Slots that run do not decode: what else the analyses say about the stand-ins
            // would only confuse.
            decode_findings.sort_by_key(|f| f.pc);
            return Err(Rejected {
                findings: decode_findings,
            });
        }
        let stand_ins: Vec<usize> = undecodable
            .iter()
            .flat_map(|u| u.pc..u.pc + u.slots)
            .collect();
        structure::check(
            &program,
            &cfg,
            &self.config,
            live,
            &stand_ins,
            &mut findings,
        );
        findings.append(&mut decode_findings);
        findings.append(&mut flow_findings);
        for policy in &self.policies {
            let mut out = Vec::new();
            policy.check(&PolicyView::new(&program, &cfg), &mut out);
            for (pc, severity, message) in out {
                let kind = FindingKind::Policy {
                    name: policy.name().into(),
                    message,
                };
                findings.push(Finding { pc, severity, kind });
            }
        }
        findings.sort_by_key(|f| f.pc);
        if findings.iter().any(|f| f.severity == Severity::Error) {
            return Err(Rejected { findings });
        }
        let termination = match cfg.longest_path() {
            Some(p) => Termination::Bounded {
                max_instructions: p.instructions,
            },
            None => Termination::Looping,
        };
        let facts = Facts::analyse(&program, &self.config.entry);
        Ok(VerifiedProgram {
            program,
            termination,
            facts,
            warnings: findings,
            undecodable: stand_ins,
        })
    }
}
