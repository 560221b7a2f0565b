//! `ebpf cfg`: a program's control-flow graph as Graphviz DOT (`--dot`), or rendered to SVG by
//! Graphviz's `dot` (`--svg`).
//!
//! The graph is `ebpf_vm::cfg::Cfg`'s, drawn as it is: one box per basic block with its pcs and
//! its instructions in LLVM syntax; one cluster per function (the entry and every local-call
//! target); taken branches green, not-taken ones grey; back edges red and bold; blocks inside
//! loops shaded by nesting depth, loop headers with a thick border; local calls as dashed blue
//! edges to the callee's entry; a way out that traps (a jump outside the program, say) as a red
//! octagon; unreachable blocks dashed. Writing the DOT text is this module's only logic.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use ebpf_vm::cfg::{BlockId, Cfg, EdgeKind, Terminator};
use ebpf_vm::isa::Program;

/// Fill colours by loop depth (0: outside every loop).
const LOOP_SHADES: [&str; 4] = ["white", "#fff4cc", "#ffe08a", "#ffc94d"];
/// Back edges.
const BACK_EDGE: &str = "#d62728";
/// Taken branches and jumps.
const TAKEN: &str = "#2ca02c";
/// Not-taken branches and fall-through.
const FALL: &str = "#7f7f7f";
/// Local calls.
const CALL: &str = "#1f77b4";

/// The DOT text of `program`'s control-flow graph, titled `title`.
pub(crate) fn dot(program: &Program, title: &str) -> String {
    let cfg = Cfg::build(program);
    let back_edges: HashSet<(BlockId, BlockId)> = cfg.back_edges().iter().copied().collect();
    let mut depth = vec![0usize; cfg.blocks().len()];
    for l in cfg.loops() {
        for b in &l.blocks {
            depth[b.index()] += 1;
        }
    }
    let headers: HashSet<BlockId> = cfg.loops().iter().map(|l| l.header).collect();
    let lines: Vec<String> = program
        .iter()
        .map(|(pc, insn)| format!("{pc:>4}: {}", insn.llvm()))
        .collect();

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "digraph cfg {{");
    let _ = writeln!(
        out,
        "  graph [label={}, labelloc=t, fontname=\"monospace\", fontsize=12, newrank=true];",
        quote(title)
    );
    let _ = writeln!(
        out,
        "  node [shape=box, fontname=\"monospace\", fontsize=10, style=filled, fillcolor=white];"
    );
    let _ = writeln!(out, "  edge [fontname=\"monospace\", fontsize=9];");
    for (f, function) in cfg.functions().iter().enumerate() {
        let name = if f == 0 { "entry" } else { "function" };
        let _ = writeln!(out, "  subgraph cluster_f{f} {{");
        let _ = writeln!(
            out,
            "    label={}; style=rounded; color=\"#555555\";",
            quote(&format!(
                "{name} at pc {} (pcs {}..{})",
                function.entry, function.entry, function.end
            ))
        );
        for b in function.blocks.clone() {
            let id = BlockId(b);
            let block = cfg.block(id);
            let mut label = format!("pc {}..{}", block.start, block.end);
            if headers.contains(&id) {
                label.push_str("  loop header");
            }
            if !cfg.is_reachable(id) {
                label.push_str("  (unreachable)");
            }
            label.push('\n');
            for line in lines.get(block.insns.clone()).unwrap_or_default() {
                label.push_str(line);
                label.push('\n');
            }
            let shade = LOOP_SHADES[depth[id.index()].min(LOOP_SHADES.len() - 1)];
            let mut attrs = format!("label={}, fillcolor=\"{shade}\"", left_label(&label));
            if headers.contains(&id) {
                attrs.push_str(", penwidth=2.5");
            }
            if block.terminator == Terminator::Exit {
                attrs.push_str(", peripheries=2");
            }
            if !cfg.is_reachable(id) {
                attrs.push_str(", style=\"filled,dashed\", fontcolor=\"#7f7f7f\"");
            }
            let _ = writeln!(out, "    b{b} [{attrs}];");
        }
        let _ = writeln!(out, "  }}");
    }
    for (b, block) in cfg.blocks().iter().enumerate() {
        let from = BlockId(b as u32);
        let is_branch = matches!(block.terminator, Terminator::Branch { .. });
        for (to, kind) in block.successors() {
            let mut attrs = match (kind, is_branch) {
                (EdgeKind::Taken, true) => format!("color=\"{TAKEN}\", label=\"taken\""),
                (EdgeKind::Taken, false) => format!("color=\"{TAKEN}\""),
                (EdgeKind::FallThrough, true) => format!("color=\"{FALL}\", label=\"not taken\""),
                (EdgeKind::FallThrough, false) => format!("color=\"{FALL}\""),
            };
            if back_edges.contains(&(from, to)) {
                attrs = format!(
                    "color=\"{BACK_EDGE}\", penwidth=2.5, label=\"back edge\", fontcolor=\"{BACK_EDGE}\""
                );
            }
            let _ = writeln!(out, "  b{b} -> b{} [{attrs}];", to.0);
        }
        let traps = match block.terminator {
            Terminator::FallThrough(None) | Terminator::Jump(None) => true,
            Terminator::Branch { taken, fallthrough } => taken.is_none() || fallthrough.is_none(),
            _ => false,
        };
        if traps {
            let _ = writeln!(
                out,
                "  trap{b} [label=\"traps\", shape=octagon, color=\"{BACK_EDGE}\", \
                 fontcolor=\"{BACK_EDGE}\"];\n  b{b} -> trap{b} [color=\"{BACK_EDGE}\", style=dotted];"
            );
        }
    }
    for function in cfg.functions() {
        for &(pc, callee) in &function.call_sites {
            if let Some(caller) = cfg.block_at(pc) {
                let _ = writeln!(
                    out,
                    "  b{} -> b{} [style=dashed, color=\"{CALL}\", fontcolor=\"{CALL}\", \
                     label=\"call (pc {pc})\", constraint=false];",
                    caller.0,
                    cfg.function(callee).entry_block().0
                );
            }
        }
    }
    let _ = writeln!(out, "}}");
    out
}

/// Renders DOT text to SVG with Graphviz's `dot`.
pub(crate) fn svg(dot_text: &str) -> Result<Vec<u8>> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run Graphviz's `dot` (install the graphviz package) to render SVG")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(dot_text.as_bytes())
            .context("cannot send the graph to `dot`")?;
    }
    let output = child.wait_with_output().context("`dot` did not finish")?;
    if !output.status.success() {
        bail!(
            "`dot` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// A DOT string literal.
fn quote(text: &str) -> String {
    quote_lines(text, "\\n")
}

/// A DOT label whose lines are left-aligned (`\l` ends each line).
fn left_label(text: &str) -> String {
    quote_lines(text, "\\l")
}

/// A DOT string literal with `newline` for each line break.
fn quote_lines(text: &str, newline: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str(newline),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
