//! Program contexts as the kernel lays them out — `struct xdp_md` and `struct __sk_buff` — the
//! packet buffer with its headroom and tailroom, and the load-time *context access conversion*
//! that makes `r2 = *(u32 *)(r1 + 0)` (`ctx->data`) give a usable VM address.
//!
//! The kernel's context fields `data`, `data_end` and `data_meta` are 32 bits wide, but hold
//! pointers: the kernel's verifier rewrites each load of them into a load of the real pointer
//! (`convert_ctx_accesses`). Our VM addresses (`region << 32 | offset`) do not fit 32 bits
//! either, so we do the same: the context region carries the 64-bit addresses in hidden slots
//! after the public structure, and [`convert_ctx_accesses`] rewrites every 32-bit load of
//! one of those fields through a register proven to hold the context into a 64-bit load of its
//! hidden slot (same instruction count, so budgets and pcs stay the same). The public field
//! holds only the offset (the low half of the address): a load the analysis cannot prove goes
//! through the context reads the offset, and dereferencing it traps (region 0) — never wrong
//! memory.

use ebpf_isa::{AluOp, CallKind, Insn, Operand, Program, Reg, Size, Width};

/// Which kind of program, and so which context it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgramKind {
    /// `BPF_PROG_TYPE_XDP`: `r1` is a `struct xdp_md`; `r0` is an XDP action.
    Xdp,
    /// `BPF_PROG_TYPE_SOCKET_FILTER`: `r1` is a `struct __sk_buff`; `r0` is how many bytes
    /// of the packet to keep.
    SocketFilter,
    /// `BPF_PROG_TYPE_SCHED_CLS` (TC): `r1` is a `struct __sk_buff` whose packet starts at
    /// the Ethernet header; `r0` is a TC action ([`TcAction`]).
    Tc,
}

impl ProgramKind {
    /// The kind an ELF section name implies, as libbpf reads it (`xdp…`, `socket…`, and
    /// `tc`, `tc/…`, `tcx/…`, `classifier…` for TC).
    pub fn from_section(section: &str) -> Option<ProgramKind> {
        let is = |name: &str| {
            section == name
                || section
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('.'))
        };
        if is("xdp") {
            Some(ProgramKind::Xdp)
        } else if is("socket") {
            Some(ProgramKind::SocketFilter)
        } else if is("tc") || is("tcx") || is("classifier") {
            Some(ProgramKind::Tc)
        } else {
            None
        }
    }

    /// Whether `r1` is a `struct __sk_buff` (socket filters and TC).
    pub(crate) const fn is_skb(self) -> bool {
        matches!(self, ProgramKind::SocketFilter | ProgramKind::Tc)
    }

    /// Bytes of the context region: the public structure, then the hidden 64-bit addresses.
    pub(crate) const fn context_len(self) -> usize {
        match self {
            ProgramKind::Xdp => XDP_CTX_LEN,
            ProgramKind::SocketFilter | ProgramKind::Tc => SKB_CTX_LEN,
        }
    }

    /// `(public offset, hidden offset)` of the pointer fields: data, data_end, data_meta.
    pub(crate) const fn pointer_fields(self) -> [(i16, i16); 3] {
        match self {
            ProgramKind::Xdp => [(0, XDP_HIDDEN), (4, XDP_HIDDEN + 8), (8, XDP_HIDDEN + 16)],
            ProgramKind::SocketFilter | ProgramKind::Tc => [
                (76, SKB_HIDDEN),
                (80, SKB_HIDDEN + 8),
                (140, SKB_HIDDEN + 16),
            ],
        }
    }

    /// Where the hidden address of `data` is (then `data_end`, `data_meta`, 8 bytes apart).
    pub(crate) const fn hidden(self) -> usize {
        match self {
            ProgramKind::Xdp => XDP_HIDDEN as usize,
            ProgramKind::SocketFilter | ProgramKind::Tc => SKB_HIDDEN as usize,
        }
    }
}

