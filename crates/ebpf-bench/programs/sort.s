# sort: insertion sort of u32s in place (the program writes its input), then a checksum.
#
# Input: [len: u64][n: u64][n x u32]. Sorts the array ascending and returns
# sum over i of a[i] * (i + 1) (wrapping), or 0 if the array does not fit in the input.
    ldxdw %r2, [%r1]
    ldxdw %r3, [%r1+8]
    mov %r0, 0
    mov %r4, %r3
    lsh %r4, 2
    add %r4, 16
    jgt %r4, %r2, out
    mov %r6, %r1
    add %r6, 16
    mov %r7, 1
outer:
    jge %r7, %r3, sorted
    mov %r8, %r7
    lsh %r8, 2
    add %r8, %r6
    ldxw %r4, [%r8]
inner:
    jeq %r8, %r6, place
    ldxw %r5, [%r8-4]
    jle %r5, %r4, place
    stxw [%r8], %r5
    sub %r8, 4
    ja inner
place:
    stxw [%r8], %r4
    add %r7, 1
    ja outer
sorted:
    mov %r7, 0
    mov %r8, %r6
checksum:
    jge %r7, %r3, out
    ldxw %r4, [%r8]
    add %r7, 1
    mul %r4, %r7
    add %r0, %r4
    add %r8, 4
    ja checksum
out:
    exit
