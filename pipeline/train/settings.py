"""Training settings, without torch: the `train` stage of a pipeline config validates them on a machine that has
only the data pipeline installed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.io.storage import StoragePath, storage_path


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_layer: int = Field(12, ge=1, description="Transformer blocks.")
    n_head: int = Field(12, ge=1, description="Attention heads per block (n_embd must be a multiple).")
    n_embd: int = Field(768, ge=8, description="Width of the residual stream.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on embeddings, attention and MLP outputs.")
    bias: bool = Field(False, description="Biases in linear layers and LayerNorms (GPT-2 had them).")

    @model_validator(mode="after")
    def _heads_split_the_width(self) -> ModelSettings:
        """Each head gets n_embd / n_head channels: found here, not when the model is built after the pipeline."""
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        return self


class TrainingSettings(BaseModel):
    """How to train: model size, batch, schedule, device. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    model: ModelSettings = Field(default_factory=ModelSettings, description="The GPT's size (GPT-2 small by default).")
    block_size: int = Field(1024, ge=8, description="Tokens of context per sequence.")
    batch_size: int = Field(16, ge=1, description="Sequences per micro-batch, of all data-parallel ranks together "
                            "(each takes an equal share: a multiple of their number).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_steps: int = Field(1000, ge=1, description="Optimizer steps; the cosine decay ends here.")
    learning_rate: float = Field(6e-4, gt=0, description="Peak learning rate, reached after warmup_steps.")
    min_learning_rate: float = Field(6e-5, ge=0, description="Learning rate at max_steps.")
    warmup_steps: int = Field(100, ge=0, description="Steps of linear warmup.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay on matrices (not biases or norms).")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1.")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW beta2.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the gradient norm to this; 0: no clipping.")
    eval_interval: int = Field(100, ge=1, description="Steps between validation losses (and at the last step).")
    eval_batches: int = Field(20, ge=1, description="Validation micro-batches per evaluation.")
    log_interval: int = Field(10, ge=1, description="Steps between printed log lines (log.jsonl has every step).")
    checkpoint_interval: int = Field(500, ge=1, description="Steps between checkpoints (and at the last step).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when there is one.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="auto: bfloat16 on CUDA, else float32.")
    compile: bool = Field(False, description="torch.compile the model (worth it on a GPU; slow to start on a CPU).")
    seed: int = Field(0, description="Seed of the initialisation, dropout and the batches.")

    @model_validator(mode="after")
    def _schedule_decays(self) -> TrainingSettings:
        if self.min_learning_rate > self.learning_rate:
            raise ValueError(f"min_learning_rate {self.min_learning_rate} is above learning_rate "
                             f"{self.learning_rate}: the schedule would rise instead of decay")
        return self


class TrainConfig(TrainingSettings):
    """A training run: the settings plus where the shards are and where checkpoints go."""

    shards: str = Field(description="The shards folder (with manifest.json) of a pipeline run, or the run directory.")
    out_dir: str = Field(description="Checkpoint and log.jsonl go here; an existing checkpoint is resumed.")

    def shards_dir(self) -> StoragePath:
        """The shards folder named by `shards` (local, or on an object store: see token_shards.local_shards)."""
        path = storage_path(self.shards)
        return path / "shards" if (path / "shards" / "manifest.json").exists() else path
