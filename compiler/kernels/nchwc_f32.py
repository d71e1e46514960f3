"""f32 NCHWc kernels (runtime_c/nchwc/): convolutions, Winograd, pools, reorders, scale/shift and
channel gathers on channel-blocked tensors, one symbol per block size (the b-wide loops have
constant trip counts).  Semantics and signatures: runtime_c/include/onnxc_nchwc.h.

Each is built for every ISA row: a block that matches the build's vector registers (8 with the
avx2 rows' features, 16 with the avx512 rows') runs intrinsics, every other combination the plain
C path of the same loop nest; generated code calls the block of its target (isa.nchwc_block).
The names are written out in full, here, in onnxc_nchwc.h and where the C instantiates them.
"""
from __future__ import annotations

from . import Kernel

BLOCKS = (8, 16)

KERNELS = [Kernel.parse(name, source) for name, source in [
    ("onnxc_f32_nchwc_conv_b8", "nchwc/conv_nchwc.c"),
    ("onnxc_f32_nchwc_conv_b16", "nchwc/conv_nchwc.c"),
    ("onnxc_f32_nchwc_conv_nchw_b8", "nchwc/conv_nchwc.c"),
    ("onnxc_f32_nchwc_conv_nchw_b16", "nchwc/conv_nchwc.c"),
    ("onnxc_f32_nchwc_conv_subsample_b8", "nchwc/conv_nchwc.c"),
    ("onnxc_f32_nchwc_conv_subsample_b16", "nchwc/conv_nchwc.c"),
    ("onnxc_f32_nchwc_conv_depthwise_b8", "nchwc/conv_nchwc.c"),
    ("onnxc_f32_nchwc_conv_depthwise_b16", "nchwc/conv_nchwc.c"),
    ("onnxc_f32_nchwc_conv_winograd_b8", "nchwc/conv_winograd.c"),
    ("onnxc_f32_nchwc_conv_winograd_b16", "nchwc/conv_winograd.c"),
    ("onnxc_f32_nchwc_conv_winograd_f4_b8", "nchwc/conv_winograd.c"),
    ("onnxc_f32_nchwc_conv_winograd_f4_b16", "nchwc/conv_winograd.c"),
    ("onnxc_f32_nchwc_conv_winograd_scratch_b8", "nchwc/conv_winograd.c"),
    ("onnxc_f32_nchwc_conv_winograd_scratch_b16", "nchwc/conv_winograd.c"),
    ("onnxc_f32_nchwc_conv_winograd_scratch_f4_b8", "nchwc/conv_winograd.c"),
    ("onnxc_f32_nchwc_conv_winograd_scratch_f4_b16", "nchwc/conv_winograd.c"),
    ("onnxc_f32_nchwc_maxpool_b8", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_maxpool_b16", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_avgpool_b8", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_avgpool_b16", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_global_pool_b8", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_global_pool_b16", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_reorder_input_b8", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_reorder_input_b16", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_reorder_input_perm_b8", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_reorder_input_perm_b16", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_reorder_output_b8", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_reorder_output_b16", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_scale_shift_b8", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_scale_shift_b16", "nchwc/pool_nchwc.c"),
    ("onnxc_f32_nchwc_channel_gather_b8", "nchwc/gather_nchwc.c"),
    ("onnxc_f32_nchwc_channel_gather_b16", "nchwc/gather_nchwc.c"),
]]

_BY_KIND = {(k.kind, k.tile): k for k in KERNELS}
SOURCES = sorted({k.source for k in KERNELS})


def kernel(kind: str, block: int) -> Kernel:
    """The kernel ``nchwc_<kind>`` for block ``block`` (kind e.g. "conv_depthwise", "maxpool")."""
    try:
        return _BY_KIND[("nchwc_" + kind, f"b{block}")]
    except KeyError:
        raise KeyError(f"no NCHWc kernel {kind!r} for block {block} (blocks {BLOCKS})") from None


def name(kind: str, block: int) -> str:
    """Its C symbol (what generated code calls)."""
    return kernel(kind, block).name
