//! The packets the corpus set runs every program on: a deterministic sequence of Ethernet
//! frames in four categories — valid frames that take each corpus program down each of its
//! paths, the same frames truncated at every header boundary, malformed headers, and random
//! bytes.
//!
//! Valid frames are built with correct IPv4, TCP and UDP checksums (the load balancer rewrites
//! them incrementally, so a wrong start would hide a wrong update). What they cover, by
//! program: sources the firewall blocks once its map is seeded ([`BLOCKED`]) and others it
//! passes; TCP, UDP, ICMP, other IPv4, IPv6 and non-IP frames (the counter's slots, the
//! dispatcher's handlers, the logger's two record kinds); TCP flows that open with a SYN, carry
//! data, close with a FIN and reset with an RST, flows that never opened, and UDP flows seen
//! several times (the connection tracker); TCP and UDP to the load balancer's virtual address
//! from many clients (every backend), UDP without a checksum; UDP to the discard port; IPv4
//! fragments (the logger discards their records); TCP option lists of every common kind.
//!
//! Every frame is at least 14 bytes and at most 1,514: `BPF_PROG_TEST_RUN` refuses a packet
//! shorter than an Ethernet header (`EINVAL`), so truncations start at 14 bytes.

use ebpf_abi::SplitMix64;

/// What kind of input a packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Category {
    /// A well-formed frame.
    Valid,
    /// A valid frame cut at a header boundary (or one byte either side of it).
    Truncated,
    /// Headers whose fields contradict each other or the frame.
    Malformed,
    /// Random bytes (some behind an Ethernet header that says IPv4).
    Random,
}

impl Category {
    /// Every category, in the order of the sequence.
    pub(crate) const ALL: [Category; 4] = [
        Category::Valid,
        Category::Truncated,
        Category::Malformed,
        Category::Random,
    ];

    /// Its name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Category::Valid => "valid",
            Category::Truncated => "truncated",
            Category::Malformed => "malformed",
            Category::Random => "random",
        }
    }
}

/// One packet of the sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Packet {
    /// Its category.
    pub(crate) category: Category,
    /// What it is, for reproducers.
    pub(crate) what: String,
    /// The frame.
    pub(crate) bytes: Vec<u8>,
}

/// Sources the firewall's map blocks (seeded before each run, see `corpus.rs`).
pub(crate) const BLOCKED: [[u8; 4]; 2] = [[192, 168, 1, 66], [10, 9, 9, 9]];
/// The load balancer's virtual address (10.0.0.100).
pub(crate) const VIP: [u8; 4] = [10, 0, 0, 100];

/// The smallest frame `BPF_PROG_TEST_RUN` takes.
pub(crate) const MIN_FRAME: usize = 14;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_ARP: u16 = 0x0806;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const GRE: u8 = 47;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;

