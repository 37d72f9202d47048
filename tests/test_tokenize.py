"""Tokenizer training and token shards: exact round trips on real cleaned text, deterministic byte-identical shards,
token counts that agree everywhere, every document in exactly one shard of one split, and zero-copy reads."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import ConfigError, load_config
from pipeline.runner import run_pipeline
from pipeline.summary import print_result
from pipeline.stats import accounting_problems
from memory_maps import mapping_of
from pipeline.token_shards import map_tokens, read_index, read_manifest, write_shard
from stages.tokens.tokenize import Encoder, splits_of
from stages.tokens.tokenizer import EOS_ID, UNK_ID, TokenizerConfig, bottom_k, id_hashes, load_model, train_model, \
    training_lines
from stages.tokens.files import HUGGING_FACE, SENTENCEPIECE, TokenizerFileError, load_tokenizer, token_dtype

REPO = Path(__file__).resolve().parents[1]
AWKWARD_TEXTS = [
    "", " ", "  leading and trailing spaces  ", "tabs\tand\r\nwindows line ends\r\n", "\n\nblank lines\n\n\n",
    "emoji 😀🎉 and zero-width\u200bjoiner", "中文字符 и русский текст, العربية", "control \x00\x07 chars",
    "combining e\u0301 vs é, ligature ﬁ, fullwidth ＡＢＣ", "1234567890 digits 3.14159", "<|endoftext|> literal",
]


@pytest.fixture(scope="module")
def trained(real_page_texts) -> tuple[bytes, list[str]]:
    """A 4,000-piece BPE model trained on half of the 865 real pages our extract stage cleaned; all the texts."""
    texts = [page["text"] for page in real_page_texts]
    model = train_model(training_lines(texts[::2], 100_000), TokenizerConfig(vocab_size=4000), threads=2)
    return model, texts


def test_decode_of_encode_is_the_input_for_every_cleaned_real_page(trained):
    model, texts = trained
    processor = load_model(model)
    assert processor.vocab_size() == 4000 and processor.eos_id() == EOS_ID
    for text in texts + AWKWARD_TEXTS:  # the other half was never seen in training
        ids = processor.encode(text)
        assert processor.decode(ids) == text
        assert UNK_ID not in ids  # byte fallback: nothing is unknown


def test_newlines_and_special_tokens_are_pieces_of_their_own(real_page_texts):
    texts = [page["text"] for page in real_page_texts[:200]]
    config = TokenizerConfig(vocab_size=1000, special_tokens=["<|user|>", "<|assistant|>"])
    processor = load_model(train_model(training_lines(texts, 100_000), config))
    assert processor.encode("\n") == [processor.piece_to_id("\n")]
    assert processor.encode("a<|user|>b")[1] == processor.piece_to_id("<|user|>")
    assert processor.decode(processor.encode("x <|assistant|>\ny")) == "x <|assistant|>\ny"


def test_training_is_deterministic(real_page_texts):
    texts = [page["text"] for page in real_page_texts[:300]]
    config = TokenizerConfig(vocab_size=1500)
    first = train_model(training_lines(texts, 100_000), config, threads=2)
    assert train_model(training_lines(texts, 100_000), config, threads=1) == first


def test_training_lines_are_never_longer_than_sentencepiece_accepts():
    giant = "word " * 50_000 + "\n" + "x" * 200_000
    lines = list(training_lines([giant], 1_000_000))
    assert all(len(line.encode()) <= 1 << 16 for line in lines)
    assert "".join(lines) == giant.replace("\n", "")


def test_bottom_k_is_a_uniform_sample_that_ignores_input_order():
    ids = [f"doc-{i}" for i in range(20_000)]
    hashes = id_hashes(ids, seed=3)
    chosen = {ids[i] for i in bottom_k(hashes, 2_000)}
    shuffled = list(np.random.default_rng(0).permutation(ids))
    assert {shuffled[i] for i in bottom_k(id_hashes(shuffled, seed=3), 2_000)} == chosen
    # uniform: each tenth of the ids holds about a tenth of the sample (binomial sd ~ 13)
    per_tenth = np.bincount([int(doc_id.split("-")[1]) // 2_000 for doc_id in chosen], minlength=10)
    assert np.abs(per_tenth - 200).max() < 60
    assert {ids[i] for i in bottom_k(id_hashes(ids, seed=4), 2_000)} != chosen


def test_the_sample_is_chosen_by_a_tree_of_tasks_not_on_the_driver(tmp_path, local_ray):
    """40 documents parts: a leaf task per part, then merge tasks 16 at a time, in two rounds (40 -> 3 -> 1); the
    threshold is the k-th smallest id hash of the whole corpus, as if every hash had been sorted in one place."""
    from stages.tokens.runner import sample_threshold

    ids, paths = [], []
    for part in range(40):
        part_ids = [f"doc-{part}-{row}" for row in range(25)]
        ids += part_ids
        paths.append(str(tmp_path / f"part-{part:03d}.parquet"))
        pq.write_table(pa.table({"id": part_ids, "text": ["x"] * len(part_ids)}), paths[-1])
    threshold, rounds = sample_threshold(paths, k=60, seed=3, options={"num_cpus": 1})
    assert threshold == int(np.sort(id_hashes(ids, 3))[59]) and rounds == 2
    assert sample_threshold(paths[:1], k=2000, seed=3, options={})[0] == int(id_hashes(ids[:25], 3).max())


def test_token_dtype_is_uint16_while_the_vocabulary_fits():
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32


def test_a_uint32_shard_reads_back_with_counts_that_agree(tmp_path):
    tokens = pa.array([[70_000, 5, EOS_ID], [EOS_ID], [1, 2, 3, 100_000, EOS_ID]], pa.list_(pa.uint32()))
    entry = write_shard(tmp_path, "train-00000", ["a", "b", "c"], tokens, np.dtype(np.uint32))
    flat = map_tokens(tmp_path / "train-00000.arrow")
    assert flat.dtype == np.uint32 and flat.tolist() == [70_000, 5, 2, 2, 1, 2, 3, 100_000, 2]
    assert entry["tokens"] == 9 == pq.read_table(tmp_path / "train-00000.parquet")["n_tokens"].to_numpy().sum()
    assert read_index(tmp_path / "train-00000.index.arrow")["start"].to_pylist() == [0, 3, 4]


# ------------------------------------------------------------------------------------------- end to end on Ray


def write_corpus(directory: Path, texts: list[str]) -> list[Path]:
    """The texts as three JSONL files, with two empty documents among them."""
    records = [{"id": f"page-{i:04d}", "text": text} for i, text in enumerate(texts)]
    records[10]["text"] = records[500]["text"] = ""
    paths = []
    for index in range(3):
        path = directory / f"corpus-{index}.jsonl"
        path.write_text("".join(json.dumps(record) + "\n" for record in records[index::3]))
        paths.append(path)
    return paths


def tokenize_run(tmp_path: Path, name: str, inputs: list[Path], **tokenize) -> Path:
    config_file = tmp_path / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump({
        "name": name, "input": {"paths": [str(path) for path in inputs]},
        "stages": [{"tokenizer": {"vocab_size": 3000, "sample_documents": 400}},
                   {"tokenize": {"validation_fraction": 0.1, "shard_tokens": 150_000, **tokenize}}],
    }))
    result = run_pipeline(load_config(config_file, output=str(tmp_path / name)), show_progress=False)
    assert result.ok and not accounting_problems(result.funnel)
    return result.run_dir


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, real_page_texts, local_ray) -> tuple[Path, Path, dict[str, str]]:
    tmp_path = tmp_path_factory.mktemp("tokenize")
    texts = [page["text"] for page in real_page_texts]
    inputs = write_corpus(tmp_path, texts)
    originals = {f"page-{i:04d}": text for i, text in enumerate(texts) if i not in (10, 500)}
    return tokenize_run(tmp_path, "first", inputs), tokenize_run(tmp_path, "second", inputs), originals


def shard_files(run_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((run_dir / "shards").iterdir())
            if path.name != "_done.json"}


@pytest.mark.slow
def test_same_config_and_input_twice_gives_byte_identical_shards_and_manifest(two_runs):
    first, second, _ = two_runs
    files = shard_files(first)
    assert files == shard_files(second)
    assert {"manifest.json", "train-00000.arrow", "train-00000.parquet", "validation-00000.parquet"} <= set(files)
    assert (first / "tokenizer" / "tokenizer.model").read_bytes() == (second / "tokenizer" / "tokenizer.model").read_bytes()


@pytest.mark.slow
def test_token_counts_agree_and_every_document_is_in_exactly_one_shard_of_one_split(two_runs):
    run_dir, _, originals = two_runs
    manifest = read_manifest(run_dir / "shards")
    model = (run_dir / "shards" / manifest["tokenizer"]["path"]).resolve().read_bytes()
    assert hashlib.sha256(model).hexdigest() == manifest["tokenizer"]["sha256"]
    encoder = Encoder(model)
    assert manifest["dtype"] == "uint16" and manifest["vocab_size"] == 3000
    seen: dict[str, str] = {}
    parquet_tokens = arrow_tokens = 0
    for split, description in manifest["splits"].items():
        assert len(description["shards"]) >= (2 if split == "train" else 1)
        for shard in description["shards"]:
            files = {kind: run_dir / "shards" / name for kind, name in shard["files"].items()}
            for kind, path in files.items():
                assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"][kind]
            rows = pq.read_table(files["parquet"])
            flat = map_tokens(files["arrow"])
            index = read_index(files["index"])
            assert rows["n_tokens"].to_numpy().sum() == len(flat) == shard["tokens"]
            assert rows["id"].to_pylist() == index["id"].to_pylist() and len(rows) == shard["documents"]
            for doc_id, tokens, start in zip(rows["id"].to_pylist(), rows["tokens"].to_pylist(),
                                             index["start"].to_pylist()):
                assert doc_id not in seen, f"{doc_id} in {seen.get(doc_id)} and {shard['name']}"
                seen[doc_id] = shard["name"]
                assert flat[start:start + len(tokens)].tolist() == tokens and tokens[-1] == EOS_ID
                assert encoder.decode(tokens[:-1]) == originals[doc_id]
            parquet_tokens += rows["n_tokens"].to_numpy().sum()
            arrow_tokens += len(flat)
    assert manifest["tokens"] == parquet_tokens == arrow_tokens
    assert set(seen) == set(originals)  # the two empty documents are dropped, counted as no_tokens
    in_validation = {doc_id for doc_id, shard in seen.items() if shard.startswith("validation")}
    ids = sorted(originals)
    assert in_validation == {doc_id for doc_id, is_val in zip(ids, splits_of(ids, 0.1)) if is_val}
    funnel = json.loads((run_dir / "stats" / "summary.json").read_text())["stages"]
    tokenize = next(stage for stage in funnel if stage["stage"] == "tokenize")
    assert tokenize["dropped"] == {"no_tokens": 2} and tokenize["kept"] == len(originals)


@pytest.mark.slow
def test_shards_are_shuffled_not_in_input_order(two_runs):
    run_dir, _, _ = two_runs
    ids = pq.read_table(run_dir / "shards" / "train-00000.parquet")["id"].to_pylist()
    positions = [int(doc_id.split("-")[1]) for doc_id in ids]
    assert abs(np.corrcoef(np.arange(len(positions)), positions)[0, 1]) < 0.2


@pytest.mark.slow
def test_arrow_shards_memory_map_without_a_copy(two_runs):
    path = two_runs[0] / "shards" / "train-00000.arrow"
    before = pa.total_allocated_bytes()
    tokens = map_tokens(path)
    assert pa.total_allocated_bytes() == before  # Arrow allocated nothing: the column is the mapped file
    assert not tokens.flags.owndata and not tokens.flags.writeable
    address = tokens.__array_interface__["data"][0]
    assert mapping_of(address, tokens.nbytes) == str(path.resolve())  # the array lies in a mapping of the file
    assert tokens.dtype == np.uint16 and len(tokens) > 10_000


@pytest.mark.slow
def test_an_existing_model_is_used_as_given(tmp_path, trained, local_ray):
    model, texts = trained
    (tmp_path / "given.model").write_bytes(model)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts[:50])))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({
        "name": "given", "input": {"paths": [str(corpus)]},
        "stages": [{"tokenize": {"model": str(tmp_path / "given.model"), "validation_fraction": 0}}],
    }))
    run = run_pipeline(load_config(config_file, output=str(tmp_path / "run")), show_progress=False).run_dir
    manifest = read_manifest(run / "shards")
    assert manifest["splits"]["validation"]["shards"] == [] and manifest["vocab_size"] == 4000
    rows = pq.read_table(run / "shards" / "train-00000.parquet").to_pylist()
    processor = load_model(model)
    assert all(row["tokens"] == processor.encode(texts[int(row["id"][1:])]) + [EOS_ID] for row in rows)


def test_tokenize_without_a_tokenizer_is_a_config_error(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "x"}\n')
    for stages, message in (
        (["tokenize"], "tokenize needs a tokenizer"),
        (["tokenize", "tokenizer"], "tokenizer comes after tokenize"),
        (["tokenizer", "extract"], "per-document stages come first"),
    ):
        config_file = tmp_path / "config.yaml"
        config_file.write_text(yaml.safe_dump({"name": "x", "input": {"paths": [str(corpus)]}, "stages": stages}))
        with pytest.raises(ConfigError, match=message):
            load_config(config_file)


def test_the_tokenizer_command_encodes_and_decodes(tmp_path, trained):
    model, _ = trained
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer.model").write_bytes(model)
    text = "The harbour was quiet.\nZweite Zeile, 😀"
    cli = [sys.executable, "-m", "pipeline.cli", "tokenizer"]
    encoded = subprocess.run(cli + ["encode", "--model", str(tmp_path), text], capture_output=True, text=True,
                             cwd=REPO, check=True).stdout
    assert [int(i) for i in encoded.split()] == load_model(model).encode(text)
    decoded = subprocess.run(cli + ["decode", "--model", str(tmp_path / "tokenizer" / "tokenizer.model")],
                             input=encoded, capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert decoded == text + "\n"
    bad = subprocess.run(cli + ["decode", "--model", str(tmp_path), "999999"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "token ids must be in 0..3999" in bad.stderr


def test_a_model_that_is_missing_or_not_sentencepiece_stops_the_run_before_work(tmp_path):
    from pipeline.config import RunConfig
    from pipeline.run_dir import RunDir
    from pipeline.staged_assets import prepare_stages

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "x"}\n')
    (tmp_path / "junk.model").write_bytes(b"not a model")
    for model, message in ((tmp_path / "none.model", "does not exist"), (tmp_path / "junk.model", "not a sentencepiece")):
        config = RunConfig.model_validate({"name": "x", "input": {"paths": [str(corpus)]},
                                           "stages": [{"tokenize": {"model": str(model)}}]})
        with pytest.raises(ConfigError, match=rf"stages\[0\]\.tokenize\.model: .*{message}"):
            prepare_stages(config, RunDir(tmp_path / "run"))


@pytest.mark.slow
def test_a_corpus_without_text_fails_the_tokenizer_stage_by_name_and_the_run_says_so(tmp_path, local_ray):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "a", "text": ""}\n{"id": "b", "text": "   "}\n')
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({"name": "x", "input": {"paths": [str(corpus)]},
                                           "stages": ["tokenizer", "tokenize"]}))
    result = run_pipeline(load_config(config_file, output=str(tmp_path / "run")), show_progress=False)
    assert not result.ok and list(result.failed_stages) == ["tokenizer"]
    assert "no text to train a tokenizer on" in result.failed_stages["tokenizer"]
    assert not (result.run_dir / "shards").exists()
    summary = json.loads((result.run_dir / "stats" / "summary.json").read_text())
    assert list(summary["failed_stages"]) == ["tokenizer"]


@pytest.mark.slow
def test_a_vocabulary_smaller_than_asked_is_said_and_recorded(tmp_path, data_dir, local_ray, caplog, capsys):
    speeches = (data_dir / "text" / "tinyshakespeare" / "input.txt").read_text().split("\n\n")[:20]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"s{i}", "text": text}) + "\n" for i, text in enumerate(speeches)))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({"name": "small", "input": {"paths": [str(corpus)]},
                                           "stages": [{"tokenizer": {"vocab_size": 2000}}, "tokenize"]}))
    result = run_pipeline(load_config(config_file, output=str(tmp_path / "run")), show_progress=False)
    assert result.ok
    description = json.loads((result.run_dir / "tokenizer" / "tokenizer.json").read_text())
    trained = description["vocab_size"]
    assert description["vocab_size_asked"] == 2000 and trained < 2000
    characters = sum(map(len, speeches))
    assert (f"tokenizer: vocab_size 2,000 asked, {trained:,} trained: the sample (20 documents, {characters:,} "
            "characters) is too small for more pieces") in caplog.messages
    print_result(result)
    assert f"vocabulary {trained:,} of the 2,000 asked)" in capsys.readouterr().out


# --------------------------------------------------------------------- an existing Hugging Face tokenizer.json

PADDED_VOCABULARY = 70_000  # past 65,536: the ids need uint32


def padded_bpe_json(texts: list[str], special_tokens: list[str]) -> str:
    """A byte-level BPE tokenizer.json as GPT-2's, trained on the texts, its vocabulary padded with unused entries
    to PADDED_VOCABULARY (as models pad theirs), the special tokens after them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=2000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    vocab.update({f"<unused{i}>": i for i in range(len(vocab), PADDED_VOCABULARY)})
    padded = Tokenizer.from_str(json.dumps(spec))
    padded.add_special_tokens(special_tokens)
    return padded.to_str()


