"""One run at a time in a run directory: a lock file that says who holds it, and a fence for the workers.

Locally the lock is `fcntl.flock` on <run>/_lock.json: the kernel releases it when the holder dies, however it
dies, so a lock left by a killed run is never mistaken for a live one. The file says who holds it (host, pid,
process start, command, start time) for the message a second run prints.

On object stores there is no such primitive: the lock is a lease, an object whose holder rewrites it every
HEARTBEAT_S seconds. A lease not renewed for STALE_AFTER_S (or whose holder ran on this host and is gone) is taken
over; a new holder writes its own and reads it back. Two runs that start within the same second against one
object-store directory can still both get it: a documented limit, as S3 has no create-if-absent through pyarrow.

Every acquisition draws a new epoch. Workers check the fence before they commit a unit's files: the lock must
still carry their epoch, and, on the driver's own host, the driver must still be alive. So a worker of a killed or
superseded run stops writing instead of finishing its unit into a directory that another run now owns.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.io.atomic import atomic_write_json
from pipeline.io.storage import RemotePath, StoragePath
from pipeline.output_guard import LOCK_FILE
from pipeline.processes import process_alive, process_start

HEARTBEAT_S = 15.0
STALE_AFTER_S = 120.0
READ_BACK_DELAY_S = 1.0


class RunLocked(Exception):
    """Another run holds the run directory (one line naming it)."""


class RunFenced(RuntimeError):
    """This worker's run no longer owns the run directory: its driver is gone or another run took over."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    process_start: int | None  # the process's start time in clock ticks (Linux), to tell a reused pid apart
    epoch: str
    started: str
    command: str
    heartbeat: float = 0.0

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.started} ({self.command})"


def _this_process() -> Holder:
    return Holder(host=socket.gethostname(), pid=os.getpid(), process_start=process_start(os.getpid()),
                  epoch=uuid.uuid4().hex, started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  command=" ".join(os.path.basename(arg) if i == 0 else arg for i, arg in enumerate(sys.argv))[:300],
                  heartbeat=time.time())


def _read_holder(data: bytes | str) -> Holder | None:
    try:
        return Holder(**json.loads(data))
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class Fence:
    """What a worker checks before it commits files: travels to the workers as a small dict."""

    lock: str  # the lock file's path or URI
    epoch: str
    host: str
    pid: int
    process_start: int | None

    def check(self) -> None:
        """Raise RunFenced unless this fence's run still owns the run directory."""
        if self.host == socket.gethostname() and not process_alive(self.pid, self.process_start):
            raise RunFenced(f"the driver of this run (pid {self.pid}) is gone: results not written")
        from pipeline.io.storage import storage_path

        unread = ""
        try:
            holder = _read_holder(storage_path(self.lock).read_bytes())
        except FileNotFoundError:
            holder = None
        except OSError as exc:  # a worker without the store's credentials, say: say so, not "gone"
            holder, unread = None, f"its lock {self.lock} cannot be read here ({exc})"
        if holder is None or holder.epoch != self.epoch:
            taken = (f"another run holds it now ({holder.describe()})" if holder else unread or "its lock is gone")
            raise RunFenced(f"this run no longer owns its run directory: {taken}; results not written")

    def to_dict(self) -> dict:
        return asdict(self)


class RunLock:
    """The lock on one run directory, held from `acquire()` to `release()`."""

    def __init__(self, root: StoragePath):
        self.path = root / LOCK_FILE
        self.holder = _this_process()
        self._descriptor: int | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def fence(self) -> Fence:
        return Fence(str(self.path), self.holder.epoch, self.holder.host, self.holder.pid, self.holder.process_start)

    def acquire(self) -> None:
        if isinstance(self.path, RemotePath):
            self._acquire_lease()
        else:
            self._acquire_flock()

    def release(self) -> None:
        if self._descriptor is not None:
            try:
                os.unlink(self.path)  # while still holding it: nobody can lock the old file in between
            except OSError:
                pass
            os.close(self._descriptor)
            self._descriptor = None
            return
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            current = self._current()
            if current is not None and current.epoch == self.holder.epoch:
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # ------------------------------------------------------------------------------------------ local: flock
    def _acquire_flock(self) -> None:
        import fcntl

        path: Path = self.path
        while True:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(descriptor)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise RunLocked(self._refusal(_read_holder(path.read_bytes()))) from None
            try:
                same_file = os.fstat(descriptor).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:  # else the holder removed it as we opened it: lock the new one
                break
            os.close(descriptor)
        self._descriptor = descriptor
        try:
            data = json.dumps(asdict(self.holder), indent=2).encode()
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, data, 0)
            os.fsync(descriptor)
        except OSError as exc:  # (a full disk) let go of it whole, and say which file
            self.release()
            raise OSError(exc.errno, exc.strerror, str(path)) from None

    # --------------------------------------------------------------------------------- object stores: lease
    def _current(self) -> Holder | None:
        try:
            return _read_holder(self.path.read_bytes())
        except (OSError, FileNotFoundError):
            return None

    def _acquire_lease(self) -> None:
        current = self._current()
        if current is not None and not _lease_expired(current):
            raise RunLocked(self._refusal(current))
        self._write_lease()
        time.sleep(READ_BACK_DELAY_S)
        current = self._current()
        if current is None or current.epoch != self.holder.epoch:
            raise RunLocked(self._refusal(current))
        self._heartbeat = threading.Thread(target=self._renew, name="run-lock-heartbeat", daemon=True)
        self._heartbeat.start()

    def _write_lease(self) -> None:
        self.holder = Holder(**{**asdict(self.holder), "heartbeat": time.time()})
        atomic_write_json(self.path, asdict(self.holder))

    def _renew(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            current = self._current()
            if current is None or current.epoch != self.holder.epoch:
                return  # taken over: the fence stops our workers' writes
            self._write_lease()

    def _refusal(self, holder: Holder | None) -> str:
        who = holder.describe() if holder else "a run that is starting"
        return (f"{self.path.parent} is in use by another run: {who}; wait for it to end, or give another "
                "--output")


def _lease_expired(holder: Holder) -> bool:
    if holder.host == socket.gethostname() and not process_alive(holder.pid, holder.process_start):
        return True
    return time.time() - holder.heartbeat > STALE_AFTER_S
