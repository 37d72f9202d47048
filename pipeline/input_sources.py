"""The input files a run gets from sources other than the local paths it names (those are plan.configured_files):
the demo crawl, generated for the run, and remote files (input URIs, Common Crawl), listed with their sizes and
read in place by the workers. Both are handed to planning (plan.plan_inputs) as files the run always reads.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import ConfigError, RunConfig
from pipeline.run_dir import RunDir


def demo_crawl_files(config: RunConfig, run: RunDir) -> list[str]:
    """The demo crawl's files (`input.demo_crawl`), written with their labels if not there yet: into the configured
    directory, else the run directory. A run directory on an object store gets them by way of this machine's cache,
    so that every node reads them from the run directory."""
    demo = config.input.demo_crawl
    if demo is None:
        return []
    from pipeline.demo_crawl import write_demo_crawl, write_demo_labels

    if demo.directory:
        directory = Path(demo.directory)
    elif isinstance(run.root, Path):
        directory = run.root / "demo-crawl"
    else:
        from pipeline.io.atomic import atomic_write_bytes
        from pipeline.io.download import cache_base

        directory = cache_base() / "demo-crawl" / f"{demo.pages}-{demo.files}-{demo.seed}"
        write_demo_labels(directory, seed=demo.seed)
        stored = []
        for path in write_demo_crawl(directory, pages=demo.pages, files=demo.files, seed=demo.seed):
            target = run.root / "demo-crawl" / path.name
            if not target.exists():  # the same seed writes the same bytes: a resumed run finds them there
                atomic_write_bytes(target, path.read_bytes())
            stored.append(str(target))
        return stored
    write_demo_labels(directory, seed=demo.seed)
    return [str(path) for path in write_demo_crawl(directory, pages=demo.pages, files=demo.files, seed=demo.seed)]


def remote_files(config: RunConfig) -> tuple[dict[str, dict], dict[str, str]]:
    """The configured Common Crawl files and input URIs, listed with their sizes (read in place by the workers,
    never downloaded here), and the files that could not be listed or sized (reported as failed input, like a
    failed unit: the run exits 1 and the same command tries them again)."""
    from pipeline.io.commoncrawl import resolve
    from pipeline.io.download import DownloadError
    from pipeline.io.remote import is_uri, list_uris

    files, failures = list_uris([p for p in config.input.paths if is_uri(p)])
    if config.input.commoncrawl is not None:
        try:
            crawl_files, crawl_failures = resolve(config.input.commoncrawl)
        except DownloadError as exc:  # no manifest: nothing to plan
            raise ConfigError(f"input.commoncrawl: {exc}") from None
        files, failures = {**files, **crawl_files}, {**failures, **crawl_failures}
    return files, failures
