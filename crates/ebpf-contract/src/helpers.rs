//! The helpers every contract case's VM registers, by id: what `call N` means in the case files.

use ebpf_abi::{HelperError, HelperFn, Helpers, VmMemory};

/// Returns the wrapping sum of `r1`–`r5`.
pub const H_SUM: u32 = 1;
/// Always fails with [`FAIL_MESSAGE`].
pub const H_FAIL: u32 = 2;
/// Returns the little-endian `u64` at `r1`, read through `VmMemory`.
pub const H_READ64: u32 = 3;
/// Writes `r2` as a little-endian `u64` at `r1` through `VmMemory`; returns 0.
pub const H_WRITE64: u32 = 4;
/// Returns `r1` (the conformance suite's helper 5).
pub const H_ECHO: u32 = 5;
/// Returns the sum of the `r2` bytes at `r1` (at most 4096), read through `VmMemory`.
pub const H_SUM_BYTES: u32 = 6;
/// Returns `r1`–`r5` folded in order (`s = s * 31 + rN`, wrapping): tells the arguments apart.
pub const H_MIX: u32 = 7;
/// The message of [`H_FAIL`].
pub const FAIL_MESSAGE: &str = "helper 2 refuses";

fn h_sum(args: [u64; 5], _: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Ok(args.iter().fold(0u64, |s, a| s.wrapping_add(*a)))
}

fn h_fail(_: [u64; 5], _: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Err(HelperError::failed(FAIL_MESSAGE))
}

fn h_read64(args: [u64; 5], mem: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Ok(mem.read_u64(args[0])?)
}

fn h_write64(args: [u64; 5], mem: &mut dyn VmMemory) -> Result<u64, HelperError> {
    mem.write_u64(args[0], args[1])?;
    Ok(0)
}

fn h_echo(args: [u64; 5], _: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Ok(args[0])
}

fn h_sum_bytes(args: [u64; 5], mem: &mut dyn VmMemory) -> Result<u64, HelperError> {
    let len = usize::try_from(args[1])
        .ok()
        .filter(|&n| n <= 4096)
        .ok_or_else(|| HelperError::failed("too long"))?;
    let mut buf = vec![0u8; len];
    mem.read(args[0], &mut buf)?;
    Ok(buf.iter().map(|&b| u64::from(b)).sum())
}

fn h_mix(args: [u64; 5], _: &mut dyn VmMemory) -> Result<u64, HelperError> {
    Ok(args
        .iter()
        .fold(0u64, |s, a| s.wrapping_mul(31).wrapping_add(*a)))
}

/// The helpers every case's VM registers, by id.
pub const HELPERS: [(u32, HelperFn); 7] = [
    (H_SUM, h_sum),
    (H_FAIL, h_fail),
    (H_READ64, h_read64),
    (H_WRITE64, h_write64),
    (H_ECHO, h_echo),
    (H_SUM_BYTES, h_sum_bytes),
    (H_MIX, h_mix),
];

/// [`HELPERS`] as an `ebpf_abi::Helpers` table.
pub fn helpers() -> Helpers {
    let mut h = Helpers::new();
    for (id, f) in HELPERS {
        h.insert(id, f);
    }
    h
}
