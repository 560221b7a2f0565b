//! [`Object`]: every XDP and socket-filter program of one BPF object, loaded together so that
//! they share the object's maps (and can tail-call each other), and [`Vm::run_packet`], a run
//! with a kernel context on a [`Packet`].

use std::sync::{Arc, OnceLock};

use ebpf_abi::{Executable, Exit, MemoryMap, Region, Trap, TrapKind, layout};
use ebpf_cfg::facts::Admission;
use ebpf_isa::{CallKind, Imm64Kind, Insn, Program};
use ebpf_maps::{Map, MapError, MapSpec, MapType, Maps, UpdateFlags};

use crate::kernel::context::{
    Context, Packet, ProgramKind, XdpAction, convert_ctx_accesses, read_bounds, write_context,
};
use crate::kernel::{KernelHelpers, MAP_HANDLE_BASE, ObjectMaps, TAIL_CALL, inline_loop};
use crate::vm::{Images, LoadError, MetadataLayout, Scratch, Vm, VmBuilder};

/// What a program of an object shares with the others: the maps, and every program (the
/// targets of tail calls: a prog array holds indices into it).
#[derive(Debug)]
pub(crate) struct ObjectShared {
    pub(crate) maps: Arc<ObjectMaps>,
    pub(crate) programs: OnceLock<Vec<Linked>>,
}

/// A program as a tail call reaches it: its code and its own data regions.
#[derive(Debug)]
pub(crate) struct Linked {
    pub(crate) compiled: Arc<dyn Executable>,
    /// What its own stores can reach on the stack (`scrub::own_stack_reach`).
    pub(crate) own_stack_reach: usize,
    /// The same in a run its facts admit, and their admission (`Vm::admitted_reach`).
    pub(crate) admitted_reach: Option<(usize, Admission)>,
    pub(crate) images: Images,
    pub(crate) read_only_regions: Vec<Arc<[u8]>>,
}

/// What a program loaded from an object knows of it.
#[derive(Debug, Clone)]
pub(crate) struct KernelProgram {
    pub(crate) kind: ProgramKind,
    pub(crate) shared: Arc<ObjectShared>,
    /// What the program's own stores can reach on the stack (`scrub::own_stack_reach`).
    pub(crate) own_stack_reach: usize,
}

/// The programs of one object, sharing its maps. `Send + Sync`.
#[derive(Debug)]
pub struct Object {
    programs: Vec<(String, String, Vm)>,
    maps: Arc<Maps>,
}

impl Object {
    /// The object's maps, by name (`maps().get("blocked")`): look up, update, delete,
    /// iterate, from the host, while programs run.
    pub fn maps(&self) -> &Maps {
        &self.maps
    }

    /// The map named `name`.
    pub fn map(&self, name: &str) -> Option<&Arc<Map>> {
        self.maps.get(name)
    }

    /// The programs, in the object's order: `(function name, section)`. A program's index
    /// here is its id in prog arrays.
    pub fn programs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.programs
            .iter()
            .map(|(name, section, _)| (name.as_str(), section.as_str()))
    }

    /// The program whose function is named `name`.
    pub fn program(&self, name: &str) -> Option<&Vm> {
        self.programs
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, vm)| vm)
    }

    /// The id (index) of the program named `name`: what a prog array slot holds.
    pub fn program_id(&self, name: &str) -> Option<u32> {
        let index = self.programs.iter().position(|(n, _, _)| n == name)?;
        u32::try_from(index).ok()
    }
}

/// How a run with a kernel context ended without a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `r0` of the last program of the run (the one that exited).
    pub r0: u64,
    /// Instructions the run executed: every program of a tail-call chain, each up to and
    /// including its tail call, and the last one to its `exit` (what the budget counts).
    pub instructions: u64,
    /// The interface `bpf_redirect` recorded.
    pub redirect: Option<u32>,
    /// The entry `bpf_redirect_map` recorded: the map's index in [`Object::maps`] (its
    /// creation order) and the key (a devmap's slot, a CPU, a queue).
    pub redirect_map: Option<(u32, u32)>,
    /// Tail calls taken.
    pub tail_calls: u32,
}

impl Outcome {
    /// `r0` as an XDP action.
    pub fn xdp_action(&self) -> Option<XdpAction> {
        XdpAction::from_r0(self.r0)
    }
}

