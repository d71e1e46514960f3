"""Packaging: every directory that ships is listed in pyproject.toml, and building the wheel (what
scripts/setup.sh's editable install and CI's wheel job do) prints no setuptools warning."""
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIRS = {"onnxc": "compiler", "onnxc.templates": "templates", "onnxc.runtime_c": "runtime_c"}


def listed_packages():
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^packages\s*=\s*\[(.*?)\]", text, re.S | re.M).group(1)
    return set(re.findall(r'"([\w.]+)"', block))


def tree_packages():
    """Dotted names of every directory under the three roots holding .py, .c, .h or .j2 files."""
    found = set(DIRS)
    for name, rel in DIRS.items():
        root = ROOT / rel
        for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
            if d.name == "__pycache__":
                continue
            if any(f.suffix in (".py", ".c", ".h", ".j2") for f in d.iterdir() if f.is_file()):
                found.add(".".join([name, *d.relative_to(root).parts]))
    return found


def test_every_shipped_directory_is_listed():
    assert tree_packages() == listed_packages(), (
        f"pyproject.toml [tool.setuptools] packages: missing {sorted(tree_packages() - listed_packages())}, "
        f"stale {sorted(listed_packages() - tree_packages())}")


@pytest.mark.slow
def test_wheel_builds_without_warnings_and_ships_everything(tmp_path):
    pytest.importorskip("setuptools")
    env = dict(os.environ, PYTHONWARNINGS="default")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    warnings = [line for line in out.splitlines() if re.search(r"\w+Warning\b", line)]
    assert not warnings, "\n".join(warnings[:10])
    wheel = next(tmp_path.glob("onnxc-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg, rel in DIRS.items():
        for f in (ROOT / rel).rglob("*"):
            if f.suffix in (".py", ".c", ".h", ".j2") and "__pycache__" not in f.parts:
                assert "/".join([*pkg.split("."), *f.relative_to(ROOT / rel).parts]) in names, f
