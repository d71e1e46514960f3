"""Calibration sources: feed dicts from an iterable, a folder of .npy/.npz files, or a folder of
images with a preprocessing spec.

    feeds(source, inputs, preprocess=None) -> iterator of {input name: array}

* an iterable (list, generator) of dicts {input name: array}; a bare array is accepted for a
  model with one input;
* a folder (or one file) of .npz files, each a dict of the model's inputs, or of .npy files, each
  the single input's array (a model with several inputs: one sub-folder per input, files matched
  by name);
* a folder of images (.png .jpg .jpeg .bmp .gif .tif .tiff .webp), decoded with Pillow (a test
  extra of onnxc, installed separately) and turned into the single image input by an ImageSpec.
Files are read in sorted order, so calibration is reproducible.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError, UnsupportedError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class ImageSpec:
    """How an image becomes a model input:
    resize  (h, w): exact size; an int: shorter side to that, aspect kept; None: to the crop
            size, or to the model input's size when there is no crop
    crop    (h, w) center crop after the resize (None: none)
    pixels  the value range before mean/std: 1.0 (pixels / 255, torchvision) or 255.0 (Caffe)
    mean, std  per channel, in the channel order of the output: x = (p - mean) / std
    order   "rgb" or "bgr" (Caffe models)
    layout  "NCHW" or "NHWC" (None: from the model input's shape)
    dtype   the input's numpy dtype (None: the model input's)
    Parsed from text as "resize=256x256 crop=224 mean=104,117,123 std=1 pixels=255 order=bgr
    layout=nhwc" (`onnxc quantize --preprocess`)."""
    resize: Union[None, int, Tuple[int, int]] = None
    crop: Optional[Tuple[int, int]] = None
    pixels: float = 1.0
    mean: Tuple[float, ...] = (0.0,)
    std: Tuple[float, ...] = (1.0,)
    order: str = "rgb"
    layout: Optional[str] = None
    dtype: Optional[str] = None

    def __post_init__(self):
        if isinstance(self.crop, int):
            self.crop = (self.crop, self.crop)
        if isinstance(self.resize, (list, tuple)):
            self.resize = (int(self.resize[0]), int(self.resize[1]))
        self.mean = tuple(float(m) for m in np.atleast_1d(self.mean))
        self.std = tuple(float(s) for s in np.atleast_1d(self.std))
        if self.order not in ("rgb", "bgr"):
            raise InputError(f"image spec: order must be 'rgb' or 'bgr', got {self.order!r}")
        if self.layout is not None:
            self.layout = self.layout.upper()
            if self.layout not in ("NCHW", "NHWC"):
                raise InputError(f"image spec: layout must be NCHW or NHWC, got {self.layout!r}")
        if any(s == 0 for s in self.std):
            raise InputError("image spec: std has a zero")

    @classmethod
    def parse(cls, text: Union[str, Dict, "ImageSpec", None]) -> Optional["ImageSpec"]:
        if text is None or isinstance(text, ImageSpec):
            return text
        if isinstance(text, dict):
            return cls(**text)
        kw = {}
        for item in str(text).replace(";", " ").split():
            if "=" not in item:
                raise InputError(f"image spec: expected key=value, got {item!r} in {text!r}")
            k, v = item.split("=", 1)
            k = k.strip().lower()
            if k in ("resize", "crop"):
                dims = [int(d) for d in v.lower().replace("x", ",").split(",") if d]
                kw[k] = dims[0] if len(dims) == 1 and k == "resize" else (dims[0], dims[-1])
            elif k in ("mean", "std"):
                kw[k] = tuple(float(d) for d in v.split(",") if d)
            elif k == "pixels":
                kw[k] = float(v)
            elif k in ("order", "layout", "dtype"):
                kw[k] = v.lower() if k == "order" else v
            else:
                raise InputError(f"image spec: unknown key {k!r} (known: resize, crop, pixels, mean, std, order, "
                                 f"layout, dtype)")
        return cls(**kw)

    def __str__(self):
        return (f"resize={self.resize} crop={self.crop} pixels={self.pixels} mean={self.mean} std={self.std} "
                f"order={self.order} layout={self.layout} dtype={self.dtype}")

    def apply(self, path: Path, input_shape: Sequence, input_dtype) -> np.ndarray:
        """One image file -> an array of the input's layout with a batch dimension of 1."""
        try:
            from PIL import Image
        except ImportError:
            raise UnsupportedError("calibrating on a folder of images needs Pillow to decode them: pip install pillow "
                                   "(or give .npy/.npz files or an iterable of feeds)") from None
        layout = self.layout or _guess_layout(input_shape)
        h, w = _spatial(input_shape, layout)
        with Image.open(path) as im:
            im = im.convert("RGB")
            target = self.resize
            if target is None:
                target = self.crop or ((h, w) if isinstance(h, int) and isinstance(w, int) else None)
            if isinstance(target, int):
                s = target / min(im.size)
                target = (max(1, round(im.size[1] * s)), max(1, round(im.size[0] * s)))
            if target is not None:
                im = im.resize((target[1], target[0]), Image.BILINEAR)
            arr = np.asarray(im, np.float32)
        if self.crop is not None:
            ch, cw = self.crop
            if arr.shape[0] < ch or arr.shape[1] < cw:
                raise InputError(f"image {path}: {arr.shape[0]}x{arr.shape[1]} after resize is smaller than the "
                                 f"crop {ch}x{cw}")
            top, left = (arr.shape[0] - ch) // 2, (arr.shape[1] - cw) // 2
            arr = arr[top:top + ch, left:left + cw]
        if self.order == "bgr":
            arr = arr[:, :, ::-1]
        arr = arr * np.float32(self.pixels / 255.0)
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if isinstance(h, int) and isinstance(w, int) and arr.shape[:2] != (h, w):
            raise InputError(f"image {path}: preprocessed to {arr.shape[0]}x{arr.shape[1]} but the model input is "
                             f"{h}x{w}: set resize/crop in the image spec")
        if layout == "NCHW":
            arr = arr.transpose(2, 0, 1)
        dtype = np.dtype(self.dtype) if self.dtype else input_dtype
        return np.ascontiguousarray(arr[None]).astype(dtype, copy=False)


