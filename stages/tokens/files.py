"""A tokenizer from a file's bytes, whichever of the two formats it is: a sentencepiece model (the tokenizer stage's
own, Llama 2's) or a Hugging Face tokenizer.json (the `tokenizers` package: GPT-2, Llama 3).

One interface for both (`TokenizerFile`), so that the tokenize stage, the CLI and the sampler never ask which kind
they hold: the vocabulary size (which sets the token dtype), the end-of-text id that separates documents, encoding
with that id after each text, and decoding. The kind is told by the first byte: a tokenizer.json is a JSON object,
and a sentencepiece model (protobuf) never starts with "{".

Documents are encoded without the tokenizer's own special tokens (no BOS: a Hugging Face post-processor is not
applied), so that every kind gives text tokens followed by exactly one end-of-text id.
"""

from __future__ import annotations

import codecs
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Sequence

import numpy as np

SENTENCEPIECE, HUGGING_FACE = "sentencepiece", "huggingface"
FILE_NAMES = {SENTENCEPIECE: "tokenizer.model", HUGGING_FACE: "tokenizer.hf.json"}  # a run's copy, by kind
END_OF_TEXT_TOKENS = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>")  # GPT-2, Llama 2, Llama 3, Gemma
BOTH_KINDS = "a sentencepiece model or Hugging Face tokenizer.json"  # for messages and setting descriptions


class TokenizerFileError(ValueError):
    """A file that is neither kind of tokenizer, or whose end-of-text token cannot be found."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


class TokenizerFile(ABC):
    """A loaded tokenizer of either kind. The end-of-text id is found when first asked for, so that a tokenizer
    without one still encodes and decodes text (the CLI); only what separates documents by it fails."""

    kind: str

    def __init__(self, source: str, eos_token: str | None):
        self.source = source
        self.eos_token_setting = eos_token

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """One more than the largest token id: the rows a model's embedding needs."""

    @abstractmethod
    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids of each text, without any special token added."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """The text of the ids."""

    @abstractmethod
    def piece(self, token_id: int) -> str:
        """The vocabulary entry of an id (as the tokenizer spells it, e.g. 'Ġthe' or '▁the')."""

    @abstractmethod
    def _id_of(self, token: str) -> int | None:
        """The id of a whole vocabulary entry; None when the vocabulary lacks it."""

    @abstractmethod
    def _default_eos_id(self) -> int | None:
        """The end-of-text id the file itself names, or None."""

    @property
    def dtype(self) -> np.dtype:
        return token_dtype(self.vocab_size)

    @cached_property
    def eos_id(self) -> int:
        """The id after each document: that of the `eos_token` setting when given, else the file's own."""
        if self.eos_token_setting is not None:
            found = self._id_of(self.eos_token_setting)
            if found is None:
                raise TokenizerFileError(f"{self.source} has no token {self.eos_token_setting!r} (eos_token)")
            return found
        found = self._default_eos_id()
        if found is None:
            raise TokenizerFileError(
                f"{self.source} has no end-of-text token (none of {', '.join(END_OF_TEXT_TOKENS)}): set eos_token to "
                "the token that ends a document")
        return found

    @property
    def eos_token(self) -> str:
        return self.piece(self.eos_id)

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's ids followed by the end-of-text id, in the vocabulary's dtype."""
        eos, dtype = self.eos_id, self.dtype
        out = []
        for ids in self.token_ids(texts):
            array = np.empty(len(ids) + 1, dtype=dtype)
            array[:-1] = ids
            array[-1] = eos
            out.append(array)
        return out


class SentencePieceFile(TokenizerFile):
    kind = SENTENCEPIECE

    def __init__(self, data: bytes, source: str, eos_token: str | None):
        import sentencepiece as spm

        super().__init__(source, eos_token)
        self.processor = spm.SentencePieceProcessor(model_proto=data)

    @property
    def vocab_size(self) -> int:
        return self.processor.vocab_size()

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.processor.encode(list(texts), out_type=int, num_threads=1)  # one worker, one core

    def decode(self, ids: Sequence[int]) -> str:
        return self.processor.decode([int(i) for i in ids])

    def piece(self, token_id: int) -> str:
        return self.processor.id_to_piece(int(token_id))

    def _id_of(self, token: str) -> int | None:
        found = self.processor.piece_to_id(token)  # the unknown piece's id when absent
        return found if self.processor.id_to_piece(found) == token else None

    def _default_eos_id(self) -> int | None:
        found = self.processor.eos_id()
        return found if found >= 0 else None


class HuggingFaceFile(TokenizerFile):
    kind = HUGGING_FACE

    def __init__(self, text: str, source: str, eos_token: str | None):
        from tokenizers import Tokenizer

        super().__init__(source, eos_token)
        self.tokenizer = Tokenizer.from_str(text)
        self.tokenizer.no_truncation()  # a file may set them for a model's inputs; documents are encoded whole
        self.tokenizer.no_padding()

    @cached_property
    def vocab_size(self) -> int:
        return max(self.tokenizer.get_vocab(with_added_tokens=True).values(), default=-1) + 1

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def piece(self, token_id: int) -> str:
        return self.tokenizer.id_to_token(int(token_id))

    def _id_of(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def _default_eos_id(self) -> int | None:
        return next((found for token in END_OF_TEXT_TOKENS if (found := self._id_of(token)) is not None), None)


def load_tokenizer(data: bytes, eos_token: str | None = None, source: str = "tokenizer file") -> TokenizerFile:
    """The tokenizer in a file's bytes (`source` names the file in errors); `eos_token` overrides the file's own
    end-of-text token. Raises TokenizerFileError for a file that is neither kind."""
    text_start = data.removeprefix(codecs.BOM_UTF8).lstrip()[:1]
    try:
        if not data:  # else read as a valid, empty protobuf message
            raise ValueError("an empty file")
        if text_start == b"{":
            return HuggingFaceFile(data.decode("utf-8-sig"), source, eos_token)
        return SentencePieceFile(data, source, eos_token)
    except Exception as exc:
        raise TokenizerFileError(f"{source} is not {BOTH_KINDS} ({str(exc).strip() or type(exc).__name__})") from None
