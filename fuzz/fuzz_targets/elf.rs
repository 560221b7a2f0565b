//! Fuzz target `elf`: the ELF loader. The check is
//! `ebpf_fuzz_checks::Target::Elf` (see `crates/ebpf-fuzz-checks`), which `cargo test` replays on
//! the seeds and regressions; a finding panics, which is how libFuzzer learns of it.

#![no_main]

use ebpf_fuzz_checks::Target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(finding) = Target::Elf.check(data) {
        panic!("{finding}");
    }
});