def _guess_layout(shape) -> str:
    if shape is not None and len(shape) == 4:
        if shape[1] == 3 or shape[1] == 1:
            return "NCHW"
        if shape[-1] in (1, 3):
            return "NHWC"
    raise InputError(f"image spec: cannot tell NCHW from NHWC for input shape {shape}: give layout=")


def _spatial(shape, layout):
    if shape is None or len(shape) != 4:
        return None, None
    return (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])


def _files(root: Path, exts) -> List[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in exts)


def feeds(source, inputs: Sequence[Tuple[str, Sequence, np.dtype]], preprocess=None,
          limit: Optional[int] = None) -> Iterator[Dict[str, np.ndarray]]:
    """Feed dicts from ``source``; ``inputs`` are the model's (name, shape, dtype)."""
    names = [n for n, _, _ in inputs]
    it = _raw_feeds(source, inputs, preprocess)
    for i, feed in enumerate(it):
        if limit is not None and i >= limit:
            return
        yield _check_feed(feed, inputs, names, i)


def count(source) -> Optional[int]:
    """How many feeds ``source`` holds, when that is known without reading them."""
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if root.is_dir():
            subs = [p for p in root.iterdir() if p.is_dir()]
            files = _files(root, IMAGE_EXTS | {".npy", ".npz"})
            if files:
                return len(files)
            if subs:
                return len(_files(subs[0], {".npy"}))
        return 1 if root.is_file() else None
    try:
        return len(source)
    except TypeError:
        return None


