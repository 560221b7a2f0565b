//! One program's code more than ±2 GiB apart: a program split into units whose first units go
//! to a code chunk mapped earlier and whose last ones (and the dispatcher) go to memory mapped
//! far from it must still compile and run. The address space around the chunk is filled
//! first, so that the next mappings cannot land near it; that is why this test is a binary
//! of its own (x86-64 Linux: the code pool of `src/pool.rs`).

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn units_placed_beyond_a_relative_calls_reach_still_compile_and_run() {
    use ebpf_abi::{Helpers, Limits, MemoryMap};
    use ebpf_contract::differential::asm;
    use ebpf_interp::Interpreter;
    use ebpf_jit_cranelift::{JitOptions, compile};

    if !ebpf_jit_cranelift::host_supported() {
        return;
    }
    let executable = || -> Vec<(usize, usize)> {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
        maps.lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (range, perms) = (fields.next()?, fields.next()?);
                // Anonymous: no path after offset, device and inode.
                if !perms.contains('x') || fields.nth(3).is_some() {
                    return None;
                }
                let (a, b) = range.split_once('-')?;
                Some((
                    usize::from_str_radix(a, 16).ok()?,
                    usize::from_str_radix(b, 16).ok()?,
                ))
            })
            .collect()
    };
    // A first program makes the pool's current chunk (and the check function's code).
    let first = compile(&asm("mov %r0, 7\nexit"), &JitOptions::default()).unwrap();
    let near = executable();
    assert!(!near.is_empty(), "no anonymous code mapping");
    let reach = (i32::MAX as usize + 1) + (1 << 20);
    let lo = near
        .iter()
        .map(|r| r.0)
        .min()
        .unwrap()
        .saturating_sub(reach);
    let hi = near
        .iter()
        .map(|r| r.1)
        .max()
        .unwrap()
        .saturating_add(reach);
    // Occupy every free gap within reach, so that no later mapping can land there.
    let mut taken: Vec<(usize, usize)> = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (a, b) = line.split_whitespace().next()?.split_once('-')?;
            Some((
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect();
    taken.sort_unstable();
    taken.push((hi, hi));
    let mut cursor = lo & !0xfff;
    for (a, b) in taken {
        let a = a.min(hi);
        if a > cursor {
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping (a gap the
            // kernel refuses, such as the stack's guard gap, is left alone); the reservations
            // are inaccessible and kept for the life of the process, on purpose.
            unsafe {
                libc::mmap(
                    cursor as *mut libc::c_void,
                    a - cursor,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE
                        | libc::MAP_ANONYMOUS
                        | libc::MAP_NORESERVE
                        | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
        }
        cursor = cursor.max(b);
        if cursor >= hi {
            break;
        }
    }
    // Hundreds of units of a block or two: more code than the chunk's free pages.
    let mut text = String::from("mov %r0, 1\nmov %r1, 3\n");
    for k in 0..600 {
        text.push_str(&format!(
            "add %r0, {k}\nxor %r0, %r1\njeq %r1, 0, +1\nlsh %r1, 1\n"
        ));
    }
    text.push_str("exit\n");
    let program = asm(&text);
    let split = compile(&program, &JitOptions::default().with_function_size(3))
        .expect("a program split into units compiles wherever its memory is");
    let far: Vec<_> = executable()
        .into_iter()
        .filter(|&(a, b)| b <= lo || a >= hi)
        .collect();
    assert!(
        !far.is_empty(),
        "no code was placed out of reach (reserved {lo:#x}..{hi:#x}, {} bytes of code): \
         the test proves nothing",
        split.code_size()
    );
    let run = |jit: &ebpf_jit_cranelift::CraneliftProgram| {
        jit.run(
            MemoryMap::new(),
            [0, 0],
            &Helpers::new(),
            &Limits::default(),
        )
    };
    let interpret = ebpf_contract::engine(Interpreter::new, Interpreter::run);
    let expected = interpret(
        &program,
        MemoryMap::new(),
        [0, 0],
        &Helpers::new(),
        &Limits::default(),
    );
    assert_eq!(run(&split), expected);
    assert_eq!(run(&first).unwrap().r0, 7);
}