@pytest.fixture(scope="module")
def gpt2_style(tmp_path_factory, real_page_texts) -> tuple[Path, list[str]]:
    """A GPT-2-style tokenizer.json trained on 300 real cleaned pages, <|endoftext|> its last id (70,000); all the
    texts."""
    texts = [page["text"] for page in real_page_texts]
    path = tmp_path_factory.mktemp("huggingface") / "tokenizer.json"
    path.write_text(padded_bpe_json(texts[:300], ["<|endoftext|>"]))
    return path, texts


def reference_ids(path: Path, text: str) -> list[int]:
    """The ids the tokenizers package itself gives, without special tokens added."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path)).encode(text, add_special_tokens=False).ids


def test_a_hugging_face_tokenizer_json_encodes_with_its_end_of_text_id_in_uint32(gpt2_style):
    path, texts = gpt2_style
    tokenizer = load_tokenizer(path.read_bytes(), source=str(path))
    assert tokenizer.kind == HUGGING_FACE and tokenizer.vocab_size == PADDED_VOCABULARY + 1
    assert tokenizer.eos_id == PADDED_VOCABULARY and tokenizer.eos_token == "<|endoftext|>"
    unseen = texts[300:400] + AWKWARD_TEXTS
    for text, tokens in zip(unseen, tokenizer.encode(unseen)):
        assert tokens.dtype == np.uint32 and tokens.tolist() == reference_ids(path, text) + [PADDED_VOCABULARY]
        assert tokenizer.decode(tokens[:-1]) == text


def test_a_sentencepiece_model_loads_through_the_same_interface(trained):
    model, texts = trained
    tokenizer = load_tokenizer(model)
    assert tokenizer.kind == SENTENCEPIECE and tokenizer.vocab_size == 4000 and tokenizer.dtype == np.uint16
    assert tokenizer.eos_id == EOS_ID and tokenizer.eos_token == "</s>"
    assert [tokens.tolist() for tokens in tokenizer.encode(texts[:20])] == \
        [load_model(model).encode(text) + [EOS_ID] for text in texts[:20]]


def test_a_file_of_neither_kind_is_one_clear_error_naming_it(tmp_path):
    description = json.dumps({"model": "tokenizer.model", "kind": "sentencepiece", "vocab_size": 4000}).encode()
    for name, data in (("junk.bin", b"not a model"), ("empty.model", b""), ("tokenizer.json", description)):
        with pytest.raises(TokenizerFileError, match=re.escape(
                f"{tmp_path / name} is not a sentencepiece model or Hugging Face tokenizer.json (")):
            load_tokenizer(data, source=str(tmp_path / name))


def test_a_tokenizer_json_without_an_end_of_text_token_asks_for_eos_token(tmp_path, real_page_texts):
    from pipeline.config import RunConfig
    from pipeline.run_dir import RunDir
    from pipeline.staged_assets import prepare_stages

    path = tmp_path / "chat.json"
    path.write_text(padded_bpe_json([page["text"] for page in real_page_texts[:50]], ["<|im_end|>"]))
    with pytest.raises(TokenizerFileError, match="has no end-of-text token .*: set eos_token"):
        load_tokenizer(path.read_bytes(), source=str(path)).eos_id
    assert load_tokenizer(path.read_bytes(), "<|im_end|>").eos_id == PADDED_VOCABULARY
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "x"}\n')

    def prepared(tokenize: dict):
        config = RunConfig.model_validate({"name": "x", "input": {"paths": [str(corpus)]},
                                           "stages": ["tokenizer", {"tokenize": tokenize}]})
        return prepare_stages(config, RunDir(tmp_path / "run"))

    with pytest.raises(ConfigError, match=r"stages\[1\]\.tokenize\.model: .*chat\.json has no end-of-text token"):
        prepared({"model": str(path)})
    with pytest.raises(ConfigError, match=r"stages\[1\]\.tokenize\.model: .*has no token '<\|user\|>' \(eos_token\)"):
        prepared({"model": str(path), "eos_token": "<|user|>"})
    with pytest.raises(ConfigError, match=r"stages\[1\]\.tokenize\.eos_token: .*applies to a given model only"):
        prepared({"eos_token": "<|im_end|>"})
    prepared({"model": str(path), "eos_token": "<|im_end|>"})


def test_a_manifest_from_before_tokenizer_kinds_reads_as_sentencepiece(tmp_path):
    from pipeline.token_shards import write_manifest

    write_manifest(tmp_path, {"tokenizer": {"path": "../tokenizer/tokenizer.model", "sha256": "0" * 64}})
    assert read_manifest(tmp_path)["tokenizer"]["kind"] == SENTENCEPIECE


def given_tokenizer_run(tmp_path: Path, texts: list[str], stages: list) -> Path:
    """A run of the given stages on the texts (ids d0, d1, ...); its directory."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({"name": "given", "input": {"paths": [str(corpus)]}, "stages": stages}))
    result = run_pipeline(load_config(config_file, output=str(tmp_path / "run")), show_progress=False)
    assert result.ok and not accounting_problems(result.funnel)
    return result.run_dir