/// libbpf's section names (`SEC("kprobe/…")`) by prefix, and the kernel program type each
/// loads as: the types this VM has no context for. A prefix ending in `/` or `.` matches
/// longer names; others match the name, or the name followed by `/`.
const OTHER_PROGRAM_TYPES: &[(&str, &str)] = &[
    ("kprobe", "BPF_PROG_TYPE_KPROBE"),
    ("kretprobe", "BPF_PROG_TYPE_KPROBE"),
    ("kprobe.multi", "BPF_PROG_TYPE_KPROBE"),
    ("kretprobe.multi", "BPF_PROG_TYPE_KPROBE"),
    ("ksyscall", "BPF_PROG_TYPE_KPROBE"),
    ("kretsyscall", "BPF_PROG_TYPE_KPROBE"),
    ("uprobe", "BPF_PROG_TYPE_KPROBE"),
    ("uretprobe", "BPF_PROG_TYPE_KPROBE"),
    ("uprobe.s", "BPF_PROG_TYPE_KPROBE"),
    ("uretprobe.s", "BPF_PROG_TYPE_KPROBE"),
    ("uprobe.multi", "BPF_PROG_TYPE_KPROBE"),
    ("uretprobe.multi", "BPF_PROG_TYPE_KPROBE"),
    ("usdt", "BPF_PROG_TYPE_KPROBE"),
    ("tracepoint", "BPF_PROG_TYPE_TRACEPOINT"),
    ("tp", "BPF_PROG_TYPE_TRACEPOINT"),
    ("raw_tracepoint", "BPF_PROG_TYPE_RAW_TRACEPOINT"),
    ("raw_tp", "BPF_PROG_TYPE_RAW_TRACEPOINT"),
    ("raw_tracepoint.w", "BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE"),
    ("raw_tp.w", "BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE"),
    ("tp_btf", "BPF_PROG_TYPE_TRACING"),
    ("fentry", "BPF_PROG_TYPE_TRACING"),
    ("fexit", "BPF_PROG_TYPE_TRACING"),
    ("fmod_ret", "BPF_PROG_TYPE_TRACING"),
    ("fentry.s", "BPF_PROG_TYPE_TRACING"),
    ("fexit.s", "BPF_PROG_TYPE_TRACING"),
    ("fmod_ret.s", "BPF_PROG_TYPE_TRACING"),
    ("iter", "BPF_PROG_TYPE_TRACING"),
    ("iter.s", "BPF_PROG_TYPE_TRACING"),
    ("freplace", "BPF_PROG_TYPE_EXT"),
    ("lsm", "BPF_PROG_TYPE_LSM"),
    ("lsm.s", "BPF_PROG_TYPE_LSM"),
    ("lsm_cgroup", "BPF_PROG_TYPE_LSM"),
    ("perf_event", "BPF_PROG_TYPE_PERF_EVENT"),
    ("syscall", "BPF_PROG_TYPE_SYSCALL"),
    ("struct_ops", "BPF_PROG_TYPE_STRUCT_OPS"),
    ("struct_ops.s", "BPF_PROG_TYPE_STRUCT_OPS"),
    ("action", "BPF_PROG_TYPE_SCHED_ACT"),
    ("cgroup_skb", "BPF_PROG_TYPE_CGROUP_SKB"),
    ("cgroup/skb", "BPF_PROG_TYPE_CGROUP_SKB"),
    ("cgroup/dev", "BPF_PROG_TYPE_CGROUP_DEVICE"),
    ("cgroup/sysctl", "BPF_PROG_TYPE_CGROUP_SYSCTL"),
    ("cgroup/getsockopt", "BPF_PROG_TYPE_CGROUP_SOCKOPT"),
    ("cgroup/setsockopt", "BPF_PROG_TYPE_CGROUP_SOCKOPT"),
    ("cgroup/sock", "BPF_PROG_TYPE_CGROUP_SOCK"),
    ("cgroup/sock_create", "BPF_PROG_TYPE_CGROUP_SOCK"),
    ("cgroup/sock_release", "BPF_PROG_TYPE_CGROUP_SOCK"),
    ("cgroup/post_bind4", "BPF_PROG_TYPE_CGROUP_SOCK"),
    ("cgroup/post_bind6", "BPF_PROG_TYPE_CGROUP_SOCK"),
    ("cgroup/", "BPF_PROG_TYPE_CGROUP_SOCK_ADDR"),
    ("sockops", "BPF_PROG_TYPE_SOCK_OPS"),
    ("sk_skb", "BPF_PROG_TYPE_SK_SKB"),
    ("sk_msg", "BPF_PROG_TYPE_SK_MSG"),
    ("sk_lookup", "BPF_PROG_TYPE_SK_LOOKUP"),
    ("sk_reuseport", "BPF_PROG_TYPE_SK_REUSEPORT"),
    ("sk_reuseport/migrate", "BPF_PROG_TYPE_SK_REUSEPORT"),
    ("lirc_mode2", "BPF_PROG_TYPE_LIRC_MODE2"),
    ("flow_dissector", "BPF_PROG_TYPE_FLOW_DISSECTOR"),
    ("lwt_in", "BPF_PROG_TYPE_LWT_IN"),
    ("lwt_out", "BPF_PROG_TYPE_LWT_OUT"),
    ("lwt_xmit", "BPF_PROG_TYPE_LWT_XMIT"),
    ("lwt_seg6local", "BPF_PROG_TYPE_LWT_SEG6LOCAL"),
    ("netfilter", "BPF_PROG_TYPE_NETFILTER"),
    ("netkit", "BPF_PROG_TYPE_SCHED_CLS (netkit)"),
];

