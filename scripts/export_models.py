"""Export the real test models with torch into models/ (never committed).

    python scripts/export_models.py [--out models/] [--only resnet50,bert_tiny] [--bench] [--force]

Opset 17, batch 1, eval mode, seeded random weights (no downloads).  Each model gets
<name>.onnx and <name>.inputs.npz (seeded inputs the tests and benchmarks share).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VISION = {"resnet18": "resnet18", "resnet50": "resnet50", "mobilenet_v2": "mobilenet_v2",
          "squeezenet1_1": "squeezenet1_1", "mobilenet_v3_small": "mobilenet_v3_small",
          "efficientnet_b0": "efficientnet_b0", "shufflenet_v2_x1_0": "shufflenet_v2_x1_0"}
ALL = ["resnet18", "resnet50", "mobilenet_v2", "squeezenet1_1", "bert_tiny", "vit_s16"]  # what CI tests
BENCH = ALL + ["mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x1_0", "bert_base"]  # + the benchmark's


def import_torchvision():
    """PyPI's torchvision wheel registers its C++ ops from a library built for a different torch
    build; its model code is pure Python, so define the op schemas it expects first."""
    import torch
    try:
        import torchvision
        return torchvision
    except (RuntimeError, ImportError):
        for mod in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[mod]
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision
    import_torchvision.lib = lib  # keep the registration alive
    return torchvision


def export_vision(name, out: Path):
    import torch
    tv = import_torchvision()
    torch.manual_seed(0)
    model = getattr(tv.models, VISION[name])(weights=None).eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    torch.onnx.export(model, (x,), str(out / f"{name}.onnx"), opset_version=17, input_names=["input"],
                      output_names=["output"], dynamo=False)
    np.savez(out / f"{name}.inputs.npz", input=x.numpy())


def export_vit(out: Path):
    """ViT-S/16 (hidden 384, 12 layers, 6 heads): torchvision's VisionTransformer class with the
    small configuration (torchvision ships only the B/L/H presets)."""
    import torch
    tv = import_torchvision()
    torch.manual_seed(0)
    model = tv.models.VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=6,
                                        hidden_dim=384, mlp_dim=1536).eval()
    with torch.no_grad():  # torchvision zero-initializes the head: outputs would be all zeros
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    torch.onnx.export(model, (x,), str(out / "vit_s16.onnx"), opset_version=17, input_names=["input"],
                      output_names=["output"], dynamo=False)
    np.savez(out / "vit_s16.inputs.npz", input=x.numpy())


def export_bert(out: Path, name: str = "bert_tiny"):
    """BERT encoder, seq 128: bert_tiny (2 layers, hidden 128) or bert_base (12 layers, hidden 768)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    cfg = (BertConfig() if name == "bert_base" else
           BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512))
    model = BertModel(cfg).eval()
    rng = np.random.default_rng(1)
    ids = rng.integers(0, cfg.vocab_size, (1, 128)).astype(np.int64)
    mask = np.ones((1, 128), np.int64)
    mask[:, -16:] = 0

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            o = self.m(input_ids=input_ids, attention_mask=attention_mask)
            return o.last_hidden_state, o.pooler_output

    torch.onnx.export(Wrapper(model), (torch.from_numpy(ids), torch.from_numpy(mask)), str(out / f"{name}.onnx"),
                      opset_version=17, input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state", "pooler_output"], dynamo=False)
    np.savez(out / f"{name}.inputs.npz", input_ids=ids, attention_mask=mask)


def verify(path: Path):
    import onnx
    import onnxruntime as ort
    m = onnx.load(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    d = np.load(path.with_suffix(".inputs.npz"))
    outs = sess.run(None, {k: d[k] for k in d.files})
    print(f"  {path.name}: {path.stat().st_size / 2**20:.1f} MB, {len(m.graph.node)} nodes, "
          f"outputs {[o.shape for o in outs]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "models"))
    ap.add_argument("--only", default="")
    ap.add_argument("--bench", action="store_true", help="also the benchmark suite's models (bigger, slower)")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: run `bash scripts/setup_models.sh <python>` first", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in [n for n in args.only.split(",") if n] or (BENCH if args.bench else ALL):
        path = out / f"{name}.onnx"
        if path.exists() and not args.force:
            print(f"{name}: exists")
        else:
            t = time.perf_counter()
            if name.startswith("bert_"):
                export_bert(out, name)
            elif name == "vit_s16":
                export_vit(out)
            else:
                export_vision(name, out)
            print(f"{name}: exported in {time.perf_counter() - t:.1f} s")
        verify(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
