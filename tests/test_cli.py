"""The command line as a newcomer meets it: one error format (``onnxc <command>: error: ...``,
exit 2) for every bad argument, names checked against the model, progress and cache hits shown,
and compiling for another machine's ISA."""
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import onnxc
from onnxc import cpu
from onnxc.cli import main
from onnxc.cpu import REQUIRED_FLAGS
from helpers import make_model

AVX2_HOST = frozenset(REQUIRED_FLAGS["avx2"]) | {"sse2", "avx"}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", np.float32, [2, 3])],
                       [("y", np.float32, [2, 3])])
    (d / "m.onnx").write_bytes(model.SerializeToString())
    return d / "m.onnx"


@pytest.fixture(scope="module")
def module_dir(model_path):
    out = model_path.parent / "o"
    assert main(["compile", str(model_path), "-o", str(out)]) == 0
    return out


def error_of(capsys, argv):
    """(exit code, stderr) of ``onnxc argv``, whether argparse or a command reports the error."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["compile", "m.onnx", "-o", "o", "--shape", "x=2,b"], "argument --shape: 'x=2,b': dimensions must be integers"),
    (["compile", "m.onnx", "-o", "o", "--shape", "x"], "argument --shape: expected NAME=D0,D1,..., got 'x'"),
    (["compile", "m.onnx", "-o", "o", "--shape", "x=2,-3"], "dimensions must be >= 0"),
    (["inspect", "m.onnx", "--shape", "x=a"], "argument --shape"),
    (["run", "o", "--threads", "-3"], "argument --threads: must be >= 1, got -3"),
    (["run", "o", "--threads", "0"], "argument --threads: must be >= 1, got 0"),
    (["run", "o", "--repeat", "-1"], "argument --repeat: must be >= 0"),
    (["run", "o", "--input", "x.npy"], "argument --input: expected NAME=FILE.npy"),
])
def test_usage_errors_exit_2_with_the_prefix(capsys, argv, message):
    code, err = error_of(capsys, argv)
    assert code == 2 and f"onnxc {argv[0]}: error: " in err and message in err, err


def test_compile_errors_name_the_file(capsys, tmp_path):
    not_onnx = tmp_path / "notes.txt"
    not_onnx.write_text("not a model")
    code, err = error_of(capsys, ["compile", str(not_onnx), "-o", str(tmp_path / "o")])
    assert code == 2 and f"onnxc compile: error: cannot read ONNX model from {not_onnx}" in err, err
    code, err = error_of(capsys, ["compile", str(tmp_path), "-o", str(tmp_path / "o")])  # a directory
    assert code == 2 and err.startswith("onnxc compile: error: ") and "Is a directory" in err, err


def test_run_checks_input_names_and_says_where_it_saves(capsys, module_dir, tmp_path):
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    np.save(tmp_path / "x.npy", x)
    code, err = error_of(capsys, ["run", str(module_dir), "--input", f"input={tmp_path / 'x.npy'}"])
    assert code == 2 and "the model has no input 'input'; its inputs are x" in err, err
    code, err = error_of(capsys, ["run", str(module_dir)])
    assert code == 2 and "onnxc run: error: missing --input x=FILE.npy" in err, err
    code, err = error_of(capsys, ["run", str(module_dir), "--input", f"x={tmp_path / 'absent.npy'}"])
    assert code == 2 and "onnxc run: error: " in err and "absent.npy" in err, err
    assert main(["run", str(module_dir), "--input", f"x={tmp_path / 'x.npy'}", "--save", str(tmp_path / "r"),
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"saved y to {tmp_path / 'r_y.npy'}" in out
    np.testing.assert_array_equal(np.load(tmp_path / "r_y.npy"), np.maximum(x, 0))


def test_cache_hit_is_reported(capsys, model_path, module_dir):
    assert main(["compile", str(model_path), "-o", str(module_dir)]) == 0
    cap = capsys.readouterr()
    assert "found in the cache (not rebuilt)" in cap.out
    assert "already holds this build" in cap.err and "--force" in cap.err


def test_library_is_quiet_and_cli_verbose_shows_stages(capfd, monkeypatch, model_path, tmp_path):
    onnxc.compile(str(model_path), output_dir=tmp_path / "lib")
    assert capfd.readouterr().err == ""  # progress goes to the logger only
    assert main(["compile", str(model_path), "-o", str(tmp_path / "cli"), "-v", "--force"]) == 0
    err = capfd.readouterr().err
    for stage in ("loading the model", "optimizing (1 nodes, level layout)", "generating C", "compiling model.c"):
        assert f"onnxc: {stage}" in err, err
    from onnxc import progress
    monkeypatch.setattr(progress, "LONG", 1e9)  # a loaded machine may take over 2 s for the C
    assert main(["compile", str(model_path), "-o", str(tmp_path / "cli2")]) == 0
    assert capfd.readouterr().err == ""  # not verbose, not a terminal, nothing long: silent


def test_progress_bar_on_a_terminal_and_late_stage_lines_otherwise(monkeypatch):
    from onnxc import progress
    term = io.StringIO()
    with progress.reporting(stream=term, tty=True):
        progress.stage("compiling the runtime C")
        progress.step(6, 24, "gemm/sgemm_driver.c")
        logging.getLogger("onnxc").warning("onnxc: a warning")
    text = term.getvalue()
    assert "\r\033[Konnxc: [######" in text and "6/24 gemm/sgemm_driver.c" in text
    assert "a warning\n" in text and text.endswith("\r\033[K")  # the status line is cleared at the end
    monkeypatch.setattr(progress, "LONG", 0.05)
    log = io.StringIO()
    with progress.reporting(stream=log, tty=False):
        progress.stage("quick")
        progress.stage("slow")
        progress.step(1, 2, "unit")
        import time
        time.sleep(0.5)
    assert log.getvalue() == "onnxc: slow (running for more than 0 s)\n"


def test_runtime_units_report_their_progress(monkeypatch, tmp_path, caplog):
    """Each runtime C unit compiled on a cold cache is a step of one stage (the compiler is faked)."""
    from onnxc import build
    monkeypatch.setenv("ONNXC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(build, "_run", lambda cmd, what: Path(cmd[cmd.index("-o") + 1]).write_bytes(b""))
    with caplog.at_level(logging.DEBUG, logger="onnxc"):
        objs = build.runtime_objects(["-O0"])
    steps = [r.onnxc_step for r in caplog.records if hasattr(r, "onnxc_step")]
    assert [s[0] for s in steps] == list(range(len(objs) + 1)) and {s[1] for s in steps} == {len(objs)}
    assert any("runtime C" in getattr(r, "onnxc_stage", "") for r in caplog.records)


def test_compile_for_an_isa_this_host_lacks(monkeypatch, capsys, model_path, tmp_path):
    """target avx512 on an AVX2 host (faked flags): the build succeeds and is written; compile
    returns a ForeignModule that refuses to run; a host with AVX-512 loads the same directory."""
    real_isas = cpu.runnable_isas()
    monkeypatch.setattr(cpu, "host_flags", lambda: AVX2_HOST)
    out = tmp_path / "avx512"
    assert main(["compile", str(model_path), "-o", str(out), "--target", "avx512"]) == 0
    printed = capsys.readouterr().out
    assert "built for ISA avx512: this host cannot load it (this CPU lacks avx512f" in printed, printed
    assert "input  x: tensor(float) [2, 3]" in printed
    assert json.loads((out / "manifest.json").read_text())["isa"] == "avx512" and list(out.glob("_onnxc_*.so"))
    m = onnxc.compile(str(model_path), output_dir=out, target="avx512")  # the cached build, still foreign
    assert not m.runnable and m.from_cache and [i.name for i in m.get_inputs()] == ["x"]
    with pytest.raises(onnxc.ModelError, match="ISA avx512.*lacks avx512f"):
        m.run(None, {"x": np.zeros((2, 3), np.float32)})
    code, err = error_of(capsys, ["run", str(out), "--random"])
    assert code == 2 and "onnxc run: error: " in err and "lacks avx512f" in err
    import pickle
    shipped = pickle.dumps(m)  # by value: the build's files travel to a worker that has the ISA
    with pytest.raises(onnxc.ModelError, match="lacks avx512f"):
        pickle.loads(shipped)
    monkeypatch.undo()
    if "avx512" not in real_isas:
        pytest.skip("this host cannot run AVX-512: the load half needs one")
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    np.testing.assert_array_equal(onnxc.load(out).run(None, {"x": x})[0], np.maximum(x, 0))
    monkeypatch.setenv("ONNXC_PICKLE_DIR", str(tmp_path / "unpickled"))
    np.testing.assert_array_equal(pickle.loads(shipped).run(None, {"x": x})[0], np.maximum(x, 0))


def test_console_script_is_in_the_venv():
    """The README says the command is .venv/bin/onnxc after scripts/setup.sh: the script pip
    installs beside the interpreter."""
    exe = Path(sys.executable).parent / ("onnxc.exe" if sys.platform == "win32" else "onnxc")
    if not exe.exists():
        pytest.skip(f"onnxc is not installed as a console script beside {sys.executable}")
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "compile" in r.stdout
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert ".venv/bin/onnxc" in readme and "source .venv/bin/activate" in readme
