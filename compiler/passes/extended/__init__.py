"""Extended level: fusions into nodes the C provider runs (checked per rewrite), in run order:
transformer subgraphs first (they consume MatMul/Add/elementwise runs whole), then GEMM/Conv
epilogues, then whatever elementwise chains are left."""
from . import transformer  # noqa: F401  (registration, in run order)
from ..basic import unit_transpose  # noqa: F401,E402  (a basic elimination run here, after the transformer fusions)
from . import epilogue, elementwise_chain  # noqa: F401,E402
