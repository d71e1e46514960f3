"""C emitters for the linalg family (see registry.py for the contract)."""
from __future__ import annotations

import numpy as np

from ...ops import get_attr
from .registry import all_of, c_kernel, dtypes_in  # noqa: F401
