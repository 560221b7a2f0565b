//! Emission tests: decode what the emitter produces with iced-x86 and compare it with the
//! intended instruction sequences. They need no x86-64 host: only the bytes are inspected.

use alloc::string::String;
use alloc::vec::Vec;

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter, Mnemonic};

use ebpf_cfg::facts::{Entry, Facts};

use crate::JitOptions;
use crate::context::{OFF_REGS, OFF_SAVED_RSP};
use crate::emit::emit;

/// The code of `program` with the facts of the stack alone, checks they make impossible
/// dropped.
fn emitted(program: &ebpf_isa::Program, blinding: bool) -> Vec<u8> {
    let options = JitOptions {
        constant_blinding: blinding,
        entry: None,
        checked_facts: false,
        spectre_masking: true,
        spectre_clamp_proven: false,
    };
    let facts = Facts::analyse(program, &Entry::unknown());
    emit(program, &options, &facts).unwrap().code
}

/// The code of `src` with the facts of the facade's plain input, checks they make impossible
/// dropped or (`checked`) kept, Spectre masking on.
fn code_with_input(src: &str, checked: bool) -> Vec<u8> {
    code_with_input_masked(src, checked, true)
}

/// [`code_with_input`] with Spectre masking on or off.
fn code_with_input_masked(src: &str, checked: bool, masking: bool) -> Vec<u8> {
    code_with_input_hardened(src, checked, masking, false)
}

/// [`code_with_input_masked`], clamping accesses proven through a branch or not.
fn code_with_input_hardened(src: &str, checked: bool, masking: bool, clamp: bool) -> Vec<u8> {
    let program = ebpf_isa::assemble(src).unwrap();
    let options = JitOptions {
        constant_blinding: false,
        entry: Some(Entry::input()),
        checked_facts: checked,
        spectre_masking: masking,
        spectre_clamp_proven: clamp,
    };
    let facts = Facts::analyse(&program, &Entry::input());
    emit(&program, &options, &facts).unwrap().code
}

fn code(src: &str, blinding: bool) -> Vec<u8> {
    emitted(&ebpf_isa::assemble(src).unwrap(), blinding)
}

/// Every instruction, formatted in Intel syntax (`add rsi,12345h`), with its length.
fn disasm(code: &[u8]) -> Vec<(String, usize)> {
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut formatter = IntelFormatter::new();
    let mut out = Vec::new();
    for insn in &mut decoder {
        assert!(!insn.is_invalid(), "undecodable code at {:#x}", insn.ip());
        let mut s = String::new();
        formatter.format(&insn, &mut s);
        out.push((s, insn.len()));
    }
    out
}

fn text(code: &[u8]) -> Vec<String> {
    disasm(code).into_iter().map(|(s, _)| s).collect()
}

/// The instructions of the program proper: after the prologue's `mov rcx,[rbx+…]` (the budget)
/// and up to the first trap stub.
fn body(src: &str, blinding: bool) -> Vec<String> {
    let all = text(&code(src, blinding));
    let start = all
        .iter()
        .position(|s| s.starts_with("mov rcx,[rbx"))
        .unwrap()
        + 1;
    all[start..].to_vec()
}

/// A displacement as the Intel formatter prints it (`1220h`, `0C00h`).
fn disp(v: i32) -> String {
    let hex = alloc::format!("{v:X}");
    if hex.starts_with(|c: char| c.is_ascii_alphabetic()) {
        alloc::format!("0{hex}h")
    } else {
        alloc::format!("{hex}h")
    }
}

/// `COUNTED`'s body (`add rsi,rdi`) emitted twice: the ordinary loop charging its 3
/// instructions per iteration, then the counted copy charging nothing.
fn assert_charged_loop_then_free_copy(all: &[String]) {
    let bodies: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, s)| *s == "add rsi,rdi")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(bodies.len(), 2, "{all:#?}");
    assert!(all[bodies[0] - 2] == "sub rcx,3", "{all:#?}");
    assert!(
        !all[bodies[1] - 2..bodies[1]]
            .iter()
            .any(|s| s.starts_with("sub rcx")),
        "{all:#?}"
    );
}

fn contains_window(haystack: &[String], needle: &[&str]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.iter().zip(needle).all(|(a, b)| a == b))
}

#[test]
fn the_prologue_saves_callee_saved_registers_and_aligns_the_stack() {
    // A program that uses r6-r10 (a local call uses them all): every callee-saved register
    // is saved, an even number of pushes is padded to keep rsp 16-byte aligned.
    let all = text(&code("call local f\nexit\nf:\nmov %r0, 1\nexit", false));
    assert_eq!(
        &all[..8],
        &[
            "push rbx",
            "push r12",
            "push r13",
            "push r14",
            "push r15",
            "push rbp",
            "sub rsp,8",
            "mov rbx,rdi"
        ]
    );
    // And the shared epilogue undoes exactly that.
    let tail: Vec<&str> = all.iter().rev().take(8).map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "ret",
            "pop rbx",
            "pop r12",
            "pop r13",
            "pop r14",
            "pop r15",
            "pop rbp",
            "add rsp,8"
        ]
    );
    // A program that uses none of them saves only the context's register: one push, which
    // with the return address keeps rsp aligned, so no padding.
    let all = text(&code("mov %r0, 0\nexit", false));
    assert_eq!(&all[..2], &["push rbx", "mov rbx,rdi"]);
    let tail: Vec<&str> = all.iter().rev().take(3).map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "ret",
            "pop rbx",
            &alloc::format!("mov rsp,[rbx+{}]", disp(OFF_SAVED_RSP))
        ]
    );
    // r7 alone: two pushes, padded.
    let all = text(&code("mov %r7, 1\nmov %r0, %r7\nexit", false));
    assert_eq!(
        &all[..4],
        &["push rbx", "push r13", "sub rsp,8", "mov rbx,rdi"]
    );
}

