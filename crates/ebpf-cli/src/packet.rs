//! `ebpf run prog.o --packet FRAME`: a program written for the kernel, run on a packet with
//! its XDP or socket-filter context and the object's maps, seeded from JSON
//! (`--maps-init`) and printed as JSON (`--maps-dump`).
//!
//! The JSON of both is one object with a member per map: a list of `{"key": HEX, "value":
//! HEX}` (per-CPU values side by side, each padded to 8 bytes, as the kernel's syscall lays
//! them out); a dump lists a ring buffer's records as `{"record": HEX}`.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use ebpf_cli::{ElfChoice, MAX_PROGRAM_FILE, quote_path, read_file_bounded};
use ebpf_vm::maps::{Map, UpdateFlags};
use ebpf_vm::{Context, KernelHelpers, Object, Packet, TcAction, VmBuilder, XdpAction, isa};
use serde_json::{Map as JsonMap, Value, json};

/// What `run` was asked to do with a packet.
pub(crate) struct PacketRun<'a> {
    /// The engine, budget and hardening (the kernel's helpers are added here).
    pub(crate) builder: VmBuilder,
    pub(crate) packet: Option<&'a Path>,
    pub(crate) maps_init: Option<&'a Path>,
    pub(crate) maps_dump: bool,
}

/// Loads the object, seeds its maps, runs the chosen program on the packet and prints
/// `r0`, the XDP action, the output packet and (asked for) the maps.
pub(crate) fn run(path: &Path, choice: &ElfChoice, args: &PacketRun<'_>) -> Result<String> {
    let name = quote_path(path);
    let bytes = read_file_bounded(path, MAX_PROGRAM_FILE, "object")?;
    let object = args
        .builder
        .clone()
        .kernel_helpers(KernelHelpers::new())
        .load_object(&bytes)
        .with_context(|| name.clone())?;
    let program = select(&object, choice).with_context(|| name.clone())?;
    if let Some(init) = args.maps_init {
        seed(&object, init)?;
    }
    let frame = match args.packet {
        Some(p) => ebpf_cli::read_input_file(p)?,
        None => Vec::new(),
    };
    let mut packet = Packet::new(&frame)
        .ok_or_else(|| anyhow!("the packet is longer than {} bytes", Packet::MAX_FRAME))?;
    let vm = object
        .program(program)
        .ok_or_else(|| anyhow!("{name}: no program {}", isa::quoted(program)))?;
    let kind = vm.program_kind().unwrap_or(ebpf_vm::ProgramKind::Xdp);
    let outcome = vm.run_packet(&mut packet, &Context::default_for(kind))?;
    let mut out = format!("{:#x}\n", outcome.r0);
    match kind {
        ebpf_vm::ProgramKind::Xdp => {
            let action = match outcome.xdp_action() {
                Some(XdpAction::Aborted) => "XDP_ABORTED",
                Some(XdpAction::Drop) => "XDP_DROP",
                Some(XdpAction::Pass) => "XDP_PASS",
                Some(XdpAction::Tx) => "XDP_TX",
                Some(XdpAction::Redirect) => "XDP_REDIRECT",
                None => "not an XDP action",
            };
            out.push_str(&format!("action: {action}\n"));
        }
        ebpf_vm::ProgramKind::Tc => {
            let action = TcAction::from_r0(outcome.r0).map_or("not a TC action", TcAction::name);
            out.push_str(&format!("action: {action}\n"));
        }
        _ => {}
    }
    if let Some(target) = outcome.redirect {
        out.push_str(&format!("redirect: interface {target}\n"));
    }
    if let Some((map, key)) = outcome.redirect_map {
        let name = object
            .maps()
            .by_index(map as usize)
            .map_or_else(|| format!("#{map}"), |m| isa::quoted(m.name()).to_string());
        out.push_str(&format!("redirect: map `{name}` key {key}\n"));
    }
    out.push_str(&format!("packet: {}\n", hex(packet.bytes())));
    if args.maps_dump {
        let dump = serde_json::to_string_pretty(&dump(&object))?;
        out.push_str(&dump);
        out.push('\n');
    }
    Ok(out)
}

/// The program `choice` names: by function, the only one in a section, or the only one.
fn select<'a>(object: &'a Object, choice: &ElfChoice) -> Result<&'a str> {
    let programs: Vec<(&str, &str)> = object.programs().collect();
    let matching: Vec<&str> = programs
        .iter()
        .filter(|(f, s)| {
            choice.function.as_deref().is_none_or(|n| n == *f)
                && choice.section.as_deref().is_none_or(|n| n == *s)
        })
        .map(|(f, _)| *f)
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => bail!("no XDP or socket-filter program matches"),
        several => bail!(
            "{} programs match ({}): choose one with --function",
            several.len(),
            several
                .iter()
                .map(|p| isa::quoted(p).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str, what: &str) -> Result<Vec<u8>> {
    ebpf_cli::parse_hex(text).map_err(|e| anyhow!("{what}: {e}"))
}

/// Seeds the maps from `path` (see the module comment).
fn seed(object: &Object, path: &Path) -> Result<()> {
    let name = quote_path(path);
    let text = read_file_bounded(path, MAX_PROGRAM_FILE, "maps file")?;
    let json: Value = serde_json::from_slice(&text).with_context(|| name.clone())?;
    let Value::Object(maps) = json else {
        bail!("{name}: expected an object with a member per map");
    };
    for (map_name, entries) in &maps {
        let what = format!("{name}: map {}", isa::quoted(map_name));
        let map = object
            .map(map_name)
            .ok_or_else(|| anyhow!("{what}: the object has no such map"))?;
        let Value::Array(entries) = entries else {
            bail!("{what}: expected a list of {{\"key\", \"value\"}}");
        };
        for (i, entry) in entries.iter().enumerate() {
            let field = |f: &str| -> Result<Vec<u8>> {
                match entry.get(f) {
                    Some(Value::String(s)) => unhex(s, &format!("{what}, entry {i}, {f}")),
                    _ => bail!("{what}, entry {i}: `{f}` must be a hex string"),
                }
            };
            let (key, value) = (field("key")?, field("value")?);
            map.update(&key, &value, UpdateFlags::Any)
                .map_err(|e| anyhow!("{what}, entry {i}: {e}"))?;
        }
    }
    Ok(())
}

/// Every map as JSON (see the module comment).
fn dump(object: &Object) -> Value {
    let mut out = JsonMap::new();
    for map in object.maps().iter() {
        out.insert(map.name().to_string(), dump_map(map));
    }
    Value::Object(out)
}

fn dump_map(map: &Map) -> Value {
    if let Ok(records) = map.ring_records() {
        return records.iter().map(|r| json!({"record": hex(r)})).collect();
    }
    map.entries()
        .iter()
        .map(|(k, v)| json!({"key": hex(k), "value": hex(v)}))
        .collect()
}
