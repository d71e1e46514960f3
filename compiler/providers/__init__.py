"""Providers say which nodes they can run (get_capability); see partition.py."""
from .base import CProvider, Provider
from .fallback import FallbackProvider

__all__ = ["Provider", "CProvider", "FallbackProvider"]
