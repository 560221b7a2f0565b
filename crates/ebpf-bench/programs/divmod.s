# divmod: division-heavy number theory on pairs of u64s (64-bit div and mod throughout).
#
# Input: [len: u64][count: u64][count x (a: u64, b: u64)]. For each pair, with
# M = 4294967291 (the largest prime below 2^32):
#   acc = acc * 31 + gcd(a, b)               (Euclid, with mod)
#   acc ^= pow(a mod M, b as u32) mod M      (square-and-multiply, with mod)
#   acc += decimal digit sum of a            (div and mod by 10)
# Returns acc, or 0 if the pairs do not fit in the input.
    ldxdw %r2, [%r1]
    ldxdw %r3, [%r1+8]
    mov %r0, 0
    mov %r4, %r3
    lsh %r4, 4
    add %r4, 16
    jgt %r4, %r2, out
    mov %r6, %r1
    add %r6, 16
    lsh %r3, 4
    add %r3, %r6
    lddw %r9, 4294967291
    mov %r8, 0
pair:
    jge %r6, %r3, done
    ldxdw %r1, [%r6]
    ldxdw %r2, [%r6+8]
    add %r6, 16
    mov %r4, %r1
    mov %r5, %r2
gcd:
    jeq %r5, 0, gcd_done
    mov %r7, %r4
    mod %r7, %r5
    mov %r4, %r5
    mov %r5, %r7
    ja gcd
gcd_done:
    mul %r8, 31
    add %r8, %r4
    mov %r5, %r1
    mod %r5, %r9
    mov32 %r7, %r2
    mov %r4, 1
pow:
    jeq %r7, 0, pow_done
    jset %r7, 1, pow_mul
pow_square:
    mul %r5, %r5
    mod %r5, %r9
    rsh %r7, 1
    ja pow
pow_mul:
    mul %r4, %r5
    mod %r4, %r9
    ja pow_square
pow_done:
    xor %r8, %r4
    mov %r5, %r1
digits:
    mov %r0, %r5
    mod %r0, 10
    add %r8, %r0
    div %r5, 10
    jne %r5, 0, digits
    ja pair
done:
    mov %r0, %r8
out:
    exit
