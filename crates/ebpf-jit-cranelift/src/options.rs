//! [`JitOptions`] and the Cranelift target ISA they describe.
//!
//! ISA features are explicit on request: [`IsaFlags::Baseline`] (or `EBPF_JIT_ISA_FLAGS=baseline`)
//! uses only what every CPU of the architecture has, so that results and code never depend on
//! what an emulated CPU reports; [`IsaFlags::Host`] asks the running CPU (in-process only).

use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use cranelift_codegen::isa::{self, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable, SetError};
use target_lexicon::{Architecture, PointerWidth, Triple};

use crate::JitError;

/// The environment variable that [`JitOptions::default`] reads the ISA flags from:
/// `host`, `baseline`, or `name=value,name=value,…` (baseline plus these settings; a bare
/// `name` means `name=true`).
pub const ISA_FLAGS_ENV: &str = "EBPF_JIT_ISA_FLAGS";

/// How hard Cranelift optimises the IR before generating code.
///
/// Register allocation is Cranelift's backtracking allocator at every level; what `Speed`
/// adds is Cranelift's e-graph pass (constant folding, value numbering, loop-invariant code
/// motion, strength reduction). The translator already does what matters most for eBPF code
/// itself (region bounds hoisted to the function's entry, division by constants as a
/// multiplication, no redundant checks), so `None` runs most programs about as fast (on the
/// C loop programs `Speed` runs 5% more host instructions in geomean, fewer on three of eight)
/// and compiles in about 70% of the time (see `docs/jit-cranelift.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OptLevel {
    /// No IR optimisation (the default): the fastest compilation.
    #[default]
    None,
    /// Optimise for speed: slower compilation, somewhat faster code for some programs.
    Speed,
    /// Optimise for speed and size.
    SpeedAndSize,
}

/// Which optional instruction-set features the generated code may use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum IsaFlags {
    /// Whatever the running CPU supports (in-process); for objects, the baseline.
    #[default]
    Host,
    /// Only the architecture's baseline (x86-64 v1, ARMv8.0, RV64GC, z14): the same code on
    /// every CPU, emulated or not.
    Baseline,
    /// The baseline plus these Cranelift ISA (or shared) settings, e.g. `("has_lse", "true")`.
    Explicit(Vec<(String, String)>),
}

impl IsaFlags {
    /// Parses `host`, `baseline` or `name=value,…` (see [`ISA_FLAGS_ENV`]).
    pub fn parse(text: &str) -> IsaFlags {
        match text.trim() {
            "" | "host" => IsaFlags::Host,
            "baseline" => IsaFlags::Baseline,
            list => IsaFlags::Explicit(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| match s.split_once('=') {
                        Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
                        None => (s.to_string(), "true".to_string()),
                    })
                    .collect(),
            ),
        }
    }

    /// The flags named by [`ISA_FLAGS_ENV`], if it is set.
    pub fn from_env() -> Option<IsaFlags> {
        std::env::var(ISA_FLAGS_ENV)
            .ok()
            .map(|s| IsaFlags::parse(&s))
    }
}

/// How to compile.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitOptions {
    /// Cranelift's optimisation level (default: none; see [`OptLevel`]).
    pub opt_level: OptLevel,
    /// ISA features (default: [`IsaFlags::from_env`], else [`IsaFlags::Host`]).
    pub isa_flags: IsaFlags,
    /// Name of the generated function (the exported symbol of [`crate::compile_object`]'s
    /// object); default `ebpf_main`.
    pub symbol: String,
    /// Run Cranelift's IR verifier (default: in debug builds).
    pub verify: bool,
    /// About how many eBPF instructions go into one Cranelift function: a larger program is
    /// cut into several (its *units*, see `docs/jit-cranelift.md`), so that compile time and
    /// memory grow linearly with its size. Default [`JitOptions::FUNCTION_SIZE`].
    pub function_size: usize,
    /// Spectre v1 masking: the host address of every access whose bounds check runs at run
    /// time (a region guess, the full check, a packet load) is a `select_spectre_guard` of the
    /// check — 0 when it fails — so that a mispredicted check cannot make the CPU load or
    /// store out of bounds speculatively. Frame slots proven inside the current frame have no
    /// check and no mask. Default: on — since the facts remove the checks of proven accesses,
    /// it costs about 2% of run time on the benchmark programs (geomean; up to ~10% on a loop
    /// of checked accesses), within the 3% a default may cost (`docs/jit-cranelift.md`).
    pub spectre_masking: bool,
    /// With `spectre_masking`, also clamp, without a branch, every access the facts prove in
    /// bounds through a branch of the program's own (`Access::InBounds { speculation_safe:
    /// false }`: a guard, a loop bound; and every access of a version's copy, selected by its
    /// dispatcher): its host address is a `select_spectre_guard` of a compare against the
    /// region's length in the region table, so a mispredicted guard cannot make the CPU use
    /// the address the guard excluded. Proofs that need no branch keep no check. Default: off
    /// (as the x86 JIT's `spectre_clamp_proven`); no effect on results.
    pub spectre_clamp_proven: bool,
    /// What holds when the program starts (`ebpf_cfg::facts::Entry`): the in-process JIT
    /// compiles with the facts proven from it and drops the checks they make impossible
    /// (accesses proven in bounds, divisor tests). A run the entry does not admit
    /// (`Entry::admits`: other arguments or regions) runs a second compilation made from
    /// `Entry::unknown()`, built on first use. `None`: the stack's facts alone, which every
    /// run admits. Objects ignore it (their caller's memory is not described by an entry) and
    /// use no facts. Default: `None`.
    pub entry: Option<ebpf_cfg::facts::Entry>,
    /// Keep every check a fact makes impossible, and end the run with a panic naming the pc if
    /// one ever fires — a bug in the facts, made loud. For tests. Default: on in builds with
    /// debug assertions (as the x86 JIT's).
    pub checked_facts: bool,
}

