"""jinja2 environment over the package's templates/ directory."""
from __future__ import annotations

import functools

import jinja2

from ..resources import templates_dir


@functools.lru_cache(maxsize=None)
def env() -> jinja2.Environment:
    e = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                           undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                           keep_trailing_newline=True)
    return e


def render(name: str, **kw) -> str:
    return env().get_template(name).render(**kw)