impl VmBuilder {
    /// Loads every XDP (`xdp…` sections) and socket-filter (`socket…`) program of an object,
    /// sharing one set of maps created from its definitions (a prog array's `.values` filled
    /// with the programs they name). Each global data section is one of them, as libbpf
    /// makes it: a one-element array named after the section (`object.map(".bss")`, the
    /// whole section as the value of key `0u32`), `.rodata*` frozen and read-only for
    /// programs; globals persist from run to run. Opts into the kernel helpers
    /// ([`VmBuilder::kernel_helpers`], defaults unless set). Programs in other sections are
    /// not loaded.
    pub fn load_object(self, bytes: &[u8]) -> Result<Object, LoadError> {
        let object = ebpf_elf::ElfObject::parse(bytes).map_err(LoadError::Elf)?;
        let programs: Vec<(String, String, ProgramKind)> = object
            .programs()
            .iter()
            .filter_map(|p| {
                let kind = ProgramKind::from_section(&p.section)?;
                Some((p.name.clone(), p.section.clone(), kind))
            })
            .collect();
        let names: Vec<&str> = programs.iter().map(|(n, _, _)| n.as_str()).collect();
        let (builder, shared, maps) = self.create_maps(&object, &names)?;
        let mut vms = Vec::new();
        for (name, section, kind) in &programs {
            let vm = builder.clone().load_kernel_program(
                &object,
                ebpf_elf::Selector::Function(name),
                *kind,
                &shared,
            )?;
            vms.push((name.clone(), section.clone(), vm));
        }
        link(&shared, vms.iter().map(|(_, _, vm)| vm));
        Ok(Object {
            programs: vms,
            maps,
        })
    }

    /// Loads a program built by hand (or by another loader) that uses `maps`: its
    /// `lddw dst, map_fd N` (`Imm64Kind::MapFd`) name the `N`-th map of the set, `r1` is a
    /// context of `kind`, and it runs with [`Vm::run_packet`] (a prog array's ids name this
    /// program only: id 0). Opts into the kernel helpers as [`VmBuilder::load_object`] does.
    pub fn load_with_maps(
        self,
        program: Program,
        kind: ProgramKind,
        maps: Arc<Maps>,
    ) -> Result<Vm, LoadError> {
        let (builder, shared, _) = self.attach_maps(maps)?;
        let vm = builder.load_kernel_insns(&program, kind, &shared)?;
        link(&shared, std::iter::once(&vm));
        Ok(vm)
    }

