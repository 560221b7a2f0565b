# hash: FNV-1a (64-bit) and Jenkins one-at-a-time (32-bit ALU) over the same bytes.
#
# Input: [len: u64][data: len - 8 bytes]. Returns fnv1a64(data) ^ (oaat32(data) << 32).
    ldxdw %r2, [%r1]
    mov %r3, %r1
    add %r3, %r2
    add %r1, 8
    lddw %r0, 0xcbf29ce484222325
    lddw %r4, 0x100000001b3
    mov %r5, 0
    jge %r1, %r3, final
loop:
    ldxb %r6, [%r1]
    xor %r0, %r6
    mul %r0, %r4
    add32 %r5, %r6
    mov32 %r7, %r5
    lsh32 %r7, 10
    add32 %r5, %r7
    mov32 %r7, %r5
    rsh32 %r7, 6
    xor32 %r5, %r7
    add %r1, 1
    jlt %r1, %r3, loop
final:
    mov32 %r7, %r5
    lsh32 %r7, 3
    add32 %r5, %r7
    mov32 %r7, %r5
    rsh32 %r7, 11
    xor32 %r5, %r7
    mov32 %r7, %r5
    lsh32 %r7, 15
    add32 %r5, %r7
    lsh %r5, 32
    xor %r0, %r5
    exit
