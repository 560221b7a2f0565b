//! The C loop programs of `tests/elf/loops/`, compiled natively by this crate's build script
//! with the host's C compiler at `-O2`: the "native" column the facade's `loops` bench
//! compares every engine with (issue 13 states its target as a multiple of native gcc -O2).
//!
//! The same sources compiled by clang for BPF are the committed objects the engines load;
//! `cargo xtask fixtures` recorded the native results in `tests/elf/expected.txt`, which the
//! tests check every engine against. Without a C compiler (or in a cross build) the library
//! is not built and [`native_loop`] returns `None`.

/// A loop program compiled natively, with the fixtures' signature `u64 name(u8 *data, u64
/// len)`. Calling it is unsafe: `data` must point to `len` bytes the program may read and
/// write.
pub type NativeProgram = unsafe extern "C" fn(data: *mut u8, len: u64) -> u64;

/// The function name of every program of `tests/elf/loops/*.c` (a test keeps the list in step
/// with the sources).
pub const LOOP_PROGRAMS: &[&str] = &[
    "array_sum",
    "base64_decode",
    "fnv1a_64",
    "insertion_sort",
    "mul_div",
    "packet_stats",
    "parse_ints",
    "sieve",
];

#[cfg(native_loops)]
unsafe extern "C" {
    fn array_sum(data: *mut u8, len: u64) -> u64;
    fn base64_decode(data: *mut u8, len: u64) -> u64;
    fn fnv1a_64(data: *mut u8, len: u64) -> u64;
    fn insertion_sort(data: *mut u8, len: u64) -> u64;
    fn mul_div(data: *mut u8, len: u64) -> u64;
    fn packet_stats(data: *mut u8, len: u64) -> u64;
    fn parse_ints(data: *mut u8, len: u64) -> u64;
    fn sieve(data: *mut u8, len: u64) -> u64;
}

/// The native build of the loop program named `name` (its C function's name), or `None`
/// when there is no such program or the build script could not compile them.
pub fn native_loop(name: &str) -> Option<NativeProgram> {
    #[cfg(native_loops)]
    {
        let program: NativeProgram = match name {
            "array_sum" => array_sum,
            "base64_decode" => base64_decode,
            "fnv1a_64" => fnv1a_64,
            "insertion_sort" => insertion_sort,
            "mul_div" => mul_div,
            "packet_stats" => packet_stats,
            "parse_ints" => parse_ints,
            "sieve" => sieve,
            _ => return None,
        };
        Some(program)
    }
    #[cfg(not(native_loops))]
    {
        let _ = name;
        None
    }
}

/// Whether this build has the native programs.
pub const AVAILABLE: bool = cfg!(native_loops);

#[cfg(test)]
mod tests {
    use super::*;

    /// The function names the C sources define with `SEC(...) u64 NAME(`.
    fn programs_in_sources() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/elf/loops");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "c") {
                continue;
            }
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let Some(rest) = line.strip_prefix("SEC(") else {
                    continue;
                };
                let after = rest.split_once(") u64 ").map(|(_, a)| a).unwrap_or("");
                let name = after.split('(').next().unwrap_or("");
                assert!(
                    !name.is_empty(),
                    "{}: unexpected line {line}",
                    path.display()
                );
                names.push(name.to_string());
            }
        }
        names.sort();
        names
    }

    #[test]
    fn the_list_matches_the_sources() {
        assert_eq!(programs_in_sources(), LOOP_PROGRAMS);
    }

    #[test]
    fn every_program_has_its_native_build() {
        for name in LOOP_PROGRAMS {
            assert_eq!(native_loop(name).is_some(), AVAILABLE, "{name}");
        }
        assert!(native_loop("no_such_program").is_none());
    }

    /// The native build computes what `cargo xtask fixtures` recorded from its own build of
    /// the same C (a different compile of the sources: flags or header drift would show here).
    #[test]
    fn the_native_build_gives_the_recorded_results() {
        let elf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/elf");
        let expected = std::fs::read_to_string(elf.join("expected.txt")).unwrap();
        let mut checked = 0;
        for line in expected.lines().filter(|l| l.starts_with("loops/")) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(program) = native_loop(f[1]) else {
                continue;
            };
            let hex = std::fs::read_to_string(elf.join(format!("inputs/{}.hex", f[2]))).unwrap();
            let mut input: Vec<u8> = hex
                .lines()
                .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
                .map(|t| u8::from_str_radix(t, 16).unwrap())
                .collect();
            let want = u64::from_str_radix(f[3].trim_start_matches("0x"), 16).unwrap();
            // SAFETY: the pointer and length describe `input`, which outlives the call; the
            // programs touch only the `len` bytes they are given.
            let got = unsafe { program(input.as_mut_ptr(), input.len() as u64) };
            assert_eq!(got, want, "{line}");
            checked += 1;
        }
        assert!(!AVAILABLE || checked >= 8, "{checked}");
    }
}
