"""int8 NHWC regions (layout level): the int8 convolution kernels (runtime_c/qconv) read and write
NHWC, so a QLinearConv in NCHW transposes its input and output on every node.  This pass keeps
the activations of int8 regions in NHWC and transposes only at the regions' borders (where an
int8 region meets float ops, a graph input or output, or an op without an NHWC form).

One pass, in topological order (onnxruntime's NhwcTransformer does this job at session start):
  * seeds: 2-D QLinearConv (standard domain) with static shapes becomes onnxruntime's contrib
    com.microsoft.QLinearConv with channels_last = 1 (same inputs; ops/quant_conv.py);
  * propagation: a node reading an NHWC value is rewritten to work on NHWC when it has a form
    for it: com.microsoft QLinearAdd/QLinearMul whose inputs are rank 4 (the output's shape or
    broadcast to it, as a squeeze-excitation gate) or one element, QLinearSigmoid/QLinearLeakyRelu,
    QLinearGlobalAveragePool/QLinearAveragePool (channels_last
    = 1), QLinearConcat on the channel axis (axis 3) and an 8-bit MaxPool (drop_qdq's, without
    indices) as com.microsoft.NhwcMaxPool (pads resolved; ops/nhwc_pool.py);
  * borders: a plain value an NHWC node reads gets one Transpose [0, 2, 3, 1] (shared by its
    readers; constants are transposed here); an NHWC value read by a plain node or that is a
    graph output gets one Transpose [0, 3, 1, 2] back to its original Value.
Every rewritten node must be claimed by the C provider, else it stays as it was.  The results
are unchanged bit for bit (the same integer arithmetic in another memory order;
tests/passes/test_int8_nhwc.py).
"""
from __future__ import annotations

import numpy as np

from ...ir import Node
from ...ops import get_attr
from ...ops.nn import resolve_pads
from ...ops.quant_conv import MS, to_nhwc
from ..manager import Pass, PassResult, register
from ..util import c_supported
from .region import RegionRewriter

QTYPES = (np.dtype(np.uint8), np.dtype(np.int8))
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _image(v) -> bool:
    """A static 8-bit rank-4 tensor."""
    return v is not None and v.dtype in QTYPES and v.is_static and len(v.shape) == 4