/// The Internet checksum of `bytes` (with `sum` already added), folded and complemented.
fn checksum(bytes: &[u8], mut sum: u32) -> u16 {
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum = sum.wrapping_add(u32::from(word));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv4 pseudo-header's sum for a transport checksum.
fn pseudo_sum(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    let words = [
        u16::from_be_bytes([src[0], src[1]]),
        u16::from_be_bytes([src[2], src[3]]),
        u16::from_be_bytes([dst[0], dst[1]]),
        u16::from_be_bytes([dst[2], dst[3]]),
        u16::from(proto),
        len as u16,
    ];
    words.iter().map(|&w| u32::from(w)).sum()
}

/// An Ethernet frame: fixed MACs, `ethertype`, then `payload`.
fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The fields of an IPv4 header the sequence varies.
#[derive(Clone, Copy)]
struct Ip {
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    ttl: u8,
    frag: u16,
}

impl Ip {
    fn new(src: [u8; 4], dst: [u8; 4], proto: u8) -> Ip {
        Ip {
            src,
            dst,
            proto,
            ttl: 64,
            frag: 0x4000, // don't fragment
        }
    }

    /// The header with `options` (padded to 4 bytes) and a correct checksum, then `l4`.
    fn packet(self, options: &[u8], l4: &[u8]) -> Vec<u8> {
        let mut opts = options.to_vec();
        opts.resize(options.len().next_multiple_of(4), 0);
        let ihl = 5 + opts.len() / 4;
        let total = ihl * 4 + l4.len();
        let mut h = vec![0x40 | ihl as u8, 0];
        h.extend_from_slice(&(total as u16).to_be_bytes());
        h.extend_from_slice(&[0x12, 0x34]);
        h.extend_from_slice(&self.frag.to_be_bytes());
        h.extend_from_slice(&[self.ttl, self.proto, 0, 0]);
        h.extend_from_slice(&self.src);
        h.extend_from_slice(&self.dst);
        h.extend_from_slice(&opts);
        let sum = checksum(&h, 0);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        h.extend_from_slice(l4);
        h
    }

    /// A TCP segment with a correct checksum.
    fn tcp(self, sport: u16, dport: u16, flags: u8, options: &[u8], data: &[u8]) -> Vec<u8> {
        let mut opts = options.to_vec();
        opts.resize(options.len().next_multiple_of(4), 0);
        let doff = 5 + opts.len() / 4;
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        t.extend_from_slice(&[(doff as u8) << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        t.extend_from_slice(&opts);
        t.extend_from_slice(data);
        let sum = checksum(&t, pseudo_sum(self.src, self.dst, TCP, t.len()));
        t[16..18].copy_from_slice(&sum.to_be_bytes());
        ethernet(ETH_IPV4, &self.packet(&[], &t))
    }

    /// A UDP datagram, with a correct checksum or none (0).
    fn udp(self, sport: u16, dport: u16, data: &[u8], with_checksum: bool) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(data);
        if with_checksum {
            let sum = checksum(&u, pseudo_sum(self.src, self.dst, UDP, u.len()));
            u[6..8].copy_from_slice(&sum.to_be_bytes());
        }
        ethernet(ETH_IPV4, &self.packet(&[], &u))
    }

    /// An ICMP echo request.
    fn icmp(self, id: u16) -> Vec<u8> {
        let mut i = vec![8, 0, 0, 0];
        i.extend_from_slice(&id.to_be_bytes());
        i.extend_from_slice(&[0, 1, b'p', b'i', b'n', b'g']);
        let sum = checksum(&i, 0);
        i[2..4].copy_from_slice(&sum.to_be_bytes());
        ethernet(ETH_IPV4, &self.packet(&[], &i))
    }
}

/// An IPv6 frame carrying `next` with `l4` (no extension headers).
fn ipv6(next: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend_from_slice(l4);
    ethernet(ETH_IPV6, &h)
}

/// Common TCP option lists: MSS, NOP, window scale, SACK permitted, timestamps, end.
const MSS: [u8; 4] = [2, 4, 0x05, 0xb4];
const WSCALE: [u8; 3] = [3, 3, 7];
const SACK_OK: [u8; 2] = [4, 2];
const TIMESTAMPS: [u8; 10] = [8, 10, 0, 0, 0, 1, 0, 0, 0, 0];

fn syn_options() -> Vec<u8> {
    [&MSS[..], &SACK_OK, &TIMESTAMPS, &[1], &WSCALE].concat()
}

fn client(n: u8) -> [u8; 4] {
    [192, 168, 1, n]
}

const SERVER: [u8; 4] = [10, 0, 0, 5];

/// The valid frames.
fn valid() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut push = |what: String, bytes| out.push((what, bytes));
    // A TCP flow that opens, carries data, closes; then resets.
    let a = Ip::new(client(10), SERVER, TCP);
    let b = Ip::new(SERVER, client(10), TCP);
    push(
        "tcp syn with options".into(),
        a.tcp(40000, 80, SYN, &syn_options(), &[]),
    );
    push("tcp syn-ack".into(), b.tcp(80, 40000, SYN | ACK, &MSS, &[]));
    push("tcp ack".into(), a.tcp(40000, 80, ACK, &[], &[]));
    push(
        "tcp data".into(),
        a.tcp(
            40000,
            80,
            ACK | PSH,
            &[&[1, 1][..], &TIMESTAMPS].concat(),
            b"GET / HTTP/1.1\r\n\r\n",
        ),
    );
    push(
        "tcp data again".into(),
        a.tcp(40000, 80, ACK | PSH, &[], b"more"),
    );
    push("tcp fin".into(), a.tcp(40000, 80, FIN | ACK, &[], &[]));
    push("tcp rst".into(), a.tcp(40000, 80, RST | ACK, &[], &[]));
    push("tcp after rst".into(), a.tcp(40000, 80, ACK, &[], &[]));
    // Flows that never opened, and a second flow that opens and is seen again.
    push(
        "tcp ack, unknown flow".into(),
        Ip::new(client(11), SERVER, TCP).tcp(40001, 443, ACK, &[], b"x"),
    );
    push(
        "tcp syn-ack, unknown flow".into(),
        Ip::new(client(12), SERVER, TCP).tcp(40002, 443, SYN | ACK, &[], &[]),
    );
    let c = Ip::new(client(13), SERVER, TCP);
    push(
        "tcp syn, second flow".into(),
        c.tcp(40003, 22, SYN, &MSS, &[]),
    );
    push(
        "tcp syn, second flow again".into(),
        c.tcp(40003, 22, SYN, &MSS, &[]),
    );
    push(
        "tcp data, second flow".into(),
        c.tcp(40003, 22, ACK, &[], &[0u8; 100]),
    );
    // UDP flows seen several times; the discard port; no checksum.
    let u = Ip::new(client(20), SERVER, UDP);
    for i in 0..3u8 {
        push(format!("udp dns {i}"), u.udp(5353, 53, &[i; 12], true));
    }
    push(
        "udp to the discard port".into(),
        u.udp(5000, 9, b"discard me", true),
    );
    push(
        "udp without checksum".into(),
        u.udp(5001, 7, b"echo", false),
    );
    push("udp empty".into(), u.udp(5002, 123, &[], true));
    // ICMP, other IPv4, IPv6, non-IP.
    push(
        "icmp echo".into(),
        Ip::new(client(30), SERVER, ICMP).icmp(1),
    );
    push(
        "icmp echo, blocked source".into(),
        Ip::new(BLOCKED[1], SERVER, ICMP).icmp(2),
    );
    push(
        "gre".into(),
        Ip::new(client(31), SERVER, GRE).packet(&[], &[0, 0, 0x08, 0]),
    );
    push(
        "ipv6 tcp".into(),
        ipv6(
            TCP,
            &[
                0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, SYN, 0xff, 0xff, 0, 0, 0, 0,
            ],
        ),
    );
    push(
        "ipv6 udp".into(),
        ipv6(UDP, &[0x13, 0x88, 0, 53, 0, 8, 0, 0]),
    );
    push(
        "arp".into(),
        ethernet(
            ETH_ARP,
            &[
                0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 192, 168, 1, 1, 0, 0, 0, 0, 0, 0, 192,
                168, 1, 2,
            ],
        ),
    );
    // The firewall's blocked sources, and a neighbour of one.
    for (i, src) in BLOCKED.iter().enumerate() {
        push(
            format!("tcp syn, blocked source {i}"),
            Ip::new(*src, SERVER, TCP).tcp(1234, 80, SYN, &[], &[]),
        );
        push(
            format!("udp, blocked source {i}"),
            Ip::new(*src, SERVER, UDP).udp(1234, 53, b"q", true),
        );
    }
    push(
        "tcp syn, next to a blocked source".into(),
        Ip::new(client(67), SERVER, TCP).tcp(1234, 80, SYN, &[], &[]),
    );
    // The load balancer's virtual address from many clients: every backend gets some.
    for n in 0..12u8 {
        let src = [172, 16, n, 1 + n * 7];
        push(
            format!("tcp syn to the vip from client {n}"),
            Ip::new(src, VIP, TCP).tcp(30000 + u16::from(n) * 101, 80, SYN, &MSS, &[]),
        );
        push(
            format!("udp to the vip from client {n}"),
            Ip::new(src, VIP, UDP).udp(20000 + u16::from(n), 53, b"lb", n % 3 != 0),
        );
    }
    push(
        "icmp to the vip".into(),
        Ip::new(client(40), VIP, ICMP).icmp(3),
    );
    // IPv4 with options: the load balancer drops them, the others parse past them.
    let ra = Ip::new(client(41), VIP, TCP);
    push("tcp to the vip with ip options".into(), {
        let t = &ra.tcp(1, 80, SYN, &[], &[])[34..];
        ethernet(ETH_IPV4, &ra.packet(&[0x94, 4, 0, 0], t))
    });
    // Fragments: the logger discards their records.
    let mut frag = Ip::new(client(42), SERVER, UDP);
    frag.frag = 0x2000; // more fragments
    push("udp first fragment".into(), frag.udp(1, 2, &[7; 40], true));
    frag.frag = 0x0005; // offset 40, last
    push(
        "udp last fragment".into(),
        frag.packet(&[], &[7; 16]).pipe_eth(),
    );
    // TCP option lists for the option parser, on the server's port.
    let o = Ip::new(client(50), SERVER, TCP);
    for (what, opts) in [
        ("mss only", MSS.to_vec()),
        ("nops and end", vec![1, 1, 1, 0]),
        ("window scale", [&[1][..], &WSCALE].concat()),
        (
            "sack permitted and timestamps",
            [&SACK_OK[..], &TIMESTAMPS].concat(),
        ),
        ("a sack block", vec![1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2]),
        ("unknown kind 30", vec![30, 4, 0xab, 0xcd]),
        (
            "forty bytes of options",
            [
                &MSS[..],
                &TIMESTAMPS,
                &TIMESTAMPS,
                &TIMESTAMPS,
                &[1, 1, 1, 1, 1, 1],
            ]
            .concat(),
        ),
    ] {
        push(
            format!("tcp options: {what}"),
            o.tcp(50000, 8080, SYN, &opts, &[]),
        );
    }
    out
}

trait PipeEth {
    fn pipe_eth(self) -> Vec<u8>;
}

impl PipeEth for Vec<u8> {
    /// An IPv4 packet in an Ethernet frame.
    fn pipe_eth(self) -> Vec<u8> {
        ethernet(ETH_IPV4, &self)
    }
}

/// Valid frames cut at each header boundary: the Ethernet header, the IPv4 header (and one
/// byte into and short of it), the transport header, and into the TCP options.
fn truncated(valid: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let bases = [
        "tcp syn with options",
        "udp dns 0",
        "icmp echo",
        "ipv6 tcp",
        "tcp syn to the vip from client 1",
        "udp to the vip from client 1",
        "tcp options: sack permitted and timestamps",
    ];
    let mut out = Vec::new();
    for name in bases {
        let Some((_, frame)) = valid.iter().find(|(w, _)| w == name) else {
            continue;
        };
        let mut cuts = vec![14, 15, 33, 34, 35, 41, 42, 53, 54, 58, 60];
        cuts.retain(|&c| c >= MIN_FRAME && c < frame.len());
        for cut in cuts {
            out.push((format!("{name}, cut to {cut} bytes"), frame[..cut].to_vec()));
        }
    }
    out
}

/// Headers whose fields are wrong.
fn malformed(valid: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let find = |name: &str| {
        valid
            .iter()
            .find(|(w, _)| w == name)
            .map(|(_, f)| f.clone())
            .unwrap_or_default()
    };
    let tcp = find("tcp syn with options");
    let udp = find("udp dns 1");
    let vip = find("tcp syn to the vip from client 2");
    let mut out = Vec::new();
    let mut edit = |what: &str, base: &[u8], f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = base.to_vec();
        f(&mut b);
        out.push((what.to_string(), b));
    };
    for ihl in [0u8, 1, 4, 6, 15] {
        edit(&format!("ihl {ihl}"), &tcp, &|b| b[14] = 0x40 | ihl);
        edit(&format!("ihl {ihl} to the vip"), &vip, &|b| {
            b[14] = 0x40 | ihl
        });
    }
    edit("version 6 in an ipv4 frame", &tcp, &|b| b[14] = 0x65);
    edit("version 0", &udp, &|b| b[14] = 0x05);
    edit("total length too long", &udp, &|b| {
        b[16..18].copy_from_slice(&[0xff, 0xff])
    });
    edit("total length zero", &udp, &|b| {
        b[16..18].copy_from_slice(&[0, 0])
    });
    edit("udp length too long", &udp, &|b| {
        b[38..40].copy_from_slice(&[0x10, 0])
    });
    edit("bad ip checksum", &vip, &|b| b[24] ^= 0xff);
    for doff in [0u8, 4, 15] {
        edit(&format!("tcp data offset {doff}"), &tcp, &|b| {
            b[46] = doff << 4
        });
    }
    // Option lists: a length of 0 and of 1, a length past the header, a kind without a length.
    let opts_at = 54;
    edit("tcp option length 0", &tcp, &|b| b[opts_at + 1] = 0);
    edit("tcp option length 1", &tcp, &|b| b[opts_at + 1] = 1);
    edit("tcp option length past the header", &tcp, &|b| {
        b[opts_at + 1] = 40
    });
    edit("tcp option kind without a length", &tcp, &|b| {
        let end = 34 + usize::from(b[46] >> 4) * 4;
        b[end - 1] = 8; // timestamps' kind in the last byte
    });
    edit("tcp options cut by the frame", &tcp, &|b| {
        b.truncate(opts_at + 6)
    });
    edit("ethertype ipv4, ipv6 inside", &find("ipv6 udp"), &|b| {
        b[12..14].copy_from_slice(&[8, 0])
    });
    edit("ethertype ipv6, ipv4 inside", &udp, &|b| {
        b[12..14].copy_from_slice(&[0x86, 0xdd])
    });
    edit("vlan tag", &udp, &|b| b[12..14].copy_from_slice(&[0x81, 0]));
    out
}