    /// Creates the object's maps and installs the kernel helpers on them.
    pub(crate) fn create_maps(
        self,
        object: &ebpf_elf::ElfObject,
        programs: &[&str],
    ) -> Result<(VmBuilder, Arc<ObjectShared>, Arc<Maps>), LoadError> {
        self.check_config()?;
        let kernel = self.kernel.clone().unwrap_or_default();
        let definitions = object.maps().map_err(LoadError::Elf)?;
        if let Some((name, _)) = self
            .map_sizes
            .iter()
            .find(|(name, _)| !definitions.iter().any(|d| d.name == *name))
        {
            return Err(LoadError::InvalidConfig(format!(
                "max_entries is set for map `{name}`, which the object does not define"
            )));
        }
        let mut maps = Maps::new(kernel.cpu_count());
        for d in &definitions {
            let map_type = MapType::from_kernel(d.map_type);
            // Loaders (libbpf, cilium/ebpf) give a perf event array whose definition leaves
            // the sizes out 4-byte keys and values, the only sizes the kernel takes.
            let implied = |size: u32| match map_type {
                MapType::PerfEventArray if size == 0 => 4,
                _ => size,
            };
            let max_entries = self
                .map_sizes
                .iter()
                .find(|(name, _)| *name == d.name)
                .map_or(d.max_entries, |&(_, n)| n);
            // A perf event array left at 0 gets a slot per CPU (ebpf-maps); any other map
            // needs its loader's size.
            if max_entries == 0 && map_type != MapType::PerfEventArray {
                return Err(LoadError::Map {
                    name: d.name.clone(),
                    error: MapError::BadSpec {
                        reason: "max_entries is 0, which its loader sets at run time: size it \
                                 with VmBuilder::map_max_entries (the CLI's --map-size)"
                            .into(),
                    },
                });
            }
            let spec = MapSpec {
                map_type,
                key_size: implied(d.key_size),
                value_size: implied(d.value_size),
                max_entries,
                flags: d.flags,
            };
            let created = match (&d.inner, map_type.is_of_maps()) {
                (Some(inner), true) => maps.create_of_maps(&d.name, spec, inner_template(inner)),
                (None, true) => Err(MapError::BadSpec {
                    reason: "a map of maps whose definition gives no inner map template (a \
                             legacy definition; BTF's `__array(values, struct { … })` gives one)"
                        .into(),
                }),
                _ => maps.create(&d.name, spec),
            };
            let map = created.map_err(|error| LoadError::Map {
                name: d.name.clone(),
                error,
            })?;
            if let Some(value) = &d.initial_value {
                fill_global_data(&map, value)?;
            }
        }
        for (index, d) in definitions.iter().enumerate() {
            // `.values = { [slot] = &map }`, as libbpf fills them after creating every map.
            for (slot, inner) in &d.initial_maps {
                let fail = |error| LoadError::Map {
                    name: d.name.clone(),
                    error,
                };
                let (Some(outer), Some(inner)) = (maps.by_index(index), maps.get(inner)) else {
                    return Err(fail(MapError::InvalidValue {
                        reason: format!(
                            "slot {slot} names map `{inner}`, which it does not define"
                        ),
                    }));
                };
                maps.set_inner(outer, &slot.to_le_bytes(), inner, UpdateFlags::Any)
                    .map_err(fail)?;
            }
            for (slot, function) in &d.initial_programs {
                let Some(id) = programs.iter().position(|p| p == function) else {
                    continue;
                };
                if let Some(map) = maps.by_index(index) {
                    map.update(
                        &slot.to_le_bytes(),
                        &(id as u32).to_le_bytes(),
                        UpdateFlags::Any,
                    )
                    .map_err(|error| LoadError::Map {
                        name: d.name.clone(),
                        error,
                    })?;
                }
            }
        }
        self.attach_maps(Arc::new(maps))
    }

    /// Wires `maps` into the programs this builder loads: their value regions, and the
    /// kernel helpers working on them.
    pub(crate) fn attach_maps(
        mut self,
        maps: Arc<Maps>,
    ) -> Result<(VmBuilder, Arc<ObjectShared>, Arc<Maps>), LoadError> {
        self.check_config()?;
        let kernel = self.kernel.clone().unwrap_or_default();
        let first = layout::FIRST_EXTRA + self.read_only_regions.len() as u64;
        let object_maps = Arc::new(ObjectMaps::new(Arc::clone(&maps), first));
        if first + object_maps.region_count() > layout::MAX_REGION + 1 {
            return Err(LoadError::InvalidConfig(format!(
                "the object's {} maps need more regions than a run has",
                maps.len()
            )));
        }
        KernelHelpers::install(&kernel, &mut self.helpers, Arc::clone(&object_maps));
        self.kernel = Some(kernel);
        self.map_regions = object_maps.region_count();
        self.map_lookup = Some(object_maps.verifier_view());
        let shared = Arc::new(ObjectShared {
            maps: object_maps,
            programs: OnceLock::new(),
        });
        Ok((self, shared, maps))
    }

    /// Loads one program of `object` with its context and the object's maps.
    pub(crate) fn load_kernel_program(
        self,
        object: &ebpf_elf::ElfObject,
        selector: ebpf_elf::Selector<'_>,
        kind: ProgramKind,
        shared: &Arc<ObjectShared>,
    ) -> Result<Vm, LoadError> {
        // Globals are the object's maps (`.data`, `.bss`, `.rodata`), as in the kernel.
        let loaded = object
            .load_with_data_maps(selector)
            .map_err(LoadError::Elf)?;
        self.load_kernel_insns(&loaded.program, kind, shared)
    }