#[test]
fn the_entry_sets_only_the_registers_the_code_may_read_before_writing_them() {
    // The entry's prologue, up to the budget: what it does with the eBPF registers.
    let entry = |src: &str| -> Vec<String> {
        let all = text(&code(src, false));
        let from = all.iter().position(|s| s.starts_with("mov [rbx")).unwrap() + 1;
        let to = all
            .iter()
            .position(|s| s.starts_with("mov rcx,[rbx"))
            .unwrap();
        all[from..to].to_vec()
    };
    let reg = |r: usize| alloc::format!("[rbx+{}]", disp(OFF_REGS + 8 * r as i32));
    // `mov r0, 0; exit` reads nothing at entry.
    assert!(entry("mov %r0, 0\nexit").is_empty());
    // A load from the input reads r1; a store to the stack r10; a plain `exit` returns r0 as
    // the run found it (0), and an unverified read of r3 must see 0 too.
    assert_eq!(
        entry("ldxb %r0, [%r1]\nexit"),
        [alloc::format!("mov rdi,{}", reg(1))]
    );
    assert_eq!(
        entry("stxdw [%r10-8], %r2\nmov %r0, 0\nexit"),
        [
            alloc::format!("mov r8,{}", reg(2)),
            alloc::format!("mov rbp,{}", reg(10))
        ]
    );
    assert_eq!(entry("exit"), ["xor esi,esi"]);
    assert_eq!(entry("mov %r0, %r3\nexit"), ["xor r9d,r9d"]);
    // The resume entry loads every register the code uses, and only those.
    let all = text(&code("mov %r0, %r3\nexit", false));
    let resume = all.iter().rposition(|s| s == "mov rbx,rdi").unwrap();
    let loads: Vec<&str> = all[resume + 2..]
        .iter()
        .take_while(|s| !s.starts_with("mov rcx"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        loads,
        [
            alloc::format!("mov rsi,{}", reg(0)),
            alloc::format!("mov r9,{}", reg(3))
        ]
    );
}

#[test]
fn add64_with_an_immediate_is_one_add_without_blinding() {
    let b = body("add %r0, 0x12345\nexit", false);
    assert_eq!(b[0], "sub rcx,2", "the block charges its two instructions");
    assert!(b[1].starts_with("jb "));
    assert_eq!(b[2], "add rsi,12345h");
    assert!(b[3].starts_with("mov rdx,[rbx"), "then exit: {b:?}");
}

#[test]
fn blinding_hides_the_immediate_behind_a_key() {
    let b = body("add %r0, 0x12345\nexit", true);
    assert!(b[2].starts_with("mov rax,"), "{b:?}");
    assert!(b[3].starts_with("xor rax,"), "{b:?}");
    assert_eq!(b[4], "add rsi,rax");
}

#[test]
fn the_register_mapping_is_the_documented_one() {
    let b = body(
        "mov %r1, %r0\nmov %r2, %r1\nmov %r3, %r2\nmov %r4, %r3\nmov %r5, %r4\nmov %r6, %r5\nmov %r7, %r6\nmov %r8, %r7\nmov %r9, %r8\nmov %r0, %r10\nexit",
        false,
    );
    assert_eq!(
        &b[2..12],
        &[
            "mov rdi,rsi",
            "mov r8,rdi",
            "mov r9,r8",
            "mov r10,r9",
            "mov r11,r10",
            "mov r12,r11",
            "mov r13,r12",
            "mov r14,r13",
            "mov r15,r14",
            "mov rsi,rbp",
        ]
    );
}

#[test]
fn thirty_two_bit_operations_write_thirty_two_bit_registers() {
    let b = body(
        "mov32 %r0, %r1\nadd32 %r0, 5\nle16 %r0\nle32 %r0\nbe32 %r0\nexit",
        false,
    );
    assert_eq!(
        &b[2..7],
        &[
            "mov esi,edi",
            "add esi,5",
            "movzx esi,si",
            "mov esi,esi",
            "bswap esi"
        ]
    );
}

#[test]
fn division_never_reaches_div_with_zero_or_min_over_minus_one() {
    // r2 and r1 are unknown at entry: both edge cases are tested.
    let b = body("sdiv %r2, %r1\nexit", false);
    assert!(contains_window(&b, &["test rdi,rdi"]), "{b:?}");
    assert!(
        contains_window(&b, &["cmp rdi,0FFFFFFFFFFFFFFFFh"]),
        "{b:?}"
    );
    assert!(contains_window(
        &b,
        &["mov rax,r8", "cqo", "idiv rdi", "mov r8,rax"]
    ));
    // r0 is 0 at entry, never INT_MIN: only the zero test is left.
    let b = body("sdiv %r0, %r1\nexit", false);
    assert!(contains_window(&b, &["test rdi,rdi"]), "{b:?}");
    assert!(!b.iter().any(|s| s.starts_with("cmp rdi")), "{b:?}");
    // A divisor proven positive: no test at all.
    let b = body(
        "mov %r1, %r2\nand %r1, 7\nor %r1, 1\nsdiv %r2, %r1\nexit",
        false,
    );
    assert!(!b.iter().any(|s| s.starts_with("test ")), "{b:?}");
    assert!(contains_window(&b, &["cqo", "idiv rdi"]), "{b:?}");
    // Constant divisors: the edge cases are decided at compile time.
    let b = body(
        "div %r0, 0\nmod %r1, 0\nsdiv %r2, -1\nsmod %r3, -1\ndiv %r4, 8\nmod %r5, 16\nexit",
        false,
    );
    assert_eq!(
        &b[2..7],
        &[
            "xor esi,esi",
            "neg r8",
            "xor r9d,r9d",
            "shr r10,3",
            "and r11,0Fh"
        ]
    );
    assert!(
        !b.iter()
            .any(|s| s.starts_with("div ") || s.starts_with("idiv "))
    );
}

#[test]
fn accesses_through_an_unknown_pointer_are_checked_against_the_region_table() {
    // r2 has no hint at entry: the full check.
    let b = body("ldxw %r0, [%r2+8]\nexit", false);
    let lim = crate::context::lim_offset(false, 2, 0);
    let check = [
        "lea rax,[r8+8]".to_string(),
        "mov rdx,rax".to_string(),
        "shr rdx,20h".to_string(),
        "and edx,3Fh".to_string(),
        format!("cmp rax,[rbx+rdx*8+{lim:X}h]"),
    ];
    let check: Vec<&str> = check.iter().map(String::as_str).collect();
    assert!(contains_window(&b, &check), "{b:?}");
    // Masked (Spectre v1): the host address, or 0 where the compare said out of bounds.
    let null = format!("cmovae rdx,[rbx+{}]", disp(crate::context::OFF_NULL));
    assert!(
        contains_window(
            &b,
            &[
                "mov rdx,[rbx+rdx*8]",
                "lea rdx,[rdx+rax]",
                &null,
                "mov esi,[rdx]"
            ]
        ),
        "{b:?}"
    );
}

#[test]
fn accesses_through_a_hinted_pointer_check_the_guessed_region_first() {
    // r1 points into the input at entry (region 4); r6 advances through it in a loop.
    let b = body(
        "mov %r6, %r1\nloop:\nstxh [%r6+2], %r0\nadd %r6, 2\njne %r6, 0, loop\nexit",
        false,
    );
    let start = crate::context::OFF_START + 8 * 4;
    let span = crate::context::span_offset(true, 1, 4);
    let host = crate::context::OFF_HOST + 8 * 4;
    let fast = [
        "lea rdx,[r12+2]".to_string(),
        format!("sub rdx,[rbx+{}]", disp(start)),
        format!("cmp rdx,[rbx+{}]", disp(span)),
    ];
    let fast: Vec<&str> = fast.iter().map(String::as_str).collect();
    assert!(contains_window(&b, &fast), "{b:?}");
    let after = [
        "sbb rax,rax".to_string(),
        format!("add rdx,[rbx+{}]", disp(host)),
        "and rdx,rax".to_string(),
        "mov [rdx],si".to_string(),
    ];
    let after: Vec<&str> = after.iter().map(String::as_str).collect();
    assert!(contains_window(&b, &after), "{b:?}");
    // The wrong-guess path is out of line: the full check with the store limit, then back.
    let all = text(&code(
        "mov %r6, %r1\nloop:\nstxh [%r6+2], %r0\nadd %r6, 2\njne %r6, 0, loop\nexit",
        false,
    ));
    let lim = crate::context::lim_offset(true, 1, 0);
    assert!(
        all.iter()
            .any(|s| *s == format!("cmp rax,[rbx+rdx*8+{}]", disp(lim))),
        "{all:?}"
    );
}

#[test]
fn frame_accesses_skip_the_check_when_r10_is_never_written() {
    let b = body("stxdw [%r10-8], %r1\nexit", false);
    assert!(
        contains_window(&b, &["mov rdx,[rbx+10h]", "mov [rbp+rdx-8],rdi"]),
        "{b:?}"
    );
    // Through a copy of r10 moved by constants, too; but not past the frame's bounds.
    let b = body(
        "mov %r3, %r10\nsub %r3, 512\nstxb [%r3+511], %r1\nstxb [%r3+512], %r1\nexit",
        false,
    );
    assert!(
        contains_window(&b, &["mov rdx,[rbx+10h]", "mov [r9+rdx+1FFh],dil"]),
        "{b:?}"
    );
    assert!(
        b.iter().any(|s| s.starts_with("sub rdx,[rbx")),
        "[r10 + 0] is outside the frame: guessed, checked: {b:?}"
    );
    let b = body("mov %r10, %r1\nstxdw [%r10-8], %r1\nexit", false);
    assert!(
        !b.iter().any(|s| s == "mov rdx,[rbx+10h]"),
        "r10 is written: no unchecked access: {b:?}"
    );
}

#[test]
fn stack_tables_indexed_by_bounded_values_skip_the_check() {
    // &table[byte & 0xf8] with the table at r10 - 256: every index lands inside the frame.
    let table = "ldxb %r6, [%r1]\nand %r6, 0xf8\nmov %r4, %r10\nsub %r4, 256\nadd %r6, %r4\n";
    let b = body(&format!("{table}stxdw [%r6], %r1\nexit"), false);
    assert!(
        contains_window(&b, &["mov rdx,[rbx+10h]", "mov [r12+rdx],rdi"]),
        "{b:?}"
    );
    // One byte further and the last index's access ends past r10: checked.
    let b = body(&format!("{table}stxdw [%r6+1], %r1\nexit"), false);
    assert!(
        !b.iter().any(|s| s == "mov rdx,[rbx+10h]"),
        "the range overruns the frame: {b:?}"
    );
    // An atomic through a range of offsets, all multiples of 8 (r10 is a frame's multiple):
    // aligned and in bounds.
    let b = body(&format!("{table}lock add [%r6+0], %r1\nexit"), false);
    assert!(
        contains_window(&b, &["add rdx,[rbx+10h]", "lock add [rdx],rdi"]),
        "{b:?}"
    );
    // Multiples of 4 only: the alignment check stays, so the full check.
    let table4 = table.replace("0xf8", "0xfc");
    let b = body(&format!("{table4}lock add [%r6+0], %r1\nexit"), false);
    assert!(
        !b.iter()
            .any(|s| s == "add rdx,[rbx+10h]" || s == "mov rdx,[rbx+10h]"),
        "atomic alignment is not proven: {b:?}"
    );
}

#[test]
fn proven_accesses_to_one_region_in_a_block_load_its_bias_once() {
    let loads = |b: &[String]| b.iter().filter(|s| *s == "mov rdx,[rbx+10h]").count();
    // Three stack accesses with ALU work between them that leaves rdx alone: one load.
    let b = body(
        "stxdw [%r10-8], %r1\nadd %r1, 1\nldxdw %r0, [%r10-8]\nmov %r2, 7\n\
         stxdw [%r10-16], %r2\nexit",
        false,
    );
    assert_eq!(loads(&b), 1, "{b:?}");
    assert!(
        contains_window(&b, &["mov [rbp+rdx-10h],r8"]),
        "the third access goes through the bias already in rdx: {b:?}"
    );
    // A shift by a register parks the budget in rdx, a division uses rdx: loaded again after
    // each.
    for between in ["lsh %r1, %r2", "div %r1, %r2", "mod %r1, 3"] {
        let b = body(
            &format!("stxdw [%r10-8], %r1\n{between}\nstxdw [%r10-16], %r1\nexit"),
            false,
        );
        assert_eq!(loads(&b), 2, "{between}: {b:?}");
    }
    // A block that is jumped to starts with rdx unknown, whatever the block before it left.
    let b = body(
        "stxdw [%r10-8], %r1\njeq %r1, 0, +0\nstxdw [%r10-16], %r1\nexit",
        false,
    );
    assert_eq!(loads(&b), 2, "{b:?}");
    // Checked-facts mode keeps the full check of every access, so no bias is reused.
    let c = text(&code_with_input(
        "stxdw [%r10-8], %r1\nstxdw [%r10-16], %r1\nexit",
        true,
    ));
    assert_eq!(loads(&c), 0, "{c:?}");
}

#[test]
fn atomics_are_lock_prefixed() {
    let b = body(
        "lock add [%r1+0], %r2\nlock fetch add32 [%r1+0], %r2\nlock cmpxchg [%r1+0], %r2\nlock fetch or [%r1+8], %r3\nexit",
        false,
    );
    for want in [
        "lock add [rdx],r8",
        "lock xadd [rdx],r8d",
        "lock cmpxchg [rdx],r8",
        "lock cmpxchg [rdx],rcx",
    ] {
        assert!(b.iter().any(|s| s == want), "{want} in {b:?}");
    }
    assert!(
        b.iter().any(|s| s == "test al,7"),
        "alignment is checked: {b:?}"
    );
}

#[test]
fn backward_branches_that_fit_are_short() {
    let code = code(
        "mov %r0, 0\nloop:\nadd %r0, 1\njne %r0, 10, loop\nexit",
        false,
    );
    let all = disasm(&code);
    let jne: Vec<&(String, usize)> = all.iter().filter(|(s, _)| s.starts_with("jne")).collect();
    assert!(jne.iter().any(|(_, len)| *len == 2), "{all:?}");
    // A long loop body needs rel32.
    let mut src = String::from("mov %r0, 0\nloop:\n");
    for _ in 0..100 {
        src += "add %r0, 1\n";
    }
    src += "jne %r0, 1000, loop\nexit";
    let all = disasm(&code_of(&src));
    let back = all
        .iter()
        .find(|(s, _)| s.starts_with("jne") && s.contains("short"))
        .map(|(_, l)| *l);
    assert!(back.is_none());
    assert!(all.iter().any(|(s, l)| s.starts_with("jne") && *l == 6));
}

fn code_of(src: &str) -> Vec<u8> {
    code(src, false)
}

#[test]
fn helper_calls_go_through_the_trampoline_and_zero_r1_to_r5() {
    let b = body("call 5\nexit", false);
    let tramp = crate::context::OFF_TRAMPOLINE;
    let call = format!("call qword ptr [rbx+{tramp:X}h]");
    // r1-r5 (rdi, r8-r11) reach the trampoline in its System V argument registers, after
    // the context: each moved before its source register is overwritten.
    assert!(
        contains_window(
            &b,
            &[
                "mov rsi,rdi",
                "mov rdx,r8",
                "mov rcx,r9",
                "mov r8,r10",
                "mov r9,r11",
                "mov rdi,rbx",
                &call,
                "test eax,eax",
            ]
        ),
        "{b:?}"
    );
    assert!(contains_window(
        &b,
        &[
            "xor edi,edi",
            "xor r8d,r8d",
            "xor r9d,r9d",
            "xor r10d,r10d",
            "xor r11d,r11d"
        ]
    ));
}

/// Little-endian bytes of each immediate of the program below.
const PLANTED: [u32; 9] = [
    0x9090_c3c3,
    0x5a5a_1234,
    0x0f05_0f05,
    0x1357_9bdf,
    0x2468_ace0,
    0x3c3c_7e7e,
    0x6b6b_4d4d,
    0x7111_2233,
    0x5151_4242,
];

#[test]
fn blinding_spares_only_immediates_with_two_chosen_bytes() {
    // Two chosen bytes at most (`xx xx 00 00` or `xx xx ff ff` as an imm32): emitted as is,
    // even with blinding on.
    for (imm, text) in [
        (127, "add rsi,7Fh"),
        (-128, "add rsi,0FFFFFFFFFFFFFF80h"),
        (65535, "add rsi,0FFFFh"),
        (-32768, "add rsi,0FFFFFFFFFFFF8000h"),
    ] {
        let b = body(&format!("add %r0, {imm}\nexit"), true);
        assert!(b.iter().any(|s| s == text), "{imm}: {b:?}");
        assert!(!b.iter().any(|s| s.starts_with("xor rax,")), "{imm}: {b:?}");
    }
    // One more and it is blinded: no `add` with an immediate, a key XORed in instead.
    for imm in [65536, -32769] {
        let b = body(&format!("add %r0, {imm}\nexit"), true);
        assert!(
            !b.iter()
                .any(|s| s.starts_with("add rsi,") && !s.ends_with("rax")),
            "{imm}: {b:?}"
        );
        assert!(b.iter().any(|s| s.starts_with("xor rax,")), "{imm}: {b:?}");
    }
}

#[test]
fn a_region_address_is_built_from_its_parts_and_anything_else_wide_is_blinded() {
    // `lddw` of a VM address (region id, offset below 2^16): the id and the offset in
    // separate instructions, never a `movabs` of both.
    let b = body("lddw %r0, 0x30000ffff\nexit", true);
    assert_eq!(
        b[2..5],
        ["mov esi,3", "shl rsi,20h", "or rsi,0FFFFh"],
        "{b:?}"
    );
    let b = body("lddw %r0, 0x300000000\nexit", true);
    assert_eq!(b[2..4], ["mov esi,3", "shl rsi,20h"], "{b:?}");
    assert!(!b[4].starts_with("or "), "no `or` of a zero offset: {b:?}");
    // An offset of three bytes, a region id past the last, a 32-bit value: blinded.
    let past = (ebpf_abi::layout::MAX_REGION + 1) << 32;
    for v in [0x3_0001_0000, past, 0x1234_5678] {
        let b = body(&format!("lddw %r0, {v:#x}\nexit"), true);
        assert!(b[2].starts_with("mov rsi,"), "{v:#x}: {b:?}");
        assert!(b[3].starts_with("mov rax,"), "{v:#x}: {b:?}");
        assert_eq!(b[4], "xor rsi,rax", "{v:#x}: {b:?}");
    }
    // Without blinding, the one instruction that loads the value.
    let b = body("lddw %r0, 0x30000ffff\nexit", false);
    assert_eq!(b[2], "mov rsi,30000FFFFh", "{b:?}");
}

#[test]
fn a_forward_branch_chains_its_fall_through_into_one_charge_with_a_refund() {
    // Blocks: pcs 0-2 (ends with a forward jeq), 3-5 (reached only by falling through), 6-7
    // (the jeq's target). The first two charge 6 at once; the taken jeq refunds 3.
    let b = body(
        "ldxb %r2, [%r1]\nmov %r0, 0\njeq %r2, 0, +3\nadd %r0, 1\nadd %r0, 1\nadd %r0, 1\n\
         add %r0, 10\nexit",
        false,
    );
    let charges: Vec<&String> = b.iter().filter(|s| s.starts_with("sub rcx,")).collect();
    assert_eq!(charges, ["sub rcx,6", "sub rcx,2"], "{b:?}");
    // The taken jeq enters the chain of pcs 6-7 past its charge of 2, so the refund of 3 and
    // that charge settle as one refund of 1.
    assert!(
        b.iter().any(|s| s == "add rcx,1"),
        "the settled refund: {b:?}"
    );
    assert!(!b.iter().any(|s| s == "add rcx,3"), "{b:?}");
    // A refund of 1 into a chain that charges 3 settles as a charge of 2, tested.
    let b = body(
        "ldxb %r2, [%r1]\nmov %r0, 0\njeq %r2, 0, +1\nadd %r0, 1\nadd %r0, 10\nadd %r0, 1\nexit",
        false,
    );
    let charges: Vec<&String> = b.iter().filter(|s| s.starts_with("sub rcx,")).collect();
    assert_eq!(charges, ["sub rcx,4", "sub rcx,3", "sub rcx,2"], "{b:?}");
    let settle = b.iter().position(|s| s == "sub rcx,2").unwrap();
    assert!(
        b[settle + 1].starts_with("jae "),
        "past the charge when it fits: {b:?}"
    );
    assert!(!b.iter().any(|s| s == "add rcx,1"), "{b:?}");
    // A refund equal to the entered chain's charge: the jump goes past that charge with
    // nothing between (the only `add rcx` left are the two budget stubs').
    let b = body(
        "ldxb %r2, [%r1]\nmov %r0, 0\njeq %r2, 0, +2\nadd %r0, 1\nadd %r0, 1\nadd %r0, 10\n\
         exit",
        false,
    );
    let charges: Vec<&String> = b.iter().filter(|s| s.starts_with("sub rcx,")).collect();
    assert_eq!(charges, ["sub rcx,5", "sub rcx,2"], "{b:?}");
    let adds: Vec<&String> = b.iter().filter(|s| s.starts_with("add rcx,")).collect();
    assert_eq!(adds, ["add rcx,5", "add rcx,2"], "{b:?}");
    // A backward branch (a loop's, whose trip count is unknown) does not chain: its taken
    // side stays free. (Its copy, charged from registers at its entry, charges nothing.)
    let b = body(
        "mov %r0, 0\nadd %r0, 1\njlt %r0, %r2, -2\nadd %r0, 1\nexit",
        false,
    );
    let charges = b
        .iter()
        .filter(|s| s.starts_with("sub rcx,") && *s != "sub rcx,rdx")
        .count();
    assert_eq!(charges, 3, "{b:?}");
}

fn planted_program() -> String {
    let [a, b, c, d, e, f, g, h, i] = PLANTED;
    format!(
        "mov %r0, {a:#x}\nadd %r0, {b:#x}\nmul32 %r0, {c:#x}\njeq %r0, {d:#x}, +1\n\
         stw [%r10-8], {e:#x}\nlddw %r1, {f:#x}{g:08x}\ndiv %r0, {h:#x}\ncall {i:#x}\nldabsw {a:#x}\nexit"
    )
}

fn find(code: &[u8], needle: &[u8]) -> bool {
    code.windows(needle.len()).any(|w| w == needle)
}

/// Constants of the emitter's own that are wider than two bytes, whatever the program, with
/// their field's size: they are not the program's choice, so they do not count as chosen.
const EMITTER_CONSTANTS: [(usize, u64); 2] = [
    // In checked-facts mode, `sdiv`/`smod` by a register compare the dividend with `MIN` where
    // a fact says the divisor is never -1 with it.
    (8, i64::MIN as u64),
    (4, i32::MIN as u32 as u64),
];

/// How many low bytes of a little-endian field are not the zero or sign extension of those
/// below them (`34 12 00 00` and `00 80 ff ff` have two).
fn significant(field: &[u8]) -> usize {
    (0..=field.len())
        .find(|&k| {
            let rest = &field[k..];
            rest.iter().all(|&b| b == 0)
                || (k > 0 && field[k - 1] & 0x80 != 0 && rest.iter().all(|&b| b == 0xff))
        })
        .unwrap_or(field.len())
}

/// Which bytes of `code` a program may have chosen: in every displacement and immediate field
/// that is the same in `again` (the same program emitted with other blinding keys: a field
/// that differs is derived from a key), the bytes below its zero or sign extension. The
/// emitter's own constants, jump displacements and context offsets count too unless listed
/// in [`EMITTER_CONSTANTS`]: an over-approximation, so that a new wide constant is reviewed.
fn chosen_bytes(code: &[u8], again: &[u8]) -> Vec<bool> {
    assert_eq!(
        code.len(),
        again.len(),
        "the keys changed the code's layout"
    );
    let mut chosen = alloc::vec![false; code.len()];
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    while decoder.can_decode() {
        let insn = decoder.decode();
        assert!(!insn.is_invalid(), "undecodable code at {:#x}", insn.ip());
        let at = insn.ip() as usize;
        let offsets = decoder.get_constant_offsets(&insn);
        let fields = [
            (offsets.displacement_offset(), offsets.displacement_size()),
            (offsets.immediate_offset(), offsets.immediate_size()),
            (offsets.immediate_offset2(), offsets.immediate_size2()),
        ];
        for (offset, size) in fields {
            let range = at + offset..at + offset + size;
            let field = &code[range.clone()];
            if size == 0 || field != &again[range.clone()] {
                continue;
            }
            let mut wide = [0u8; 8];
            wide[..size].copy_from_slice(field);
            if EMITTER_CONSTANTS.contains(&(size, u64::from_le_bytes(wide))) {
                continue;
            }
            for c in &mut chosen[range.start..range.start + significant(field)] {
                *c = true;
            }
        }
    }
    chosen
}

/// The longest run of chosen bytes in `program`'s code, blinded, and where it starts; with
/// the facts of the plain input or of the stack alone, the checks they make impossible kept
/// (`checked`, the one mode that emits [`EMITTER_CONSTANTS`]) or dropped.
fn longest_chosen_run(program: &ebpf_isa::Program, input: bool, checked: bool) -> (usize, usize) {
    let entry = if input {
        Entry::input()
    } else {
        Entry::unknown()
    };
    let options = JitOptions {
        constant_blinding: true,
        entry: input.then(Entry::input),
        checked_facts: checked,
        spectre_masking: true,
        spectre_clamp_proven: false,
    };
    let facts = Facts::analyse(program, &entry);
    let code = emit(program, &options, &facts).unwrap().code;
    let again = emit(program, &options, &facts).unwrap().code;
    let chosen = chosen_bytes(&code, &again);
    let (mut best, mut run) = ((0, 0), 0);
    for (i, &c) in chosen.iter().enumerate() {
        run = if c { run + 1 } else { 0 };
        if run > best.0 {
            best = (run, i + 1 - run);
        }
    }
    best
}

#[test]
fn blinded_code_has_no_run_of_more_than_two_chosen_bytes() {
    // Every form that carries an immediate, with four chosen bytes each: all planted without
    // blinding, none with it.
    let src = planted_program();
    let plain = code(&src, false);
    for imm in PLANTED {
        assert!(
            find(&plain, &imm.to_le_bytes()),
            "{imm:#x} is planted without blinding"
        );
    }
    let program = ebpf_isa::assemble(&src).unwrap();
    for (input, checked) in [(false, false), (true, true)] {
        let (run, at) = longest_chosen_run(&program, input, checked);
        assert!(run <= 2, "{run} chosen bytes at {at:#x}");
    }
    for _ in 0..20 {
        let blinded = code(&src, true);
        for imm in PLANTED {
            assert!(
                !find(&blinded, &imm.to_le_bytes()),
                "{imm:#x} appears in blinded code"
            );
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The invariant docs/jit-x86.md states, over programs of every form with immediates at
    /// the edges of the rule.
    #[test]
    fn no_program_puts_more_than_two_chosen_bytes_in_a_row(
        program in ebpf_testgen::closed_program(1..40),
        imms in proptest::collection::vec(ebpf_testgen::blinding_edge_imm(), 1..40),
        wides in proptest::collection::vec(ebpf_testgen::blinding_edge_imm64(), 1..8),
        input: bool,
        checked: bool,
    ) {
        let program = ebpf_testgen::with_immediates(&program, &imms, &wides);
        let (run, at) = longest_chosen_run(&program, input, checked);
        proptest::prop_assert!(run <= 2, "{} chosen bytes at {:#x}", run, at);
    }
}

#[test]
fn every_instruction_form_decodes() {
    // One of every row of the instruction table, in one program: the emitted code must decode
    // completely (no garbage between instructions) with and without blinding.
    let mut insns: Vec<ebpf_isa::Insn> = Vec::new();
    for spec in ebpf_isa::table::SPECS {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let insn = proptest::strategy::ValueTree::current(
            &proptest::strategy::Strategy::new_tree(
                &ebpf_testgen::insn_of_form(spec.form),
                &mut runner,
            )
            .unwrap(),
        );
        insns.push(insn);
    }
    insns.push(ebpf_isa::Insn::Exit);
    let program = ebpf_isa::Program::from_insns(insns);
    for blinding in [false, true] {
        let c = emitted(&program, blinding);
        let all = disasm(&c);
        let total: usize = all.iter().map(|(_, l)| l).sum();
        assert_eq!(total, c.len());
        assert!(all.iter().any(|(s, _)| s.starts_with("lock")));
        let mut d = Decoder::with_ip(64, &c, 0, DecoderOptions::NONE);
        assert!(d.iter().all(|i| i.mnemonic() != Mnemonic::INVALID));
    }
}

/// A loop over `count` words, the count read from the input's header: not provable, but
/// versioned on `count <= (len - 8) / 4`.
const COUNTED_WORDS: &str = "
    mov %r0, 0
    jlt %r2, 8, out
    ldxdw %r3, [%r1+0]
    mov %r4, 0
loop:
    jge %r4, %r3, out
    mov %r5, %r4
    lsh %r5, 2
    add %r5, %r1
    ldxw %r6, [%r5+8]
    add %r0, %r6
    add %r4, 1
    ja loop
out:
    exit";

#[test]
fn a_versioned_loop_gets_an_unchecked_copy_selected_at_its_entry() {
    // The proven accesses are one add (clamped, each is five instructions: both proofs rest
    // on a branch, the header's on `len >= 8`, the copy's on its dispatcher).
    let masked = text(&code_with_input_hardened(COUNTED_WORDS, false, true, true));
    let clamps = (0..masked.len()).filter(|&i| is_clamp(&masked, i)).count();
    assert_eq!(clamps, 2, "{masked:#?}");
    let all = text(&code_with_input(COUNTED_WORDS, false));
    // Full checks, of any width.
    let checks = |all: &[String]| {
        all.iter()
            .filter(|s| s.starts_with("cmp rax,[rbx+rdx*8+"))
            .count()
    };
    // The dispatcher: r3 <= ((4 << 32) + len - (4 << 32) - 8) >> 2, from the region table.
    let end = crate::context::lim_offset(false, 0, 4);
    let dispatcher = [
        "mov rdx,0FFFFFFFBFFFFFFF8h".to_string(),
        alloc::format!("mov rax,[rbx+{}]", disp(end)),
        "add rax,rdx".to_string(),
    ];
    let dispatcher: Vec<&str> = dispatcher.iter().map(String::as_str).collect();
    assert!(contains_window(&all, &dispatcher), "{all:#?}");
    assert!(
        contains_window(&all, &["shr rax,2", "cmp r9,rax"]),
        "{all:#?}"
    );
    // Then the loop's charge from r4 and r3 (8 instructions a trip, 1 to the exit test on
    // top), taken at once: the copy charges nothing, the ordinary loop 8 a trip.
    let conditions = all.iter().position(|s| s == "cmp r9,rax").unwrap();
    let charge = &all[conditions..];
    let imul = charge.iter().position(|s| s == "imul rdx,8").unwrap();
    assert!(
        charge[imul..]
            .windows(3)
            .any(|w| w[0] == "cmp rcx,rdx" && w[2] == "sub rcx,rdx"),
        "{all:#?}"
    );
    let charges = all.iter().filter(|s| *s == "sub rcx,8").count();
    assert_eq!(charges, 1, "{all:#?}");
    // The header load is proven by `len >= 8`; the word load is checked in the loop and not
    // in its copy.
    let bias = alloc::format!("mov rdx,[rbx+{}]", disp(crate::context::OFF_BIAS + 8 * 4));
    assert!(
        contains_window(&all, &[&bias, "mov r9,[rdi+rdx]"]),
        "{all:#?}"
    );
    assert!(
        contains_window(&all, &[&bias, "mov r12d,[r11+rdx+8]"]),
        "{all:#?}"
    );
    assert_eq!(checks(&all), 1, "{all:#?}");
    // Checked facts: every access checked, the copy's too.
    let all = text(&code_with_input(COUNTED_WORDS, true));
    assert_eq!(checks(&all), 3, "{all:#?}");
    assert!(!all.contains(&bias), "{all:#?}");
}

/// A loop of 3 instructions run 100 times, which the facts count: 300 instructions per entry.
const COUNTED: &str = "
    mov %r0, 0
    mov %r1, 0
loop:
    add %r0, %r1
    add %r1, 1
    jlt %r1, 100, loop
    exit";

#[test]
fn a_counted_loop_is_charged_once_at_its_entry() {
    let program = ebpf_isa::assemble(COUNTED).unwrap();
    let facts = Facts::analyse(&program, &Entry::unknown());
    assert_eq!(
        facts
            .loops()
            .iter()
            .map(|l| l.instructions(&[0; 11]))
            .collect::<Vec<_>>(),
        [Some(300)]
    );
    let all = text(&emitted(&program, false));
    // The dispatcher: the whole loop's budget at once, then the copy.
    assert!(
        all.windows(3)
            .any(|w| w[0] == "cmp rcx,12Ch" && w[1].starts_with("jb ") && w[2] == "sub rcx,12Ch"),
        "{all:#?}"
    );
    assert_charged_loop_then_free_copy(&all);
    // Checked facts: the copy counts its instructions and compares them with the fact.
    let options = JitOptions {
        constant_blinding: false,
        entry: None,
        checked_facts: true,
        spectre_masking: true,
        spectre_clamp_proven: false,
    };
    let checked = text(&emit(&program, &options, &facts).unwrap().code);
    let count = disp(crate::context::OFF_LOOP_COUNT);
    // It starts at minus the charge and must be 0 on the way out.
    for expected in [
        alloc::format!("mov qword ptr [rbx+{count}],0FFFFFFFFFFFFFED4h"),
        alloc::format!("cmp qword ptr [rbx+{count}],0"),
    ] {
        assert!(checked.contains(&expected), "{expected}: {checked:#?}");
    }
}

#[test]
fn a_loop_bounded_at_run_time_is_charged_at_its_entry_from_registers() {
    let src = COUNTED.replace("jlt %r1, 100, loop", "jlt %r1, %r2, loop");
    let program = ebpf_isa::assemble(&src).unwrap();
    let all = text(&emitted(&program, false));
    // The dispatcher: r1 + 1 < r2, (r2 - (r1 + 1)) * 3 + 3 from the budget.
    assert!(
        contains_window(
            &all,
            &[
                "mov edx,1",
                "add rdx,rdi",
                "mov rax,rdx",
                "mov rdx,r8",
                "cmp rax,rdx"
            ]
        ),
        "{all:#?}"
    );
    assert!(
        contains_window(&all, &["imul rdx,3", "add rdx,3"]),
        "{all:#?}"
    );
    assert!(
        all.windows(3)
            .any(|w| w[0] == "cmp rcx,rdx" && w[1].starts_with("jb ") && w[2] == "sub rcx,rdx"),
        "{all:#?}"
    );
    assert_charged_loop_then_free_copy(&all);
}

/// The code of `src` under the facts of the plain input, unblinded, with Spectre masking on or
/// off, checks the facts make impossible dropped, as text.
fn code_masked(src: &str, masking: bool) -> Vec<String> {
    text(&code_with_input_masked(src, false, masking))
}

/// Whether instruction `i` of `all` is a Spectre mask: the full check's and packet loads'
/// `cmovae` from the null field, or the guessed region's `sbb rax,rax` (the start of its
/// `sbb`/`add`/`and` sequence).
fn is_mask(all: &[String], i: usize) -> bool {
    let null = format!("cmovae rdx,[rbx+{}]", disp(crate::context::OFF_NULL));
    all[i] == null
        || (all[i] == "sbb rax,rax" && all.get(i + 2).is_some_and(|s| s == "and rdx,rax"))
}

/// Spectre v1: with masking on (the default), every access checked at run time — the full
/// check, the guessed region (inline, and again in its out-of-line full check), an atomic, a
/// packet load — gets a mask on its own compare's flags between the check's `jae` and the
/// access; accesses the facts prove have no check and no mask; with masking off there is no
/// mask anywhere.
#[test]
fn checked_accesses_are_masked_against_speculation() {
    let cases = [
        // (program, checks at run time: inline ones plus out-of-line full checks)
        ("ldxw %r0, [%r2+8]\nexit", 1),
        ("stxdw [%r1+8], %r0\nexit", 2),
        ("lock add [%r2], %r0\nexit", 1),
        ("ldabsb 3\nldindh %r2, 1\nexit", 2),
        // Two guessed accesses to the input (its length unknown): each masked inline and in
        // its out-of-line full check.
        ("ldxw %r3, [%r1+0]\nldxb %r0, [%r1+3]\nexit", 4),
        // Proven without a branch (frame slots at constant offsets): no check, no mask.
        ("stxdw [%r10-8], %r1\nldxdw %r0, [%r10-8]\nexit", 0),
    ];
    for (src, checks) in cases {
        let all = code_masked(src, true);
        let masks: Vec<usize> = (0..all.len()).filter(|&i| is_mask(&all, i)).collect();
        let jaes = all.iter().filter(|s| s.starts_with("jae ")).count();
        assert_eq!(masks.len(), checks, "{src}: {all:#?}");
        assert_eq!(jaes, checks, "{src}: one mask per check: {all:#?}");
        for &i in &masks {
            // Right after the check's branch, or after the flag-preserving `mov`/`lea` of
            // the host address that follows it.
            let before: Vec<&str> = all[..i].iter().rev().take(3).map(String::as_str).collect();
            assert!(
                before.iter().any(|b| b.starts_with("jae ")),
                "{src}: the mask must follow its check: {before:?}"
            );
            assert!(
                before
                    .iter()
                    .take_while(|b| !b.starts_with("jae "))
                    .all(|b| b.starts_with("mov rdx,") || b.starts_with("lea rdx,")),
                "{src}: nothing between the check and its mask may change the flags: {before:?}"
            );
        }
        let unmasked = code_masked(src, false);
        assert!(
            !(0..unmasked.len()).any(|i| is_mask(&unmasked, i)),
            "{src}: {unmasked:#?}"
        );
        assert!(
            !unmasked
                .iter()
                .any(|s| s.starts_with("cmov") || s.starts_with("sbb")),
            "{src}: {unmasked:#?}"
        );
    }
}

/// Whether instruction `i` of `all` starts the branch-free clamp of an access proven by a
/// branch: `mov`/`lea edx` (the offset), `cmp rdx,[span]`, `sbb rax,rax`, `add rdx,[host]`,
/// `and rdx,rax` — no `jae` anywhere in it.
fn is_clamp(all: &[String], i: usize) -> bool {
    let at = |k: usize| all.get(i + k).map_or("", String::as_str);
    (at(0).starts_with("mov edx,") || at(0).starts_with("lea edx,"))
        && at(1).starts_with("cmp rdx,[rbx+")
        && at(2) == "sbb rax,rax"
        && at(3).starts_with("add rdx,[rbx+")
        && at(4) == "and rdx,rax"
}

/// Spectre v1 through the program's own guards: an access proven by a branch (a guard, a
/// loop bound, a version's dispatcher) has no check, so with masking and
/// `spectre_clamp_proven` on it gets the branch-free clamp, one per access, and is then
/// addressed through `rdx` alone; with either off, and for proofs that need no branch, no
/// clamp.
#[test]
fn branch_proven_accesses_are_clamped_without_a_branch() {
    let cases = [
        // (program, accesses proven by a branch, accesses proven without one)
        // A guarded header: `if (p + 14 > end) return`.
        (
            "mov %r3, %r1\nadd %r3, %r2\nmov %r4, %r1\nadd %r4, 14\njgt %r4, %r3, +4\n\
             ldxh %r0, [%r1+12]\nldxb %r5, [%r1+13]\nstxb [%r1], %r5\nexit\nmov %r0, 0\nexit",
            3,
            0,
        ),
        // A loop index below the length (twice: the loop and its copy, charged at its entry).
        (
            "mov %r0, 0\njeq %r2, 0, +6\nmov %r3, 0\nmov %r5, %r1\nadd %r5, %r3\n\
             ldxb %r5, [%r5]\nadd %r3, 1\njlt %r3, %r2, -5\nexit",
            2,
            0,
        ),
        // A claimed length: the version's copy of the loop.
        (
            "ldxdw %r2, [%r1]\nmov %r3, %r1\nadd %r3, %r2\nadd %r1, 8\nmov %r0, 0\n\
             jge %r1, %r3, +4\nldxb %r4, [%r1]\nadd %r0, %r4\nadd %r1, 1\nja -5\nexit",
            1,
            0,
        ),
        // Frame slots at constant offsets, behind a branch that proves nothing of them.
        (
            "stxdw [%r10-8], %r1\njeq %r2, 0, +1\nldxdw %r0, [%r10-8]\nexit",
            0,
            2,
        ),
    ];
    for (src, by_branch, safe) in cases {
        let all = text(&code_with_input_hardened(src, false, true, true));
        let clamps = (0..all.len()).filter(|&i| is_clamp(&all, i)).count();
        assert_eq!(clamps, by_branch, "{src}: {all:#?}");
        // Safe proofs keep the one-add addressing `[base + rdx + off]` (rdx = the bias).
        let indexed = all.iter().filter(|s| s.contains("+rdx")).count();
        assert!(indexed >= safe, "{src}: {all:#?}");
        // Masking off (the clamp asked for or not), and masking on without the clamp (the
        // default): every proven access is one add.
        for (masking, clamp) in [(false, true), (false, false), (true, false)] {
            let other = text(&code_with_input_hardened(src, false, masking, clamp));
            assert_eq!(
                (0..other.len()).filter(|&i| is_clamp(&other, i)).count(),
                0,
                "{src}: masking {masking}, clamp {clamp}: {other:#?}"
            );
            assert!(
                other.iter().filter(|s| s.contains("+rdx")).count() >= by_branch + safe,
                "{src}: masking {masking}, clamp {clamp}: every proven access is one add: \
                 {other:#?}"
            );
        }
    }
}

/// Accesses the facts prove in bounds without a branch carry neither a check nor a mask,
/// masking on or off: they hold on every speculative path too.
#[test]
fn proven_accesses_carry_no_mask() {
    // A stack table indexed by a masked value: proven without any branch.
    let src = "mov %r0, 0\nstxdw [%r10-8], %r1\nldxdw %r2, [%r10-8]\nand %r2, 7\n\
               mov %r3, %r10\nsub %r3, 16\nadd %r3, %r2\nldxb %r0, [%r3+0]\nexit";
    for masking in [true, false] {
        let all = code_masked(src, masking);
        assert!(
            !all.iter()
                .any(|s| s.starts_with("jae ") || s.starts_with("cmov") || s.starts_with("sbb")),
            "masking {masking}: {all:#?}"
        );
    }
}
