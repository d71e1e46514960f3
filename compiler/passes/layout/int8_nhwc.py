"""int8 NHWC regions (layout level): the int8 convolution kernels (runtime_c/qconv) read and write
NHWC, so a QLinearConv in NCHW transposes its input and output on every node.  This pass keeps
the activations of int8 regions in NHWC and transposes only at the regions' borders (where an
int8 region meets float ops, a graph input or output, or an op without an NHWC form).

One pass, in topological order (onnxruntime's NhwcTransformer does this job at session start):
  * seeds: 2-D QLinearConv (standard domain) with static shapes becomes onnxruntime's contrib
    com.microsoft.QLinearConv with channels_last = 1 (same inputs; ops/quant_conv.py);
  * propagation: a node reading an NHWC value is rewritten to work on NHWC when it has a form
    for it: com.microsoft QLinearAdd/QLinearMul whose image inputs have the output's shape
    (other inputs: one element), QLinearGlobalAveragePool/QLinearAveragePool (channels_last
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

from typing import Dict, List, Optional

import numpy as np

from ...ir import Node
from ...ops import get_attr
from ...ops.nn import resolve_pads
from ...ops.quant_conv import MS, to_nhwc
from ..manager import Pass, PassResult, register
from ..util import c_supported

QTYPES = (np.dtype(np.uint8), np.dtype(np.int8))
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _image(v) -> bool:
    """A static 8-bit rank-4 tensor."""
    return v is not None and v.dtype in QTYPES and v.is_static and len(v.shape) == 4


class _Rewriter:
    def __init__(self, graph):
        self.g = graph
        self.twin: Dict[int, object] = {}  # id(NCHW value) -> its NHWC twin
        self.transposed: Dict[int, object] = {}  # id(NCHW value) -> its Transpose [0, 2, 3, 1] output
        self.converted: List[tuple] = []  # (old node, {id(old output): NHWC output})
        self.details: List[str] = []

    def nhwc_input(self, v, before):
        """The NHWC form of NCHW ``v``: its twin, a transposed constant or a (shared) Transpose."""
        if id(v) in self.twin:
            return self.twin[id(v)]
        if v.is_const:
            return self.g.add_const(np.ascontiguousarray(np.transpose(v.const, TO_NHWC)), v.name + "_nhwc")
        if id(v) not in self.transposed:
            out = self.g.new_value(v.name + "_nhwc", v.dtype, to_nhwc(v.shape))
            self.g.add_node("Transpose", [v], attrs={"perm": list(TO_NHWC)}, outputs=[out], before=before,
                            name=(v.name or "x") + "_to_nhwc")
            self.transposed[id(v)] = out
        return self.transposed[id(v)]

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
        self.g.insert(node, before=old)
        self.converted.append((old, {id(y): out}))
        self.twin[id(y)] = out
        self.details.append(old.label)
        return True

    # --- the ops -----------------------------------------------------------------------------
    def conv(self, node) -> bool:
        x, y = node.inputs[0], node.outputs[0]
        if not (_image(x) and _image(y)) or len(node.outputs) != 1:
            return False
        ins = [self.nhwc_input(x, node)] + list(node.inputs[1:])
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
            if tuple(v.shape) == tuple(y.shape):
                ins[i] = self.nhwc_input(v, node)
            elif int(np.prod(v.shape)) != 1:
                return False
        return self.emit(node, node.op_type, node.domain, ins, dict(node.attrs))

    def pool(self, node) -> bool:
        x, y = node.inputs[0], node.outputs[0]
        if not (_image(x) and _image(y)) or node.attrs.get("channels_last", 0):
            return False
        ins = [self.nhwc_input(x, node)] + list(node.inputs[1:])
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
        return self.emit(node, "NhwcMaxPool", MS, [self.nhwc_input(x, node)], attrs)

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
            ins[i] = self.nhwc_input(ins[i], node)
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
        return False

    def run(self) -> int:
        for node in list(self.g.nodes):
            self.convert(node)
        for out in self.transposed.values():  # made for a node C then refused
            if not out.uses:
                self.g.remove_node(out.producer)
        if not self.converted:
            return 0
        for old, _ in self.converted:
            self.g.remove_node(old)
        # borders: one Transpose back per NHWC value still read as NCHW (or a graph output)
        for old, outs in self.converted:
            for plain in old.outputs:
                twin = outs.get(id(plain))
                if twin is None or not (plain.uses or self.g.is_output(plain)):
                    continue
                node = Node("Transpose", [twin], [plain], {"perm": list(TO_NCHW)},
                            name=self.g.fresh_name(plain.name + "_to_nchw"), opset=self.g.opset.get("", 1))
                self.g.insert(node, after=twin.producer)
        return len(self.converted)


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
