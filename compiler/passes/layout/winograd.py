"""Which NCHWc convolutions run as Winograd, and with which output tile: the cost policy the
NCHWc layout pass (nchwc_rewrite.py) asks for each direct conv it blocks."""
from __future__ import annotations

# Winograd (kind "winograd", runtime_c/nchwc/conv_winograd*.c) for 3x3 stride-1 undilated
# group-1 convs on blocked input when the layer is big enough, with 4x4 output tiles (F(4x4, 3x3):
# 36 multiplies per 16 outputs) or 2x2 (F(2x2, 3x3): 16 per 4).  Measured on Zen 4 (AVX-512,
# b=16), kernel alone, 1 thread (2 threads), speedup over the direct kernel F(2x2) / F(4x4):
#   ResNet 64@56 1.78 / 2.74 (1.52 / 2.02), 128@28 1.88 / 2.81, 256@14 1.82 / 2.12 (1.30 / 1.51),
#   512@7 1.38 / 1.30 (1.13 / 1.24); VGG 128@112 1.79 / 3.06, 512@28 1.93 / 3.07, 512@14 1.86 / 2.28;
#   SqueezeNet expand3x3 16->64@55 1.38 / 2.03, 64->256@13 1.49 / 1.82; DenseNet 128->32@14
#   1.63 / 1.68 (1.48 / 0.99), @7 F(2x2) 1.01 (0.99); Inception 160->320@7 1.37 / 2.10,
#   96->128@28 1.85 (F(2x2)), 32->64@14 1.43 / 1.60 (0.94 / 1.06), 16->32@28 F(2x2) 1.21 (1.16).
# Every real layer wins except the smallest (~0.04 ms, where the transforms' fixed costs and the
# thread split do not pay): Winograd from N*C*M*OH*OW >= 500k (direct MACs / 9), which keeps
# 128->32@7 (200k), 32->64@14 and 16->32@28 (401k) direct.  F(4x4) loses where the 144*C*M
# bytes of transformed weights are read for few tiles (512@7: 4 tiles; C*M above 32768 per
# 4x4 tile) and on small products with few tiles (DenseNet 128->32@14 at 2 threads): F(4x4)
# when C*M <= 32768 * tiles and (C*M >= 8192 or tiles >= 64), tiles = N*ceil(OH/4)*ceil(OW/4).
# Error against float64: F(2x2) ~2e-6, F(4x4) ~1e-5 relative per layer (the benchmark accepts
# 1e-4 on the model output; real-model errors in the commit message).
# The compile option winograd (onnxc.compile(..., winograd=), graph.metadata["winograd"]): 0
# turns Winograd off, 2 allows only F(2x2), 4 (the default) both tiles by the rule.
WINOGRAD_MIN_SIZE = 500_000


def winograd_tile(c, m, group, kernel, strides, dil, out_shape, mode: int = 4) -> int:
    """The Winograd output tile (2 or 4) for a conv with output [N, M, OH, OW], 0 for none."""
    n, _, oh, ow = (int(d) for d in out_shape)
    if not (mode != 0 and group == 1 and list(kernel) == [3, 3] and list(strides) == [1, 1]
            and list(dil) == [1, 1] and n * c * m * oh * ow >= WINOGRAD_MIN_SIZE):
        return 0
    tiles4 = n * -(-oh // 4) * -(-ow // 4)
    if mode != 2 and c * m <= 32768 * tiles4 and (c * m >= 8192 or tiles4 >= 64):
        return 4
    return 2
