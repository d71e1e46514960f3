"""What a pass may ask of the backend: the capability interface passes are handed.

Fusions and layout rewrites only build nodes the backend will run, so they must ask it; but
passes sit below the code generators and import none of them.  The caller (driver.optimize, the
CLI, a test) hands a ``Capability`` to the ``PassManager`` (or installs one with ``using``), and
passes ask ``current()``:

* ``claim(node)``: None if the backend runs ``node``, else the reason it does not;
* ``scalar_expr(node)``: whether ``node`` is one scalar expression per output element (what an
  onnxc.ElementwiseChain may fuse).

providers.CProvider is the C provider's capability.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Optional, Protocol

from ..errors import CompileError


class Capability(Protocol):
    def claim(self, node) -> Optional[str]: ...

    def scalar_expr(self, node) -> bool: ...


_CURRENT: contextvars.ContextVar = contextvars.ContextVar("onnxc_pass_capability", default=None)


@contextlib.contextmanager
def using(capability: Capability) -> Iterator[Capability]:
    """Passes run inside this block ask ``capability``."""
    token = _CURRENT.set(capability)
    try:
        yield capability
    finally:
        _CURRENT.reset(token)


def current() -> Capability:
    cap = _CURRENT.get()
    if cap is None:
        raise CompileError("a graph pass asked what the backend supports, but none was handed to it: run passes "
                           "through onnxc.driver.optimize, PassManager(capability=...) or "
                           "passes.capability.using(...)")
    return cap
