"""Train the included GPT on the run's token shards, as the last stage of a pipeline run (global stage).

The runner calls pipeline/train/train.py with the run's shards folder and <run>/train as its out_dir (in the
driver's process on one machine, in a Ray task on a cluster of several nodes or on a GPU node: see `Train.run`);
`pipeline train --config` does the same with a training config of its own (the way to train on a GPU machine from
shards made elsewhere). The settings are the trainer's (pipeline/train/settings.py).
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
        """In the driver's process when the run has one machine (the embedded local Ray, or a one-node cluster: the
        driver's machine is the only one, and the progress line shows each step); as one Ray task when its tasks ask
        for a GPU (on a node that has one) or the cluster has several nodes (on a worker node with the CPUs that
        ray.stages.train asks for, not on the driver's). A task's log lines come back through Ray's worker log,
        prefixed by the task."""
        from pipeline.global_stages import run_train

        if context.options.get("num_gpus") or context.nodes > 1:
            import ray

            context.step("on a GPU node" if context.options.get("num_gpus") else "in a Ray task", None, "")
            progress_enabled = bool(context.progress is not None and context.progress.enabled)
            ray.get(ray.remote(run_train).options(**context.options).remote(settings, context.run, None,
                                                                           progress_enabled))
        else:
            run_train(settings, context.run, context.progress)