/// The kernel program type a section names, for the types this VM does not run (see
/// [`ProgramKind::from_section`] for those it does): `kprobe/do_sys_open` is
/// `BPF_PROG_TYPE_KPROBE`. `None` for a name libbpf gives no type.
pub(crate) fn program_type_of(section: &str) -> Option<&'static str> {
    OTHER_PROGRAM_TYPES
        .iter()
        .filter(|(prefix, _)| {
            if prefix.ends_with('/') {
                section.starts_with(prefix)
            } else {
                section == *prefix
                    || section
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, program_type)| *program_type)
}

/// `sizeof(struct xdp_md)` is 24; the hidden addresses follow.
const XDP_HIDDEN: i16 = 24;
const XDP_CTX_LEN: usize = 48;
/// `sizeof(struct __sk_buff)` is 192; the hidden addresses follow.
const SKB_HIDDEN: i16 = 192;
const SKB_CTX_LEN: usize = 216;

/// The XDP actions (`enum xdp_action`): what an XDP program's `r0` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XdpAction {
    /// `XDP_ABORTED` (0): a program error; the packet is dropped.
    Aborted,
    /// `XDP_DROP` (1).
    Drop,
    /// `XDP_PASS` (2): on to the network stack.
    Pass,
    /// `XDP_TX` (3): back out of the interface it came in on.
    Tx,
    /// `XDP_REDIRECT` (4): to the target `bpf_redirect` recorded.
    Redirect,
}

impl XdpAction {
    /// The action `r0` names (its low 32 bits, as the kernel reads them), if any.
    pub fn from_r0(r0: u64) -> Option<XdpAction> {
        match r0 as u32 {
            0 => Some(XdpAction::Aborted),
            1 => Some(XdpAction::Drop),
            2 => Some(XdpAction::Pass),
            3 => Some(XdpAction::Tx),
            4 => Some(XdpAction::Redirect),
            _ => None,
        }
    }
}

/// The TC actions (`TC_ACT_*` in `linux/pkt_cls.h`): what a TC program's `r0` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcAction {
    /// `TC_ACT_UNSPEC` (-1): the qdisc's default.
    Unspec,
    /// `TC_ACT_OK` (0): pass the packet on.
    Ok,
    /// `TC_ACT_RECLASSIFY` (1).
    Reclassify,
    /// `TC_ACT_SHOT` (2): drop.
    Shot,
    /// `TC_ACT_PIPE` (3): on to the next action.
    Pipe,
    /// `TC_ACT_STOLEN` (4): consumed.
    Stolen,
    /// `TC_ACT_QUEUED` (5).
    Queued,
    /// `TC_ACT_REPEAT` (6).
    Repeat,
    /// `TC_ACT_REDIRECT` (7): to the target `bpf_redirect` recorded.
    Redirect,
    /// `TC_ACT_TRAP` (8).
    Trap,
}

impl TcAction {
    /// The action `r0` names (its low 32 bits as a signed number, as the kernel reads them),
    /// if any.
    pub fn from_r0(r0: u64) -> Option<TcAction> {
        Some(match r0 as u32 as i32 {
            -1 => TcAction::Unspec,
            0 => TcAction::Ok,
            1 => TcAction::Reclassify,
            2 => TcAction::Shot,
            3 => TcAction::Pipe,
            4 => TcAction::Stolen,
            5 => TcAction::Queued,
            6 => TcAction::Repeat,
            7 => TcAction::Redirect,
            8 => TcAction::Trap,
            _ => return None,
        })
    }

