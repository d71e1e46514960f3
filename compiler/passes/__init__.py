"""Graph passes by level; importing this package registers them all (order = run order)."""
from .manager import LEVELS, Pass, PassManager, PassResult, passes_for, register
from .basic import constant_folding, fold_if, dce  # noqa: F401,E402  (registration, in run order)

__all__ = ["LEVELS", "Pass", "PassManager", "PassResult", "passes_for", "register"]