/// Random frames: lengths from 14 to 200 bytes, every other one behind an Ethernet header that
/// says IPv4 with a version-4 first byte, so that parsers go deeper.
fn random(rng: &mut SplitMix64, count: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let len = MIN_FRAME + (rng.next_u64() % 187) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if i % 2 == 1 && len > 15 {
                b[12..14].copy_from_slice(&ETH_IPV4.to_be_bytes());
                b[14] = 0x40 | (b[14] & 0x0f);
            }
            (format!("random {i}"), b)
        })
        .collect()
}

/// How many random frames the sequence holds.
pub(crate) const RANDOM: usize = 30;

/// The whole sequence for `seed` (only the random frames depend on it): valid frames, then
/// truncated, malformed and random ones, in that order.
pub(crate) fn packets(seed: u64) -> Vec<Packet> {
    let valid = valid();
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    let mut add = |category, list: Vec<(String, Vec<u8>)>| {
        out.extend(list.into_iter().map(|(what, bytes)| Packet {
            category,
            what,
            bytes,
        }));
    };
    add(Category::Truncated, truncated(&valid));
    add(Category::Malformed, malformed(&valid));
    add(Category::Random, random(&mut rng, RANDOM));
    let mut all: Vec<Packet> = valid
        .into_iter()
        .map(|(what, bytes)| Packet {
            category: Category::Valid,
            what,
            bytes,
        })
        .collect();
    all.append(&mut out);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(packets: &[Packet], category: Category) -> usize {
        packets.iter().filter(|p| p.category == category).count()
    }

    #[test]
    fn every_category_is_there_and_the_whole_exceeds_a_hundred() {
        let p = packets(1);
        assert!(p.len() >= 100, "{}", p.len());
        assert!(
            count(&p, Category::Valid) >= 50,
            "{}",
            count(&p, Category::Valid)
        );
        assert!(
            count(&p, Category::Truncated) >= 40,
            "{}",
            count(&p, Category::Truncated)
        );
        assert!(
            count(&p, Category::Malformed) >= 25,
            "{}",
            count(&p, Category::Malformed)
        );
        assert_eq!(count(&p, Category::Random), RANDOM);
        // In order: valid, truncated, malformed, random.
        let order: Vec<Category> = p.iter().map(|p| p.category).collect();
        assert!(order.is_sorted());
    }

    #[test]
    fn the_sequence_is_deterministic_and_only_random_frames_follow_the_seed() {
        assert_eq!(packets(7), packets(7));
        let (a, b) = (packets(7), packets(8));
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.category == Category::Random, x != y, "{}", x.what);
        }
    }

    #[test]
    fn frames_fit_a_test_run() {
        for p in packets(3) {
            assert!(
                (MIN_FRAME..=1514).contains(&p.bytes.len()),
                "{}: {} bytes",
                p.what,
                p.bytes.len()
            );
        }
    }

    /// A checksum over a header that holds its own checksum is 0: the valid frames' IPv4,
    /// TCP and UDP checksums are right.
    #[test]
    fn valid_frames_carry_correct_checksums() {
        let mut checked = 0;
        for (what, f) in valid() {
            if f[12..14] != ETH_IPV4.to_be_bytes() {
                continue;
            }
            let ihl = usize::from(f[14] & 15) * 4;
            assert_eq!(checksum(&f[14..14 + ihl], 0), 0, "{what}: ip");
            let l4 = &f[14 + ihl..];
            let (src, dst) = ([f[26], f[27], f[28], f[29]], [f[30], f[31], f[32], f[33]]);
            let proto = f[23];
            let fragment = u16::from_be_bytes([f[20], f[21]]) & 0x3fff != 0;
            let has_sum = match proto {
                TCP => true,
                UDP => l4[6..8] != [0, 0],
                _ => false,
            };
            if has_sum && !fragment {
                assert_eq!(
                    checksum(l4, pseudo_sum(src, dst, proto, l4.len())),
                    0,
                    "{what}"
                );
                checked += 1;
            }
        }
        assert!(checked > 40, "{checked}");
    }

    #[test]
    fn truncations_cut_every_header() {
        let p = packets(1);
        let cuts: Vec<usize> = p
            .iter()
            .filter(|p| {
                p.category == Category::Truncated && p.what.starts_with("tcp syn with options")
            })
            .map(|p| p.bytes.len())
            .collect();
        // Ethernet end, IPv4 end and either side, TCP header end, into the options.
        for cut in [14, 33, 34, 35, 53, 54, 58] {
            assert!(cuts.contains(&cut), "{cut}: {cuts:?}");
        }
    }
}
