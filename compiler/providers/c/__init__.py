"""The C provider: emitters per op family; importing registers them all."""
from .registry import KERNELS, CKernel, c_kernel, check_node
from . import elementwise, nn, linalg, shape, reduce  # noqa: F401,E402  (registration)
from . import image, norm  # noqa: F401,E402  (registration)
from . import indexing, dynamic, random, misc, text, ml  # noqa: F401,E402  (registration)
from . import attention  # noqa: F401,E402  (registration)
from . import rnn  # noqa: F401,E402  (registration)
from . import control  # noqa: F401,E402  (registration)
from . import quant_conv  # noqa: F401,E402  (QLinearConv, ConvInteger on runtime_c/qconv)
from . import fused_nn, fused_transformer, chain, nchwc  # noqa: F401,E402  (onnxc-domain fused ops)
from . import quant  # noqa: F401,E402  (quantized ops, issue 13)
from . import training  # noqa: F401,E402  (ai.onnx.preview.training optimizers)

__all__ = ["KERNELS", "CKernel", "c_kernel", "check_node"]
