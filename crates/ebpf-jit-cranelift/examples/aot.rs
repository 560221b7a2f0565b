//! Ahead-of-time compilation from the command line: `cargo run -p ebpf-jit-cranelift --example
//! aot -- PROGRAM.s OUT.o [TARGET-TRIPLE [SYMBOL]]` assembles a program (conformance syntax)
//! and writes a relocatable object defining `uint64_t SYMBOL(struct ebpf_ctx *)` (see
//! `c/ebpf_jit.h`). With `--ir` (`--ir-opt`, `--asm`) instead of `OUT.o`, prints the Cranelift
//! IR (optimised; the machine code) of the in-process translation.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, out, rest @ ..] = args.as_slice() else {
        eprintln!("usage: aot PROGRAM.s (OUT.o|--ir|--ir-opt|--asm) [TARGET-TRIPLE [SYMBOL]]");
        return ExitCode::FAILURE;
    };
    let text = match std::fs::read_to_string(source) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{source}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let program = match ebpf_isa::assemble(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{source}: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    let stage = match out.as_str() {
        "--ir" => Some(ebpf_jit_cranelift::IrStage::Translated),
        "--ir-opt" => Some(ebpf_jit_cranelift::IrStage::Optimized),
        "--asm" => Some(ebpf_jit_cranelift::IrStage::Machine),
        _ => None,
    };
    if let Some(stage) = stage {
        return match ebpf_jit_cranelift::ir_text(&program, stage) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let target = rest
        .first()
        .map_or("x86_64-unknown-linux-gnu", String::as_str);
    let mut options = ebpf_jit_cranelift::JitOptions::default();
    if let Some(symbol) = rest.get(1) {
        options.symbol = symbol.clone();
    }
    match ebpf_jit_cranelift::compile_object(&program, target, &options)
        .map_err(|e| e.to_string())
        .and_then(|o| std::fs::write(out, o).map_err(|e| e.to_string()))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
