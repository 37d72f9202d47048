"""Files the workers need, staged in the run directory: the one storage a cluster's workers are sure to share.

A stage's `prepare` runs once, on the driver (`prepare_stages`), and leaves its settings naming files that may exist
only there: the fastText model in the driver's cache, a classifier it trained, a word list on its disk. Every setting
a stage lists in `file_settings` (a path, or a list of paths) is staged: the file is copied to
<run>/_assets/<sha256 prefix>-<file name> (atomically; a file already staged under that name is not copied again,
since the name carries its checksum), and the setting the workers get becomes a reference to it,
`staged:_assets/<name>#sha256=<hex>`.

A worker turns each reference back into a local file with `local_asset`: its node's copy in
$CCPIPELINE_CACHE/assets (default ~/.cache/ccpipeline/assets), made once per node under a file lock and checked
against the checksum. A cached copy with other bytes is replaced; a staged file with other bytes is an AssetError.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator

from pipeline.config import ConfigError, RunConfig
from pipeline.io.atomic import publish_file
from pipeline.io.download import cache_base, file_sha256
from pipeline.io.storage import RemotePath, StoragePath
from pipeline.run_dir import RunDir
from stages import STAGES
from stages.base import StageSetupError

if TYPE_CHECKING:
    from stages.base import StageConfig

ASSETS = "_assets"
_REFERENCE = re.compile(r"staged:(?P<name>_assets/[^/#]+)#sha256=(?P<sha256>[0-9a-f]{64})")
_CHUNK = 8 << 20


class AssetError(Exception):
    """A staged file is missing from the run directory, or its bytes are not those that were staged."""


def stage_asset(file: Path, run_root: StoragePath) -> str:
    """Copy a driver-side file into the run directory (once) and return the reference that names it."""
    checksum = file_sha256(file)
    name = f"{ASSETS}/{checksum[:16]}-{file.name}"
    staged = run_root / name
    if not (staged.is_file() and _size(staged) == file.stat().st_size):
        publish_file(file, staged, keep_local=True)
    return f"staged:{name}#sha256={checksum}"


def is_staged(value: object) -> bool:
    return isinstance(value, str) and _REFERENCE.fullmatch(value) is not None


def local_asset(reference: str, run_root: StoragePath) -> Path:
    """This node's verified copy of a staged file, copied from the run directory when missing or damaged."""
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        raise ValueError(f"{reference!r} is not a staged asset")
    name, checksum = match["name"], match["sha256"]
    target = cache_base() / "assets" / PurePosixPath(name).name
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_name(f".{target.name}.lock")):
        if target.is_file() and file_sha256(target) == checksum:
            return target
        _copy_checked(run_root / name, target, checksum)
    return target


def prepare_stages(config: RunConfig, run: RunDir) -> dict:
    """Let each stage fetch or build what it needs, once, on the driver; returns the config workers get, in which
    the files the stages name are staged in the run directory, not driver paths.

    A stage that cannot be set up stops the run here, before any work, with the setting at fault named.
    """
    resolved = config.resolved()
    for index, (name, settings) in enumerate(config.stage_settings()):
        try:
            prepared = STAGES[name].prepare(settings, run.root)
        except StageSetupError as exc:
            where = f"stages[{index}].{name}" + (f".{exc.setting}" if exc.setting else "")
            raise ConfigError(f"{where}: {exc.message}") from None
        staged = staged_settings(prepared, STAGES[name].file_settings, run.root)
        resolved["stages"][index] = {name: staged.model_dump(mode="json")}
    return resolved


def staged_settings(settings: StageConfig, file_settings: tuple[str, ...], run_root: StoragePath) -> StageConfig:
    """The settings with each named file (or each file of a list of them) staged in the run directory (driver
    side)."""
    def staged(path: str) -> str:
        return stage_asset(Path(path).expanduser(), run_root)

    return settings.model_copy(update={name: _each_file(getattr(settings, name), staged) for name in file_settings})


def local_settings(settings: StageConfig, file_settings: tuple[str, ...], run_root: StoragePath) -> StageConfig:
    """The settings with each staged file made this node's local copy (worker side); plain paths stay."""
    def local(value: str) -> str:
        return str(local_asset(value, run_root)) if is_staged(value) else value

    return settings.model_copy(update={name: _each_file(getattr(settings, name), local) for name in file_settings})


def _each_file(value: str | list[str] | None, change: Callable[[str], str]) -> str | list[str] | None:
    """A file setting's value with `change` applied to its file, or to each file of a list (`domain_lists`)."""
    if value is None:
        return None
    return [change(item) for item in value] if isinstance(value, list) else change(value)


def _copy_checked(source: StoragePath, target: Path, checksum: str) -> None:
    """Copy to a temporary name beside `target`, hashing on the way, and rename into place if the bytes match."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        with _open(source) as stream, open(partial, "wb") as out:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != checksum:
            raise AssetError(f"{source} has sha256 {digest.hexdigest()}, not the {checksum} it was staged with")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _open(source: StoragePath) -> BinaryIO:
    try:
        if isinstance(source, RemotePath):
            return source.filesystem.open_input_stream(source.path, compression=None)
        return open(source, "rb")
    except FileNotFoundError:
        raise AssetError(f"{source} is missing: the run directory lost a file the driver staged for the workers "
                         "(run again to stage it anew)") from None


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock` (one node's workers copy a file once; the others wait, then reuse it)."""
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _size(path: StoragePath) -> int:
    return path.size() if isinstance(path, RemotePath) else path.stat().st_size
