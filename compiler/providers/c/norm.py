"""Normalization ops: InstanceNormalization, GroupNormalization, LpNormalization,
MeanVarianceNormalization."""
from __future__ import annotations
