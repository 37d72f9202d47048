"""The README's config reference is generated from the config models; it must match the code."""

import yaml

from pipeline.config import ConfigError, load_config
from pipeline.config_reference import END, START, markdown

from conftest import REPO


def test_readme_config_reference_matches_the_config_models():
    readme = (REPO / "README.md").read_text()
    block = readme.split(START, 1)[1].split(END, 1)[0].strip()
    assert block == markdown().strip(), "run: python -m pipeline.config_reference --update"


def test_every_shipped_config_is_valid_apart_from_paths_to_the_users_files():
    configs = sorted(path for path in (REPO / "configs").glob("*.yaml")
                     if not path.name.startswith(("train-", "ablate-")))
    assert configs
    for path in configs:
        try:
            load_config(path)
        except ConfigError as exc:
            problems = str(exc).split(": ", 1)[1].split("; ")
            assert all("matches no file" in problem for problem in problems), str(exc)


def test_every_shipped_ablation_config_is_valid():
    from pipeline.ablation.runner import load_ablate_config

    configs = sorted((REPO / "configs").glob("ablate-*.yaml"))
    assert configs
    for path in configs:
        load_ablate_config(path)


def test_every_shipped_training_config_is_valid():
    from pipeline.train.settings import TrainConfig

    configs = sorted((REPO / "configs").glob("train-*.yaml"))
    assert len(configs) >= 2
    for path in configs:
        TrainConfig.model_validate(yaml.safe_load(path.read_text()))
