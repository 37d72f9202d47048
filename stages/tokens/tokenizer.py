"""BPE tokenizer: train a sentencepiece model on a uniform sample of the cleaned documents, or use a given one.

A given model is a sentencepiece model or a Hugging Face tokenizer.json (stages/tokens/files.py), copied into the
run as it is.

A global stage: the runner (stages/tokens/runner.py) draws the sample on Ray and calls `train_model` on the
driver. The pure functions here know nothing of Ray or the run directory.

Settings chosen so that decode(encode(text)) == text for any text: no normalisation (`identity`), spaces kept as
they are (no dummy prefix, no whitespace collapsing), byte fallback for any character outside the vocabulary, and
the newline as a piece of its own (sentencepiece cannot learn it from line-split training input). Training is
deterministic: the same sample and settings give a byte-identical model file.

The sample is a bottom-k sample: the `sample_documents` documents whose seeded hash of their id is smallest. It is
uniform over documents, the same whatever the order or partitioning of the input, and each part can propose its
own k smallest, so no process ever holds more than k candidates per part.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from pydantic import Field, model_validator

from stages.base import GlobalContext, GlobalStage, StageConfig, StageSetupError
from stages.tokens.files import BOTH_KINDS, TokenizerFileError, load_tokenizer

# sentencepiece's piece ids: unknown, begin and end of text. The end-of-text piece separates documents.
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
MAX_SENTENCE_BYTES = 1 << 16  # longer training lines are cut (sentencepiece silently skips longer ones)
NEWLINE = "\n"
EOS_TOKEN_DESCRIPTION = ("The token put after each document, for a given `model`; default: a sentencepiece "
                         "model's own end-of-text piece, else the first of GPT-2's, Llama's and Gemma's end-of-text "
                         "tokens in its vocabulary.")


class TokenizerConfig(StageConfig):
    model: str | None = Field(
        None, description=f"An existing tokenizer to use instead of training one: {BOTH_KINDS} (e.g. GPT-2's or "
        "Llama's), copied into the run as it is.",
    )
    eos_token: str | None = Field(None, description=EOS_TOKEN_DESCRIPTION)
    vocab_size: int = Field(32_000, ge=300, le=1 << 20,
                            description="Most pieces in the trained vocabulary: a sample too small for more trains "
                            "fewer (the stage warns; tokenizer.json records both).")
    sample_documents: int = Field(
        100_000, ge=1, description="Documents in the uniform training sample (seeded bottom-k by id hash)."
    )
    sample_chars_per_document: int = Field(
        100_000, ge=100, description="Characters of a sampled document used for training (its beginning)."
    )
    character_coverage: float = Field(
        0.9995, gt=0, le=1, description="Share of the sample's characters the vocabulary covers; the rarest others "
        "are spelled in bytes (byte_fallback).",
    )
    byte_fallback: bool = Field(
        True, description="Encode characters outside the vocabulary as UTF-8 byte pieces: nothing becomes <unk>."
    )
    split_digits: bool = Field(True, description="Every digit its own piece (as Llama), so numbers tokenise evenly.")
    special_tokens: list[str] = Field(
        default_factory=list, description="Extra pieces kept whole and never split (chat markers, e.g. '<user>').",
    )
    seed: int = Field(0, ge=0, description="Seed of the sample.")

    @model_validator(mode="after")
    def _special_tokens_are_distinct(self) -> "TokenizerConfig":
        if len(set(self.special_tokens)) != len(self.special_tokens) or any(not t for t in self.special_tokens):
            raise ValueError("special_tokens must be distinct non-empty strings")
        return self


class GivenModelStage(GlobalStage):
    """A global stage whose config may name an existing tokenizer file (`model`, with its `eos_token`), checked at
    set-up."""

    @classmethod
    def prepare(cls, config: StageConfig, workspace: Path) -> StageConfig:
        if config.model is None:
            if config.eos_token is not None:
                raise StageSetupError("eos_token", "applies to a given model only: set model too")
            return config
        return config.model_copy(update={"model": checked_model_path(config.model, config.eos_token)})


class Tokenizer(GivenModelStage):
    name = "tokenizer"
    Config = TokenizerConfig
    directory = "tokenizer"

    @classmethod
    def run(cls, settings: TokenizerConfig, context: GlobalContext) -> None:
        from stages.tokens.runner import run_tokenizer

        run_tokenizer(settings, context.run, source=context.source, workers=context.workers,
                      options=context.options, step=context.step)


def checked_model_path(model: str, eos_token: str | None = None) -> str:
    """The absolute path of a given tokenizer file; a missing or unreadable one, or one without the end-of-text
    token, stops the run at set-up."""
    path = Path(model).expanduser()
    if not path.is_file():
        raise StageSetupError("model", f"{path} does not exist")
    try:
        load_tokenizer(path.read_bytes(), eos_token, source=str(path)).eos_id
    except TokenizerFileError as exc:
        raise StageSetupError("model", str(exc)) from None
    return str(path.resolve())


def id_hashes(ids: Sequence[str], seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each document id (blake2b), for sampling, shuffling and splitting: stable across
    machines, Python versions and runs."""
    key = seed.to_bytes(8, "little")
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8, key=key).digest(), "little") for i in ids),
        dtype=np.uint64, count=len(ids),
    )


def bottom_k(hashes: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest hashes (ties broken by index), in hash order."""
    if len(hashes) <= k:
        return np.lexsort((np.arange(len(hashes)), hashes))
    candidates = np.argpartition(hashes, k - 1)[:k]
    return candidates[np.lexsort((candidates, hashes[candidates]))]


def training_lines(texts: Iterable[str], chars_per_document: int) -> Iterator[str]:
    """The sample as sentencepiece wants it: one line at a time, none longer than MAX_SENTENCE_BYTES."""
    for text in texts:
        for line in text[:chars_per_document].split(NEWLINE):
            if not line.strip():
                continue
            encoded = line.encode("utf-8", "replace")
            for start in range(0, len(encoded), MAX_SENTENCE_BYTES):
                yield encoded[start:start + MAX_SENTENCE_BYTES].decode("utf-8", "ignore")


def train_model(lines: Iterable[str], config: TokenizerConfig, threads: int = 1) -> bytes:
    """Train a BPE model; returns the model file's bytes."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=config.vocab_size,
        hard_vocab_limit=False,  # a small sample yields fewer pieces rather than an error
        character_coverage=config.character_coverage, byte_fallback=config.byte_fallback,
        split_digits=config.split_digits, user_defined_symbols=[NEWLINE, *config.special_tokens],
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
        allow_whitespace_only_pieces=True, max_sentence_length=MAX_SENTENCE_BYTES,
        input_sentence_size=0, shuffle_input_sentence=False,
        unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=-1,
        num_threads=max(1, threads), minloglevel=2,
    )
    return _without_thread_count(model.getvalue())


def _without_thread_count(model: bytes) -> bytes:
    """The model file records the trainer's thread count, the one thing in it that threads do not otherwise
    change: set it to 1, so that the same sample gives the same file on any machine."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model)
    proto.trainer_spec.num_threads = 1
    return proto.SerializeToString()


def load_model(model: bytes):
    """A SentencePieceProcessor from a model file's bytes."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=model)