@pytest.mark.slow
def test_a_hugging_face_tokenizer_json_given_to_tokenize_makes_uint32_shards_of_its_ids(tmp_path, gpt2_style,
                                                                                        local_ray):
    path, texts = gpt2_style
    unseen = texts[300:360]
    run = given_tokenizer_run(tmp_path, unseen, [{"tokenize": {"model": str(path), "validation_fraction": 0}}])
    manifest = read_manifest(run / "shards")
    assert manifest["dtype"] == "uint32" and manifest["vocab_size"] == PADDED_VOCABULARY + 1
    assert manifest["eos_id"] == PADDED_VOCABULARY
    assert manifest["tokenizer"] == {"path": str(path.resolve()), "kind": HUGGING_FACE,
                                     "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    rows = [row for shard in manifest["splits"]["train"]["shards"]
            for row in pq.read_table(run / "shards" / shard["files"]["parquet"]).to_pylist()]
    assert len(rows) == len(unseen)
    for row in rows:
        assert row["tokens"] == reference_ids(path, unseen[int(row["id"][1:])]) + [PADDED_VOCABULARY]
    assert map_tokens(run / "shards" / "train-00000.arrow").dtype == np.uint32


@pytest.mark.slow
def test_the_tokenizer_stage_keeps_a_given_tokenizer_json_and_the_cli_decodes_its_shards(tmp_path, gpt2_style,
                                                                                        local_ray):
    path, texts = gpt2_style
    unseen = texts[400:430]
    run = given_tokenizer_run(tmp_path, unseen, [{"tokenizer": {"model": str(path)}},
                                                 {"tokenize": {"validation_fraction": 0}}])
    copy = run / "tokenizer" / "tokenizer.hf.json"
    assert copy.read_bytes() == path.read_bytes() and not (run / "tokenizer" / "tokenizer.model").exists()
    description = json.loads((run / "tokenizer" / "tokenizer.json").read_text())
    assert {key: description[key] for key in ("model", "kind", "vocab_size", "eos_id", "eos_token", "dtype")} == {
        "model": "tokenizer.hf.json", "kind": HUGGING_FACE, "vocab_size": PADDED_VOCABULARY + 1,
        "eos_id": PADDED_VOCABULARY, "eos_token": "<|endoftext|>", "dtype": "uint32"}
    manifest = read_manifest(run / "shards")
    assert manifest["tokenizer"]["path"] == "../tokenizer/tokenizer.hf.json"
    assert manifest["tokenizer"]["kind"] == HUGGING_FACE and manifest["eos_id"] == PADDED_VOCABULARY
    row = pq.read_table(run / "shards" / "train-00000.parquet").to_pylist()[0]
    text = unseen[int(row["id"][1:])]
    cli = [sys.executable, "-m", "pipeline.cli", "tokenizer"]
    encoded = subprocess.run(cli + ["encode", "--model", str(run)], input=text, capture_output=True, text=True,
                             cwd=REPO, check=True).stdout
    assert [int(i) for i in encoded.split()] == row["tokens"][:-1]
    decoded = subprocess.run(cli + ["decode", "--model", str(path)], input=encoded, capture_output=True, text=True,
                             cwd=REPO, check=True).stdout
    assert decoded == text + "\n"


