# poly: a loop-heavy arithmetic kernel.
#
# Input: [len: u64][n: u64][k: u64] (little-endian). For i in 0..n:
#   acc += ((3i + 5)i + 7)i + k;  acc ^= acc >> 29;  acc += (i as u32 * 0x9e3779b1) as u32
# Returns acc (0 if the input is shorter than 24 bytes).
    ldxdw %r2, [%r1]
    mov %r0, 0
    jlt %r2, 24, out
    ldxdw %r3, [%r1+8]
    ldxdw %r6, [%r1+16]
    mov %r4, 0
    jeq %r3, 0, out
loop:
    mov %r5, %r4
    mul %r5, 3
    add %r5, 5
    mul %r5, %r4
    add %r5, 7
    mul %r5, %r4
    add %r5, %r6
    add %r0, %r5
    mov %r7, %r0
    rsh %r7, 29
    xor %r0, %r7
    mov32 %r8, %r4
    mul32 %r8, 0x9e3779b1
    add %r0, %r8
    add %r4, 1
    jne %r4, %r3, loop
out:
    exit
