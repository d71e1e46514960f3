"""Layout level: NCHWc blocking for the target's vector width; int8 regions in NHWC."""
from . import nchwc, nchwc_gather_fold  # noqa: F401  (registration, in this order)
from . import int8_nhwc  # noqa: F401  (registration)
from ..extended.elementwise_chain import ElementwiseChainFusionLayout  # noqa: E402
from ..manager import register  # noqa: E402
register(ElementwiseChainFusionLayout)  # after nchwc: fuses the elementwise runs it left or blocked
