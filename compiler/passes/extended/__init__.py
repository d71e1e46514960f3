"""Extended level: fusions into nodes the C provider runs (checked per rewrite), in run order:
transformer subgraphs first (they consume MatMul/Add/elementwise runs whole), then GEMM/Conv
epilogues, then whatever elementwise chains are left."""
from . import transformer, epilogue, elementwise_chain  # noqa: F401  (registration, in run order)
