# histogram: a byte histogram in a local array on the stack (r10), then statistics over it.
#
# Input: [len: u64][data: len - 8 bytes]. 32 u64 counters at r10-256 (zeroed first), bucket =
# byte >> 3. Returns sum over buckets b of count[b]^2 * (b + 1), xor (argmax << 48), where
# argmax is the first bucket with the largest count.
    ldxdw %r2, [%r1]
    mov %r3, %r1
    add %r3, %r2
    add %r1, 8
    mov %r4, %r10
    sub %r4, 256
    mov %r5, 0
zero:
    mov %r6, %r4
    add %r6, %r5
    stdw [%r6], 0
    add %r5, 8
    jlt %r5, 256, zero
count:
    jge %r1, %r3, summarize
    ldxb %r6, [%r1]
    and %r6, 0xf8
    add %r6, %r4
    ldxdw %r7, [%r6]
    add %r7, 1
    stxdw [%r6], %r7
    add %r1, 1
    ja count
summarize:
    mov %r0, 0
    mov %r5, 0
    mov %r8, 0
    mov %r9, 0
sum:
    mov %r6, %r4
    add %r6, %r5
    ldxdw %r7, [%r6]
    mov %r2, %r7
    mul %r2, %r7
    mov %r6, %r5
    rsh %r6, 3
    add %r6, 1
    mul %r2, %r6
    add %r0, %r2
    jle %r7, %r8, sum_next
    mov %r8, %r7
    mov %r9, %r5
sum_next:
    add %r5, 8
    jlt %r5, 256, sum
    lsh %r9, 45
    xor %r0, %r9
    exit
