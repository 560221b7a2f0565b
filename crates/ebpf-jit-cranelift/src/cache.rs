//! Code cache support: [`CodeKey`], everything that decides the code [`crate::compile`] or
//! [`crate::compile_object`] generates, as bytes compared whole; and [`ObjectCache`], a
//! directory of ahead-of-time objects reused when their full key matches.
//!
//! The in-process cache itself (programs loaded twice in one process) is the facade's
//! (`ebpf_vm::CodeCache`); it keys on [`CodeKey`] too, so both caches agree on what "the same
//! code" means, and this crate, which knows what its code depends on, is the one place that
//! says it.
//!
//! On disk, an entry is one file, `<dir>/<16 hex digits>.ebpf-obj`, named by a stable hash
//! ([`CodeKey::stable_hash`]) of the key and holding the whole key, the object and a checksum
//! (layout below). A name is only where to look: a file whose key differs (a hash collision, a
//! different compiler build) is a miss, and so is a file that is truncated, corrupt or not a
//! cache file at all — each reported as an [`ObjectCacheError`], never trusted. Files are
//! written to a temporary name in the same directory and renamed into place, so a concurrent
//! reader sees either no file, an older complete one or the new complete one.
//!
//! The checksum detects accidents (a truncated write, a disk error), not an attacker: whoever
//! can write the directory can make the code do anything, so the directory must be as trusted
//! as the compiler binary.

use std::fmt;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ebpf_isa::{Program, quoted};

use crate::fnv::Fnv1a;
use crate::options::{self, JitOptions};
use crate::{JitError, compile_object};

/// The environment variable naming the directory of the object cache
/// ([`ObjectCache::from_env`]; the CLI's `ebpf compile --cache-dir` takes precedence).
pub const OBJECT_CACHE_ENV: &str = "EBPF_OBJECT_CACHE";

/// Everything that decides the code generated for one program: the compiler (crate version
/// and a fingerprint of its sources and locked dependencies, see `build.rs`), the output (the
/// in-process JIT or an object), the target and every setting of its ISA as Cranelift resolved
/// them (the host CPU's features included), every [`JitOptions`] field, and the bytecode.
/// Two keys are the same code only if their bytes are equal; [`CodeKey::stable_hash`] only
/// names things.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CodeKey(Box<[u8]>);

impl CodeKey {
    /// The key of [`crate::compile`]`(program, options)` on this host.
    pub fn host(program: &Program, options: &JitOptions) -> Result<CodeKey, JitError> {
        CodeKey::new(program, None, options)
    }

    /// The key of [`crate::compile_object`]`(program, target, options)`.
    pub fn object(
        program: &Program,
        target: &str,
        options: &JitOptions,
    ) -> Result<CodeKey, JitError> {
        CodeKey::new(program, Some(target), options)
    }

    fn new(
        program: &Program,
        target: Option<&str>,
        options: &JitOptions,
    ) -> Result<CodeKey, JitError> {
        // Destructured so that a new option cannot be forgotten here: it fails to compile.
        let JitOptions {
            opt_level,
            isa_flags,
            symbol,
            verify,
            function_size,
            spectre_masking,
            spectre_clamp_proven,
            entry,
            checked_facts,
        } = options;
        let isa = options::isa(target, options)?;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "ebpf-jit-cranelift code key 1\ncompiler {} {}",
            env!("CARGO_PKG_VERSION"),
            env!("EBPF_CODEGEN_FINGERPRINT")
        );
        let _ = match target {
            None => writeln!(text, "output jit"),
            Some(t) => writeln!(text, "output object {t:?}"),
        };
        text.push_str(isa.settings());
        let _ = writeln!(
            text,
            "options {opt_level:?} {isa_flags:?} {symbol:?} verify={verify} \
             function_size={function_size} spectre_masking={spectre_masking} \
             spectre_clamp_proven={spectre_clamp_proven} checked_facts={checked_facts}"
        );
        // The entry decides the facts, and so which checks the code drops: code compiled
        // under one entry must never be handed out for another. (`Debug` of `Entry` names
        // every argument, region and metadata field.)
        let _ = writeln!(text, "entry {entry:?}");
        let _ = writeln!(text, "program {} slots", program.slot_count());
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&program.to_bytes());
        Ok(CodeKey(bytes.into_boxed_slice()))
    }

    /// The key's bytes (a text header, then the bytecode).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A hash of the key that is the same in every process and build (FNV-1a, 64 bits): what
    /// names a cache file. Never a substitute for comparing keys.
    pub fn stable_hash(&self) -> u64 {
        Fnv1a::of(&self.0)
    }
}

