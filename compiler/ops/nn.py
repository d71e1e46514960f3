"""Op knowledge for the nn family: numpy references and shape rules (see registry.py)."""
from __future__ import annotations

import numpy as np

from .registry import get_attr, reference, shape_rule  # noqa: F401
