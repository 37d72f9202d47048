"""Sample text from a training checkpoint with the run's tokenizer: `pipeline sample --checkpoint OUT_DIR`."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.train.model import GPT, GPTConfig
from pipeline.train.train import CHECKPOINT
from stages.tokens.files import load_tokenizer


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[GPT, dict]:
    """The model of a checkpoint file (or of an out_dir holding checkpoint.pt), in eval mode, and the checkpoint."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    model = GPT(GPTConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), checkpoint


def sample(checkpoint: str | Path, prompt: str = "", max_new_tokens: int = 200, temperature: float = 0.8,
           top_k: int | None = 200, samples: int = 1, seed: int = 0, tokenizer: str | None = None,
           device: str = "cpu") -> list[str]:
    """Continuations of `prompt` (an empty prompt starts a new document), each ending at the end-of-document
    token or after max_new_tokens; the prompt itself is not repeated."""
    model, state = load_checkpoint(checkpoint, device)
    path = Path(tokenizer or state["tokenizer"])
    encoder = load_tokenizer(path.read_bytes(), source=str(path))  # either kind: the file says which
    eos = state["eos_id"]
    generator = torch.Generator(device=device).manual_seed(seed)
    texts = []
    for _ in range(samples):
        context = [eos] + encoder.token_ids([prompt])[0]  # as after a previous document in the training stream
        idx = torch.tensor([context], dtype=torch.long, device=device)
        out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, stop_token=eos,
                             generator=generator)[0, len(context):].tolist()
        texts.append(encoder.decode([t for t in out if t != eos]))
    return texts
