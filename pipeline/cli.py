"""The `pipeline` command.

    pipeline run --config FILE [--set key.path=value ...] [--output DIR] [--address RAY_ADDRESS] [--overwrite]
    pipeline stats RUN_DIR
    pipeline report RUN_DIR [--output FILE] [--max-rows N]
    pipeline contamination RUN_DIR --eval NAME=PATH[:FIELD,...] [--eval ...] [--source documents|shards] [--n N]
                           [--output FILE] [--address ADDR]
    pipeline demo-crawl DIR [--pages N] [--files N] [--seed N]
    pipeline train-classifier --output MODEL (--data FILE [--map FROM=TO ...] | --folder LABEL=DIR ...) [...]
    pipeline fetch-models
    pipeline tokenizer encode --model MODEL|RUN_DIR [--pieces] [TEXT ...]     (no TEXT: standard input)
    pipeline tokenizer decode --model MODEL|RUN_DIR [ID ...]                  (no ID: standard input)
    pipeline train --config configs/train-*.yaml [--set key.path=value ...] [--stop-at STEP]
    pipeline sample --checkpoint OUT_DIR [--prompt TEXT] [--tokens N] [--samples N] [--temperature T] [--top-k K]
    pipeline --version

With no arguments it prints its help. Exit status: 0 on success, 1 when a run finished but some units or stages
failed or its books do not close, 2 for a usage, config or output-directory error (printed as one line), 130 when
interrupted by SIGINT (Ctrl-C; any command, one line, no traceback), 143 when `run` is ended by SIGTERM (the same
command resumes a run after either), 141 when the reader of its output went away (`| head`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

DISTRIBUTION = "ccpipeline"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    from stages.fasttext_training import TrainingSettings

    parser = argparse.ArgumentParser(prog="pipeline", description="Common Crawl to clean text and training tokens.")
    parser.add_argument("--version", action="version", version=f"pipeline {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a config (resumes an unfinished run in the same directory)")
    run.add_argument("--config", required=True, help="YAML run config")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                     help="override a config value, e.g. --set stages.extract.favor=recall (repeatable)")
    run.add_argument("--output", help="run directory (default: the config's output, else runs/<name>)")
    run.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else an embedded local Ray)")
    run.add_argument("--overwrite", action="store_true", help="delete an existing run directory first")
    run.add_argument("--quiet", action="store_true", help="no progress line (warnings are still shown)")
    run.add_argument("--verbose", action="store_true",
                     help="also show the libraries' own INFO lines (Ray Data's dataset executions, ...)")

    stats = commands.add_parser("stats", help="print a run's funnel: read, kept, dropped by reason, failed, time")
    stats.add_argument("run_dir")

    report = commands.add_parser("report", help="write a self-contained HTML report of a run (plots embedded)")
    report.add_argument("run_dir")
    report.add_argument("--output", help="HTML file to write (default: RUN_DIR/report.html)")
    report.add_argument("--max-rows", type=int, default=200_000,
                        help="most documents read for the signal histograms (whole parts, seeded; default 200000)")

    train = commands.add_parser(
        "train-classifier",
        help="train a fastText classifier (toxicity, quality) from labelled text and evaluate it on held-out data",
    )
    train.add_argument("--output", required=True, help="model file to write (.bin; .ftz for a small quantized one)")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="CSV or JSONL(.gz) file with a text and a label field")
    source.add_argument("--folder", action="append", metavar="LABEL=DIR",
                        help="a folder of text files (one document each) for a label; repeat for each label")
    train.add_argument("--text-field", default="text")
    train.add_argument("--label-field", default="label")
    train.add_argument("--map", action="append", default=[], metavar="FROM=TO",
                       help="rename a label, e.g. --map 0=toxic --map 1=toxic --map 2=clean; a label left out is "
                       "an error, unless --keep-unmapped")
    train.add_argument("--keep-unmapped", action="store_true",
                       help="with --map, train the labels it leaves out as classes of their own")
    defaults = TrainingSettings()
    for option, value, helptext in (
        ("--epoch", defaults.epoch, "training epochs"),
        ("--lr", defaults.lr, "learning rate"),
        ("--word-ngrams", defaults.word_ngrams, "word n-gram length"),
        ("--dim", defaults.dim, "vector size"),
        ("--bucket", defaults.bucket, "hashed n-gram slots"),
        ("--min-count", defaults.min_count, "minimum word count"),
        ("--holdout", defaults.holdout, "share of documents held out for evaluation"),
        ("--seed", defaults.seed, "seed of the split and of training"),
    ):
        train.add_argument(option, type=type(value), default=value, help=f"{helptext} (default {value})")
    train.add_argument("--balance", action="store_true", help="down-sample every label to the rarest one's count")

    commands.add_parser(
        "fetch-models",
        help="fetch the default models (lid.176) into the cache now, so that later runs need no network",
    )

    tokenizer = commands.add_parser("tokenizer", help="encode text to token ids, or decode ids, with a run's tokenizer")
    actions = tokenizer.add_subparsers(dest="action", required=True)
    encode = actions.add_parser("encode", help="print the token ids of each TEXT (or of standard input)")
    decode = actions.add_parser("decode", help="print the text of the token ids given (or read from standard input)")
    for action in (encode, decode):
        action.add_argument("--model", required=True,
                            help="a sentencepiece .model or Hugging Face tokenizer.json file, or a run directory "
                            "(its tokenizer)")
    encode.add_argument("--pieces", action="store_true", help="print the pieces beside the ids")
    encode.add_argument("texts", nargs="*")
    decode.add_argument("ids", nargs="*")

    trainer = commands.add_parser("train", help="train the included GPT on a run's token shards (needs the train "
                                  "extra: pip install -e '.[train]')")
    trainer.add_argument("--config", required=True, help="YAML training config (configs/train-*.yaml)")
    trainer.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                         help="override a config value, e.g. --set max_steps=200 (repeatable)")
    trainer.add_argument("--stop-at", type=int, help="stop at this step with a checkpoint; run again to resume")

    ablate = commands.add_parser("ablate", help="train the same small models on variants of a run's data and compare "
                                 "them in bits per byte (needs the train extra)")
    ablate.add_argument("--config", required=True, help="YAML ablation config (configs/ablate-*.yaml)")
    ablate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value, e.g. --set output=ablations/x (repeatable)")

    sampler = commands.add_parser("sample", help="generate text from a training checkpoint")
    sampler.add_argument("--checkpoint", required=True, help="the training out_dir, or its checkpoint.pt")
    sampler.add_argument("--prompt", default="", help="text to continue (default: start a new document)")
    sampler.add_argument("--tokens", type=int, default=200, help="most new tokens per sample")
    sampler.add_argument("--samples", type=int, default=1)
    sampler.add_argument("--temperature", type=float, default=0.8)
    sampler.add_argument("--top-k", type=int, default=200)
    sampler.add_argument("--seed", type=int, default=0)
    sampler.add_argument("--device", default="cpu")

    audit = commands.add_parser("contamination", help="how much of evaluation sets a finished run's documents hold "
                                "(an audit: the run is not changed or run again)")
    audit.add_argument("run_dir")
    audit.add_argument("--eval", dest="evals", action="append", required=True, metavar="NAME=PATH[:FIELD,...]",
                       help="an evaluation set: its name, a JSONL, CSV or Parquet file (local or URI) and the fields "
                       "that hold an item's text (default: text); repeatable, also for more files of a set, e.g. "
                       "--eval gsm8k=test.jsonl:question,answer")
    audit.add_argument("--source", choices=("documents", "shards"), default="documents",
                       help="what to read: the run's documents/ (default), or its token shards, decoded back to text "
                       "with the run's tokenizer")
    audit.add_argument("--n", type=int, default=13, help="words per n-gram (default 13)")
    audit.add_argument("--output", help="also write the per-set table to this Parquet file")
    audit.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS; none: in this process, or an "
                       "embedded local Ray when the documents exceed --in-process-max-mb)")
    audit.add_argument("--in-process-max-mb", type=float, default=64.0,
                       help="documents up to this size are audited in this process (default 64)")

    demo = commands.add_parser("demo-crawl", help="write the project's demo crawl (WARC files) to a directory")
    demo.add_argument("directory")
    demo.add_argument("--pages", type=int, default=300)
    demo.add_argument("--files", type=int, default=2)
    demo.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command; Ctrl-C anywhere ends it with one line on stderr and status 130, never a traceback."""
    try:
        return _command(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `pipeline ... | head`: the reader is gone; what is left to print goes nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE


def _command(argv: list[str]) -> int:
    parser = _parser()
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "stats":
        return _stats(args.run_dir)
    if args.command == "report":
        return _report(args)
    if args.command == "train-classifier":
        return _train_classifier(args)
    if args.command == "fetch-models":
        return _fetch_models()
    if args.command == "tokenizer":
        return _tokenizer(args)
    if args.command == "contamination":
        return _contamination(args)
    if args.command == "ablate":
        return _ablate(args)
    if args.command in ("train", "sample"):
        return _train(args) if args.command == "train" else _sample(args)
    from pipeline.demo_crawl import write_demo_crawl

    for path in write_demo_crawl(args.directory, pages=args.pages, files=args.files, seed=args.seed):
        print(path)
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


class Interrupted(BaseException):
    """SIGTERM, raised in the main thread like SIGINT's KeyboardInterrupt, so that the run ends its workers, its
    Ray and its lock on the way out."""


def _on_sigterm(signum, frame) -> None:
    raise Interrupted()


def _run(args: argparse.Namespace) -> int:
    import signal

    from pipeline.config import ConfigError, load_config
    from pipeline.output_guard import OutputRefused
    from pipeline.plan import InputChanged
    from pipeline.run_dir import RunDirConflict
    from pipeline.run_lock import RunLocked

    try:
        config = load_config(args.config, args.overrides, args.output)
    except ConfigError as exc:
        return _fail(str(exc))
    if args.verbose:
        logging.getLogger("pipeline").setLevel(logging.DEBUG)
    from pipeline.runner import run_pipeline
    from pipeline.stats import StatsNotWritten
    from pipeline.summary import print_result

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = run_pipeline(config, address=args.address, overwrite=args.overwrite, show_progress=not args.quiet)
    except ConfigError as exc:  # found while preparing the run: input files, stage set-up
        return _fail(f"{args.config}: {exc}")
    except (RunDirConflict, OutputRefused, RunLocked, InputChanged) as exc:
        return _fail(str(exc))
    except StatsNotWritten as exc:  # the run's work is done and kept; its statistics could not be written
        print_result(exc.result)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the run directory cannot be written (read-only, full, not a directory)
        if exc.filename is None or exc.errno is None:
            return _fail(str(exc))
        return _fail(f"{exc.filename}: {exc.strerror} (errno {exc.errno})")
    except KeyboardInterrupt:
        print("\ninterrupted; the same command resumes", file=sys.stderr)
        return 130
    except Interrupted:
        print("\nterminated; the same command resumes", file=sys.stderr)
        return 143
    print_result(result)
    return 0 if result.ok else 1


def _pairs(options: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{flag} {option!r}: expected NAME=VALUE")
        pairs[key] = value
    return pairs


def _eval_sets(options: list[str]) -> list[dict]:
    """--eval NAME=PATH[:FIELD,...] options as the decontaminate stage's eval_sets (a name given twice: more files of
    one set). The fields follow the last ':' when what follows it has no '/', so that a URI's scheme stays whole."""
    import re

    sets: dict[str, dict] = {}
    for option in options:
        name, sep, location = option.partition("=")
        if not sep or not name or not location:
            raise ValueError(f"--eval {option!r}: expected NAME=PATH[:FIELD,...]")
        path, colon, fields = location.rpartition(":")
        if not colon or not re.fullmatch(r"[\w.-]+(,[\w.-]+)*", fields):
            path, fields = location, "text"
        entry = sets.setdefault(name, {"name": name, "paths": [], "fields": fields.split(",")})
        if entry["fields"] != fields.split(","):
            raise ValueError(f"--eval {option!r}: other fields than an earlier --eval of {name}")
        entry["paths"].append(path)
    return list(sets.values())


def _contamination(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pipeline.contamination import STAGE, audit_documents, contamination_tables, format_contamination, set_sizes
    from pipeline.io.atomic import atomic_write_parquet
    from pipeline.io.storage import file_sizes, storage_path
    from pipeline.run_dir import RunDir
    from pipeline.staged_assets import staged_settings
    from stages import STAGES
    from stages.base import StageSetupError

    run = RunDir(storage_path(args.run_dir))
    folder, pattern, tokenizer = run.documents, "part-*.parquet", None
    if args.source == "shards":
        from stages.tokens.files import FILE_NAMES

        folder, pattern = run.shards, "*-[0-9][0-9][0-9][0-9][0-9].parquet"
        tokenizer = next((str(run.tokenizer / name) for name in FILE_NAMES.values()
                          if (run.tokenizer / name).exists()), None)
        if tokenizer is None:
            return _fail(f"{args.run_dir}: no tokenizer/ model to decode its shards with")
    sizes = file_sizes(folder, pattern)
    if not sizes:
        return _fail(f"{args.run_dir}: no {args.source} ({folder}); is this a run directory?")
    parts = [str(folder / name) for name in sorted(sizes)]
    kind = STAGES[STAGE]
    try:
        settings = kind.Config(eval_sets=_eval_sets(args.evals), n=args.n, action="flag")
        prepared = kind.prepare(settings, run.root)
    except ValueError as exc:  # pydantic's ValidationError is one
        errors = exc.errors() if isinstance(exc, ValidationError) else None
        return _fail(f"--eval: {errors[0]['msg']}" if errors else str(exc))
    except StageSetupError as exc:
        return _fail(f"--eval ({exc.setting}): {exc.message}")
    staged = staged_settings(prepared, kind.file_settings, run.root).model_dump(mode="json")
    address = args.address or os.environ.get("RAY_ADDRESS")
    if address or sum(sizes.values()) > args.in_process_max_mb * 1024 * 1024:
        import ray

        from pipeline.ray_session import connect_ray, disconnect_ray, submit_task

        started = connect_ray(address)
        try:
            counts = audit_documents(parts, staged, str(run.root), submit_task, ray.get, tokenizer)
        finally:
            if started:
                disconnect_ray()
    else:
        counts = audit_documents(parts, staged, str(run.root), tokenizer=tokenizer)
    tables = contamination_tables(counts, set_sizes(prepared.index))
    print(format_contamination(tables["contamination"]))
    if args.output:
        atomic_write_parquet(storage_path(args.output), tables["contamination"])
    return 0


def _train_classifier(args: argparse.Namespace) -> int:
    from stages.fasttext_training import TrainingSettings, read_labelled_folders, train_classifier

    try:
        if args.data:
            if not Path(args.data).is_file():
                return _fail(f"--data {args.data}: no such file")
            examples = _labelled_file(args)
        else:
            folders = _pairs(args.folder, "--folder")
            missing = [folder for folder in folders.values() if not Path(folder).is_dir()]
            if missing:
                return _fail(f"--folder: no such directory {missing[0]}")
            examples = read_labelled_folders(folders)
        settings = TrainingSettings(
            epoch=args.epoch, lr=args.lr, word_ngrams=args.word_ngrams, dim=args.dim, bucket=args.bucket,
            min_count=args.min_count, holdout=args.holdout, seed=args.seed, balance=args.balance,
        )
        report = train_classifier(examples, args.output, settings)
    except ValueError as exc:
        return _fail(str(exc))
    print(report.format())
    return 0


def _labelled_file(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The --data file's (text, label) pairs; a missing field or an unmapped label is a ValueError naming the
    option to change."""
    from stages.fasttext_training import MissingField, UnmappedLabels, read_labelled_file

    try:
        return read_labelled_file(args.data, args.text_field, args.label_field, _pairs(args.map, "--map"),
                                  keep_unmapped=args.keep_unmapped)
    except MissingField as exc:
        raise ValueError(f"--{exc.role}-field {exc.name!r}: no such field in {exc.path}; fields: {exc.present}") \
            from None
    except UnmappedLabels as exc:
        raise ValueError(f"--map: {exc}; map them too, or give --keep-unmapped to train each as a class of its "
                         "own") from None


def _fetch_models() -> int:
    from pipeline.models import LID176, ModelUnavailable, fetch_known

    try:
        print(fetch_known(LID176))
    except ModelUnavailable as exc:
        return _fail(str(exc))
    return 0


def _stats(run_dir: str) -> int:
    from pipeline.io.storage import storage_path
    from pipeline.run_dir import RunDir
    from pipeline.stats import StatsUnreadable, read_funnel
    from pipeline.summary import format_funnel, format_input_files

    stats_dir = RunDir(storage_path(run_dir)).stats
    if not (stats_dir / "summary.json").exists():
        return _fail(f"{run_dir}: no statistics (stats/summary.json); is this a run directory?")
    try:
        funnel, summary = read_funnel(stats_dir)
    except StatsUnreadable as exc:
        return _fail(str(exc))
    print(f"Run {summary['name']} ({run_dir}): {summary['units']} units, {summary['wall_seconds']:.1f} s wall")
    print(format_funnel(funnel))
    inputs = format_input_files(summary.get("input_files"))
    if inputs:
        print(inputs)
    if (stats_dir / "contamination.parquet").exists():  # what the decontaminate stage found
        from pipeline.contamination import format_contamination
        from pipeline.io.storage import read_parquet

        print(format_contamination(read_parquet(stats_dir / "contamination.parquet")))
    for unit_id, error in summary.get("failed_units", {}).items():
        print(f"FAILED UNIT {unit_id}: {error.splitlines()[0]}")
    for name, error in summary.get("failed_stages", {}).items():
        print(f"FAILED STAGE {name}: {error.splitlines()[0]}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pipeline.report import write_report
    from pipeline.stats import StatsUnreadable

    try:
        written = write_report(args.run_dir, args.output, max_rows=args.max_rows,
                               log=lambda step: print(f"report: {step}", file=sys.stderr, flush=True))
    except (FileNotFoundError, StatsUnreadable) as exc:
        return _fail(str(exc))
    print(written)
    return 0


def _tokenizer(args: argparse.Namespace) -> int:
    from stages.tokens.files import FILE_NAMES, TokenizerFileError, load_tokenizer

    model = Path(args.model)
    if model.is_dir():
        candidates = [folder / name for folder in (model / "tokenizer", model) for name in FILE_NAMES.values()]
        model = next((candidate for candidate in candidates if candidate.is_file()), candidates[0])
    if not model.is_file():
        return _fail(f"{model}: no such tokenizer model")
    try:
        tokenizer = load_tokenizer(model.read_bytes(), source=str(model))
    except TokenizerFileError as exc:
        return _fail(str(exc))
    if args.action == "encode":
        for text in args.texts or [sys.stdin.read()]:
            ids = tokenizer.token_ids([text])[0]
            if args.pieces:
                print(" ".join(f"{i}:{tokenizer.piece(i)!r}" for i in ids))
            else:
                print(" ".join(map(str, ids)))
        return 0
    words = args.ids or sys.stdin.read().split()
    try:
        ids = [int(word) for word in words]
    except ValueError:
        return _fail("decode takes integer token ids")
    if any(not 0 <= i < tokenizer.vocab_size for i in ids):
        return _fail(f"token ids must be in 0..{tokenizer.vocab_size - 1}")
    sys.stdout.write(tokenizer.decode(ids) + "\n")
    return 0


def _torch_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is None


def _train(args: argparse.Namespace) -> int:
    if _torch_missing():
        return _fail("the trainer needs torch: pip install -e '.[train]' (it pins torch==2.13.0)")
    from pipeline.config import ConfigError
    from pipeline.train.train import load_train_config, train

    try:
        config = load_train_config(args.config, args.overrides)
        if not (config.shards_dir() / "manifest.json").exists():
            raise ConfigError(f"{args.config}: shards: no manifest.json in {config.shards_dir()} (run a pipeline "
                              "config with the tokenize stage first)")
        figures = train(config, log=lambda line: print(line, flush=True), stop_at=args.stop_at)
    except ConfigError as exc:  # TrainSetupError included: settings that do not fit the shards or the checkpoint
        return _fail(str(exc))
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the run
        print(f"checkpoint: {config.out_dir}/checkpoint.pt; log: {config.out_dir}/log.jsonl")
    return 0 if figures else 1


def _ablate(args: argparse.Namespace) -> int:
    if _torch_missing():
        return _fail("ablations train models: pip install -e '.[train]' (it pins torch==2.13.0)")
    from pipeline.ablation.runner import load_ablate_config, run_ablation
    from pipeline.config import ConfigError
    from pipeline.inspect import load_ablation

    try:
        config = load_ablate_config(args.config, args.overrides)
        output = run_ablation(config, log=lambda line: print(line, flush=True))
    except ConfigError as exc:
        return _fail(str(exc))
    table = load_ablation(output).table()
    print(table[["variant", "tokens", "size", "evaluation", "seeds", "bits_per_byte", "bits_per_byte_std", "difference",
                 "p_value"]].to_string(index=False, float_format=lambda value: f"{value:.4f}"))
    print(f"tables: {output}/stats/ablation*.parquet; report: {output}/report.html")
    return 0


def _sample(args: argparse.Namespace) -> int:
    if _torch_missing():
        return _fail("sampling needs torch: pip install -e '.[train]' (it pins torch==2.13.0)")
    from pipeline.train.sample import sample

    path = Path(args.checkpoint)
    if not (path.is_file() or (path / "checkpoint.pt").is_file()):
        return _fail(f"{path}: no checkpoint (checkpoint.pt)")
    for index, text in enumerate(sample(path, args.prompt, args.tokens, args.temperature, args.top_k, args.samples,
                                        args.seed, device=args.device)):
        print(f"--- sample {index + 1}\n{args.prompt}{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
