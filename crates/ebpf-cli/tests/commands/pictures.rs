//! `ebpf cfg`: the DOT it writes parses with Graphviz's `dot`, and shows what the fixtures' C
//! sources say their programs are made of (functions, calls, loops). Without `dot` the parse
//! check is skipped with a warning, except under `CI`, where it fails.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::common::{TempDir, ebpf, ok, one_line_failure, usage_error};

fn fixture(name: &str) -> String {
    format!("{}/../../tests/elf/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Whether Graphviz's `dot` runs; a missing one fails under CI and warns elsewhere.
fn graphviz() -> bool {
    let found = Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "Graphviz's `dot` is missing: CI must install graphviz"
        );
        eprintln!(
            "warning: Graphviz's `dot` is missing (apt-get install graphviz): DOT output not parsed"
        );
    }
    found
}

/// Checks that `dot` parses `text` without a complaint.
fn assert_dot_parses(text: &str) {
    if !graphviz() {
        return;
    }
    let mut child = Command::new("dot")
        .arg("-Tcanon")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && complaints.is_empty(),
        "dot: {complaints}\n{text}"
    );
}

/// The graph as the tests look at it: the cluster (function) of each block node, and the edges
/// with their attribute text.
struct Graph {
    cluster_of: HashMap<String, usize>,
    clusters: usize,
    edges: Vec<(String, String, String)>,
}

fn parse(text: &str) -> Graph {
    let mut graph = Graph {
        cluster_of: HashMap::new(),
        clusters: 0,
        edges: Vec::new(),
    };
    let mut current = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("subgraph cluster_") {
            current = Some(graph.clusters);
            graph.clusters += 1;
        } else if line == "}" {
            current = None;
        } else if let Some((edge, attrs)) = line.split_once(" [") {
            if let Some((from, to)) = edge.split_once(" -> ") {
                graph.edges.push((from.into(), to.into(), attrs.into()));
            } else if let Some(c) = current {
                graph.cluster_of.insert(edge.to_string(), c);
            }
        }
    }
    graph
}

#[test]
fn cfg_of_the_xdp_filter_has_its_two_functions_and_no_loop() {
    let dir = TempDir::new("cfg-ip");
    let text = ok(&ebpf(&dir, &["cfg", &fixture("ip_filter.o"), "--dot"]));
    assert_dot_parses(&text);
    let graph = parse(&text);
    // ip_filter.c: xdp_ip_filter calls the noinline ipv4_offset once, and neither loops.
    assert_eq!(graph.clusters, 2, "{text}");
    let calls: Vec<_> = graph
        .edges
        .iter()
        .filter(|e| e.2.contains("call (pc"))
        .collect();
    assert_eq!(calls.len(), 1, "{text}");
    assert_eq!(graph.cluster_of[&calls[0].0], 0);
    assert_eq!(graph.cluster_of[&calls[0].1], 1);
    assert!(!text.contains("back edge") && !text.contains("loop header"));
    // Every block shows its instructions in LLVM syntax, and exits are marked.
    assert!(text.contains(": exit\\l"), "{text}");
    assert!(text.contains("peripheries=2"));
}

#[test]
fn cfg_of_the_sort_shows_its_three_loops_one_nested() {
    let dir = TempDir::new("cfg-sort");
    let text = ok(&ebpf(&dir, &["cfg", &fixture("sort.o"), "--dot"]));
    assert_dot_parses(&text);
    // sort.c: an insertion sort (a while loop inside a for loop), then a hashing loop.
    assert_eq!(text.matches("loop header").count(), 3, "{text}");
    let back_edges = parse(&text)
        .edges
        .into_iter()
        .filter(|e| e.2.contains("back edge"))
        .count();
    assert_eq!(back_edges, 3, "{text}");
    // The inner loop's blocks are two loops deep: the darker shade.
    assert!(text.contains("fillcolor=\"#ffe08a\""), "{text}");
}

#[test]
fn cfg_of_a_program_of_many_functions_draws_each_and_the_recursion() {
    let dir = TempDir::new("cfg-calls");
    let text = ok(&ebpf(
        &dir,
        &["cfg", &fixture("calls_O0.o"), "--section", "xdp", "--dot"],
    ));
    assert_dot_parses(&text);
    let graph = parse(&text);
    // calls.c at -O0: call_chain, sum_bytes, fill_squares, gcd, fib and mix_words.
    assert_eq!(graph.clusters, 6, "{text}");
    // fib calls itself: a call edge within one cluster, to its entry.
    let recursive = graph.edges.iter().any(|(from, to, attrs)| {
        attrs.contains("call (pc") && graph.cluster_of[from] == graph.cluster_of[to]
    });
    assert!(recursive, "{text}");
}

#[test]
fn cfg_marks_ways_out_that_trap() {
    let dir = TempDir::new("cfg-trap");
    dir.write("broken.s", "jeq %r1, 0, +5\nmov %r0, 1\nexit\n");
    let text = ok(&ebpf(&dir, &["cfg", "broken.s", "--dot"]));
    assert_dot_parses(&text);
    assert!(text.contains("shape=octagon"), "{text}");
}

#[test]
fn cfg_renders_svg() {
    let dir = TempDir::new("cfg-svg");
    if !graphviz() {
        return;
    }
    let svg = ok(&ebpf(&dir, &["cfg", &fixture("sort.o"), "--svg"]));
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg}");
    assert!(svg.contains("loop header"));
    ok(&ebpf(
        &dir,
        &["cfg", &fixture("ip_filter.o"), "--svg", "-o", "ip.svg"],
    ));
    let file = std::fs::read_to_string(dir.join("ip.svg")).unwrap();
    assert!(file.contains("<svg") && file.contains("exit"));
}

#[test]
fn cfg_errors() {
    let dir = TempDir::new("cfg-errors");
    // An object with several programs needs a choice, and says which there are.
    let out = ebpf(&dir, &["cfg", &fixture("lookup.o"), "--dot"]);
    one_line_failure(&out, "error:", &["2 programs", "crc32", "http_method"]);
    usage_error(&ebpf(&dir, &["cfg", &fixture("sort.o")]), &["--dot"]);
    usage_error(
        &ebpf(&dir, &["cfg", &fixture("sort.o"), "--dot", "--svg"]),
        &["--svg"],
    );
}
