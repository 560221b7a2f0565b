#!/bin/sh
# rustc wrapper for the fuzz build (`cargo xtask fuzz` sets RUSTC_WRAPPER to it): coverage
# instrumentation for our crates (ebpf_*) only. cargo-fuzz instruments every crate; instrumented,
# Cranelift reaches tens of thousands of edges per compile, and libFuzzer's bookkeeping of them
# (not the compile itself) held the differential target to ~40 inputs per second. LLVM takes the
# last -sanitizer-coverage-level, so appending 0 turns the instrumentation off for a crate;
# AddressSanitizer still instruments everything. Other people's code is fuzzed by its owners.
rustc="$1"
shift
case " $* " in
*" --crate-name ebpf_"*) exec "$rustc" "$@" ;;
*) exec "$rustc" "$@" -Cllvm-args=-sanitizer-coverage-level=0 ;;
esac