impl Default for JitOptions {
    fn default() -> JitOptions {
        JitOptions {
            opt_level: OptLevel::None,
            isa_flags: IsaFlags::from_env().unwrap_or_default(),
            symbol: "ebpf_main".to_string(),
            verify: cfg!(debug_assertions),
            function_size: JitOptions::FUNCTION_SIZE,
            spectre_masking: true,
            spectre_clamp_proven: false,
            entry: None,
            checked_facts: cfg!(debug_assertions),
        }
    }
}

impl JitOptions {
    /// The default [`JitOptions::function_size`].
    pub const FUNCTION_SIZE: usize = 2048;

    /// The default options with this [`JitOptions::function_size`].
    pub fn with_function_size(mut self, instructions: usize) -> JitOptions {
        self.function_size = instructions;
        self
    }

    /// The default options with these ISA flags.
    pub fn with_isa_flags(mut self, flags: IsaFlags) -> JitOptions {
        self.isa_flags = flags;
        self
    }

    /// The default options with this optimisation level.
    pub fn with_opt_level(mut self, level: OptLevel) -> JitOptions {
        self.opt_level = level;
        self
    }

    /// These options with Spectre masking on or off (see [`JitOptions::spectre_masking`]).
    pub fn with_spectre_masking(mut self, masking: bool) -> JitOptions {
        self.spectre_masking = masking;
        self
    }

    /// These options with the clamp of accesses proven through a branch on or off (see
    /// [`JitOptions::spectre_clamp_proven`]).
    pub fn with_spectre_clamp_proven(mut self, clamp: bool) -> JitOptions {
        self.spectre_clamp_proven = clamp;
        self
    }

    /// These options with the facts of `entry` (see [`JitOptions::entry`]).
    pub fn with_entry(mut self, entry: Option<ebpf_cfg::facts::Entry>) -> JitOptions {
        self.entry = entry;
        self
    }

    /// These options with checked facts on or off (see [`JitOptions::checked_facts`]).
    pub fn with_checked_facts(mut self, checked: bool) -> JitOptions {
        self.checked_facts = checked;
        self
    }

    /// The default options with this symbol name.
    pub fn with_symbol(mut self, symbol: impl Into<String>) -> JitOptions {
        self.symbol = symbol.into();
        self
    }
}

fn set(
    builder: &mut dyn Configurable,
    name: &str,
    value: &str,
) -> Result<(), (SetError, String, String)> {
    builder
        .set(name, value)
        .map_err(|e| (e, name.to_string(), value.to_string()))
}

fn setting_error((e, name, value): (SetError, String, String)) -> JitError {
    JitError::Setting {
        name,
        value,
        reason: e.to_string(),
    }
}

/// The target ISA for `target` (`None`: the host, for the in-process JIT), built once per
/// distinct target and settings and shared from then on.
pub(crate) fn isa(target: Option<&str>, options: &JitOptions) -> Result<Arc<Target>, JitError> {
    type Key = (Option<String>, OptLevel, IsaFlags, bool);
    static BUILT: Mutex<Vec<(Key, Arc<Target>)>> = Mutex::new(Vec::new());
    let key: Key = (
        target.map(str::to_string),
        options.opt_level,
        options.isa_flags.clone(),
        options.verify,
    );
    // A poisoned lock only means another thread panicked while pushing: the list is intact.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, isa)) = built.iter().find(|(k, _)| *k == key) {
        return Ok(isa.clone());
    }
    let isa = Arc::new(Target {
        isa: build_isa(target, options)?,
        check: OnceLock::new(),
        settings: OnceLock::new(),
    });
    built.push((key, isa.clone()));
    Ok(isa)
}

