"""Weights blob: every constant the C code reads, 64-byte aligned, behind a small header.

Layout: 64-byte header  b"ONNXCW01" | uint64 payload bytes | 16-byte blake2b of payload | pad,
then the payload.  Offsets handed to the C code are relative to the payload start.
Keeping weights out of the C source keeps compile times flat (ResNet-50 is ~100 MB).
"""
from __future__ import annotations

import hashlib
import os
import struct
from typing import Dict, List, Optional

import numpy as np

MAGIC = b"ONNXCW01"
HEADER = 64
ALIGN = 64


def digest(data) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class WeightsBlob:
    def __init__(self):
        self.offsets: Dict[int, int] = {}  # id(value) -> payload offset
        self._chunks: List[bytes] = []
        self.size = 0

    def add(self, value) -> int:
        if id(value) in self.offsets:
            return self.offsets[id(value)]
        arr = np.ascontiguousarray(value.const)
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8)
        data = arr.tobytes()
        pad = (-self.size) % ALIGN
        if pad:
            self._chunks.append(b"\0" * pad)
            self.size += pad
        off = self.size
        self._chunks.append(data)
        self.size += len(data)
        self.offsets[id(value)] = off
        return off

    def payload(self) -> bytes:
        return b"".join(self._chunks)

    def write(self, path) -> int:
        payload = self.payload()
        header = MAGIC + struct.pack("<Q", len(payload)) + digest(payload)
        header += b"\0" * (HEADER - len(header))
        # a new file renamed into place: a module already loaded from this directory keeps its
        # memory map of the old file (truncating a mapped file would crash it with SIGBUS)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(payload)
        os.replace(tmp, path)
        return len(payload)


def read_blob(path, expect_digest: Optional[str] = None, verify: bool = False) -> np.ndarray:
    """The payload of a weights file, read straight into a 64-byte aligned uint8 array (one copy,
    from the file; 64 bytes of slack after it, so a vector load at the very end stays in bounds).

    The header's size is checked against the file and its digest against ``expect_digest`` (the
    manifest's, recorded at compile time: a weights file from another build is refused); ``verify``
    also re-hashes the payload, which costs about as much as reading it."""
    with open(path, "rb") as f:
        head = f.read(HEADER)
        if len(head) < HEADER or head[:8] != MAGIC:
            raise ValueError(f"{path} is not an onnxc weights file (bad magic)")
        (n,) = struct.unpack("<Q", head[8:16])
        h = head[16:32]
        size = os.fstat(f.fileno()).st_size
        if size - HEADER != n:
            raise ValueError(f"{path}: weights payload is {size - HEADER} bytes, header says {n}")
        if expect_digest is not None and h.hex() != expect_digest:
            raise ValueError(f"{path}: weights are from another build (digest {h.hex()}, the module expects "
                             f"{expect_digest})")
        buf = np.empty(n + 2 * ALIGN, dtype=np.uint8)
        start = (-buf.ctypes.data) % ALIGN
        out = buf[start:start + n]
        buf[start + n:] = 0
        if n and f.readinto(memoryview(out)) != n:
            raise ValueError(f"{path}: short read")
    if verify and digest(out) != h:
        raise ValueError(f"{path}: weights checksum mismatch (file corrupted)")
    return out


def blob_digest(path) -> str:
    """The payload digest recorded in a weights file's header (hex)."""
    with open(path, "rb") as f:
        head = f.read(HEADER)
    return head[16:32].hex()
