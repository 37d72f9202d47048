"""Train the included GPT on the run's token shards, as the last stage of a pipeline run (global stage).

The runner calls pipeline/train/train.py on the driver's machine with the run's shards folder and
<run>/train as its out_dir; `pipeline train --config` does the same with a training config of its own (the way to
train on a GPU machine from shards made elsewhere). The settings are the trainer's (pipeline/train/settings.py).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pipeline.train.settings import TrainingSettings
from stages.base import GlobalContext, GlobalStage, StageSetupError


class TrainStageConfig(TrainingSettings):
    """The trainer's settings; the shards are the run's and the out_dir is <run>/train."""


class Train(GlobalStage):
    name = "train"
    Config = TrainStageConfig
    directory = "train"
    reads_documents = False

    @classmethod
    def prepare(cls, config: TrainStageConfig, workspace: Path) -> TrainStageConfig:
        if importlib.util.find_spec("torch") is None:
            raise StageSetupError("", "the train stage needs torch: pip install -e '.[train]' "
                                  "(it pins torch==2.13.0)")
        return config

    @classmethod
    def run(cls, settings: TrainStageConfig, context: GlobalContext) -> None:
        """In the driver's process, or, when its tasks ask for a GPU, as one Ray task on a node that has one (its
        log lines then come back through Ray's worker log, prefixed by the task)."""
        from pipeline.global_stages import run_train

        if context.options.get("num_gpus"):
            import ray

            context.step("on a GPU node", None, "")
            progress_enabled = bool(context.progress is not None and context.progress.enabled)
            ray.get(ray.remote(run_train).options(**context.options).remote(settings, context.run, None,
                                                                           progress_enabled))
        else:
            run_train(settings, context.run, context.progress)