class _Rewriter(RegionRewriter):
    """Twins: NHWC values; borders: Transpose [0, 2, 3, 1] in and [0, 3, 1, 2] out."""
    suffix = "_nhwc"

    def const_in(self, array):
        return np.ascontiguousarray(np.transpose(array, TO_NHWC))

    def enter(self, v, before):
        out = self.g.new_value(v.name + "_nhwc", v.dtype, to_nhwc(v.shape))
        self.g.add_node("Transpose", [v], attrs={"perm": list(TO_NHWC)}, outputs=[out], before=before,
                        name=(v.name or "x") + "_to_nhwc")
        return out

    def leave(self, twin, plain):
        return Node("Transpose", [twin], [plain], {"perm": list(TO_NCHW)},
                    name=self.g.fresh_name(plain.name + "_to_nchw"), opset=self.g.opset.get("", 1))

    def emit(self, old, op_type, domain, inputs, attrs) -> bool:
        """Insert the NHWC node before ``old`` if C claims it (its one output NHWC)."""
        y = old.outputs[0]
        out = self.g.new_value(y.name + "_nhwc", y.dtype, to_nhwc(y.shape))
        opset = old.opset if domain == old.domain else self.g.opset.setdefault(domain, 1)
        node = Node(op_type, inputs, [out], attrs, name=self.g.fresh_name((old.name or op_type) + "_nhwc"),
                    domain=domain, opset=opset)
        if not c_supported(node):
            node.detach_inputs()
            return False
        self.replace(old, [node], {id(y): out})
        return True

    # --- the ops -----------------------------------------------------------------------------
    def conv(self, node) -> bool:
        x, y = node.inputs[0], node.outputs[0]
        if not (_image(x) and _image(y)) or len(node.outputs) != 1:
            return False
        ins = [self.region_input(x, node)] + list(node.inputs[1:])
        attrs = dict(node.attrs, channels_last=1)
        return self.emit(node, "QLinearConv", MS, ins, attrs)

    def binary(self, node) -> bool:
        """QLinearAdd/Mul (A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp): elementwise when
        each image operand has the output's shape; one-element operands broadcast in any order."""
        y = node.outputs[0]
        if not _image(y):
            return False
        ins = list(node.inputs)
        for i in (0, 3):
            v = ins[i]
            if v is None or not v.is_static:
                return False
            if int(np.prod(v.shape)) == 1 and tuple(v.shape) != tuple(y.shape):
                continue
            if len(v.shape) != 4:
                return False
            # rank 4 (the output's shape, or a squeeze-excitation gate [N, C, 1, 1]): the same
            # permutation of both operands' axes keeps them broadcasting axis for axis
            ins[i] = self.region_input(v, node)
        return self.emit(node, node.op_type, node.domain, ins, dict(node.attrs))

    def unary(self, node) -> bool:
        """QLinearSigmoid/QLinearLeakyRelu (X, X_scale, X_zp, Y_scale, Y_zp): a table per element."""
        x, y = node.inputs[0], node.outputs[0]
        if not (_image(x) and _image(y)):
            return False
        ins = [self.region_input(x, node)] + list(node.inputs[1:])
        return self.emit(node, node.op_type, node.domain, ins, dict(node.attrs))

    def pool(self, node) -> bool:
        x, y = node.inputs[0], node.outputs[0]
        if not (_image(x) and _image(y)) or node.attrs.get("channels_last", 0):
            return False
        ins = [self.region_input(x, node)] + list(node.inputs[1:])
        return self.emit(node, node.op_type, node.domain, ins, dict(node.attrs, channels_last=1))

    def maxpool(self, node) -> bool:
        """8-bit MaxPool (one output: no indices) -> NhwcMaxPool with explicit pads."""
        x, y = node.inputs[0], node.outputs[0]
        if not (_image(x) and _image(y)) or len(node.outputs) != 1:
            return False
        k = [int(v) for v in get_attr(node, "kernel_shape")]
        s = [int(v) for v in (get_attr(node, "strides", None) or [1, 1])]
        d = [int(v) for v in (get_attr(node, "dilations", None) or [1, 1])]
        b, e = resolve_pads(node, list(x.shape[2:]), k, s, d)
        attrs = {"kernel_shape": k, "strides": s, "dilations": d, "pads": [int(v) for v in list(b) + list(e)],
                 "ceil_mode": int(get_attr(node, "ceil_mode", 0))}
        return self.emit(node, "NhwcMaxPool", MS, [self.region_input(x, node)], attrs)

    def concat(self, node) -> bool:
        """QLinearConcat (Y_scale, Y_zp, then X, X_scale, X_zp per input) on channels."""
        y = node.outputs[0]
        if not _image(y) or node.attrs.get("axis") not in (1, -3):
            return False
        ins = list(node.inputs)
        for i in range(2, len(ins), 3):
            if not _image(ins[i]):
                return False
        for i in range(2, len(ins), 3):
            ins[i] = self.region_input(ins[i], node)
        return self.emit(node, node.op_type, node.domain, ins, dict(node.attrs, axis=3))

    def convert(self, node) -> bool:
        if node.domain in ("", "ai.onnx") and node.op_type == "QLinearConv":
            return self.conv(node)
        if node.domain in ("", "ai.onnx") and node.op_type == "MaxPool" and id(node.inputs[0]) in self.twin:
            return self.maxpool(node)
        if node.domain != MS or not any(v is not None and id(v) in self.twin for v in node.inputs):
            return False
        if node.op_type in ("QLinearAdd", "QLinearMul"):
            return self.binary(node)
        if node.op_type in ("QLinearGlobalAveragePool", "QLinearAveragePool"):
            return self.pool(node)
        if node.op_type == "QLinearConcat":
            return self.concat(node)
        if node.op_type in ("QLinearSigmoid", "QLinearLeakyRelu"):
            return self.unary(node)
        return False

    def run(self) -> int:
        for node in list(self.g.nodes):
            self.convert(node)
        return self.finish()


@register
class Int8NhwcLayout(Pass):
    name = "int8_nhwc"
    level = "layout"

    def run(self, graph) -> PassResult:
        rw = _Rewriter(graph)
        n = rw.run()
        if n:
            graph.prune_constants()
        return PassResult(n > 0, n, rw.details)