impl fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CodeKey({} bytes, {:016x})",
            self.0.len(),
            self.stable_hash()
        )
    }
}

/// A directory of ahead-of-time objects (see the module documentation for the file layout and
/// what is checked). Opt-in: nothing is cached unless an embedder or the CLI names one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectCache {
    dir: PathBuf,
}

/// What [`ObjectCache::lookup`] found.
#[derive(Debug)]
pub enum Lookup {
    /// A complete entry with exactly this key: the object.
    Hit(Vec<u8>),
    /// No entry for the key.
    Absent,
    /// An entry that cannot be used (corrupt, truncated, another key, unreadable): a miss.
    Unusable(ObjectCacheError),
}

/// An object from [`compile_object_cached`], and how the cache took part.
#[derive(Debug)]
pub struct CachedObject {
    /// The object, byte for byte what [`compile_object`] returns for the same arguments.
    pub object: Vec<u8>,
    /// Whether it came from the cache (else it was compiled).
    pub hit: bool,
    /// What went wrong with the cache on the way (an unusable entry, a failed write), for the
    /// caller to report; none of it changes `object`.
    pub problems: Vec<ObjectCacheError>,
}

/// A cache file that could not be used or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCacheError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub kind: ObjectCacheErrorKind,
}

/// What is wrong with a cache file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectCacheErrorKind {
    /// Reading or writing failed (the message is the operating system's).
    Io(String),
    /// The file does not start as a cache file does.
    NotACacheFile,
    /// The file ends before its own lengths say it does, or goes on after them.
    Truncated,
    /// The checksum over key and object does not match: the file was damaged.
    Corrupt,
    /// A complete entry for another key (a different program, options, target or compiler
    /// build whose name hash collides, or a file copied from elsewhere).
    KeyMismatch,
}

impl fmt::Display for ObjectCacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display().to_string();
        let path = quoted(&path);
        match &self.kind {
            ObjectCacheErrorKind::Io(e) => write!(f, "object cache {path}: {}", quoted(e)),
            ObjectCacheErrorKind::NotACacheFile => {
                write!(f, "object cache {path}: not a cache file; ignored")
            }
            ObjectCacheErrorKind::Truncated => {
                write!(f, "object cache {path}: truncated; ignored")
            }
            ObjectCacheErrorKind::Corrupt => {
                write!(
                    f,
                    "object cache {path}: checksum mismatch (damaged); ignored"
                )
            }
            ObjectCacheErrorKind::KeyMismatch => write!(
                f,
                "object cache {path}: holds code for another program, options or compiler \
                 build; ignored"
            ),
        }
    }
}

impl std::error::Error for ObjectCacheError {}

/// The first bytes of every cache file (the format's version is its last digit).
const MAGIC: &[u8; 16] = b"ebpf-obj-cache1\n";

/// Temporary files written by this process so far (part of their names).
static WRITES: AtomicU64 = AtomicU64::new(0);

impl ObjectCache {
    /// The cache in `dir` (created on the first store if missing).
    pub fn new(dir: impl Into<PathBuf>) -> ObjectCache {
        ObjectCache { dir: dir.into() }
    }