/// A target ISA, and what in-process code compiled for it shares.
pub(crate) struct Target {
    pub(crate) isa: OwnedTargetIsa,
    /// The in-process check function, once compiled (or why it could not be).
    pub(crate) check: OnceLock<Result<crate::CheckCode, String>>,
    /// Every setting of `isa`, as text (`settings`).
    settings: OnceLock<String>,
}

impl Target {
    /// The triple and every shared and ISA-specific setting as Cranelift resolved them (the
    /// host CPU's features included), one line each: part of every `CodeKey`, written once.
    pub(crate) fn settings(&self) -> &str {
        self.settings.get_or_init(|| {
            use std::fmt::Write as _;
            let isa = &self.isa;
            let mut text = format!("target {}\nshared ", isa.triple());
            text.push_str(&isa.flags().to_string().replace('\n', " "));
            text.push_str("\nisa");
            for value in isa.isa_flags() {
                let _ = write!(text, " {value}");
            }
            text.push('\n');
            text
        })
    }
}

/// The target ISA for `target` (`None`: the host, for the in-process JIT).
pub(crate) fn build_isa(
    target: Option<&str>,
    options: &JitOptions,
) -> Result<OwnedTargetIsa, JitError> {
    let triple = match target {
        None => Triple::host(),
        Some(text) => Triple::from_str(text).map_err(|e| JitError::UnsupportedTarget {
            triple: text.to_string(),
            reason: e.to_string(),
        })?,
    };
    let supported = matches!(
        triple.architecture,
        Architecture::X86_64
            | Architecture::Aarch64(_)
            | Architecture::Riscv64(_)
            | Architecture::S390x
    );
    if !supported || triple.pointer_width() != Ok(PointerWidth::U64) {
        let reason = "only 64-bit x86-64, AArch64, RISC-V 64 and s390x are supported".to_string();
        return Err(match target {
            None => JitError::UnsupportedHost { reason },
            Some(t) => JitError::UnsupportedTarget {
                triple: t.to_string(),
                reason,
            },
        });
    }

    let mut shared = settings::builder();
    let opt = match options.opt_level {
        OptLevel::None => "none",
        OptLevel::Speed => "speed",
        OptLevel::SpeedAndSize => "speed_and_size",
    };
    set(&mut shared, "opt_level", opt).map_err(setting_error)?;
    let verify = if options.verify { "true" } else { "false" };
    set(&mut shared, "enable_verifier", verify).map_err(setting_error)?;
    // Objects are linked into position-independent executables; the JIT maps code itself.
    let pic = if target.is_some() { "true" } else { "false" };
    set(&mut shared, "is_pic", pic).map_err(setting_error)?;
    set(&mut shared, "use_colocated_libcalls", "false").map_err(setting_error)?;

    // Objects are for a device, not for this machine: `Host` means the baseline for them.
    let mut isa_builder = if target.is_none() && options.isa_flags == IsaFlags::Host {
        cranelift_native::builder().map_err(|reason| JitError::UnsupportedHost {
            reason: reason.to_string(),
        })?
    } else {
        isa::lookup(triple.clone()).map_err(|e| JitError::UnsupportedTarget {
            triple: triple.to_string(),
            reason: e.to_string(),
        })?
    };
    if let IsaFlags::Explicit(flags) = &options.isa_flags {
        for (name, value) in flags {
            match set(&mut isa_builder, name, value) {
                Ok(()) => {}
                // Not an ISA setting: maybe a shared one (`opt_level`, …).
                Err((SetError::BadName(_), _, _)) => {
                    if target.is_none() && !IN_PROCESS_SHARED.contains(&name.as_str()) {
                        return Err(JitError::Setting {
                            name: name.clone(),
                            value: value.clone(),
                            reason: format!(
                                "not a setting the in-process JIT can run with (it takes {})",
                                IN_PROCESS_SHARED.join(", ")
                            ),
                        });
                    }
                    set(&mut shared, name, value).map_err(setting_error)?;
                }
                Err(e) => return Err(setting_error(e)),
            }
        }
    }
    let isa = isa_builder
        .finish(settings::Flags::new(shared))
        .map_err(JitError::Codegen)?;
    if target.is_none() && matches!(options.isa_flags, IsaFlags::Explicit(_)) {
        refuse_features_the_host_lacks(&*isa)?;
    }
    Ok(isa)
}

/// The shared settings an in-process compile may take from explicit flags: they change how
/// the code is made, not what it needs in order to run. The others either break the JIT's
/// own assumptions (`is_pic`, `use_colocated_libcalls`, `enable_probestack` and its
/// strategy: cranelift-jit panics on them) or the calling convention of the code it links
/// (`libcall_call_conv`, `enable_pinned_reg`, `tls_model`, `unwind_info`, …).
const IN_PROCESS_SHARED: &[&str] = &[
    "opt_level",
    "enable_verifier",
    "regalloc_algorithm",
    "regalloc_checker",
    "enable_alias_analysis",
    "enable_jump_tables",
    "preserve_frame_pointers",
];

