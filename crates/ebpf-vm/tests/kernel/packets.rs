//! Frames built by hand: Ethernet + IPv4 + TCP/UDP/ICMP, with a correct IPv4 checksum.

/// The ones'-complement sum of a byte string's 16-bit big-endian words (0xffff over a
/// header or segment whose checksum is valid).
pub(crate) fn ones_sum(bytes: &[u8]) -> u32 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// The IPv4 header checksum.
pub(crate) fn ip_checksum(header: &[u8]) -> u16 {
    !(ones_sum(header) as u16)
}

/// An Ethernet frame carrying IPv4 from `src` to `dst` with protocol `proto` and `l4` as the
/// payload.
pub(crate) fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let c = ip_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

/// A TCP header (20 bytes plus `options`) from `sport` to `dport` with `flags`.
pub(crate) fn tcp(sport: u16, dport: u16, flags: u8, options: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = (((20 + options.len()) / 4) as u8) << 4;
    t[13] = flags;
    t.extend_from_slice(options);
    t
}

/// A UDP header and payload.
pub(crate) fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

/// An ARP-typed frame (not IPv4).
pub(crate) fn arp() -> Vec<u8> {
    let mut f = vec![0u8; 42];
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f
}
