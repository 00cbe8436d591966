"""Shard state files: a study's state survives regrouping on a resume, and the latest payload wins."""

from __future__ import annotations

from sweep.arms import arm_by_name
from sweep.stages.tune import regroup
from sweep.tuning import finished, latest_payloads, new_state, read_states, shard_file, write_states


def state(key: str, trials: int):  # noqa: ANN201 - a StudyState
    prompt_id, arm = key.split("/")
    made = new_state(0, int(prompt_id), arm_by_name(arm))
    made.rows = [{"trial": t, "objective": 0.1 * t} for t in range(trials)]
    return made


def test_regrouping_under_a_smaller_batch_loses_no_finished_study(tmp_path):
    # The first run's shard: prompt_only finished after its one trial, the others after one of three.
    first = ["0/full", "0/prompt_only", "0/segmented", "1/full"]
    write_states(shard_file(tmp_path, first), {k: state(k, 1) for k in first})
    payloads = latest_payloads(tmp_path)
    todo = [k for k in first if not finished(k, payloads[k][1], 3)]
    assert todo == ["0/full", "0/segmented", "1/full"]

    shards = regroup(tmp_path, todo, 2, payloads)  # resumed with cluster.max_batch=2
    assert shards == [["0/full", "0/segmented"], ["1/full"]]
    assert set(read_states(shard_file(tmp_path, shards[0]))) == {"0/full", "0/segmented"}
    write_states(shard_file(tmp_path, shards[0]), {k: state(k, 3) for k in shards[0]})  # the new shard goes on

    latest = latest_payloads(tmp_path, rows_only=True)
    assert {k: len(rows) for k, (_, rows) in latest.items()} == {
        "0/full": 3, "0/prompt_only": 1, "0/segmented": 3, "1/full": 1}
    assert all(study == b"" for study, _ in latest.values())


def test_a_resumed_study_asks_what_an_uninterrupted_one_asks(tmp_path):
    from optuna.distributions import FloatDistribution

    space = {"alpha_all": FloatDistribution(0.01, 1.0), "gamma_all": FloatDistribution(0.01, 1.0)}
    straight, saved = state("3/full", 0), state("3/full", 0)
    for study in (straight.study, saved.study):
        trial = study.ask(space)
        study.tell(trial, 0.5)
    write_states(shard_file(tmp_path, ["3/full"]), {"3/full": saved})
    resumed = read_states(shard_file(tmp_path, ["3/full"]))["3/full"]
    assert resumed.study.ask(space).params == straight.study.ask(space).params
