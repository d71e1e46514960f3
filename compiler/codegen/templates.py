"""jinja2 environment over the package's templates/ directory."""
from __future__ import annotations

import functools
import re

import jinja2

from ..resources import runtime_dir, templates_dir


@functools.lru_cache(maxsize=None)
def env() -> jinja2.Environment:
    e = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                           undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                           keep_trailing_newline=True)
    e.globals["status_codes"] = status_codes()
    return e


_STATUS = re.compile(r"#define\s+(ONNXC_(?:OK|ERR_\w+))\s+(\d+)[ \t]*(/\*.*?\*/)?", re.S)


@functools.lru_cache(maxsize=None)
def status_codes():
    """[{name, value, doc}] of the status codes ``<prefix>_run`` returns, read from their one
    definition in runtime_c/include/onnxc_rt.h, so model.h (which a C program includes without the
    runtime's headers) repeats them exactly."""
    text = (runtime_dir() / "include" / "onnxc_rt.h").read_text()
    codes = []
    for name, value, comment in _STATUS.findall(text):
        doc = " ".join(w for w in (comment or "")[2:-2].split() if w != "*")
        codes.append({"name": name, "value": int(value), "doc": doc or ("success" if name == "ONNXC_OK" else name)})
    return codes


def render(name: str, **kw) -> str:
    return env().get_template(name).render(**kw)