    /// The kernel's name: `TC_ACT_OK`, `TC_ACT_SHOT`, ….
    pub fn name(self) -> &'static str {
        match self {
            TcAction::Unspec => "TC_ACT_UNSPEC",
            TcAction::Ok => "TC_ACT_OK",
            TcAction::Reclassify => "TC_ACT_RECLASSIFY",
            TcAction::Shot => "TC_ACT_SHOT",
            TcAction::Pipe => "TC_ACT_PIPE",
            TcAction::Stolen => "TC_ACT_STOLEN",
            TcAction::Queued => "TC_ACT_QUEUED",
            TcAction::Repeat => "TC_ACT_REPEAT",
            TcAction::Redirect => "TC_ACT_REDIRECT",
            TcAction::Trap => "TC_ACT_TRAP",
        }
    }
}

/// The host-supplied fields of `struct xdp_md` (the packet pointers are the VM's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XdpMd {
    /// `ingress_ifindex` (default 1, the loopback device `BPF_PROG_TEST_RUN` uses).
    pub ingress_ifindex: u32,
    /// `rx_queue_index`.
    pub rx_queue_index: u32,
    /// `egress_ifindex`.
    pub egress_ifindex: u32,
}

impl Default for XdpMd {
    fn default() -> XdpMd {
        XdpMd {
            ingress_ifindex: 1,
            rx_queue_index: 0,
            egress_ifindex: 0,
        }
    }
}

/// The host-supplied fields of `struct __sk_buff` (as the kernel stores them: `protocol` is
/// the Ethernet type in network byte order). `len`, `data`, `data_end` and `data_meta` come
/// from the packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SkBuff {
    /// `pkt_type`.
    pub pkt_type: u32,
    /// `mark`.
    pub mark: u32,
    /// `queue_mapping`.
    pub queue_mapping: u32,
    /// `protocol`; `None`: the frame's Ethernet type, as `eth_type_trans` sets it.
    pub protocol: Option<u32>,
    /// `vlan_present`.
    pub vlan_present: u32,
    /// `vlan_tci`.
    pub vlan_tci: u32,
    /// `vlan_proto`.
    pub vlan_proto: u32,
    /// `priority`.
    pub priority: u32,
    /// `ingress_ifindex`.
    pub ingress_ifindex: u32,
    /// `ifindex`.
    pub ifindex: u32,
    /// `tc_index`.
    pub tc_index: u32,
    /// `cb[5]`: scratch space the program may write.
    pub cb: [u32; 5],
    /// `hash`.
    pub hash: u32,
    /// `tc_classid`.
    pub tc_classid: u32,
    /// `napi_id`.
    pub napi_id: u32,
    /// `wire_len` (TC): the frame's length on the wire. 0 by default, as `BPF_PROG_TEST_RUN`
    /// gives it without a context.
    pub wire_len: u32,
}

/// The context of one run: which structure `r1` points to, and its host-supplied fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    /// An XDP program's `struct xdp_md`.
    Xdp(XdpMd),
    /// A socket filter's `struct __sk_buff`.
    SocketFilter(SkBuff),
    /// A TC program's `struct __sk_buff` (the packet starts at the Ethernet header).
    Tc(SkBuff),
}

impl Context {
    /// The kind of program this context is for.
    pub fn kind(&self) -> ProgramKind {
        match self {
            Context::Xdp(_) => ProgramKind::Xdp,
            Context::SocketFilter(_) => ProgramKind::SocketFilter,
            Context::Tc(_) => ProgramKind::Tc,
        }
    }

    /// The default context of a kind.
    pub fn default_for(kind: ProgramKind) -> Context {
        match kind {
            ProgramKind::Xdp => Context::Xdp(XdpMd::default()),
            ProgramKind::SocketFilter => Context::SocketFilter(SkBuff::default()),
            // `BPF_PROG_TEST_RUN` runs TC programs on the loopback device.
            ProgramKind::Tc => Context::Tc(SkBuff {
                ifindex: 1,
                ..SkBuff::default()
            }),
        }
    }
}

/// `ETH_HLEN`: a socket filter's view of the packet starts after the Ethernet header, as
/// `BPF_PROG_TEST_RUN` gives it (`eth_type_trans` pulls it).
pub(crate) const ETH_HLEN: usize = 14;