def _raw_feeds(source, inputs, preprocess):
    names = [n for n, _, _ in inputs]
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if not root.exists():
            raise InputError(f"calibration: {root} does not exist")
        files = _files(root, IMAGE_EXTS | {".npy", ".npz"})
        if not files and root.is_dir():
            subs = {p.name: p for p in root.iterdir() if p.is_dir()}
            if set(names) <= set(subs):  # one sub-folder per input, files paired by name
                lists = {n: _files(subs[n], {".npy"}) for n in names}
                stems = [sorted(p.name for p in lists[n]) for n in names]
                if any(s != stems[0] for s in stems):
                    raise InputError(f"calibration: the sub-folders {names} of {root} do not hold the same file names")
                for fname in stems[0]:
                    yield {n: np.load(subs[n] / fname) for n in names}
                return
            raise InputError(f"calibration: {root} holds no .npy/.npz/image file (nor one sub-folder per input "
                             f"{names})")
        kinds = {("image" if p.suffix.lower() in IMAGE_EXTS else p.suffix.lower()) for p in files}
        if len(kinds) > 1:
            raise InputError(f"calibration: {root} mixes {sorted(kinds)} files; keep one kind per folder")
        kind = kinds.pop()
        if kind == "image":
            if len(inputs) != 1:
                raise InputError(f"calibration: images feed a model with one input; this one has {names}")
            spec = ImageSpec.parse(preprocess) or ImageSpec()
            name, shape, dtype = inputs[0]
            for p in files:
                yield {name: spec.apply(p, shape, dtype)}
            return
        if preprocess is not None:
            raise InputError("calibration: a preprocessing spec applies to a folder of images, not to .npy/.npz")
        for p in files:
            if kind == ".npz":
                with np.load(p) as z:
                    yield {k: z[k] for k in z.files}
            else:
                if len(inputs) != 1:
                    raise InputError(f"calibration: {p.name} is one .npy array but the model has inputs {names}: use "
                                     f".npz files or one sub-folder per input")
                yield {names[0]: np.load(p)}
        return
    if isinstance(source, dict):
        raise InputError("calibration: expected an iterable of feed dicts, got one dict (wrap it in a list)")
    if isinstance(source, np.ndarray):
        raise InputError("calibration: expected an iterable of feed dicts, got one array (wrap it: [{name: array}])")
    try:
        iterator = iter(source)
    except TypeError:
        raise InputError(f"calibration: expected an iterable of feed dicts or a folder, got "
                         f"{type(source).__name__}") from None
    for item in iterator:
        if isinstance(item, np.ndarray) and len(inputs) == 1:
            item = {names[0]: item}
        yield item


def _check_feed(feed, inputs, names, i) -> Dict[str, np.ndarray]:
    if not isinstance(feed, dict):
        raise InputError(f"calibration feed {i}: expected a dict of input name -> array, got {type(feed).__name__}")
    missing = [n for n in names if n not in feed]
    extra = [n for n in feed if n not in names]
    if missing or extra:
        raise InputError(f"calibration feed {i}: inputs {sorted(feed)} do not match the model's {names}"
                         f"{' (missing ' + str(missing) + ')' if missing else ''}")
    out = {}
    for name, shape, dtype in inputs:
        x = np.asarray(feed[name])
        if shape is not None and (len(x.shape) != len(shape) or
                                  any(isinstance(d, int) and d != s and not (k == 0 and d == 1)
                                      for k, (d, s) in enumerate(zip(shape, x.shape)))):
            raise InputError(f"calibration feed {i}: input '{name}' has shape {list(x.shape)}, the model expects "
                             f"{list(shape)}")
        if dtype is not None and x.dtype != dtype:
            if x.dtype.kind != np.dtype(dtype).kind:
                raise InputError(f"calibration feed {i}: input '{name}' is {x.dtype}, the model expects {dtype}")
            x = x.astype(dtype)
        out[name] = x
    return out


def digest(source):
    """(source, content digest) for a cache key: a one-shot iterator is read into a list first;
    a folder is hashed by its files' names and bytes.  None stays (None, None)."""
    import hashlib
    if source is None:
        return None, None
    h = hashlib.sha256()
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in paths:
            h.update(str(p.relative_to(root) if p != root else p.name).encode())
            h.update(p.read_bytes())
        return source, h.hexdigest()[:24]
    if not isinstance(source, (list, tuple)):
        source = list(source)
    for item in source:
        items = sorted(item.items()) if isinstance(item, dict) else [("", item)]
        for k, v in items:
            a = np.ascontiguousarray(v)
            h.update(f"{k}|{a.dtype}|{a.shape}|".encode())
            h.update(a.tobytes())
    return source, h.hexdigest()[:24]


class FeedReader:
    """The same calibration feeds for onnxruntime's quantize_static: its CalibrationDataReader
    protocol (get_next until None, iteration, len, set_range for CalibStridedMinMax) over a list
    of feed dicts, so a comparison gives both quantizers the same data.  Duck-typed (onnxruntime's
    CalibrationDataReader recognises any class with get_next): onnxc needs no onnxruntime."""

    def __init__(self, feeds):
        self.feeds = [dict(f) for f in feeds]
        self.set_range(0, len(self.feeds))

    def get_next(self):
        return next(self._it, None)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def __len__(self):
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int):
        self._it = iter(self.feeds[start_index:end_index])

    def rewind(self):
        self.set_range(0, len(self.feeds))
