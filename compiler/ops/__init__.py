"""Op knowledge, one module per family; importing this package registers them all."""
from . import registry
from .registry import evaluate, get_attr, reference, shape_rule
from .shapes import infer_graph, infer_node
from .validate import validate_graph
from . import shape  # noqa: F401,E402  (registers numpy references, shape and validity rules)
from . import elementwise, indexing, linalg, nn, norm, reduce  # noqa: F401,E402  (validity rules)
from . import resize  # noqa: F401,E402  (Resize/Upsample facts and coordinate math)
from . import attention  # noqa: F401,E402  (Attention shape rule)
from . import quant_conv, nhwc_pool  # noqa: F401,E402  (QLinearConv, ConvInteger, NhwcMaxPool)
from . import fused_nn, fused_transformer, chain, nchwc  # noqa: F401,E402  (onnxc-domain fused ops)
from . import quant  # noqa: F401,E402  (quantized ops: rules and references)
from . import text  # noqa: F401,E402  (TfIdfVectorizer: rule and n-gram trie)
from . import signal  # noqa: F401,E402  (DFT: parameters and rule)
from . import control  # noqa: F401,E402  (If/Loop/Scan: types through the bodies)
from . import ml  # noqa: F401,E402  (ai.onnx.ml: ArrayFeatureExtractor's shape rule)
from . import training  # noqa: F401,E402  (ai.onnx.preview.training optimizers: rule)

__all__ = ["registry", "evaluate", "get_attr", "reference", "shape_rule", "infer_graph", "infer_node",
           "validate_graph"]
