"""Run a per-document function in a child process that can be killed when one document takes too long.

One pathological page (deeply nested markup, a giant table) can keep an HTML parser busy for minutes, inside C
code that no Python-level timer can interrupt; and Ray runs a stage off the main thread, where signals cannot be
used at all. So the work runs in a child process: the parent sends one document, waits at most the time limit,
and on overrun kills the child, reports a timeout for that document and starts a fresh child for the next one.
The cost is one pickle round trip per document, small next to parsing HTML.

The child is a plain `python -c ...child_main` process talking length-prefixed pickles over its stdin/stdout,
so it does not depend on how the parent was started (a Ray worker, a notebook, a script on stdin). On Linux the
kernel kills it when its parent dies, so a worker that is killed (say for running past its unit's time limit)
leaves no child parsing a page for nobody. A child that dies during a call may have been killed for reasons of
the machine's (the out-of-memory killer), so the call is tried once more in a fresh child; only a document whose
child dies twice is reported as a crash.
"""

from __future__ import annotations

import importlib
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import traceback
from typing import Any, BinaryIO

_FRAME = struct.Struct("!Q")


class SandboxTimeout(Exception):
    """The call ran past the time limit and the child was killed."""


class SandboxCrash(Exception):
    """The child died during the call (segfault, out of memory): the document is reported, the work goes on."""


class SandboxError(Exception):
    """The function raised in the child: its exception type name and message."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class SandboxStartError(RuntimeError):
    """The child could not build the function (missing package, bad options): a stage problem, not a document's."""


def _write_frame(stream: BinaryIO, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: BinaryIO) -> Any:
    (size,) = _FRAME.unpack(_read_exact(stream, _FRAME.size))
    return pickle.loads(_read_exact(stream, size))


def _die_with_parent(parent: int) -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (PR_SET_PDEATHSIG), and exit now if the
    parent is already gone."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def child_main(factory: str, parent: str = "") -> None:
    """The child's loop: build the function, then answer one request at a time until stdin closes."""
    if parent:
        _die_with_parent(int(parent))
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # library prints must not corrupt the reply stream
    options = _read_frame(requests)
    try:
        module_name, _, attribute = factory.partition(":")
        function = getattr(importlib.import_module(module_name), attribute)(**options)
    except Exception as exc:
        _write_frame(replies, ("start_failed", f"{type(exc).__name__}: {exc}"))
        return
    _write_frame(replies, ("ready",))
    while True:
        try:
            args = _read_frame(requests)
        except EOFError:
            return
        try:
            reply = ("ok", function(*args))
        except Exception as exc:  # reported to the parent as this document's error
            last = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f" (in {last[0].name})" if last else ""
            reply = ("error", type(exc).__name__, f"{exc}{where}"[:500])
        _write_frame(replies, reply)


class Sandbox:
    """A child process running `factory(**options)`'s returned function, called with a time limit per call.

    `factory` is "module:function"; the child imports it itself.
    """

    def __init__(self, factory: str, options: dict[str, Any], time_limit_s: float, start_timeout_s: float = 120.0):
        self._factory = factory
        self._options = options
        self._time_limit_s = time_limit_s
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen | None = None
        self._ready = False
        self.restarts = 0

    def call(self, *args: Any) -> Any:
        """Result of the function on args; raises SandboxTimeout, SandboxCrash (the child died on it twice, in two
        children), or SandboxError when it raised."""
        try:
            return self._call_once(*args)
        except SandboxCrash:
            try:
                return self._call_once(*args)  # in a fresh child
            except SandboxCrash as again:
                raise SandboxCrash(f"{again} (twice, in two child processes)") from None

    def _call_once(self, *args: Any) -> Any:
        process = self._ensure_child()
        try:
            _write_frame(process.stdin, args)
        except (BrokenPipeError, OSError):
            self._kill()
            raise SandboxCrash("the worker process died before taking this document") from None
        if not self._wait_readable(process, self._time_limit_s):
            self._kill()
            raise SandboxTimeout(f"no result within {self._time_limit_s:g} s")
        try:
            reply = _read_frame(process.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            self._kill()
            raise SandboxCrash("the worker process died while processing this document") from None
        if reply[0] == "ok":
            return reply[1]
        raise SandboxError(reply[1], reply[2])

    @staticmethod
    def _wait_readable(process: subprocess.Popen, timeout_s: float) -> bool:
        ready, _, _ = select.select([process.stdout], [], [], timeout_s)
        return bool(ready)

    def start(self) -> None:
        """Launch the child now, so that its imports overlap with the caller's own start-up; the first call
        waits for it to be ready."""
        if self._process is None or self._process.poll() is not None:
            self._launch()

    def _launch(self) -> None:
        if self._process is not None:
            self._kill()
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, sys.path))}
        self._process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from stages.sandbox import child_main; child_main(*sys.argv[1:])",
             self._factory, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
        )
        _write_frame(self._process.stdin, self._options)
        self._ready = False

    def _ensure_child(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._launch()
        process = self._process
        if self._ready:
            return process
        if not self._wait_readable(process, self._start_timeout_s):
            self._kill()
            raise SandboxStartError(f"{self._factory} did not start within {self._start_timeout_s:g} s")
        try:
            reply = _read_frame(process.stdout)
        except EOFError:
            self._kill()
            raise SandboxStartError(f"{self._factory}: the child process exited while starting") from None
        if reply[0] != "ready":
            self._kill()
            raise SandboxStartError(f"{self._factory}: {reply[1]}")
        self._ready = True
        return process

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                stream.close()
            self._process = None
            self.restarts += 1

    def close(self) -> None:
        """Stop the child (it exits when its input closes); a later call starts a new one."""
        if self._process is None:
            return
        process, self._process = self._process, None
        process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()

