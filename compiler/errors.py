"""Exceptions raised by onnxc. Each message names what was expected and what was found."""


class OnnxcError(Exception):
    """Base class for onnxc errors."""


class ModelError(OnnxcError, ValueError):
    """The model itself is malformed (fails the checker, breaks SSA, unknown value, ...)."""


class InputError(OnnxcError, ValueError):
    """Run-time input does not match the compiled signature (name, dtype or shape)."""


class CompileError(OnnxcError, RuntimeError):
    """The C compiler or the build step failed."""


class UnsupportedError(OnnxcError, NotImplementedError):
    """Something the model needs is not supported (yet)."""


class UnsupportedOpError(UnsupportedError):
    """One or more nodes cannot be compiled. ``nodes`` lists every offending node at once:
    tuples of (op_type, domain, opset, node_name, reason)."""

    def __init__(self, nodes):
        self.nodes = list(nodes)
        lines = [f"{len(self.nodes)} node(s) cannot be compiled by onnxc:"]
        for op, domain, opset, name, reason in self.nodes:
            dom = domain or "ai.onnx"
            lines.append(f"  - {op} ({dom}, opset {opset}) node '{name}': {reason}")
        if any("no static shape" in n[4] for n in self.nodes):
            lines.append("hint: give input_shapes for the model's free dimensions")
        super().__init__("\n".join(lines))


class FallbackError(UnsupportedError):
    """A fallback partition could not be run by any allowed interpreter, or its interpreter's
    result disagrees with what the compiled code was built for."""