/// A packet with the room around it that `xdp_adjust_head`/`_tail` move into, laid out as the
/// kernel's test run lays out an XDP buffer: [`Packet::HEADROOM`] bytes before the frame, and
/// a fixed buffer of [`Packet::BUFFER`] bytes whose last [`Packet::TAILROOM`] the frame can
/// never reach. Reuse one for many runs: [`Packet::set`] allocates nothing once the buffer
/// exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub(crate) buf: Vec<u8>,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Packet {
    /// `XDP_PACKET_HEADROOM`.
    pub const HEADROOM: usize = 256;
    /// The buffer's size: one 4 KiB page.
    pub const BUFFER: usize = 4096;
    /// Reserved at the end of the buffer (the kernel's `skb_shared_info`, 320 bytes).
    pub const TAILROOM: usize = 320;
    /// The longest frame: what fits between the headroom and the tailroom.
    pub const MAX_FRAME: usize = Self::BUFFER - Self::HEADROOM - Self::TAILROOM;

    /// A packet holding `frame`, or `None` if it is longer than [`Packet::MAX_FRAME`].
    pub fn new(frame: &[u8]) -> Option<Packet> {
        let mut packet = Packet {
            buf: Vec::new(),
            start: 0,
            end: 0,
        };
        packet.set(frame)?;
        Some(packet)
    }

    /// Replaces the frame (the room around it is zeroed); `None` if it is too long.
    pub fn set(&mut self, frame: &[u8]) -> Option<()> {
        if frame.len() > Self::MAX_FRAME {
            return None;
        }
        self.buf.clear();
        self.buf.resize(Self::BUFFER, 0);
        self.start = Self::HEADROOM;
        self.end = Self::HEADROOM + frame.len();
        self.buf
            .get_mut(self.start..self.end)?
            .copy_from_slice(frame);
        Some(())
    }

    /// The frame as the program left it (after `xdp_adjust_head`/`_tail`, its new bounds).
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }

    /// The frame's length.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes the context region for a run on `packet` (whose buffer is mapped at `input`):
/// the public fields, and the hidden addresses of data, data_end and data_meta.
pub(crate) fn write_context(ctx: &mut [u8], context: &Context, packet: &Packet, input: u64) {
    ctx.fill(0);
    let mut put = |off: usize, value: u32| {
        if let Some(slot) = ctx.get_mut(off..off + 4) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
    };
    let (data, data_end) = match context {
        Context::Xdp(md) => {
            put(12, md.ingress_ifindex);
            put(16, md.rx_queue_index);
            put(20, md.egress_ifindex);
            (packet.start, packet.end)
        }
        Context::SocketFilter(skb) | Context::Tc(skb) => {
            // A socket filter sees the packet from the network header; TC from the
            // Ethernet header (`BPF_PROG_TEST_RUN` pulls the header for the first only).
            let start = match context {
                Context::Tc(_) => packet.start,
                _ => (packet.start + ETH_HLEN).min(packet.end),
            };
            let ethertype = packet
                .bytes()
                .get(12..14)
                .map_or(0, |t| u32::from(u16::from_le_bytes([t[0], t[1]])));
            put(0, (packet.end - start) as u32);
            put(4, skb.pkt_type);
            put(8, skb.mark);
            put(12, skb.queue_mapping);
            put(16, skb.protocol.unwrap_or(ethertype));
            put(20, skb.vlan_present);
            put(24, skb.vlan_tci);
            put(28, skb.vlan_proto);
            put(32, skb.priority);
            put(36, skb.ingress_ifindex);
            put(40, skb.ifindex);
            put(44, skb.tc_index);
            for (i, cb) in skb.cb.iter().enumerate() {
                put(48 + 4 * i, *cb);
            }
            put(68, skb.hash);
            put(72, skb.tc_classid);
            put(84, skb.napi_id);
            put(160, skb.wire_len);
            (start, packet.end)
        }
    };
    let kind = context.kind();
    let addrs = [data, data_end, data];
    for ((public, _), offset) in kind.pointer_fields().into_iter().zip(addrs) {
        put(public as usize, offset as u32);
    }
    let hidden = kind.hidden();
    for (i, offset) in addrs.into_iter().enumerate() {
        let at = hidden + 8 * i;
        if let Some(slot) = ctx.get_mut(at..at + 8) {
            slot.copy_from_slice(&(input + offset as u64).to_le_bytes());
        }
    }
}

