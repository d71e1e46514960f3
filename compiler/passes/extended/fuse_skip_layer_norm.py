"""A residual Add (with an optional bias Add on one side) feeding a LayerNormalization ->
onnxc.SkipLayerNormalization, with the sum as a second output when something else reads it; the
standard LayerNormalization op over the last dim becomes onnxc.LayerNormalization (one-pass
kernel) otherwise (extended level, float32, in transformer_fusion, after fuse_layer_norm)."""
from __future__ import annotations

from ...ir import Node
from ...ops import get_attr
from ..util import c_supported, is_op, remove_chain, replace_with, sole_user
from .transformer_match import F32, f32, last_dim_vector, ordered, other, prod, same_shape, static_shape, vec_input


def _standard_ln(node) -> bool:
    """A standard LayerNormalization the onnxc kernel computes: last axis, float32, no stats."""
    if not is_op(node, "LayerNormalization"):
        return False
    x = node.inputs[0]
    if not f32(x) or not x.shape or get_attr(node, "stash_type", 1) != 1:
        return False
    if int(get_attr(node, "axis", -1)) % len(x.shape) != len(x.shape) - 1:
        return False
    if any(o.uses or node.graph.is_output(o) for o in node.outputs[1:]):
        return False
    n = x.shape[-1]
    return all(v is None or (v.dtype == F32 and (static_shape(v) == (n,) or last_dim_vector(v, n) is not None))
               for v in node.inputs[1:3])


def fuse_skip_norms(graph, details) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.graph is not graph:
            continue
        onnxc_ln = node.domain == "onnxc" and node.op_type == "LayerNormalization"
        if not (onnxc_ln or _standard_ln(node)):
            continue
        x = node.inputs[0]
        n = x.shape[-1]
        gamma = vec_input(graph, node.input(1), n)
        beta = vec_input(graph, node.input(2), n)
        eps = float(get_attr(node, "epsilon", 1e-5))
        s = prod(x)
        fused = False
        if is_op(s, "Add") and same_shape(s.inputs[0], x) and same_shape(s.inputs[1], x) \
                and not any(v.is_const for v in s.inputs):
            ln_only = x.users == [node] and not graph.is_output(x)
            for a in s.inputs:  # a = X (+ bias), b = the residual
                b = other(s, a)
                nodes, xin, bias = [s, node], a, None
                p = prod(a)
                if is_op(p, "Add") and sole_user(a) is s:
                    for t in p.inputs:
                        vec = last_dim_vector(other(p, t), n) if other(p, t).is_const else None
                        if vec is not None and not t.is_const and same_shape(t, x):
                            nodes, xin, bias = [p, s, node], t, vec_input(graph, other(p, t), n)
                            break
                fused = _fuse_skip(graph, nodes, node, [xin, b, gamma, beta, bias], eps, ln_only, details)
                if fused:
                    break
        if fused:
            count += 1
        elif not onnxc_ln:
            # a plain standard LayerNormalization becomes the onnxc one (one-pass kernel)
            ins = [x, gamma, beta]
            while ins[-1] is None:
                ins.pop()
            node_ = replace_with(graph, [node], "LayerNormalization", ins, {"epsilon": eps}, check_c=True)
            if node_ is not None:
                node_.outputs = node_.outputs[:1]
                details.append(node_.label)
                count += 1
        graph.prune_constants()
    return count


def _fuse_skip(graph, nodes, ln, ins, eps, ln_only, details) -> bool:
    while ins and ins[-1] is None:
        ins.pop()
    add = nodes[-2]
    y = ln.outputs[0]
    outputs = [y] if ln_only else [y, add.outputs[0]]
    new = Node("SkipLayerNormalization", ins, [], {"epsilon": eps}, name=graph.fresh_name(ln.name or "SkipLayerNorm"),
               domain="onnxc", opset=graph.opset.get("onnxc", 1))
    new.outputs = outputs
    if not c_supported(new):
        new.detach_inputs()
        return False
    for o in outputs:
        o.producer = new
    ln.outputs = []
    if not ln_only:  # the sum Value now belongs to the new node
        add.outputs = []
    graph.insert(new, after=ln)
    remove_chain(graph, ordered(graph, nodes))
    details.append(new.label)
    return True

