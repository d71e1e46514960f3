"""Reading a weights file (the loader's half of codegen/weights.py): the format constants, the
header check and the memory map.  A top-level module with light imports, because loading a
compiled module reads it first: importing it through the codegen package cost ~0.3 ms of a
~1.6 ms first load.

Layout: 64-byte header  b"ONNXCW01" | uint64 payload bytes | 16-byte blake2b of payload | pad,
then the payload.  Offsets handed to the C code are relative to the payload start.
"""
from __future__ import annotations

import os
import struct
import sys
from typing import Optional

import numpy as np

MAGIC = b"ONNXCW01"
HEADER = 64
ALIGN = 64


def digest(data) -> bytes:
    import hashlib  # here, not at the top: importing it (OpenSSL) is ~25 ms of a first load
    return hashlib.blake2b(data, digest_size=16).digest()


# Zero bytes mapped after the payload (rounded up to whole pages). The runtime kernels do not
# read past the end of the buffers they are given (audited: masked SGEMM tails, whole NCHWc blocks,
# B packed to whole panels at compile time; tests/test_guard_pages.py, ASan runs of models), so
# this is a safety margin, not a requirement: a future kernel that reads a full vector past the
# end of the last constant reads zeros instead of faulting. Untouched anonymous pages cost nothing.
SLACK = 64 * 1024


def _parse_header(path, f):
    head = f.read(HEADER)
    if len(head) < HEADER or head[:8] != MAGIC:
        raise ValueError(f"{path} is not an onnxc weights file (bad magic)")
    (n,) = struct.unpack("<Q", head[8:16])
    size = os.fstat(f.fileno()).st_size
    if size - HEADER != n:
        raise ValueError(f"{path}: weights payload is {size - HEADER} bytes, header says {n}")
    return n, head[16:32], size


class _Mapping:
    """An address range from libc mmap, unmapped when the last array over it is collected."""

    def __init__(self, libc, base: int, length: int):
        import weakref
        self.base, self.length = base, length
        # not at interpreter exit: a daemon thread may still be running the model; the OS frees it
        weakref.finalize(self, libc.munmap, base, length).atexit = False


class _MappedBytes:
    """Exposes n read-only bytes at addr to numpy; the array keeps this object (and through it
    the mapping) alive as its .base."""

    def __init__(self, addr: int, n: int, mapping: _Mapping):
        self.__array_interface__ = {"shape": (n,), "typestr": "|u1", "data": (addr, True), "version": 3}
        self.mapping = mapping


_LIBC = None


def _libc():
    """libc's mmap/munmap through ctypes (the mmap module cannot map at a fixed address), or None
    where there is no POSIX mmap (Windows): loading then reads the file."""
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        if os.name == "posix":
            try:
                import ctypes
                libc = ctypes.CDLL(None, use_errno=True)
                libc.mmap.restype = ctypes.c_void_p
                libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                                      ctypes.c_int, ctypes.c_long]
                libc.munmap.restype = ctypes.c_int
                libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
                _LIBC = libc
            except (OSError, AttributeError):
                pass
    return _LIBC or None


# PROT_READ, MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED on Linux for these machines: importing the mmap
# module for them cost 0.3 ms of a ~2 ms first load; elsewhere the mmap module supplies them.
_LINUX_MAP_FLAGS = (1, 2, 0x20, 0x10)
_LINUX_MACHINES = ("x86_64", "i686", "aarch64", "armv7l", "riscv64", "ppc64le", "s390x")


def _map_constants():
    """(page size, PROT_READ, MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED)."""
    if sys.platform.startswith("linux") and os.uname().machine in _LINUX_MACHINES:
        return (os.sysconf("SC_PAGE_SIZE"),) + _LINUX_MAP_FLAGS
    import mmap
    return mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_PRIVATE, mmap.MAP_ANONYMOUS, getattr(mmap, "MAP_FIXED", 0x10)


def _map_file(f, file_size: int, slack: int):
    """Map the whole file (header included) read-only and copy-on-write at the start of a
    reserved anonymous region of file + slack bytes (whole pages): the page-aligned base puts the
    payload (at HEADER = 64) on a 64-byte boundary, and every byte after the file's end reads as
    zero (the rest of its last page is zero-filled by the kernel, the pages after it are anonymous)
    instead of faulting. Returns (mapping, base address); raises OSError if mmap fails."""
    import ctypes
    libc = _libc()
    page, prot_read, map_private, map_anonymous, map_fixed = _map_constants()
    length = (file_size + slack + page - 1) // page * page
    failed = ctypes.c_void_p(-1).value
    base = libc.mmap(None, length, prot_read, map_private | map_anonymous, -1, 0)
    if base in (None, failed):
        raise OSError(ctypes.get_errno(), "mmap (reserve) failed")
    mapping = _Mapping(libc, base, length)  # unmaps the whole region if the next step fails
    got = libc.mmap(base, file_size, prot_read, map_private | map_fixed, f.fileno(), 0)
    if got != base:
        raise OSError(ctypes.get_errno(), "mmap (file) failed")
    return mapping, base


def read_blob(path, expect_digest: Optional[str] = None, verify: bool = False,
              use_mmap: bool = True, slack: int = SLACK) -> np.ndarray:
    """The payload of a weights file as a read-only, 64-byte aligned uint8 array followed by at
    least ``slack`` zero bytes (see SLACK).

    Where POSIX mmap exists (and ``use_mmap``) the file is memory-mapped: loading costs page-table
    work, not a copy, and pages are read on first use (the first run). The mapping is private and
    lives as long as the array; the compiler replaces weights.bin by renaming a new file over it,
    so a rebuild never changes what a loaded module sees (writing into a mapped file in place, or
    truncating it, would). Elsewhere the payload is read into an aligned buffer with the same slack.

    The header's size is checked against the file and its digest against ``expect_digest`` (the
    manifest's, recorded at compile time: a weights file from another build is refused); ``verify``
    also re-hashes the payload, which costs about as much as reading it."""
    with open(path, "rb") as f:
        n, h, size = _parse_header(path, f)
        if expect_digest is not None and h.hex() != expect_digest:
            raise ValueError(f"{path}: weights are from another build (digest {h.hex()}, the module expects "
                             f"{expect_digest})")
        out = None
        if use_mmap and _libc() is not None:
            try:
                mapping, base = _map_file(f, size, slack)
                out = np.asarray(_MappedBytes(base + HEADER, n, mapping))
            except OSError:
                out = None  # e.g. a file system without mmap: read it instead
        if out is None:
            buf = np.zeros(n + slack + ALIGN, dtype=np.uint8)
            start = (-buf.ctypes.data) % ALIGN
            out = buf[start:start + n]
            f.seek(HEADER)
            if n and f.readinto(memoryview(out)) != n:
                raise ValueError(f"{path}: short read")
            out.flags.writeable = False
    if verify and digest(out) != h:
        raise ValueError(f"{path}: weights checksum mismatch (file corrupted)")
    return out


def blob_digest(path) -> str:
    """The payload digest recorded in a weights file's header (hex)."""
    with open(path, "rb") as f:
        head = f.read(HEADER)
    return head[16:32].hex()