    /// Loads `program` with a kernel context and the maps of `shared`: map references
    /// resolved, `bpf_loop` inlined, context accesses converted.
    pub(crate) fn load_kernel_insns(
        mut self,
        program: &Program,
        kind: ProgramKind,
        shared: &Arc<ObjectShared>,
    ) -> Result<Vm, LoadError> {
        let regions = &shared.maps.regions;
        let program = match inline_loop::inline_loops(program) {
            Ok(Some(inlined)) => resolve_maps(&inlined, regions),
            Ok(None) => resolve_maps(program, regions),
            Err(inline_loop::UnknownCallback(id)) => {
                return Err(LoadError::UnsupportedHelper { id });
            }
        };
        for (_, insn) in program.iter() {
            if let Insn::Call {
                kind: CallKind::Helper,
                imm,
            } = *insn
                && self.helpers.get(imm as u32).is_none()
            {
                return Err(LoadError::UnsupportedHelper { id: imm as u32 });
            }
        }
        let program = convert_ctx_accesses(&program, kind);
        let hidden = kind.hidden();
        self.metadata = Some(MetadataLayout {
            len: kind.context_len(),
            data_offset: hidden,
            data_end_offset: hidden + 8,
        });
        // `write_context`'s `data`: after the headroom, and a socket filter's after the
        // Ethernet header too (a frame shorter than that is not admitted: it runs the code
        // compiled without the entry's facts).
        let offset = match kind {
            ProgramKind::Xdp | ProgramKind::Tc => Packet::HEADROOM,
            ProgramKind::SocketFilter => Packet::HEADROOM + crate::kernel::context::ETH_HLEN,
        };
        self.packet_offset = u32::try_from(offset).ok();
        let mut vm = self.load_program(program)?;
        vm.kernel = Some(KernelProgram {
            kind,
            shared: Arc::clone(shared),
            own_stack_reach: crate::scrub::own_stack_reach(vm.program(), &vm.bound.limits),
        });
        Ok(vm)
    }
}

/// Hands every program of an object to its tail calls.
pub(crate) fn link<'a>(shared: &ObjectShared, vms: impl Iterator<Item = &'a Vm>) {
    let linked = vms
        .map(|vm| Linked {
            compiled: Arc::clone(&vm.compiled),
            own_stack_reach: vm
                .kernel
                .as_ref()
                .map_or(vm.stack_reach, |k| k.own_stack_reach),
            admitted_reach: vm.admitted_reach.clone(),
            images: vm.bound.images.clone(),
            read_only_regions: vm.bound.read_only_regions.clone(),
        })
        .collect();
    let _ = shared.programs.set(linked);
}

/// Gives a global data map (`.data`, `.bss`, `.rodata`: an array with one element) its
/// initial value, the section's bytes, as libbpf does before any program runs; a map programs
/// may only read (`.rodata`) is then frozen, as libbpf freezes it.
pub(crate) fn fill_global_data(map: &Map, value: &[u8]) -> Result<(), LoadError> {
    map.update(&0u32.to_le_bytes(), value, UpdateFlags::Any)
        .map_err(|error| LoadError::Map {
            name: map.name().to_string(),
            error,
        })?;
    if map.spec().read_only_for_programs() {
        map.freeze();
    }
    Ok(())
}

/// The template of an outer map's inner maps, from its BTF `values` definition.
fn inner_template(inner: &ebpf_elf::MapDefinition) -> MapSpec {
    MapSpec {
        map_type: MapType::from_kernel(inner.map_type),
        key_size: inner.key_size,
        value_size: inner.value_size,
        max_entries: inner.max_entries,
        flags: inner.flags,
    }
}

/// `lddw dst, map_fd N` becomes `lddw dst, HANDLE(N)`: a value the map helpers decode and
/// that is in no region. `lddw dst, map_value N, OFF` (a global variable) becomes the
/// address of byte `OFF` of the map's region (`regions[N]`), or, for a map without one, a
/// handle in no region (dereferencing it traps).
fn resolve_maps(program: &Program, regions: &[Option<u64>]) -> Program {
    let insns = program
        .insns()
        .iter()
        .map(|insn| match *insn {
            Insn::LoadImm64 {
                dst,
                kind: Imm64Kind::MapFd,
                imm,
            } => Insn::LoadImm64 {
                dst,
                kind: Imm64Kind::Value,
                imm: MAP_HANDLE_BASE | (imm & 0xffff_ffff),
            },
            Insn::LoadImm64 {
                dst,
                kind: Imm64Kind::MapValue,
                imm,
            } => {
                let index = imm & 0xffff_ffff;
                let offset = imm >> 32;
                let region = usize::try_from(index)
                    .ok()
                    .and_then(|i| regions.get(i).copied().flatten());
                Insn::LoadImm64 {
                    dst,
                    kind: Imm64Kind::Value,
                    imm: match region {
                        Some(region) => layout::vm_addr(region, offset),
                        None => MAP_HANDLE_BASE | index,
                    },
                }
            }
            // A callback's address: `bpf_loop` calls are inlined (the callback is called
            // directly), so the value itself is never used.
            Insn::LoadImm64 {
                dst,
                kind: Imm64Kind::Code,
                ..
            } => Insn::LoadImm64 {
                dst,
                kind: Imm64Kind::Value,
                imm: 0,
            },
            other => other,
        })
        .collect();
    Program::from_insns(insns)
}

