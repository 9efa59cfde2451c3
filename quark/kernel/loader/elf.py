"""ELF64 loader: maps an executable (static, static-pie, or dynamic through its
PT_INTERP) into a fresh address space and builds the initial stack as Linux's
``load_elf_binary`` and ``create_elf_tables`` do."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

from quark.core.guest.layout import PAGE
from quark.kernel.abi import linux as L
from quark.kernel.errors import LinuxError
from quark.kernel.mm.address_space import STACK_MAX, AddressSpace

ELF_MAGIC = b"\x7fELF"
ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PT_LOAD, PT_INTERP, PT_PHDR, PT_GNU_STACK = 1, 3, 6, 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4

ELF_ET_DYN_BASE = 0x5555_5555_4000      # where Linux puts a PIE without ASLR
INTERP_BASE = 0x7F7F_F7FC_0000 - (64 << 20)
MAX_ARG_STRLEN = 32 * PAGE
MAX_PHDRS = 64

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")

# CPUID.1:EDX as AT_HWCAP (what the guest CPU reports; glibc only logs it on x86-64).
HWCAP_X86 = 0x178BFBFF


@dataclass
class Image:
    entry: int          # where the process starts (interpreter's entry if dynamic)
    exe_entry: int      # AT_ENTRY
    phdr: int           # AT_PHDR
    phnum: int
    base: int           # AT_BASE (interpreter load address, 0 if static)
    interp: str


def _read(file: Any, off: int, n: int) -> bytes:
    buf = bytearray(n)
    got = file.read_at([memoryview(buf)], off)
    return bytes(buf[:got])


def _headers(file: Any) -> tuple[tuple[Any, ...], list[tuple[int, ...]]]:
    raw = _read(file, 0, _EHDR.size)
    if len(raw) < _EHDR.size or raw[:4] != ELF_MAGIC:
        raise LinuxError(L.ENOEXEC)
    eh = _EHDR.unpack(raw)
    ident, etype, machine = eh[0], eh[1], eh[2]
    if ident[4] != 2 or ident[5] != 1 or machine != EM_X86_64 or etype not in (ET_EXEC, ET_DYN):
        raise LinuxError(L.ENOEXEC)
    phoff, phentsize, phnum = eh[5], eh[9], eh[10]
    if phentsize != _PHDR.size or not 0 < phnum <= MAX_PHDRS:
        raise LinuxError(L.ENOEXEC)
    table = _read(file, phoff, phnum * phentsize)
    if len(table) != phnum * phentsize:
        raise LinuxError(L.EIO)
    return eh, [_PHDR.unpack_from(table, i * phentsize) for i in range(phnum)]


def _prot(pflags: int) -> int:
    return ((L.PROT_READ if pflags & PF_R else 0) | (L.PROT_WRITE if pflags & PF_W else 0)
            | (L.PROT_EXEC if pflags & PF_X else 0))


def _map_segments(mm: AddressSpace, file: Any, phdrs: list[tuple[int, ...]], bias: int,
                  name: str) -> int:
    """Map PT_LOAD segments at ``bias``; returns the end of the highest one."""
    top = 0
    for p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, p_memsz, _align in phdrs:
        if p_type != PT_LOAD or p_memsz == 0:
            continue
        if p_filesz > p_memsz or (p_vaddr - p_offset) & (PAGE - 1):
            raise LinuxError(L.ENOEXEC)
        prot = _prot(p_flags)
        start = bias + p_vaddr
        page = start & ~(PAGE - 1)
        file_end = start + p_filesz
        mem_end = start + p_memsz
        fpage_end = (file_end + PAGE - 1) & ~(PAGE - 1)
        if p_filesz:
            mm.mmap(page, fpage_end - page, prot, L.MAP_PRIVATE | L.MAP_FIXED, file,
                    p_offset - (start - page), name)
            if file_end < fpage_end and p_memsz > p_filesz:
                mm.zero(file_end, fpage_end - file_end)   # .bss head shares a page
            # Every segment's start (headers and relocations, rodata, the TLS image
            # and GOT) is read at once by a starting program: backed now, not by a
            # guest fault each (what the fault would do: read-only file pages come
            # from the text cache).
            mm.prefault(page, write=False)
        anon_start = fpage_end if p_filesz else page
        mpage_end = (mem_end + PAGE - 1) & ~(PAGE - 1)
        if mpage_end > anon_start:
            mm.mmap(anon_start, mpage_end - anon_start, prot,
                    L.MAP_PRIVATE | L.MAP_FIXED | L.MAP_ANONYMOUS, None, 0, "")
        top = max(top, mem_end)
    return top


def load(mm: AddressSpace, file: Any, open_interp: Any, name: str) -> Image:
    """Map ``file`` (and its interpreter, opened with ``open_interp(path)``)."""
    eh, phdrs = _headers(file)
    etype, entry, phoff, phnum = eh[1], eh[4], eh[5], eh[10]
    interp = ""
    for ph in phdrs:
        if ph[0] == PT_INTERP:
            if not 1 < ph[5] <= 4096:
                raise LinuxError(L.ENOEXEC)
            raw = _read(file, ph[2], ph[5])
            interp = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    lows = [ph[3] for ph in phdrs if ph[0] == PT_LOAD]
    if not lows:
        raise LinuxError(L.ENOEXEC)
    bias = 0
    if etype == ET_DYN:
        bias = ELF_ET_DYN_BASE - (min(lows) & ~(PAGE - 1))
    top = _map_segments(mm, file, phdrs, bias, name)
    mm.brk_start = mm.brk = (top + PAGE - 1) & ~(PAGE - 1)

    phdr_addr = 0
    for ph in phdrs:
        if ph[0] == PT_PHDR:
            phdr_addr = bias + ph[3]
    if not phdr_addr:
        for ph in phdrs:   # the segment holding the program headers
            if ph[0] == PT_LOAD and ph[2] <= phoff < ph[2] + ph[5]:
                phdr_addr = bias + ph[3] + (phoff - ph[2])
    image = Image(bias + entry, bias + entry, phdr_addr, phnum, 0, interp)
    if interp:
        ifile = open_interp(interp)
        ieh, iphdrs = _headers(ifile)
        if ieh[1] != ET_DYN:
            raise LinuxError(L.ELIBBAD)
        ilows = [ph[3] for ph in iphdrs if ph[0] == PT_LOAD]
        span = max(ph[3] + ph[6] for ph in iphdrs if ph[0] == PT_LOAD) - min(ilows)
        base = mm.mmap(0, span, L.PROT_NONE, L.MAP_PRIVATE | L.MAP_ANONYMOUS)
        ibias = base - (min(ilows) & ~(PAGE - 1))
        _map_segments(mm, ifile, iphdrs, ibias, interp)
        image.base = ibias
        image.entry = ibias + ieh[4]
    return image


def build_stack(mm: AddressSpace, image: Image, argv: list[bytes], envp: list[bytes],
                execfn: bytes, creds: Any, vdso: int = 0) -> int:
    """Create the stack VMA and the initial frame (argc, argv, envp, auxv);
    returns the initial RSP."""
    total = sum(len(a) + 1 for a in argv) + sum(len(e) + 1 for e in envp)
    if total > STACK_MAX // 4 or any(len(a) >= MAX_ARG_STRLEN for a in argv + envp):
        raise LinuxError(L.E2BIG)
    top = mm.stack_top
    mm.mmap(top - STACK_MAX, STACK_MAX, L.PROT_READ | L.PROT_WRITE,
            L.MAP_PRIVATE | L.MAP_FIXED | L.MAP_ANONYMOUS | L.MAP_GROWSDOWN, None, 0, "[stack]")

    sp = top
    strings = bytearray()

    def push_str(s: bytes) -> int:
        nonlocal sp
        sp -= len(s) + 1
        strings[:0] = s + b"\0"
        return sp

    fn_addr = push_str(execfn)
    env_addrs = [push_str(e) for e in reversed(envp)][::-1]
    arg_addrs = [push_str(a) for a in reversed(argv)][::-1]
    platform = push_str(b"x86_64")
    mm.write(sp, bytes(strings))
    sp &= ~15
    sp -= 16
    rand = sp
    mm.write(rand, os.urandom(16))

    auxv = [
        (L.AT_SYSINFO_EHDR, vdso) if vdso else None,
        (L.AT_MINSIGSTKSZ, 2048),
        (L.AT_HWCAP, HWCAP_X86),
        (L.AT_PAGESZ, PAGE),
        (L.AT_CLKTCK, 100),
        (L.AT_PHDR, image.phdr),
        (L.AT_PHENT, _PHDR.size),
        (L.AT_PHNUM, image.phnum),
        (L.AT_BASE, image.base),
        (L.AT_FLAGS, 0),
        (L.AT_ENTRY, image.exe_entry),
        (L.AT_UID, creds.uid),
        (L.AT_EUID, creds.euid),
        (L.AT_GID, creds.gid),
        (L.AT_EGID, creds.egid),
        (L.AT_SECURE, 0),
        (L.AT_RANDOM, rand),
        (L.AT_HWCAP2, 0),
        (L.AT_EXECFN, fn_addr),
        (L.AT_PLATFORM, platform),
        (L.AT_NULL, 0),
    ]
    words = [len(argv)] + arg_addrs + [0] + env_addrs + [0]
    for pair in auxv:
        if pair is not None:
            words += list(pair)
    if len(words) % 2:
        sp -= 8       # keep RSP 16-byte aligned at entry, as the ABI requires
    sp -= 8 * len(words)
    mm.write(sp, struct.pack(f"<{len(words)}Q", *words))
    return sp
