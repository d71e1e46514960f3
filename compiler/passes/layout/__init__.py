"""Layout level: NCHWc blocking for the target's vector width."""
from . import nchwc  # noqa: F401  (registration)
