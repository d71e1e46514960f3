"""Weights blob: every constant the C code reads, 64-byte aligned, behind a small header.

Layout: 64-byte header  b"ONNXCW01" | uint64 payload bytes | 16-byte blake2b of payload | pad,
then the payload.  Offsets handed to the C code are relative to the payload start.
Keeping weights out of the C source keeps compile times flat (ResNet-50 is ~100 MB).
"""
from __future__ import annotations

import hashlib
import struct
from typing import Dict, List

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
        with open(path, "wb") as f:
            f.write(header)
            f.write(payload)
        return len(payload)


def read_blob(path) -> np.ndarray:
    """Read a weights file into a 64-byte aligned uint8 array (payload only), checking it."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size < HEADER or bytes(raw[:8]) != MAGIC:
        raise ValueError(f"{path} is not an onnxc weights file (bad magic)")
    (n,) = struct.unpack("<Q", bytes(raw[8:16]))
    h = bytes(raw[16:32])
    if raw.size - HEADER != n:
        raise ValueError(f"{path}: weights payload is {raw.size - HEADER} bytes, header says {n}")
    buf = np.empty(n + ALIGN, dtype=np.uint8)
    start = (-buf.ctypes.data) % ALIGN
    out = buf[start:start + n]
    out[:] = raw[HEADER:]
    if digest(out) != h:
        raise ValueError(f"{path}: weights checksum mismatch (file corrupted or from another build)")
    return out
