# packet: parse a batch of captured Ethernet frames and keep the IPv4/TCP ones to port 80 or 443.
#
# Input: [len: u64] then records [caplen: u16 little-endian][caplen bytes of frame], up to len.
# Every field read is bounds-checked against the frame's end. Per frame: Ethernet (with one
# optional 802.1Q tag), IPv4 (version 4, IHL >= 5, protocol TCP, not a fragment), TCP (the whole
# 20-byte header present), destination port 80 or 443. For each match:
#   count += 1
#   acc = acc * 31 + (saddr ^ daddr ^ (sport << 16 | dport)) + ((tot_len - ihl*4 - doff*4) & 0xffff)
# Returns (count << 48) | (acc & (2^48 - 1)). A record that runs past the end stops the parse.
    ldxdw %r2, [%r1]
    mov %r9, %r1
    add %r9, %r2
    mov %r6, %r1
    add %r6, 8
    mov %r7, 0
    mov %r8, 0
next:
    mov %r3, %r6
    add %r3, 2
    jgt %r3, %r9, done
    ldxh %r4, [%r6]
    mov %r5, %r3
    add %r3, %r4
    jgt %r3, %r9, done
    mov %r6, %r3
    jlt %r4, 14, next
    mov %r2, %r5
    add %r2, 14
    ldxh %r0, [%r5+12]
    be16 %r0
    jne %r0, 0x8100, l3
    mov %r2, %r5
    add %r2, 18
    jgt %r2, %r3, next
    ldxh %r0, [%r5+16]
    be16 %r0
l3:
    jne %r0, 0x0800, next
    mov %r1, %r2
    add %r1, 20
    jgt %r1, %r3, next
    ldxb %r0, [%r2]
    mov %r1, %r0
    rsh %r1, 4
    jne %r1, 4, next
    and %r0, 15
    jlt %r0, 5, next
    lsh %r0, 2
    ldxb %r1, [%r2+9]
    jne %r1, 6, next
    ldxh %r1, [%r2+6]
    be16 %r1
    jset %r1, 0x1fff, next
    ldxh %r4, [%r2+2]
    be16 %r4
    add %r0, %r2
    mov %r1, %r0
    add %r1, 20
    jgt %r1, %r3, next
    ldxh %r1, [%r0+2]
    be16 %r1
    jeq %r1, 80, match
    jeq %r1, 443, match
    ja next
match:
    add %r8, 1
    ldxw %r5, [%r2+12]
    be32 %r5
    ldxw %r3, [%r2+16]
    be32 %r3
    xor %r5, %r3
    ldxw %r3, [%r0]
    be32 %r3
    xor %r5, %r3
    ldxb %r3, [%r0+12]
    rsh %r3, 4
    lsh %r3, 2
    sub %r4, %r3
    sub %r0, %r2
    sub %r4, %r0
    and %r4, 0xffff
    mul %r7, 31
    add %r7, %r5
    add %r7, %r4
    ja next
done:
    lsh %r7, 16
    rsh %r7, 16
    mov %r0, %r8
    lsh %r0, 48
    or %r0, %r7
    exit
