//! FNV-1a, 64 bits: a stable, non-cryptographic hash for names and checksums that must be the
//! same in every process and every build (`std`'s hasher is randomised per process). Shared by
//! the object cache (file names, checksums) and the build script (the code-generator
//! fingerprint). It only names and checks: equality of cache entries is decided by comparing
//! whole keys.

/// FNV-1a over bytes fed in pieces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// The hash of nothing.
    pub(crate) fn new() -> Fnv1a {
        Fnv1a(Fnv1a::OFFSET)
    }

    /// Feeds `bytes`.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Fnv1a::PRIME);
        }
    }

    /// The hash of everything fed so far.
    pub(crate) fn finish(self) -> u64 {
        self.0
    }

    /// The hash of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> u64 {
        let mut h = Fnv1a::new();
        h.write(bytes);
        h.finish()
    }
}