/// The packet's bounds after a run, from the hidden addresses (helpers that move the head or
/// the tail change them there); offsets in the buffer.
pub(crate) fn read_bounds(ctx: &[u8], kind: ProgramKind) -> Option<(usize, usize)> {
    let at = |i: usize| -> Option<usize> {
        let off = kind.hidden() + 8 * i;
        let bytes: [u8; 8] = ctx.get(off..off + 8)?.try_into().ok()?;
        usize::try_from(ebpf_abi::layout::offset_of(u64::from_le_bytes(bytes))).ok()
    };
    let (data, end) = (at(0)?, at(1)?);
    Some(match kind {
        ProgramKind::Xdp | ProgramKind::Tc => (data, end),
        ProgramKind::SocketFilter => (data.saturating_sub(ETH_HLEN), end),
    })
}

/// Which registers surely hold the context pointer (bit `i` for `ri`), before an instruction.
type CtxRegs = u16;

/// Rewrites each 32-bit load of `data`, `data_end` or `data_meta` through a register that
/// holds the context on every path into a 64-bit load of the field's hidden address.
///
/// A forward must-analysis over the instructions: `r1` holds the context at entry; a `mov`
/// of such a register copies the fact; any other write of a register, and a call
/// (`r0`–`r5`), ends it; at a join, a register holds the context only if it does on every
/// incoming edge; a local function's argument registers hold it if they do at every call.
/// Spills to the stack are not followed (a load through a reloaded context keeps the offset
/// and its dereference traps).
pub(crate) fn convert_ctx_accesses(program: &Program, kind: ProgramKind) -> Program {
    let insns = program.insns();
    let pcs: Vec<usize> = program.iter().map(|(pc, _)| pc).collect();
    let index_of = |pc: usize| pcs.binary_search(&pc).ok();
    let mut state: Vec<Option<CtxRegs>> = vec![None; insns.len()];
    let mut work = Vec::new();
    let flow = |state: &mut Vec<Option<CtxRegs>>, work: &mut Vec<usize>, pc: i64, s| {
        let Some(i) = usize::try_from(pc).ok().and_then(index_of) else {
            return;
        };
        let joined = match state[i] {
            None => s,
            Some(old) => old & s,
        };
        if state[i] != Some(joined) {
            state[i] = Some(joined);
            work.push(i);
        }
    };
    if !insns.is_empty() {
        state[0] = Some(1 << 1);
        work.push(0);
    }
    while let Some(i) = work.pop() {
        let Some(s) = state[i] else { continue };
        let pc = pcs[i] as i64;
        let next = pcs.get(i + 1).map_or(pc + 1, |&p| p as i64);
        let clear = |s: CtxRegs, r: Reg| s & !(1 << r.index());
        const CALLER_SAVED: CtxRegs = 0b11_1111;
        match insns[i] {
            Insn::Exit => {}
            Insn::Ja { off } => flow(&mut state, &mut work, pc + 1 + i64::from(off), s),
            Insn::Ja32 { imm } => flow(&mut state, &mut work, pc + 1 + i64::from(imm), s),
            Insn::Jump { off, .. } => {
                flow(&mut state, &mut work, pc + 1 + i64::from(off), s);
                flow(&mut state, &mut work, next, s);
            }
            Insn::Call {
                kind: CallKind::Local,
                imm,
            } => {
                let args = s & 0b11_1110;
                flow(&mut state, &mut work, pc + 1 + i64::from(imm), args);
                flow(&mut state, &mut work, next, s & !CALLER_SAVED);
            }
            Insn::Call { .. } | Insn::CallX { .. } | Insn::LoadPacket { .. } => {
                flow(&mut state, &mut work, next, s & !CALLER_SAVED)
            }
            Insn::Alu {
                width: Width::W64,
                op: AluOp::Mov,
                dst,
                src: Operand::Reg(src),
            } => {
                let fact = (s >> src.index()) & 1;
                flow(
                    &mut state,
                    &mut work,
                    next,
                    clear(s, dst) | fact << dst.index(),
                );
            }
            Insn::Alu { dst, .. }
            | Insn::Neg { dst, .. }
            | Insn::MovSx { dst, .. }
            | Insn::Endian { dst, .. }
            | Insn::Load { dst, .. }
            | Insn::LoadImm64 { dst, .. } => flow(&mut state, &mut work, next, clear(s, dst)),
            Insn::Atomic { src, .. } => {
                flow(&mut state, &mut work, next, clear(clear(s, src), Reg::R0))
            }
            Insn::Store { .. } => flow(&mut state, &mut work, next, s),
        }
    }
    let fields = kind.pointer_fields();
    let converted = insns
        .iter()
        .zip(&state)
        .map(|(insn, s)| match *insn {
            Insn::Load {
                size: Size::W,
                signed: false,
                dst,
                src,
                off,
            } if s.is_some_and(|s| s & (1 << src.index()) != 0) => {
                match fields.iter().find(|(public, _)| *public == off) {
                    Some(&(_, hidden)) => Insn::Load {
                        size: Size::DW,
                        signed: false,
                        dst,
                        src,
                        off: hidden,
                    },
                    None => *insn,
                }
            }
            _ => *insn,
        })
        .collect();
    Program::from_insns(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(text: &str, kind: ProgramKind) -> String {
        let program = ebpf_isa::assemble(text).unwrap();
        ebpf_isa::disassemble(&convert_ctx_accesses(&program, kind))
    }

    #[test]
    fn sections_name_their_program_kind_or_the_kernel_type_we_do_not_run() {
        for (section, kind) in [
            ("xdp", Some(ProgramKind::Xdp)),
            ("xdp/devmap", Some(ProgramKind::Xdp)),
            ("xdp.frags", Some(ProgramKind::Xdp)),
            ("xdpfoo", None),
            ("socket", Some(ProgramKind::SocketFilter)),
            ("socket/3", Some(ProgramKind::SocketFilter)),
            ("tc", Some(ProgramKind::Tc)),
            ("tc/ingress", Some(ProgramKind::Tc)),
            ("tcx/egress", Some(ProgramKind::Tc)),
            ("classifier", Some(ProgramKind::Tc)),
            ("classifier/main", Some(ProgramKind::Tc)),
            ("tcp", None),
        ] {
            assert_eq!(ProgramKind::from_section(section), kind, "{section}");
        }
        for (section, program_type) in [
            ("kprobe/do_sys_open", Some("BPF_PROG_TYPE_KPROBE")),
            ("kprobe.multi/tcp_*", Some("BPF_PROG_TYPE_KPROBE")),
            ("tp/sched/sched_switch", Some("BPF_PROG_TYPE_TRACEPOINT")),
            ("tp_btf/sched_switch", Some("BPF_PROG_TYPE_TRACING")),
            ("raw_tp.w/x", Some("BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE")),
            ("cgroup/skb", Some("BPF_PROG_TYPE_CGROUP_SKB")),
            ("cgroup/connect4", Some("BPF_PROG_TYPE_CGROUP_SOCK_ADDR")),
            ("cgroup/sock_create", Some("BPF_PROG_TYPE_CGROUP_SOCK")),
            ("freplace/x", Some("BPF_PROG_TYPE_EXT")),
            ("kprobes", None),
            (".text", None),
        ] {
            assert_eq!(program_type_of(section), program_type, "{section}");
        }
    }

    #[test]
    fn loads_through_the_context_are_converted_where_proven() {
        let out = convert(
            "mov %r6, %r1\nldxw %r2, [%r6+0]\nldxw %r3, [%r1+4]\nldxw %r4, [%r1+12]\n\
             jeq %r2, 0, +1\nmov %r6, 0\nldxw %r5, [%r6+0]\nexit",
            ProgramKind::Xdp,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "ldxdw %r2, [%r6+24]", "{out}");
        assert_eq!(lines[2], "ldxdw %r3, [%r1+32]", "{out}");
        assert_eq!(lines[3], "ldxw %r4, [%r1+12]", "not a pointer field: {out}");
        assert_eq!(
            lines[6], "ldxw %r5, [%r6]",
            "r6 is not the context on every path: {out}"
        );
    }

    #[test]
    fn a_call_ends_the_fact_for_caller_saved_registers() {
        let out = convert(
            "mov %r6, %r1\ncall 1\nldxw %r2, [%r1+76]\nldxw %r3, [%r6+80]\nexit",
            ProgramKind::SocketFilter,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[2], "ldxw %r2, [%r1+76]", "{out}");
        assert_eq!(lines[3], "ldxdw %r3, [%r6+200]", "{out}");
    }
}
