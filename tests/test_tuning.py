"""Shard state files and study state as data: the bulk start-up draws are Optuna's, a study replays from its
rows, shards are cut from the full list of studies, and a study's history survives regrouping and a torn line."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution

from sweep.messages import SteerSettings
from sweep.weights import stored_params
from sweep.stages.tune import plan_shards
from sweep.tuning import (N_STARTUP, StudySettings, append_round, new_state, new_study, read_shard,
                          read_state_dir, replay, shard_file, startup_params, trial_params)

SPACES = {
    "full": {"alpha_all": FloatDistribution(0.01, 1.0), "gamma_all": FloatDistribution(0.05, 0.9)},
    "segmented": {f"{p}_{s}": FloatDistribution(0.01, 1.0) for s in ("early", "middle", "late") for p in ("alpha", "gamma")},
    "product": {f"alpha_{s}": FloatDistribution(0.05, 20.0, log=True) for s in ("early", "middle", "late")},
}


def settings(tmp_path, trials: int = 5, in_flight: int = 1, space: str = "paper") -> StudySettings:
    return StudySettings(trials=trials, seed=0, alpha=(0.01, 1.0), gamma=(0.01, 1.0), space=space,
                         strength=(0.05, 20.0), temperature=0.7, num_layers=4,
                         segments=[(0, 1), (1, 3), (3, 4)], steer=SteerSettings("", "", 1, False, False, True, False, 8),
                         in_flight=in_flight, objective="paper", state_dir=str(tmp_path))


def rows_of(key: str, count: int, params: list[dict] | None = None) -> list[dict]:
    prompt_id, arm = key.split("/")
    return [{"prompt_id": int(prompt_id), "method": arm, "trial": t, **(params[t] if params else {}),
             "objective": 0.1 * t} for t in range(count)]


@pytest.mark.parametrize("space", SPACES.values(), ids=SPACES.keys())
@pytest.mark.parametrize("in_flight", [1, 3])
@pytest.mark.parametrize("seed", [0, 12345, 4294967295])
def test_bulk_start_up_draws_are_optunas_bit_for_bit(space, in_flight, seed):
    study, asked = new_study(seed), []
    while len(study.trials) < N_STARTUP:
        trials = [study.ask(space) for _ in range(in_flight)]
        for trial in trials:
            asked.append(trial.params)
            study.tell(trial, 0.5)
    assert startup_params(seed, space, 0, len(asked)) == asked
    assert startup_params(seed, space, 4, 3) == asked[4:7]


@pytest.mark.parametrize("space", ["paper", "product"])
@pytest.mark.parametrize("in_flight", [1, 4])
def test_a_study_replayed_from_its_rows_asks_what_the_uninterrupted_one_asks(tmp_path, in_flight, space):
    state = new_state("3/full", settings(tmp_path, trials=20, in_flight=in_flight, space=space))
    straight = new_study(state.seed)
    while len(straight.trials) < 12:
        trials = [straight.ask(state.space) for _ in range(in_flight)]
        for trial in trials:
            value = trial.params["alpha_all"] * trial.params.get("gamma_all", 1.0)
            straight.tell(trial, value)
            state.rows.append({"prompt_id": 3, "method": "full", "trial": len(state.rows),
                               **stored_params(trial.params, space), "objective": value})
    resumed = replay(state, in_flight, 20)
    assert resumed.ask(state.space).params == straight.ask(state.space).params  # a TPE trial, past start-up


def test_a_row_that_does_not_replay_is_refused(tmp_path):
    state = new_state("3/full", settings(tmp_path))
    state.rows = rows_of("3/full", 2, [{"alpha_all": 0.5, "gamma_all": 0.5}] * 2)
    with pytest.raises(RuntimeError, match="does not replay"):
        replay(state, 1, 5)


def test_shards_are_cut_from_every_study_and_a_finished_one_stays_masked_in_its_shard(tmp_path):
    keys = ["0/full", "0/prompt_only", "0/segmented", "1/full", "1/prompt_only", "1/segmented"]
    first = shard_file(tmp_path, keys[:3])
    append_round(first, rows_of("0/full", 1) + rows_of("0/prompt_only", 1) + rows_of("0/segmented", 1))
    latest, held = read_state_dir(tmp_path)
    shards = plan_shards(tmp_path, keys, 3, latest, held, trials=3)
    assert shards == [keys[:3], keys[3:]]  # 0/prompt_only is done, and still in its shard

    append_round(first, [r | {"trial": 1} for r in rows_of("0/full", 1) + rows_of("0/segmented", 1)])
    append_round(first, [r | {"trial": 2} for r in rows_of("0/full", 1) + rows_of("0/segmented", 1)])
    latest, held = read_state_dir(tmp_path)
    assert plan_shards(tmp_path, keys, 3, latest, held, trials=3) == [keys[3:]]


def test_regrouping_under_a_smaller_batch_carries_each_studys_history(tmp_path):
    keys = ["0/full", "0/prompt_only", "0/segmented", "1/full"]
    append_round(shard_file(tmp_path, keys), [row for k in keys for row in rows_of(k, 1)])
    latest, held = read_state_dir(tmp_path)
    shards = plan_shards(tmp_path, keys, 2, latest, held, trials=3)  # resumed with cluster.max_batch=2
    assert shards == [["0/full", "0/prompt_only"], ["0/segmented", "1/full"]]
    assert {k: len(v) for k, v in read_shard(shard_file(tmp_path, shards[1])).items()} == {"0/segmented": 1, "1/full": 1}
    append_round(shard_file(tmp_path, shards[1]), [r | {"trial": 1} for r in rows_of("1/full", 1)])
    assert {k: len(v) for k, v in read_state_dir(tmp_path)[0].items()} == {
        "0/full": 1, "0/prompt_only": 1, "0/segmented": 1, "1/full": 2}


def test_a_round_cut_short_by_a_kill_is_dropped_and_the_next_one_starts_clean(tmp_path):
    path = shard_file(tmp_path, ["0/full"])
    append_round(path, rows_of("0/full", 1))
    with path.open("ab") as out:
        out.write(b'{"rows": [{"prompt_id": 0, "method": "full", "tri')  # the kill
    assert len(read_shard(path)["0/full"]) == 1
    append_round(path, [r | {"trial": 1} for r in rows_of("0/full", 1)])
    assert [r["trial"] for r in read_shard(path)["0/full"]] == [0, 1]


def test_no_pickle_in_the_state_directory(tmp_path):
    append_round(shard_file(tmp_path, ["0/full"]), rows_of("0/full", 1))
    assert [p.suffix for p in tmp_path.iterdir()] == [".jsonl"]
    assert trial_params({"alpha_all": 0.2, "gamma_early": None, "objective": 1.0}) == {"alpha_all": 0.2}


def test_optuna_keeps_the_start_up_count_this_relies_on():
    assert optuna.samplers.TPESampler()._n_startup_trials == N_STARTUP
