"""Bits per byte, checked by hand: a model that knows nothing costs log2(V) bits a token, a bigram table costs the
log-probabilities written in the test, and reading a long text in windows predicts every token once."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the trainer extra (torch==2.13.0) is not installed")

from pipeline.ablation.bits_per_byte import text_loss  # noqa: E402
from pipeline.train.model import GPT, GPTConfig  # noqa: E402

EOS = 0


class BigramTable(torch.nn.Module):
    """The next token's log-probabilities depend on the previous token only, from a table given in full."""

    def __init__(self, log_probs: torch.Tensor):
        super().__init__()
        self.log_probs = log_probs

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        return self.log_probs[idx], None


def bigram(vocab: int, probabilities: dict[tuple[int, int], float]) -> BigramTable:
    """Given P(next | previous) for some pairs; each previous token's remaining mass spread over the other tokens."""
    table = torch.zeros(vocab, vocab, dtype=torch.float64)
    for previous in range(vocab):
        given = {following: p for (before, following), p in probabilities.items() if before == previous}
        rest = (1 - sum(given.values())) / (vocab - len(given))
        table[previous] = torch.tensor([given.get(following, rest) for following in range(vocab)])
    return BigramTable(table.log())


def test_a_model_that_knows_nothing_costs_log2_of_the_vocabulary_per_token():
    """The trainer's GPT with every weight zero gives equal logits: 2 tokens of a 16-token vocabulary for 4 bytes
    are 2 * 4 bits = 8 bits, 2 bits a byte."""
    model = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=1, n_embd=8))
    for parameter in model.parameters():
        torch.nn.init.zeros_(parameter)
    loss = text_loss(model, [[3, 5]], ["abcd"], EOS, block_size=8)
    assert (loss.tokens, loss.bytes) == (2, 4)
    assert loss.bits_per_token == pytest.approx(4.0, abs=1e-6)
    assert loss.bits_per_byte == pytest.approx(2.0, abs=1e-6)


def test_a_bigram_table_costs_the_log_probabilities_of_its_pairs():
    """Text "héllo" (6 bytes: é is two) as tokens 1 2 3 after end-of-document 0: P(1|0) = 1/2, P(2|1) = 1/4,
    P(3|2) = 1/8, so 1 + 2 + 3 = 6 bits, 1 bit a byte, 2 bits a token."""
    model = bigram(8, {(0, 1): 0.5, (1, 2): 0.25, (2, 3): 0.125})
    loss = text_loss(model, [[1, 2, 3]], ["héllo"], EOS, block_size=16)
    assert loss.nats / math.log(2) == pytest.approx(6.0, abs=1e-6)
    assert loss.bits_per_byte == pytest.approx(1.0, abs=1e-6) and loss.bits_per_token == pytest.approx(2.0)


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 64])
def test_long_texts_read_in_windows_predict_every_token_once_after_its_previous_token(block_size):
    model = bigram(8, {(0, 1): 0.5, (1, 2): 0.25, (2, 3): 0.125, (3, 1): 0.9})
    ids = [1, 2, 3, 1, 2, 3, 1, 4, 5]
    expected = sum(-float(model.log_probs[before, after]) for before, after in zip([EOS, *ids], ids))
    loss = text_loss(model, [ids, ids[:2]], ["x" * 20, "yz"], EOS, block_size=block_size)
    assert (loss.tokens, loss.bytes) == (11, 22)
    # float32 cross-entropy: about 1e-6 of rounding in a sum of 14 nats, which rounds differently on other CPUs;
    # a token predicted twice or not at all would move it by more than 0.1
    assert loss.nats == pytest.approx(expected + -float(model.log_probs[EOS, 1] + model.log_probs[1, 2]), abs=1e-5)


def test_windows_scored_in_batches_sum_to_the_windows_scored_one_by_one():
    """Full windows go through the model together, a text's shorter last window alone: the same total as every
    window alone, on a randomly initialised GPT and texts of many lengths."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=16))
    generator = torch.Generator().manual_seed(1)
    token_ids = [torch.randint(1, 50, (length,), generator=generator).tolist() for length in (1, 7, 8, 9, 17, 40, 3)]
    texts = ["x" * (2 * len(ids)) for ids in token_ids]
    alone = text_loss(model, token_ids, texts, EOS, block_size=8, batch_size=1)
    together = text_loss(model, token_ids, texts, EOS, block_size=8, batch_size=4)
    assert (together.tokens, together.bytes) == (alone.tokens, alone.bytes) == (85, 170)
    assert together.nats == pytest.approx(alone.nats, rel=1e-6)