def test_slices_depend_on_the_files_and_shard_tokens_only_and_cover_every_row_group_once(tmp_path):
    """A tokenize task's slice is whole row groups of one part, cut where the footer's text bytes reach shard_tokens
    tokens (4 bytes each): nothing about workers enters, so the same parts give the same shards on any cluster."""
    from stages.tokens.tasks import BYTES_PER_TOKEN, slices

    paths = []
    for part in range(2):
        texts = [("word " * (20 + 7 * i)) for i in range(40)]
        path = tmp_path / f"part-{part:05d}.parquet"
        pq.write_table(pa.table({"id": [f"{part}-{i}" for i in range(40)], "text": texts}), path, row_group_size=5)
        paths.append(str(path))
    for shard_tokens in (1_000, 3_000, 10**9):
        work = slices(paths, shard_tokens)
        assert work == slices(paths, shard_tokens)
        for path in paths:  # each part's row groups, in order, once
            assert [g for p, groups in work if p == path for g in groups] == list(range(8))
        for path, groups in work[:-1]:
            metadata = pq.ParquetFile(path).metadata
            text_bytes = sum(metadata.row_group(g).column(1).total_uncompressed_size for g in groups)
            last = groups[-1] == metadata.num_row_groups - 1
            assert last or text_bytes // BYTES_PER_TOKEN >= shard_tokens  # cut only once the target is reached
    assert len(slices(paths, 10**9)) == 2 and len(slices(paths, 1_000)) > 4  # a part per slice, or several
