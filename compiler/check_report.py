"""The message of a failed runtime check, read back from the caller's arena.

Generated code that validates runtime data (indices, k, depth, axes, ...) records the first
failure of a run as an ``onnxc_error`` {check, value, pos, status} (four int64) at the module's
``error_offset`` in the arena it ran on (onnxc_rt.h); ``checks`` (from the manifest) says, per
check number, the node, its op, where it sits, what was wrong and which tensor ``pos`` indexes.
Only numpy is needed (the runtime side of onnxc)."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

RECORD_INT64S = 4


def describe(checks: List[Dict], error_offset: Optional[int], arena: np.ndarray) -> Optional[str]:
    """The message of the check recorded in ``arena`` (a uint8 view of the run's arena), or None
    if the module has no checks or the record does not name one of them."""
    if error_offset is None or not checks:
        return None
    raw = arena[error_offset:error_offset + 8 * RECORD_INT64S]
    if raw.size != 8 * RECORD_INT64S:  # a manifest that does not match its module
        return None
    rec = raw.view(np.int64)
    check, value, pos = (int(x) for x in rec[:3])
    if not 0 <= check < len(checks):
        return None
    c = checks[check]
    where = f" in {c['scope']}" if c.get("scope") else ""
    node = f"node '{c['node']}'" if c.get("node") else "a node"
    text = f"{node} ({c['op']}){where}: {c['message'].replace('{value}', str(value))}"
    shape = c.get("shape")
    if c.get("tensor") is not None and shape and 0 <= pos < int(np.prod(shape, dtype=np.int64)):
        at = ", ".join(str(int(i)) for i in np.unravel_index(pos, shape))
        text += f", at {c['tensor']}[{at}]"  # (a scalar needs no position)
    return text