    /// The cache named by [`OBJECT_CACHE_ENV`], if it is set and not empty.
    pub fn from_env() -> Option<ObjectCache> {
        std::env::var_os(OBJECT_CACHE_ENV)
            .filter(|dir| !dir.is_empty())
            .map(ObjectCache::new)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for `key` lives.
    pub fn path_for(&self, key: &CodeKey) -> PathBuf {
        self.dir
            .join(format!("{:016x}.ebpf-obj", key.stable_hash()))
    }

    /// The object stored under exactly `key`, if there is a usable one.
    pub fn lookup(&self, key: &CodeKey) -> Lookup {
        let path = self.path_for(key);
        // Only a regular file is an entry: a FIFO there would block the read for ever, and a
        // link (which `store` never makes) could point anywhere, `/dev/zero` included.
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_file() => {}
            Ok(_) => {
                return Lookup::Unusable(ObjectCacheError {
                    path,
                    kind: ObjectCacheErrorKind::NotACacheFile,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Absent,
            Err(e) => return Lookup::Unusable(io_error(path, &e)),
        }
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Absent,
            Err(e) => return Lookup::Unusable(io_error(path, &e)),
        };
        match decode(&bytes, key) {
            Ok(object) => Lookup::Hit(object.to_vec()),
            Err(kind) => Lookup::Unusable(ObjectCacheError { path, kind }),
        }
    }

    /// Stores `object` under `key`, atomically: written to a temporary file in the directory,
    /// then renamed over the entry's name. Returns the entry's path.
    pub fn store(&self, key: &CodeKey, object: &[u8]) -> Result<PathBuf, ObjectCacheError> {
        let path = self.path_for(key);
        fs::create_dir_all(&self.dir).map_err(|e| io_error(self.dir.clone(), &e))?;
        // The temporary file is created, never opened if it exists: its name is predictable,
        // and a link planted there would otherwise be followed (truncating whatever it points
        // at) and then renamed into the entry's place. A name that exists is skipped.
        let (temp, file) = loop {
            let temp = self.dir.join(format!(
                ".{:016x}.{}.{}.tmp",
                key.stable_hash(),
                std::process::id(),
                WRITES.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
            {
                Ok(file) => break (temp, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(path, &e)),
            }
        };
        let written = { file }
            .write_all(&encode(key, object))
            .and_then(|()| fs::rename(&temp, &path));
        match written {
            Ok(()) => Ok(path),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(io_error(path, &e))
            }
        }
    }
}

/// [`compile_object`] through `cache`: the stored object when the full key matches, else a
/// compile whose result is stored. A cache that cannot be read or written never fails the
/// compile; its problems come back in [`CachedObject::problems`].
pub fn compile_object_cached(
    program: &Program,
    target: &str,
    options: &JitOptions,
    cache: &ObjectCache,
) -> Result<CachedObject, JitError> {
    let key = CodeKey::object(program, target, options)?;
    let mut problems = Vec::new();
    match cache.lookup(&key) {
        Lookup::Hit(object) => {
            return Ok(CachedObject {
                object,
                hit: true,
                problems,
            });
        }
        Lookup::Absent => {}
        Lookup::Unusable(e) => problems.push(e),
    }
    let object = compile_object(program, target, options)?;
    if let Err(e) = cache.store(&key, &object) {
        problems.push(e);
    }
    Ok(CachedObject {
        object,
        hit: false,
        problems,
    })
}

fn io_error(path: PathBuf, e: &io::Error) -> ObjectCacheError {
    ObjectCacheError {
        path,
        kind: ObjectCacheErrorKind::Io(e.to_string()),
    }
}

/// A cache file: `MAGIC`, the key's length (u64, little-endian) and bytes, the object's length
/// and bytes, and FNV-1a of everything before it (u64, little-endian).
fn encode(key: &CodeKey, object: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 24 + key.0.len() + object.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(key.0.len() as u64).to_le_bytes());
    out.extend_from_slice(&key.0);
    out.extend_from_slice(&(object.len() as u64).to_le_bytes());
    out.extend_from_slice(object);
    let sum = Fnv1a::of(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// The object in a cache file, if the file is whole and holds exactly `key`.
fn decode<'a>(file: &'a [u8], key: &CodeKey) -> Result<&'a [u8], ObjectCacheErrorKind> {
    let rest = file
        .strip_prefix(MAGIC.as_slice())
        .ok_or(ObjectCacheErrorKind::NotACacheFile)?;
    let (stored_key, rest) = field(rest)?;
    let (object, rest) = field(rest)?;
    let sum: [u8; 8] = rest
        .try_into()
        .map_err(|_| ObjectCacheErrorKind::Truncated)?;
    let covered = &file[..file.len() - 8];
    if Fnv1a::of(covered) != u64::from_le_bytes(sum) {
        return Err(ObjectCacheErrorKind::Corrupt);
    }
    if stored_key != key.as_bytes() {
        return Err(ObjectCacheErrorKind::KeyMismatch);
    }
    Ok(object)
}

/// A length-prefixed field and what follows it.
fn field(bytes: &[u8]) -> Result<(&[u8], &[u8]), ObjectCacheErrorKind> {
    let (len, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or(ObjectCacheErrorKind::Truncated)?;
    let len =
        usize::try_from(u64::from_le_bytes(*len)).map_err(|_| ObjectCacheErrorKind::Truncated)?;
    if len > rest.len() {
        return Err(ObjectCacheErrorKind::Truncated);
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: &str) -> CodeKey {
        let program = ebpf_isa::assemble(src).unwrap();
        CodeKey::object(&program, "x86_64-unknown-linux-gnu", &JitOptions::default()).unwrap()
    }

    #[test]
    fn a_file_round_trips_and_every_damage_is_named() {
        let (k, other) = (key("mov %r0, 1\nexit"), key("mov %r0, 2\nexit"));
        let object = b"\x7fELF not really an object".to_vec();
        let file = encode(&k, &object);
        assert_eq!(decode(&file, &k), Ok(object.as_slice()));
        assert_eq!(
            decode(&file, &other),
            Err(ObjectCacheErrorKind::KeyMismatch)
        );
        // Every truncation is a miss, never a panic or a shorter object.
        for len in 0..file.len() {
            let kind = decode(&file[..len], &k).unwrap_err();
            let expected = if len < MAGIC.len() {
                ObjectCacheErrorKind::NotACacheFile
            } else {
                ObjectCacheErrorKind::Truncated
            };
            assert_eq!(kind, expected, "truncated to {len} bytes");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert_eq!(decode(&longer, &k), Err(ObjectCacheErrorKind::Truncated));
        // Every flipped bit after the magic is caught (lengths as truncation, the rest by the
        // checksum), never an object.
        for i in MAGIC.len()..file.len() {
            let mut damaged = file.clone();
            damaged[i] ^= 0x10;
            assert!(decode(&damaged, &k).is_err(), "byte {i} flipped");
        }
        let mut lengths = file.clone();
        lengths[MAGIC.len() + 7] = 0xff;
        assert_eq!(decode(&lengths, &k), Err(ObjectCacheErrorKind::Truncated));
    }

    /// A directory of its own under the system's temporary directory, removed at the end.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("ebpf-object-cache-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn objects_are_stored_reused_and_a_broken_cache_never_fails_the_compile() {
        let dir = TempDir::new("reuse");
        let cache = ObjectCache::new(&dir.0);
        let program = ebpf_isa::assemble("mov %r0, 7\nexit").unwrap();
        let (target, options) = ("aarch64-unknown-linux-gnu", JitOptions::default());
        let fresh = compile_object(&program, target, &options).unwrap();
        let first = compile_object_cached(&program, target, &options, &cache).unwrap();
        assert!(!first.hit && first.problems.is_empty(), "{first:?}");
        assert_eq!(first.object, fresh);
        let second = compile_object_cached(&program, target, &options, &cache).unwrap();
        assert!(second.hit && second.problems.is_empty(), "{second:?}");
        assert_eq!(second.object, fresh);
        // A "directory" that is a file: every store fails, every compile succeeds.
        let file = dir.0.join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let broken =
            compile_object_cached(&program, target, &options, &ObjectCache::new(&file)).unwrap();
        assert!(!broken.hit);
        assert_eq!(broken.object, fresh);
        // Both the read and the store fail, each reported.
        assert_eq!(broken.problems.len(), 2, "{:?}", broken.problems);
        assert!(
            broken
                .problems
                .iter()
                .all(|p| matches!(p.kind, ObjectCacheErrorKind::Io(_))),
            "{:?}",
            broken.problems
        );
    }

    /// Threads (standing in for processes) storing the same entry at once: each gets the
    /// right object, the entry ends up whole, and no temporary file is left.
    #[test]
    fn concurrent_stores_leave_one_whole_entry() {
        let dir = TempDir::new("concurrent");
        let cache = ObjectCache::new(&dir.0);
        let program = ebpf_isa::assemble("mov %r0, 8\nexit").unwrap();
        let (target, options) = ("x86_64-unknown-linux-gnu", JitOptions::default());
        let fresh = compile_object(&program, target, &options).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..5 {
                        let got =
                            compile_object_cached(&program, target, &options, &cache).unwrap();
                        assert!(got.problems.is_empty(), "{:?}", got.problems);
                        assert_eq!(got.object, fresh);
                    }
                });
            }
        });
        let files: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let key = CodeKey::object(&program, target, &options).unwrap();
        assert_eq!(files, [cache.path_for(&key)]);
        assert!(matches!(cache.lookup(&key), Lookup::Hit(object) if object == fresh));
    }

    /// The directory may be shared (`EBPF_OBJECT_CACHE=/tmp/…`): a link planted at the next
    /// temporary names is neither followed nor moved into the entry's place, and an entry that
    /// is not a regular file (a FIFO, which blocked the read for ever; a link) is refused
    /// without being opened. Found by review.
    #[cfg(unix)]
    #[test]
    fn planted_links_and_fifos_are_neither_followed_nor_read() {
        let dir = TempDir::new("planted");
        let cache = ObjectCache::new(&dir.0);
        let program = ebpf_isa::assemble("mov %r0, 9\nexit").unwrap();
        let (target, options) = ("x86_64-unknown-linux-gnu", JitOptions::default());
        let key = CodeKey::object(&program, target, &options).unwrap();
        fs::create_dir_all(&dir.0).unwrap();
        let victim = dir.0.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let next = WRITES.load(Ordering::Relaxed);
        for n in next..next + 256 {
            let name = format!(".{:016x}.{}.{n}.tmp", key.stable_hash(), std::process::id());
            std::os::unix::fs::symlink(&victim, dir.0.join(name)).unwrap();
        }
        let got = compile_object_cached(&program, target, &options, &cache).unwrap();
        assert!(got.problems.is_empty(), "{:?}", got.problems);
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        let entry = cache.path_for(&key);
        assert!(fs::symlink_metadata(&entry).unwrap().file_type().is_file());
        assert!(matches!(cache.lookup(&key), Lookup::Hit(object) if object == got.object));
        // An entry that is a link, then one that is a FIFO: refused, not read.
        fs::remove_file(&entry).unwrap();
        std::os::unix::fs::symlink(&victim, &entry).unwrap();
        let refused = |lookup| {
            matches!(
                lookup,
                Lookup::Unusable(ObjectCacheError {
                    kind: ObjectCacheErrorKind::NotACacheFile,
                    ..
                })
            )
        };
        assert!(refused(cache.lookup(&key)));
        fs::remove_file(&entry).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&entry).status();
        if made.is_ok_and(|s| s.success()) {
            assert!(refused(cache.lookup(&key)));
        }
    }

    #[test]
    fn keys_differ_in_everything_that_changes_the_code() {
        let program = ebpf_isa::assemble("ldxw %r0, [%r1]\nexit").unwrap();
        let other = ebpf_isa::assemble("ldxw %r0, [%r1+4]\nexit").unwrap();
        let base = JitOptions::default().with_isa_flags(crate::IsaFlags::Baseline);
        let target = "x86_64-unknown-linux-gnu";
        let k = |p: &Program, t: &str, o: &JitOptions| CodeKey::object(p, t, o).unwrap();
        let reference = k(&program, target, &base);
        assert_eq!(reference, k(&program, target, &base.clone()));
        let mut verify = base.clone();
        verify.verify = !verify.verify;
        let variants = [
            k(&other, target, &base),
            k(&program, "aarch64-unknown-linux-gnu", &base),
            k(
                &program,
                target,
                &base.clone().with_spectre_masking(!base.spectre_masking),
            ),
            k(
                &program,
                target,
                &base.clone().with_spectre_clamp_proven(true),
            ),
            k(
                &program,
                target,
                &base.clone().with_opt_level(crate::OptLevel::Speed),
            ),
            k(&program, target, &base.clone().with_function_size(100)),
            k(&program, target, &base.clone().with_symbol("other")),
            k(
                &program,
                target,
                &base
                    .clone()
                    .with_isa_flags(crate::IsaFlags::parse("has_avx=true")),
            ),
            k(&program, target, &verify),
            CodeKey::host(&program, &base).unwrap(),
            k(
                &program,
                target,
                &base.clone().with_checked_facts(!base.checked_facts),
            ),
            k(
                &program,
                target,
                &base
                    .clone()
                    .with_entry(Some(ebpf_cfg::facts::Entry::input())),
            ),
            k(
                &program,
                target,
                &base
                    .clone()
                    .with_entry(Some(ebpf_cfg::facts::Entry::input().with_region(
                        ebpf_abi::layout::RODATA as u8,
                        ebpf_cfg::facts::RegionSpec::Fixed {
                            len: 16,
                            writable: false,
                        },
                    ))),
            ),
        ];
        for (i, variant) in variants.iter().enumerate() {
            assert_ne!(variant, &reference, "variant {i}");
        }
    }
}
