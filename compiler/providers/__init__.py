"""Providers say which nodes they can run (get_capability); see partition.py."""
from .base import CProvider, Provider

__all__ = ["Provider", "CProvider"]