impl Vm {
    /// The kind of context the program was loaded for (programs from
    /// [`VmBuilder::load_object`] and, with kernel helpers, [`VmBuilder::load_elf`]).
    pub fn program_kind(&self) -> Option<ProgramKind> {
        self.kernel.as_ref().map(|k| k.kind)
    }

    /// The maps of the object the program came from.
    pub fn maps(&self) -> Option<&Maps> {
        self.kernel.as_ref().map(|k| &*k.shared.maps.maps)
    }

    /// Runs the program on `packet` with `context` as `r1` (`struct xdp_md` or
    /// `struct __sk_buff`), the object's maps mapped on a CPU this run claims, and tail
    /// calls followed (at most [`crate::kernel::MAX_TAIL_CALLS`]). The packet is left as the
    /// program left it (`xdp_adjust_head`/`_tail` move its bounds).
    ///
    /// A chain of tail calls is one run for the budget: each program runs with what the
    /// programs before it left ([`Outcome::instructions`] counts them all, each up to and
    /// including its tail call), and running out in any of them is
    /// [`TrapKind::BudgetExhausted`] with the VM's budget, at the pc in the program that ran
    /// out (on every engine the same). Globals are the
    /// object's maps (`.data`, `.bss`, `.rodata`, as in the kernel): every run of every
    /// program of the object, on any thread, and the host share them. Ring buffer records
    /// the run reserved and never submitted are discarded when it ends.
    pub fn run_packet(&self, packet: &mut Packet, context: &Context) -> Result<Outcome, Trap> {
        let kind = context.kind();
        let shared = self.kernel.as_ref().map(|k| &*k.shared);
        let maps = shared.map(|s| &*s.maps);
        let programs = shared.and_then(|s| s.programs.get());
        let slot = maps.map(|m| m.maps.cpus().claim());
        let cpu = slot.as_ref().map_or(0, |s| s.index());
        let mut run = RunScratch {
            maps,
            scratch: None,
        };
        let scratch = run.scratch.insert(Scratch::take());
        let Scratch {
            stack,
            metadata: ctx,
            kernel: state,
            spill,
        } = &mut **scratch;
        ctx.clear();
        ctx.resize(kind.context_len(), 0);
        let input = layout::vm_addr(layout::INPUT, 0);
        write_context(ctx, context, packet, input);
        state.cpu = cpu;
        state.kind = Some(kind);
        state.tail_call = None;
        state.tail_calls = 0;
        state.redirect = None;
        state.redirect_map = None;
        state.programs = programs.map_or(0, |p| p.len() as u32);
        let stack_size = usize::try_from(self.bound.limits.stack_size()).unwrap_or(usize::MAX);
        let mut compiled: &dyn Executable = &*self.compiled;
        // What the program's own stores can reach; what its helpers wrote is read from the
        // run's map after each program (`MemoryMap::lowest_stack_write`).
        let mut reach = self
            .kernel
            .as_ref()
            .map_or(self.stack_reach, |k| k.own_stack_reach);
        let mut admitted_reach = self.admitted_reach.as_ref();
        let mut images = &self.bound.images;
        let mut read_only: &[Arc<[u8]>] = &self.bound.read_only_regions;
        let ctx_len = ctx.len() as u64;
        // A chain of tail calls is one run for the budget: each program runs with what the
        // ones before it left (`limits`), and the outcome counts them all (`executed`: the
        // instructions of the programs that tail-called, each up to its tail call).
        let mut limits = self.bound.limits;
        let mut executed = 0u64;
        let result: Result<Exit, Trap> = loop {
            let mut map = MemoryMap::with_spill(core::mem::take(spill));
            crate::vm::map_data_regions(&mut map, images, read_only);
            if let Some(m) = maps {
                for (map_, region) in m.maps.iter().zip(&m.regions) {
                    let Some(region) = *region else { continue };
                    // A frozen map programs only read (`.rodata`) never changes again.
                    if let Some(bytes) = map_
                        .frozen_on(cpu)
                        .filter(|_| map_.spec().read_only_for_programs())
                    {
                        map.insert(region, Region::ReadOnly(bytes));
                    } else if let Some(values) = map_.values(cpu) {
                        map.insert(region, Region::Shared(values));
                    }
                }
            }
            map.insert(layout::INPUT, Region::Writable(&mut packet.buf));
            map.insert(layout::METADATA, Region::Writable(ctx));
            map.set_run_state(state);
            let args = [layout::vm_addr(layout::METADATA, 0), ctx_len];
            // Where the facts hold (checked here, before the run: a program moves the packet's
            // fields), stores they place in other regions write no stack byte.
            let own_reach = match admitted_reach {
                Some(&(fewer, ref admission)) if fewer < reach && admission.admits(&map, args) => {
                    fewer
                }
                _ => reach,
            };
            let r = compiled.run_in(&mut map, args, &self.bound.helpers, &limits, stack);
            let at_tail_call = map.instructions_at_helper_trap();
            // The stack's invariant (all zero between runs, docs/per-run.md): every byte this
            // program wrote is at most `reach` below the top, or at or above the lowest
            // offset a helper wrote (helpers write only through the map).
            let scrub =
                crate::scrub::with_helper_mark(own_reach, stack_size, map.lowest_stack_write());
            *spill = map.into_spill();
            stack.scrub(stack_size, scrub);
            match r {
                Err(Trap {
                    kind: TrapKind::HelperFailed { id: TAIL_CALL, .. },
                    ..
                }) if state.tail_call.is_some() => {
                    let target = state.tail_call.take();
                    match target.and_then(|t| programs?.get(t as usize)) {
                        Some(next) => {
                            executed = executed.saturating_add(at_tail_call.unwrap_or(0));
                            limits.budget =
                                self.bound.limits.budget.map(|b| b.saturating_sub(executed));
                            compiled = &*next.compiled;
                            reach = next.own_stack_reach;
                            admitted_reach = next.admitted_reach.as_ref();
                            images = &next.images;
                            read_only = &next.read_only_regions;
                        }
                        None => break r,
                    }
                }
                r => break r,
            }
        };
        if let Some((start, end)) = read_bounds(ctx, kind)
            && start <= end
            && end <= packet.buf.len()
        {
            packet.start = start;
            packet.end = end;
        }
        let result = match result {
            // The budget a trap names is the chain's, not what its last program was left.
            Err(Trap {
                pc,
                kind: TrapKind::BudgetExhausted { .. },
            }) => Err(Trap {
                pc,
                kind: TrapKind::BudgetExhausted {
                    budget: self.bound.limits.budget.unwrap_or(u64::MAX),
                },
            }),
            other => other,
        };
        let outcome = result.map(|exit| Outcome {
            r0: exit.r0,
            instructions: executed.saturating_add(exit.instructions),
            redirect: state.redirect,
            redirect_map: state.redirect_map,
            tail_calls: state.tail_calls,
        });
        run.put_back();
        drop(slot);
        outcome
    }
}

/// A kernel-context run's scratch, which discards the ring buffer records the run reserved
/// and left when the run ends, however it ends: a helper's panic unwinds through the run,
/// and a record left reserved would block its ring for good (a consumer stops at the first
/// busy record).
struct RunScratch<'a> {
    maps: Option<&'a ObjectMaps>,
    scratch: Option<Box<Scratch>>,
}

impl RunScratch<'_> {
    /// Releases the records and keeps the scratch for the thread's next run (only after a run
    /// that returned: one that unwound may have left its stack unscrubbed).
    fn put_back(mut self) {
        if let Some(mut scratch) = self.scratch.take() {
            self.release(&mut scratch);
            scratch.put_back();
        }
    }

    fn release(&self, scratch: &mut Scratch) {
        if let Some(m) = self.maps {
            m.release(&mut scratch.kernel.reserved);
        }
    }
}

impl Drop for RunScratch<'_> {
    fn drop(&mut self) {
        if let Some(mut scratch) = self.scratch.take() {
            self.release(&mut scratch);
        }
    }
}
