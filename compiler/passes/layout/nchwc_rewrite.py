"""The NCHWc rewriter: one topological walk that blocks the seed convolutions, rewrites the
nodes reading blocked values to their blocked forms and puts reorders at the borders (the rules
are listed in nchwc.py's docstring)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...ir import Node
from ...ops import get_attr
from ...ops import nchwc as L
from ...ops.nn import resolve_pads
from ...ops.registry import fact
from ..util import c_supported, const
from .region import RegionRewriter
from .winograd import winograd_tile

F32 = np.dtype("float32")
POOLS = {"MaxPool", "AveragePool"}
GLOBAL_POOLS = {"GlobalMaxPool", "GlobalAveragePool"}


def _image(v) -> bool:
    """A static float32 rank-4 tensor."""
    return v is not None and v.dtype == F32 and v.is_static and len(v.shape) == 4


def _geometry(node, kernel):
    """(strides, dilations, pads [top, left, bottom, right]) with auto_pad resolved."""
    strides = list(get_attr(node, "strides", None) or [1, 1])
    dil = list(get_attr(node, "dilations", None) or [1, 1])
    begin, end = resolve_pads(node, list(node.inputs[0].shape[2:]), list(kernel), strides, dil)
    return strides, dil, list(begin) + list(end)


class Rewriter(RegionRewriter):
    """One walk over ``graph`` for block ``b`` (twins: blocked values; borders: ReorderInput and
    ReorderOutput); run() returns the number of nodes rewritten."""
    suffix = "_nchwc"

    def __init__(self, graph, b: int):
        super().__init__(graph)
        self.b = b

    # --- helpers ----------------------------------------------------------------------------
    def padded_ok(self, c: int) -> bool:
        return c % self.b == 0

    def new_value(self, like, shape):
        return self.g.new_value(like.name + "_nchwc", F32, shape)

    def const_in(self, array):
        return L.to_blocked(array, self.b)

    def enter(self, v, before):
        out = self.new_value(v, L.blocked_shape(v.shape, self.b))
        self.g.add_node("ReorderInput", [v], attrs={"block": self.b}, domain="onnxc", outputs=[out], before=before)
        return out

    def leave(self, twin, plain):
        return Node("ReorderOutput", [twin], [plain], {"block": self.b, "channels": plain.shape[1]},
                    name=self.g.fresh_name("ReorderOutput"), domain="onnxc", opset=self.g.opset.get("onnxc", 1))

    def emit(self, old, op_type, inputs, attrs, out_shapes, domain="onnxc", keep_plain=()) -> bool:
        """Insert the blocked node before ``old`` if C claims it; ``keep_plain``: indices of
        outputs that stay plain (the old node's own Values are reused for them)."""
        outs = [o if i in keep_plain else self.new_value(o, s) for i, (o, s) in enumerate(zip(old.outputs, out_shapes))]
        node = Node(op_type, inputs, [], attrs, name=self.g.fresh_name((old.name or op_type) + "_nchwc"),
                    domain=domain, opset=old.opset if domain == old.domain else self.g.opset.get(domain, 1))
        node.outputs = outs  # owned only once the node is kept (plain outputs still belong to old)
        if not c_supported(node):
            node.detach_inputs()
            return False
        for o in outs:
            o.producer = node
        self.replace(old, [node], {id(o): n for i, (o, n) in enumerate(zip(old.outputs, outs))
                                   if i not in keep_plain})
        if keep_plain:
            old.outputs = [o for i, o in enumerate(old.outputs) if i not in keep_plain]
        return True

    # --- convolutions -----------------------------------------------------------------------
    def conv_plan(self, node) -> Optional[dict]:
        fused = node.domain == "onnxc" and node.op_type == "FusedConv"
        if not (fused or (node.domain in ("", "ai.onnx") and node.op_type == "Conv")):
            return None
        x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
        bias, z = node.input(2), node.input(3) if fused else None
        if not (_image(x) and _image(y) and w.is_const and w.dtype == F32 and len(w.shape) == 4):
            return None
        if bias is not None and (not bias.is_const or bias.dtype != F32) or (z is not None and not _image(z)):
            return None
        c, m, group = x.shape[1], w.shape[0], int(get_attr(node, "group", 1))
        b = self.b
        if group > 1 and group == c == m and w.shape[1] == 1:
            kind = "depthwise"
            if c < b:
                return None
        elif group == 1 or ((c // group) % b == 0 and (m // group) % b == 0):
            if m < b or c != w.shape[1] * group:
                return None
            kind = "direct" if (c >= b or id(x) in self.twin or group > 1) else "nchw"
        else:
            return None
        strides, dil, pads = _geometry(node, w.shape[2:])
        if list(y.shape[2:]) != L.pool_output_hw(x.shape[2:], w.shape[2:], strides, pads, dil, False):
            return None
        tile = 0
        if kind == "direct":
            tile = winograd_tile(c, m, group, list(w.shape[2:]), strides, dil, y.shape,
                                 self.g.metadata.get("winograd", 4))
            kind = "winograd" if tile else kind
        act, params = "", []
        if fused:
            from ...ops.fused_nn import activation_of
            act, params = activation_of(node)
        return dict(kind=kind, c=c, m=m, group=group, strides=strides, dil=dil, pads=pads, act=act,
                    params=params, z=z, bias=bias, tile=tile)

    def convert_conv(self, node, plan) -> bool:
        b, x, w, y = self.b, node.inputs[0], node.inputs[1].const, node.outputs[0]
        kind = plan["kind"]
        packed = {"direct": lambda: L.pack_direct(w, b, plan["group"]), "depthwise": lambda: L.pack_depthwise(w, b),
                  "nchw": lambda: L.pack_nchw(w, b), "winograd": lambda: L.pack_winograd(w, b, plan["tile"])}[kind]()
        ins = [x if kind == "nchw" else self.region_input(x, node),
               self.g.add_const(packed, node.inputs[1].name + "_nchwc")]
        ins.append(None if plan["bias"] is None else
                   self.g.add_const(L.pad_channels(plan["bias"].const, b), plan["bias"].name + "_nchwc"))
        if plan["z"] is not None:
            ins.append(self.region_input(plan["z"], node))
        while ins[-1] is None:
            ins.pop()
        attrs = {"block": b, "kind": kind, "channels": plan["m"], "input_channels": plan["c"],
                 "group": plan["group"], "kernel_shape": list(w.shape[2:]), "strides": plan["strides"],
                 "pads": plan["pads"], "dilations": plan["dil"], "activation": plan["act"],
                 "activation_params": plan["params"]}
        if kind == "winograd":
            attrs["tile"] = plan["tile"]
        return self.emit(node, "NchwcConv", ins, attrs, [L.blocked_shape(y.shape, b)])

    # --- blocked consumers ------------------------------------------------------------------
    def convert_other(self, node) -> bool:
        op = node.op_type if node.domain in ("", "ai.onnx") else None
        x = node.input(0)
        if op is None or x is None or not node.outputs:
            return False
        y = node.outputs[0]
        if op in POOLS:
            return self.pool(node)
        if op in GLOBAL_POOLS:
            return self.global_pool(node)
        if op == "BatchNormalization":
            return self.batchnorm(node)
        if op == "Concat":
            return self.concat(node)
        if op == "Slice":
            return self.channel_slice(node)
        if op == "Split":
            return self.channel_split(node)
        if op == "Reshape":
            return self.channel_shuffle(node)
        if op == "Resize":
            return self.resize(node)
        if fact(node, "nchwc"):
            if len(node.outputs) != 1 or not _image(y):
                return False
            return self.elementwise(node)
        return False

    def pool(self, node) -> bool:
        x, y = node.inputs[0], node.outputs[0]
        if id(x) not in self.twin or len(node.outputs) != 1 or not _image(y):
            return False
        kernel = list(get_attr(node, "kernel_shape"))
        if len(kernel) != 2 or get_attr(node, "storage_order", 0):
            return False
        strides, dil, pads = _geometry(node, kernel)
        ceil_mode = int(get_attr(node, "ceil_mode", 0))
        if node.op_type == "AveragePool" and ceil_mode and any(d != 1 for d in dil):
            return False  # as the plain kernel: that combination's counts are not implemented
        if list(y.shape[2:]) != L.pool_output_hw(x.shape[2:], kernel, strides, pads, dil, ceil_mode):
            return False
        attrs = {"block": self.b, "mode": node.op_type, "channels": x.shape[1], "kernel_shape": kernel,
                 "strides": strides, "pads": pads, "dilations": dil, "ceil_mode": ceil_mode,
                 "count_include_pad": int(get_attr(node, "count_include_pad", 0)) if node.op_type == "AveragePool" else 0}
        return self.emit(node, "NchwcPool", [self.twin[id(x)]], attrs, [L.blocked_shape(y.shape, self.b)])

    def global_pool(self, node) -> bool:
        x, y = node.inputs[0], node.outputs[0]
        if id(x) not in self.twin or not _image(y):
            return False
        # a plain [N, C, 1, 1] result unless a blockable conv reads it (squeeze-excitation)
        blocked_out = any(self.conv_plan(u) is not None for u in y.users)
        attrs = {"block": self.b, "mode": node.op_type, "channels": x.shape[1], "nchw_output": int(not blocked_out)}
        shape = L.blocked_shape(y.shape, self.b) if blocked_out else y.shape
        return self.emit(node, "NchwcPool", [self.twin[id(x)]], attrs, [shape],
                         keep_plain=() if blocked_out else (0,))

    def batchnorm(self, node) -> bool:
        x, y = node.inputs[0], node.outputs[0]
        consts = [const(v) for v in node.inputs[1:5]]
        if (id(x) not in self.twin or len(node.outputs) != 1 or get_attr(node, "training_mode", 0)
                or any(c is None or c.shape != (x.shape[1],) for c in consts) or len(node.inputs) != 5):
            return False
        scale, bias, mean, var = (c.astype(np.float64) for c in consts)
        s = scale / np.sqrt(var + float(get_attr(node, "epsilon", 1e-5)))
        t = bias - mean * s
        ins = [self.twin[id(x)], self.g.add_const(L.pad_channels(s.astype(F32), self.b), node.inputs[1].name + "_nchwc"),
               self.g.add_const(L.pad_channels(t.astype(F32), self.b), node.inputs[2].name + "_nchwc")]
        return self.emit(node, "NchwcScaleShift", ins, {"block": self.b}, [L.blocked_shape(y.shape, self.b)])

    def elementwise(self, node) -> bool:
        y = node.outputs[0]
        n, c = y.shape[0], y.shape[1]
        image_inputs = [i for i, v in enumerate(node.inputs) if v is not None and not v.is_const]
        mapped = fact(node, "nchwc") == "map"  # input 0 the image, the others scalar parameters
        if mapped:
            image_inputs = [0]
        if not any(id(node.inputs[i]) in self.twin for i in image_inputs):
            return False
        ins, probe = [], []
        for i, v in enumerate(node.inputs):
            if v is None:
                ins.append(None)
                probe.append(None)
            elif i in image_inputs:
                if not (_image(v) and v.shape[1] == c and v.shape[0] in (1, n)):
                    return False
                ins.append(self.twin[id(v)] if id(v) in self.twin else None)  # reordered below
                probe.append(np.zeros((1, 1, 1, 1), F32))
            elif mapped or v.const.size == 1:
                ins.append(v)  # scalar operands broadcast over 5-D as over 4-D
                probe.append(v.const)
            elif v.dtype == F32 and v.const.ndim in (3, 4) and v.const.shape[-3:] == (c, 1, 1) and v.const.size == c:
                ins.append(self.g.add_const(L.to_blocked(v.const.reshape(1, c, 1, 1), self.b), v.name + "_nchwc"))
                probe.append(np.zeros((1, 1, 1, 1), F32))  # padding channels of the constant are 0
            else:
                return False
        if fact(node, "nchwc") == "broadcast":
            try:
                if tuple(np.broadcast_shapes(*[tuple(v.shape) for v in node.inputs if v is not None])) != tuple(y.shape):
                    return False
            except ValueError:
                return False
        if not self.padded_ok(c) and not self.zero_preserving(node, probe):
            return False
        for i in image_inputs:
            if ins[i] is None:
                ins[i] = self.region_input(node.inputs[i], node)
        return self.emit(node, node.op_type, ins, dict(node.attrs), [L.blocked_shape(y.shape, self.b)],
                         domain=node.domain)

    @staticmethod
    def zero_preserving(node, probe) -> bool:
        """Does the op map zero image operands (with its constant operands) to exactly zero?"""
        from ...ir import Value
        from ...ops import evaluate
        ins = [None if a is None else Value(f"p{i}", a.dtype, a.shape) for i, a in enumerate(probe)]
        tmp = Node(node.op_type, ins, [Value("probe_out")], dict(node.attrs), domain=node.domain, opset=node.opset)
        try:
            out = evaluate(tmp, probe)[0]
        except Exception:  # noqa: BLE001 - any failure means "not provably zero"
            return False
        return bool(np.all(np.asarray(out) == 0))

    def concat(self, node) -> bool:
        y = node.outputs[0]
        axis = int(get_attr(node, "axis", 1))
        if axis not in (1, -3) or not _image(y) or not all(_image(v) for v in node.inputs):
            return False
        if not any(id(v) in self.twin for v in node.inputs):
            return False
        if any(v.shape[1] % self.b for v in node.inputs):
            # padding lanes inside the result: a channel gather (ShuffleNet's 58 + 58 channels)
            if any(tuple(v.shape[:1]) + tuple(v.shape[2:]) != tuple(y.shape[:1]) + tuple(y.shape[2:])
                   for v in node.inputs):
                return False
            pairs = [(i, c) for i, v in enumerate(node.inputs) for c in range(v.shape[1])]
            return self.gather(node, list(node.inputs), pairs)
        ins = [self.region_input(v, node) for v in node.inputs]
        return self.emit(node, "Concat", ins, {"axis": 1}, [L.blocked_shape(y.shape, self.b)], domain=node.domain)

    # --- channel selections and permutations as NchwcChannelGather --------------------------
    def gather(self, old, inputs, pairs, extra_dead=()) -> bool:
        """Replace ``old`` (and the nodes ``extra_dead`` between it and ``inputs``) by one
        NchwcChannelGather whose output channel j is channel pairs[j][1] of inputs[pairs[j][0]]."""
        y = old.outputs[0]
        ins = [self.region_input(v, old) for v in inputs]
        attrs = {"block": self.b, "channels": len(pairs), "sources": [int(i) for i, _ in pairs],
                 "source_channels": [int(c) for _, c in pairs], "input_channels": [int(v.shape[1]) for v in inputs]}
        if not self.emit(old, "NchwcChannelGather", ins, attrs, [L.blocked_shape(y.shape, self.b)]):
            return False
        self.converted.extend((n, {}) for n in extra_dead)
        return True

    def channel_slice(self, node) -> bool:
        """Slice on the channel axis only (constant starts/ends/axes/steps)."""
        x, y = node.inputs[0], node.outputs[0]
        if id(x) not in self.twin or not _image(y) or len(node.outputs) != 1 or node.opset < 10:
            return False
        consts = [None if v is None else const(v) for v in node.inputs[1:]]
        if any(v is not None and c is None for v, c in zip(node.inputs[1:], consts)) or len(consts) < 3:
            return False
        axes = consts[2]
        if axes is None or [int(a) % 4 for a in np.ravel(axes)] != [1]:
            return False
        if tuple(y.shape[:1]) + tuple(y.shape[2:]) != tuple(x.shape[:1]) + tuple(x.shape[2:]):
            return False
        channels = self.channel_indices(node, x.shape[1])
        if channels is None or len(channels) != y.shape[1] or not len(channels):
            return False
        return self.gather(node, [x], [(0, int(c)) for c in channels])

    def channel_indices(self, node, c: int, output: int = 0) -> Optional[np.ndarray]:
        """The channels output ``output`` of ``node`` (a Slice/Split on axis 1 with constant
        operands) keeps, by evaluating it on [1, c, 1, 1] channel numbers (exact: ONNX's
        clamping, negative steps and split rules come from the reference)."""
        from ...ir import Value
        from ...ops import evaluate
        probe = [np.arange(c, dtype=np.float32).reshape(1, c, 1, 1)] + [
            None if v is None else v.const for v in node.inputs[1:]]
        ins = [None if a is None else Value(f"p{i}", a.dtype, a.shape) for i, a in enumerate(probe)]
        outs = [Value(f"probe_out{i}") for i in range(len(node.outputs))]
        tmp = Node(node.op_type, ins, outs, dict(node.attrs), domain=node.domain, opset=node.opset)
        try:
            out = np.asarray(evaluate(tmp, probe)[output])
        except Exception:  # noqa: BLE001 - not provably a channel selection: leave it plain
            return None
        return out.reshape(-1).astype(np.int64) if out.shape[::2] == (1, 1) and out.shape[3] == 1 else None

    def channel_split(self, node) -> bool:
        """Split on the channel axis (constant split sizes): one gather per output."""
        x = node.inputs[0]
        if id(x) not in self.twin or any(v is not None and not v.is_const for v in node.inputs[1:]):
            return False
        if int(get_attr(node, "axis", 0)) % 4 != 1 or not node.outputs:
            return False
        twins, new_nodes = {}, []
        for k, y in enumerate(node.outputs):
            if not _image(y) or tuple(y.shape[:1]) + tuple(y.shape[2:]) != tuple(x.shape[:1]) + tuple(x.shape[2:]):
                break
            chans = self.channel_indices(node, x.shape[1], k)
            if chans is None or len(chans) != y.shape[1] or not len(chans):
                break
            twin = self.new_value(y, L.blocked_shape(y.shape, self.b))
            attrs = {"block": self.b, "channels": len(chans), "sources": [0] * len(chans),
                     "source_channels": [int(c) for c in chans], "input_channels": [int(x.shape[1])]}
            g = Node("NchwcChannelGather", [self.twin[id(x)]], [], attrs,
                     name=self.g.fresh_name(f"{node.name or 'Split'}_{k}_nchwc"), domain="onnxc",
                     opset=self.g.opset.get("onnxc", 1))
            g.outputs = [twin]
            new_nodes.append(g)
            twins[id(y)] = twin
            if not c_supported(g):
                break
        else:
            for g in new_nodes:
                g.outputs[0].producer = g
            self.replace(node, new_nodes, twins)
            return True
        for g in new_nodes:
            g.detach_inputs()
        return False

    def channel_shuffle(self, node) -> bool:
        """Reshape [N, C, H, W] -> [N, g, C/g, H, W], Transpose swapping the two channel
        factors, Reshape back to [N, C, H, W]: one gather with the permuted channel order."""
        x, r1 = node.inputs[0], node.outputs[0]
        if not _image(x) or len(node.outputs) != 1 or not r1.is_static or len(r1.shape) != 5:
            return False
        n, c, h, w = x.shape
        if r1.shape[0] != n or r1.shape[3:] != (h, w) or r1.shape[1] * r1.shape[2] != c or self.g.is_output(r1):
            return False
        tr = r1.users[0] if len(r1.uses) == 1 else None
        if tr is None or not (tr.op_type == "Transpose" and tr.domain in ("", "ai.onnx")):
            return False
        perm = list(get_attr(tr, "perm", []) or [])
        t = tr.outputs[0]
        if perm != [0, 2, 1, 3, 4] or len(t.uses) != 1 or self.g.is_output(t):
            return False
        r2 = t.users[0]
        if not (r2.op_type == "Reshape" and r2.domain in ("", "ai.onnx")) or len(r2.outputs) != 1:
            return False
        y = r2.outputs[0]
        if not _image(y) or tuple(y.shape) != tuple(x.shape):
            return False
        order = np.arange(c).reshape(r1.shape[1], r1.shape[2]).T.reshape(-1)
        if id(x) in self.twin:
            return self.gather(r2, [x], [(0, int(k)) for k in order], extra_dead=(tr, node))
        # a plain input (ShuffleNet v1: after a grouped conv that is not blocked) whose shuffled
        # result a blocked conv reads: the shuffle becomes the order of that reorder
        if not any(self.conv_plan(u) is not None for u in y.users):
            return False
        if not self.emit(r2, "ReorderInput", [x], {"block": self.b, "channel_order": [int(k) for k in order]},
                         [L.blocked_shape(y.shape, self.b)]):
            return False
        self.converted.extend([(tr, {}), (node, {})])
        return True

    def resize(self, node) -> bool:
        x, y = node.inputs[0], node.outputs[0]
        if id(x) not in self.twin or node.opset < 11 or not _image(y) or len(node.outputs) != 1:
            return False
        if (get_attr(node, "mode", "nearest") != "nearest" or get_attr(node, "axes", None)
                or get_attr(node, "coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize"):
            return False
        if y.shape[:2] != x.shape[:2] or any(o % i for o, i in zip(y.shape[2:], x.shape[2:])):
            return False  # integer spatial scales only: whole-pixel replication
        scales = np.array([1, 1, y.shape[2] // x.shape[2], y.shape[3] // x.shape[3], 1], np.float32)
        roi = None if node.opset >= 13 else self.g.add_const(np.zeros(0, F32), "roi_nchwc")
        ins = [self.twin[id(x)], roi, self.g.add_const(scales, (node.name or "resize") + "_scales_nchwc")]
        attrs = {k: v for k, v in node.attrs.items() if k not in ("axes", "keep_aspect_ratio_policy")}
        return self.emit(node, "Resize", ins, attrs, [L.blocked_shape(y.shape, self.b)], domain=node.domain)

    # --- driver -----------------------------------------------------------------------------
    def run(self) -> int:
        for node in list(self.g.nodes):
            plan = self.conv_plan(node)
            if plan is not None:
                self.convert_conv(node, plan)
            elif any(v is not None and id(v) in self.twin for v in node.inputs):
                self.convert_other(node)
            elif node.op_type == "Reshape" and node.domain in ("", "ai.onnx"):
                self.channel_shuffle(node)  # a shuffle of a plain tensor into a blocked conv
        return self.finish()
