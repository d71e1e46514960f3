"""Basic level: platform-independent simplifications, in run order."""
from . import constant_folding, fold_if, dce  # noqa: F401  (registration, in run order)
