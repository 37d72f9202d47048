"""The global stages of a run (dedup, tokenizer, tokenize, train): which are current, which must run, and running
them in order.

Each global stage reads what the per-document pass kept, directly or through the stages before it, so its output
is current only for the documents it was made from. Before a stage starts, the runner writes what it is about to
consume into <stage dir>/_inputs.json (a digest of the names and sizes of the documents/ parts: each part is
written once, whole, by its unit); the stage's _done.json then vouches for that input only. A re-run whose
documents changed (a unit that failed before and succeeded now, input files that arrived late) finds the digest
changed, clears the stage's directory and runs it again, and every stage after it. A stage that starts also checks
that the documents it reads are as many as the stage before it kept: a lost or truncated part stops it.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from pipeline.config import RunConfig, StageResources
from pipeline.io.atomic import atomic_write_json
from pipeline.io.storage import StoragePath, file_sizes, parquet_file, remove_tree
from pipeline.progress import NoProgress, RunProgress, train_step
from pipeline.ray_session import quiet_ray_data, verbose
from pipeline.run_dir import RunDir
from pipeline.stats import StageTally
from stages import STAGES
from stages.base import GlobalContext

INPUTS_FILE = "_inputs.json"
DONE_FILE = "_done.json"
# Global stages that can run in this process, on a run small enough (see RayConfig.in_process_max_mb).
IN_PROCESS_GLOBAL_STAGES = {"dedup"}


class AccountingError(RuntimeError):
    """The documents a stage reads are not the ones the stages before it kept."""


def documents_digest(documents: StoragePath) -> str:
    """What the global stages consume: the per-document pass's parts, by name and size (one listing)."""
    lines = sorted(f"{name}\t{size}" for name, size in file_sizes(documents, "part-*.parquet").items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def stage_directory(run: RunDir, name: str) -> StoragePath:
    return run.root / STAGES[name].directory


def is_current(run: RunDir, name: str, digest: str) -> bool:
    """Whether the stage finished on exactly these documents."""
    return (stage_directory(run, name) / DONE_FILE).exists() and _made_from(run, name) == digest


def stage_tally(run: RunDir, name: str) -> StageTally:
    return StageTally.from_dict(json.loads((stage_directory(run, name) / DONE_FILE).read_text())["stage"])


def current_stages(config: RunConfig, run: RunDir, digest: str) -> list[str]:
    """The global stages whose output is current, in order, up to the first that is not."""
    current = []
    for name, _ in config.global_stages():
        if not is_current(run, name, digest):
            break
        current.append(name)
    return current


def _made_from(run: RunDir, name: str) -> str | None:
    try:
        return json.loads((stage_directory(run, name) / INPUTS_FILE).read_text())["documents"]
    except (OSError, ValueError, KeyError):
        return None


def clear_stale(config: RunConfig, run: RunDir, digest: str) -> None:
    """Remove the output of every global stage made from other documents than these (with the stage's other
    outputs), so that nothing stale is left for a reader to take as the run's; a crashed attempt on these same
    documents is kept to resume from."""
    for name, _ in config.global_stages():
        if _made_from(run, name) != digest:
            for stale in (stage_directory(run, name), *(run.root / other for other in STAGES[name].other_outputs)):
                remove_tree(stale)


def begin_stage(run: RunDir, name: str, digest: str) -> None:
    """Record what the stage is about to consume (its directory holds no output made from anything else)."""
    if _made_from(run, name) != digest:
        atomic_write_json(stage_directory(run, name) / INPUTS_FILE, {"documents": digest})


def source(config: RunConfig, run: RunDir, name: str) -> StoragePath:
    """The documents a global stage reads: those of the last earlier global stage that writes documents (dedup),
    else what the per-document stages kept."""
    found = run.documents
    for earlier, _ in config.global_stages():
        if earlier == name:
            break
        if STAGES[earlier].writes_documents:
            found = run.root / STAGES[earlier].directory / "documents"
    return found


def check_source(name: str, documents: StoragePath, expected: int, after: str) -> None:
    """Raise AccountingError unless the Parquet parts under `documents` hold `expected` rows (what `after` kept)."""
    parts = sorted(documents.glob("part-*.parquet")) if documents.exists() else []

    def rows(path: StoragePath) -> int:
        try:
            return parquet_file(path).metadata.num_rows
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise AccountingError(f"{name}: cannot read {path}: {exc}") from None

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = sum(pool.map(rows, parts))
    if found != expected:
        raise AccountingError(f"{name}: {documents} holds {found:,} documents in {len(parts):,} parts, but {after} "
                              f"kept {expected:,}")


def run_stage(name: str, settings, config: RunConfig, run: RunDir, progress: RunProgress | None = None,
              in_process: bool = False) -> None:
    """Run one global stage over the documents it reads, its tasks asking Ray for what ray.stages.<name> says,
    or (in_process) in this process; its steps show on `progress`."""
    progress = progress or NoProgress()
    context = GlobalContext(run=run, source=source(config, run, name), in_process=in_process, rejects=config.rejects,
                            step=progress.steps(name), progress=progress)
    if not in_process:
        import ray
        from ray.data import DataContext  # here: a run without global stages saves Ray Data's start-up

        resources = config.ray.stages.get(name, StageResources())
        context.options = resources.ray_options()
        context.workers = max(1, int(ray.cluster_resources().get("CPU", 1) // resources.cpus))
        context.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        quiet_ray_data(verbose())
        data_context = DataContext.get_current()  # our progress line and summary replace Ray Data's
        data_context.enable_progress_bars = False
        data_context.print_on_execution_start = False
    STAGES[name].run(settings, context)


def run_train(settings, run: RunDir, progress: RunProgress | None, print_log: bool = False) -> None:
    """The trainer on the run's shards, in this process; its counts and final figures go to
    <run>/train/_done.json. Its log lines move `progress` (steps, loss) and stay above it; without a progress (in
    a Ray task) they are printed when `print_log`."""
    from pipeline.train.settings import TrainConfig
    from pipeline.train.train import train

    started = time.monotonic()
    config = TrainConfig(**settings.model_dump(), shards=str(run.shards), out_dir=str(run.train))
    if progress is not None:
        progress.start("train", total=config.max_steps, unit="steps")
    figures = train(config, log=_train_log(progress, print_log))
    documents = json.loads((run.shards / "manifest.json").read_text())["documents"]
    tally = StageTally("train", rows_in=documents, kept=documents, seconds=time.monotonic() - started)
    atomic_write_json(run.train / DONE_FILE, {"stage": tally.to_dict(), "final": figures})


def _train_log(progress: RunProgress | None, print_log: bool) -> Callable[[str], None]:
    """Where the trainer's log lines go: a step line moves the progress to its step and shows its loss."""
    def log(line: str) -> None:
        if progress is None:
            if print_log:
                print(f"train {line}", flush=True)
            return
        step = train_step(line)
        if step is not None:
            progress.update(step, line.partition(": ")[2].partition(",")[0])
        if progress.interactive:  # above the bar; a log gets the throttled status line instead
            progress.note(f"train {line}")
    return log


def run_global_stages(config: RunConfig, run: RunDir, digest: str, documents_kept: int, progress: RunProgress,
                      in_process: bool, error_text) -> dict[str, str]:
    """Run every global stage that is not current on the run's documents (`digest`, see documents_digest), and
    every one after it, in order; returns {stage: error} for the stage that failed (the stages after it need its
    output and are not run). Stale outputs must have been cleared (clear_stale)."""
    current = current_stages(config, run, digest)
    expected, after = documents_kept, "the per-document stages"
    for name, settings in config.global_stages():
        if name not in current:
            try:
                if STAGES[name].reads_documents:
                    check_source(name, source(config, run, name), expected, after)
                begin_stage(run, name, digest)
                run_stage(name, settings, config, run, progress, in_process)
            except Exception as exc:  # reported by name; the stages after it need its output
                return {name: error_text(exc)}
        expected, after = stage_tally(run, name).kept, name
    return {}