/// Code that uses a CPU feature the host lacks dies on its first such instruction (`SIGILL`),
/// which a safe call must never lead to: explicit flags may turn features off for in-process
/// code, never on beyond what the host has.
fn refuse_features_the_host_lacks(isa: &dyn isa::TargetIsa) -> Result<(), JitError> {
    let host = cranelift_native::builder()
        .map_err(|reason| JitError::UnsupportedHost {
            reason: reason.to_string(),
        })?
        .finish(settings::Flags::new(settings::builder()))
        .map_err(JitError::Codegen)?;
    let host_flags = host.isa_flags();
    for flag in isa.isa_flags() {
        let has = |f: &settings::Value| f.as_bool() == Some(true);
        if has(&flag) && !host_flags.iter().any(|h| h.name == flag.name && has(h)) {
            return Err(JitError::Setting {
                name: flag.name.to_string(),
                value: "true".to_string(),
                reason: "the host CPU lacks it, and in-process code runs on the host".to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isa_flags_parse() {
        assert_eq!(IsaFlags::parse("host"), IsaFlags::Host);
        assert_eq!(IsaFlags::parse(" baseline "), IsaFlags::Baseline);
        assert_eq!(
            IsaFlags::parse("has_lse=false, has_zbb"),
            IsaFlags::Explicit(vec![
                ("has_lse".into(), "false".into()),
                ("has_zbb".into(), "true".into())
            ])
        );
    }

    /// Flags from `JitOptions::isa_flags` or `EBPF_JIT_ISA_FLAGS` reach in-process code: a
    /// shared setting the JIT cannot run with is a `JitError` (cranelift-jit panicked on
    /// `is_pic` and an outline probestack), and so is a CPU feature the host lacks (the code
    /// would die on its first such instruction). Objects keep every setting.
    #[test]
    fn in_process_flags_the_host_cannot_run_are_refused() {
        let program = ebpf_isa::assemble("mov %r0, 1\nlsh %r0, 3\nexit").unwrap();
        let with = |flags: &str| JitOptions::default().with_isa_flags(IsaFlags::parse(flags));
        for flags in [
            "is_pic=true",
            "enable_probestack=true,probestack_size_log2=0,probestack_strategy=outline",
            "use_colocated_libcalls=true",
        ] {
            assert!(
                matches!(
                    crate::compile(&program, &with(flags)),
                    Err(JitError::Setting { .. })
                ),
                "{flags}"
            );
            build_isa(Some("x86_64-unknown-linux-gnu"), &with(flags)).unwrap();
        }
        // Allowed settings still compile and run.
        crate::compile(&program, &with("opt_level=speed,enable_verifier=true")).unwrap();
        // The feature flags are per architecture; x86-64's are checked here, natively (the
        // other architectures' hosts are emulated in CI, with whatever features QEMU offers).
        if !cfg!(target_arch = "x86_64") {
            return;
        }
        crate::compile(&program, &with("has_avx=false")).unwrap();
        // Every feature the host lacks is refused; this host may have them all.
        let host = build_isa(None, &JitOptions::default().with_isa_flags(IsaFlags::Host)).unwrap();
        let baseline = build_isa(None, &with("has_avx=false")).unwrap();
        for flag in baseline
            .isa_flags()
            .iter()
            .filter(|f| f.as_bool().is_some())
        {
            let on_host = host
                .isa_flags()
                .iter()
                .any(|h| h.name == flag.name && h.as_bool() == Some(true));
            let got = build_isa(None, &with(&format!("{}=true", flag.name)));
            assert_eq!(got.is_ok(), on_host, "{}: {:?}", flag.name, got.err());
        }
    }

    #[test]
    fn every_supported_target_builds_and_others_are_refused() {
        let options = JitOptions::default().with_isa_flags(IsaFlags::Baseline);
        for t in [
            "x86_64-unknown-linux-gnu",
            "aarch64-unknown-linux-gnu",
            "riscv64gc-unknown-linux-gnu",
            "s390x-unknown-linux-gnu",
        ] {
            build_isa(Some(t), &options).unwrap();
        }
        for t in [
            "i686-unknown-linux-gnu",
            "armv7-unknown-linux-gnueabihf",
            "nonsense",
        ] {
            assert!(matches!(
                build_isa(Some(t), &options),
                Err(JitError::UnsupportedTarget { .. })
            ));
        }
        let bad = JitOptions::default().with_isa_flags(IsaFlags::Explicit(vec![(
            "no_such_flag".into(),
            "1".into(),
        )]));
        assert!(matches!(
            build_isa(Some("x86_64-unknown-linux-gnu"), &bad),
            Err(JitError::Setting { .. })
        ));
    }
}
