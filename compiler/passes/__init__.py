"""Graph passes by level; importing this package registers them all (order = run order).

basic (platform independent, before partitioning) -> extended (fusions into what the C
provider runs) -> layout (NCHWc blocking for the target's vector width).  Each level runs to
its own fixpoint; see manager.py.
"""
from .manager import LEVELS, Pass, PassManager, PassResult, passes_for, register
from . import basic, extended, layout  # noqa: F401,E402  (registration, in run order)

__all__ = ["LEVELS", "Pass", "PassManager", "PassResult", "passes_for", "register"]
