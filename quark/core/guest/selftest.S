# Build self-test for quark/core/guest/build.py (tests/unit/core/test_guest_build.py).
# Not loaded into any guest: it only proves that `as --64` + `objcopy -O binary`
# work in this environment and that the package build ships the result.
# The expected bytes are checked by the test; keep them in step.
        .code64
        .text
        .globl  selftest
selftest:
        mov     $0x2a, %eax             # b8 2a 00 00 00
        lea     message(%rip), %rsi     # 48 8d 35 02 00 00 00  (RIP-relative: no relocation)
        hlt                             # f4
        ret                             # c3
message:
        .ascii  "quark"
