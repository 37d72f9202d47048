"""Loss in bits per byte of text: what a trained model makes of held-out reference texts, comparable across
tokenizers (issue 24's evaluation).

A model's loss per token depends on how many bytes a token holds, so variants with other tokenizers (or a tokenizer
trained on other data) cannot be compared by it. Bits per byte can: the total negative log-likelihood of a text's
tokens, in bits, over the text's UTF-8 bytes. Each text is encoded alone and starts after an end-of-document token,
as documents start in the training shards, so every one of its tokens is predicted (the end-of-document token after
it is not: its bytes are none of the text's). A text longer than the model's context is read in windows of
`block_size` tokens, each starting where the last ended, with the token before as its first input: every token is
predicted exactly once, with at least the window's earlier tokens as context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F


@dataclass
class TextLoss:
    """Summed over some texts: negative log-likelihood in nats, tokens predicted, UTF-8 bytes."""

    nats: float = 0.0
    tokens: int = 0
    bytes: int = 0

    @property
    def bits_per_byte(self) -> float:
        return self.nats / math.log(2) / self.bytes if self.bytes else float("nan")

    @property
    def bits_per_token(self) -> float:
        return self.nats / math.log(2) / self.tokens if self.tokens else float("nan")


@torch.no_grad()
def text_loss(model: torch.nn.Module, token_ids: Sequence[Sequence[int]], texts: Sequence[str], eos_id: int,
              block_size: int, device: torch.device | str = "cpu", batch_size: int = 32) -> TextLoss:
    """The summed loss of `model` (the trainer's GPT, or any module mapping (B, T) ids to (B, T, V) logits as its
    first output) on each text's `token_ids`, with the texts' bytes. Windows of full length go through the model
    `batch_size` at a time, shorter ones (a text's last) one by one: the sum is the same."""
    was_training = model.training
    model.eval()
    total = TextLoss()
    full: list[torch.Tensor] = []

    def score(windows: torch.Tensor) -> None:
        logits = model(windows[:, :-1], windows[:, 1:])[0]
        total.nats += F.cross_entropy(logits.float().flatten(0, 1), windows[:, 1:].flatten(), reduction="sum").item()

    try:
        for ids, text in zip(token_ids, texts, strict=True):
            sequence = torch.tensor([eos_id, *ids], dtype=torch.long, device=device)
            for start in range(0, len(ids), block_size):
                window = sequence[start:start + block_size + 1]
                if len(window) == block_size + 1:
                    full.append(window)
                    if len(full) == batch_size:
                        score(torch.stack(full))
                        full.clear()
                else:
                    score(window.unsqueeze(0))
            total.tokens += len(ids)
            total.bytes += len(text.encode("utf-8"))
        if full:
            score(torch.stack(full))
    finally:
        model.train(was_training)
    return total
