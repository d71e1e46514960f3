"""Progress of long work, reported through the ``onnxc`` logger only (the library prints nothing
itself; Python's default logging shows neither INFO nor DEBUG): an INFO record when a compile
stage starts (``stage``) and for cache hits, a DEBUG record per C unit built (``step``), each
with its fields as attributes.  The command line installs ``ProgressHandler``, which draws them:
on a terminal one status line with a bar; otherwise a line for a stage only when it has run
longer than ``LONG`` seconds (or every stage and unit with ``verbose``).
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Optional

log = logging.getLogger("onnxc")
LONG = 2.0  # seconds after which a stage is announced when stderr is not a terminal


def stage(name: str) -> None:
    """A compile stage starts (and the previous one ends)."""
    log.info("onnxc: %s", name, extra={"onnxc_stage": name})


def step(done: int, total: int, what: str) -> None:
    """``done`` of ``total`` units of the current stage are finished; ``what`` is the next."""
    log.debug("onnxc: [%d/%d] %s", done, total, what, extra={"onnxc_step": (done, total, what)})


class ProgressHandler(logging.Handler):
    """Draws the records of ``onnxc`` on ``stream``: progress records as above, any other record
    (warnings, cache hits) as its message on a line of its own."""

    def __init__(self, stream=None, verbose: bool = False, tty: Optional[bool] = None):
        super().__init__(logging.DEBUG)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.verbose = verbose
        self.current: Optional[str] = None
        self.started = 0.0
        self.status = ""  # what the terminal's last line shows
        self.lock_ = threading.Lock()
        self.timer: Optional[threading.Timer] = None

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock_:
            if hasattr(record, "onnxc_stage"):
                self._stage(record.onnxc_stage)
            elif hasattr(record, "onnxc_step"):
                self._step(*record.onnxc_step)
            elif record.levelno >= logging.INFO or self.verbose:
                self._line(record.getMessage())

    def _stage(self, name: str) -> None:
        self._cancel()
        self.current, self.started = name, time.perf_counter()
        if self.tty:
            self._draw(f"onnxc: {name} ...")
        elif self.verbose:
            self._line(f"onnxc: {name}")
        else:  # announced only once it has been running a while
            self.timer = threading.Timer(LONG, self._late, args=(name,))
            self.timer.daemon = True
            self.timer.start()

    def _late(self, name: str) -> None:
        with self.lock_:
            if self.current == name:
                self._line(f"onnxc: {name} (running for more than {LONG:.0f} s)")

    def _step(self, done: int, total: int, what: str) -> None:
        if self.tty:
            width = 24
            fill = width * done // max(total, 1)
            self._draw(f"onnxc: [{'#' * fill}{'.' * (width - fill)}] {done}/{total} {what} ({self.current or ''})")
        elif self.verbose:
            self._line(f"  [{done}/{total}] {what}")

    def _draw(self, text: str) -> None:
        import shutil
        self.status = text[:max(shutil.get_terminal_size().columns - 1, 20)]  # one line: \r redraws it
        self.stream.write("\r\033[K" + self.status)
        self.stream.flush()

    def _line(self, text: str) -> None:
        if self.tty and self.status:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        if self.tty and self.status:
            self.stream.write(self.status)
        self.stream.flush()

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        """The work is over: stop the timer, clear the status line."""
        with self.lock_:
            self._cancel()
            self.current = None
            if self.tty and self.status:
                self.stream.write("\r\033[K")
                self.stream.flush()
            self.status = ""
        super().close()


class reporting:
    """``with reporting(verbose=...):`` shows the ``onnxc`` logger's progress on stderr (CLI)."""

    def __init__(self, verbose: bool = False, stream=None, tty: Optional[bool] = None):
        self.handler = ProgressHandler(stream, verbose, tty)
        self.level = None

    def __enter__(self):
        self.level = log.level
        log.setLevel(logging.DEBUG)
        log.addHandler(self.handler)
        return self.handler

    def __exit__(self, *exc):
        log.removeHandler(self.handler)
        log.setLevel(self.level)
        self.handler.close()
        return False
