"""Weights blob: every constant the C code reads, 64-byte aligned, behind a small header
(format and reading: onnxc/blob.py).  Keeping weights out of the C source keeps compile times
flat (ResNet-50 is ~100 MB).
"""
from __future__ import annotations

import os
import struct
from typing import Dict, List

import numpy as np

from ..blob import ALIGN, HEADER, MAGIC, SLACK, blob_digest, digest, read_blob  # noqa: F401 (re-exported)


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
