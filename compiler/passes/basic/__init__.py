"""Basic level: platform-independent simplifications, in run order.

QDQ fusion first (products, Conv, Add/Mul, Concat, pools, Q/DQ dropped around data movement,
blocked 4-bit weights into MatMulNBits;
constant folding would turn a DequantizeLinear of int8 weights into float
weights); then folding; then constant sharing and CSE (shared constants make duplicate nodes
identical); redundant-node elimination; the fusions; dead-code elimination last."""
from . import fuse_qdq, fuse_qdq_ops, fuse_dq_nbits  # noqa: F401  (before constant folding: they read DequantizeLinear of constants)
from . import constant_folding, fold_if  # noqa: F401  (registration, in run order)
from . import lower_sequences  # noqa: F401  (after folding: positions computed from constants are constants)
from . import cse, redundant  # noqa: F401,E402
from . import sink_transpose  # noqa: F401,E402  (before the Conv fusions: brings per-channel ops to the Conv)
from . import fuse_conv, fuse_pad, fuse_clip, fuse_gemm, div_to_mul  # noqa: F401,E402
from . import fuse_matmul_integer  # noqa: F401,E402  (quantize_dynamic's MatMulInteger + Cast + Mul (+ bias))
from . import dce  # noqa: F401,E402
