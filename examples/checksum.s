# checksum.s: the Fletcher-16 checksum of the eight bytes "abcdefgh".
#
# Syntax: the bpf_conformance dialect (`ebpf asm`). `#` starts a comment, labels stand on
# lines of their own, jump targets are labels or `+N`/`-N` slot offsets. The program needs
# no input memory: it writes its data to the stack (r10 is the read-only frame pointer;
# the 512-byte stack lies just below it).
#
# Fletcher-16 keeps two running sums modulo 255:
#     sum1 = (sum1 + byte) % 255
#     sum2 = (sum2 + sum1) % 255
# and returns (sum2 << 8) | sum1. For "abcdefgh" that is 0x0627.
#
# Expected result: r0 = 0x627

# The data: "abcdefgh" as a little-endian 64-bit constant ('a' = 0x61 is the lowest byte).
lddw %r1, 0x6867666564636261
stxdw [%r10-8], %r1

mov %r2, %r10           # r2: pointer to the next byte
add %r2, -8
mov %r3, 8              # r3: bytes left
mov %r4, 0              # r4: sum1
mov %r5, 0              # r5: sum2

loop:
ldxb %r1, [%r2]         # r1 = *r2 (one byte, zero-extended)
add %r4, %r1
mod %r4, 255
add %r5, %r4
mod %r5, 255
add %r2, 1
sub %r3, 1
jne %r3, 0, loop        # until no bytes are left

mov %r0, %r5            # r0 = (sum2 << 8) | sum1
lsh %r0, 8
or %r0, %r4
exit
