"""`fusion-steering doctor`: the CPU --quick run end to end (every documented JSON key, sane figures), the nominal
peak table, the first-step logits against the engine's own first token, and a failing model recorded, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sweep.cli import main
from sweep.doctor import first_step_logits, flops_per_token, nominal_bf16_peak, parameter_count

from conftest import CONF

TOP_KEYS = {"command", "cwd", "python_executable", "started", "device", "device_name", "versions", "environment",
            "compute_dtype", "plan", "peak", "results", "targets", "seconds"}
RESULT_KEYS = {"model", "quantization", "config", "weights", "load_s", "weight_dtype", "compute_dtype", "parameters",
               "agreement", "bench", "smoke"}
AGREEMENT_KEYS = {"trials", "new_tokens", "equal_texts", "equal_first_tokens", "max_first_logit_gap",
                  "first_logit_scale", "seconds"}
BENCH_KEYS = {"new_tokens", "paper_trials", "faithful_trials", "cached_trials", "flops_per_token", "paper_loop",
              "faithful", "cached", "faithful_by_batch", "cached_by_batch", "speedup_faithful", "speedup_cached",
              "cached_tflops", "mfu_cached", "mfu_cached_nominal", "steer_overhead", "seconds"}


@pytest.mark.parametrize("name, expected", [
    ("NVIDIA H200", ("H200", 989.0)),
    ("NVIDIA H100 80GB HBM3", ("H100", 989.0)),
    ("NVIDIA H100 PCIe", ("H100 PCIe", 756.0)),
    ("NVIDIA GH200 480GB", ("GH200", 989.0)),
    ("NVIDIA H200 NVL", ("H200 NVL", 835.0)),
    ("NVIDIA A100-SXM4-80GB", ("A100", 312.0)),
    ("NVIDIA L40S", ("L40S", 362.0)),
    ("NVIDIA L4", ("L4", 121.0)),
    ("NVIDIA A10", ("A10", 125.0)),
    ("NVIDIA A10G", None),  # not the A10's figure: an unknown card has none
    ("Tesla T4", None),
    ("", None),
])
def test_nominal_peak_matches_whole_names_most_specific_first(name, expected):
    assert nominal_bf16_peak(name) == expected


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("doctor")
    argv = ["doctor", "--device", "cpu", "--quick", "--out", str(out), "--conf-dir", str(CONF)]
    threads = torch.get_num_threads()
    assert main(argv) == 0
    assert torch.get_num_threads() == threads  # --quick's one thread is not left behind
    return argv, out, json.loads((out / "doctor.json").read_text())


def test_quick_cpu_run_records_every_documented_figure(quick_run, capsys):
    argv, out, result = quick_run
    assert TOP_KEYS <= result.keys()
    assert result["command"] == "fusion-steering " + " ".join(argv)
    assert result["device"] == "cpu" and result["compute_dtype"] == "float32"
    assert result["versions"]["torch"] == torch.__version__ and result["versions"]["transformers"]
    assert result["plan"]["batch_sizes"] == [2, 4] and result["plan"]["new_tokens"] == 8
    assert result["plan"]["threads"] == 1 and result["environment"]["threads"] == 1
    assert result["peak"]["measured_dtype"] == "float32" and result["peak"]["measured_tflops"] > 0
    assert result["peak"]["nominal_tflops"] is None  # no nominal figure for a CPU
    assert [(r["model"], r["quantization"]) for r in result["results"]] == [("tiny-random", "none"),
                                                                           ("tiny-random", "8bit")]
    none, eight = result["results"]
    assert RESULT_KEYS <= none.keys() and "error" not in none
    assert none["compute_dtype"] == "float32" and none["weights"].startswith("random")
    assert AGREEMENT_KEYS <= none["agreement"].keys() and BENCH_KEYS <= none["bench"].keys()
    # Unquantized fp32: a row batched with others generates what it generates alone, and its first logits match.
    assert none["agreement"]["trials"] == 4 and none["agreement"]["equal_texts"] == 1.0
    assert none["agreement"]["equal_first_tokens"] == 1.0
    assert 0 <= none["agreement"]["max_first_logit_gap"] < 1e-3 * none["agreement"]["first_logit_scale"]
    bench = none["bench"]
    for mode in ("paper_loop", "faithful", "cached"):
        assert bench[mode]["trials_per_s"] > 0
        assert bench[mode]["tokens_per_s"] == pytest.approx(bench[mode]["trials_per_s"] * 8)
    assert [r["batch"] for r in bench["cached_by_batch"]] == [2, 4]
    assert bench["speedup_cached"] == pytest.approx(bench["cached"]["trials_per_s"] / bench["paper_loop"]["trials_per_s"])
    assert 0 < bench["mfu_cached"] < 1 and bench["mfu_cached_nominal"] is None
    assert bench["mfu_cached"] == pytest.approx(bench["cached"]["tokens_per_s"] * bench["flops_per_token"]
                                                / (result["peak"]["measured_tflops"] * 1e12))
    assert [(r["mode"], r["batch"]) for r in bench["steer_overhead"]] == [
        ("cached", 2), ("cached", 4), ("faithful", 2)]  # faithful capped at --faithful-trials (2 in --quick)
    assert all(r["steered_tokens_per_s"] > 0 and r["unsteered_tokens_per_s"] > 0 for r in bench["steer_overhead"])
    assert none["smoke"] == {"skipped": "--quick runs no sweep (add --smoke)"}
    # 8-bit: a result (bitsandbytes is installed here) or, where it is not, a recorded error.
    assert ("error" in eight) != ("bench" in eight)
    if "bench" in eight:
        assert eight["weight_dtype"].startswith("int8")
        assert 0 <= eight["agreement"]["equal_texts"] <= 1
        assert eight["bench"]["cached"]["trials_per_s"] > 0
        assert eight["speed_vs_unquantized"]["cached"] == pytest.approx(
            eight["bench"]["cached"]["trials_per_s"] / bench["cached"]["trials_per_s"])
    assert result["targets"]["applies"] is False and result["targets"]["checks"] == []  # no SmolLM2 in --quick


def test_a_failing_model_is_recorded_and_the_run_goes_on(tmp_path, capsys):
    assert main(["doctor", "--device", "cpu", "--out", str(tmp_path), "--conf-dir", str(CONF),
                 "--models", "no-such-model", "--quantizations", "none"]) == 0
    result = json.loads((tmp_path / "doctor.json").read_text())
    (row,) = result["results"]
    assert row["model"] == "no-such-model" and "unknown model 'no-such-model'" in row["error"]
    assert "ERROR" in capsys.readouterr().out


def test_cuda_without_a_cuda_device_is_an_input_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert main(["doctor", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "doctor.json").exists()


def test_first_step_logits_give_the_engines_first_tokens(tiny_engine):
    from sweep.bench import make_trials
    from sweep.doctor import _steer

    trials = make_trials(tiny_engine, 3, seed=1)
    prompts = [t.prompt for t in trials]
    logits = first_step_logits(tiny_engine, prompts, _steer(trials))
    assert logits.shape == (3, tiny_engine.model.config.vocab_size)
    ids, mask = tiny_engine.encode(prompts, templated=False)
    with torch.no_grad():
        from sweep.steering import fusion_hooks
        steer = _steer(trials)
        with fusion_hooks(tiny_engine.layers, steer) as positions:
            first = tiny_engine._greedy(ids, mask, 1, positions, False, False, steer.exclude_sink)
    assert first[:, 0].tolist() == logits.argmax(-1).tolist()
    # Steering changes them: the logits are the steered pass's, not the plain model's.
    plain = tiny_engine.model(input_ids=ids, attention_mask=mask,
                              position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits[:, -1]
    assert not torch.allclose(plain.float(), logits)


def test_flops_per_token_counts_the_weights_as_the_bench_does(tiny_engine):
    from sweep import bench

    assert flops_per_token(tiny_engine) == bench.flops_per_token(tiny_engine)
    assert parameter_count(tiny_engine.model) == sum(p.numel() for p in tiny_engine.model.parameters())


def test_a_4bit_weight_counts_as_its_unpacked_shape():
    packed = torch.nn.Parameter(torch.zeros(8, 1, dtype=torch.uint8), requires_grad=False)
    packed.quant_state = type("QuantState", (), {"shape": torch.Size([4, 4])})()
    module = torch.nn.Module()
    module.weight = packed
    assert parameter_count(module) == 16


def test_the_budget_guess_uses_the_closest_check_done():
    from sweep.doctor import expected_seconds

    assert expected_seconds({}, "a", False) == 0.0
    spent = {("a", False): 10.0, ("b", False): 30.0}
    assert expected_seconds(spent, "a", True) == 20.0  # a's unquantized time, doubled
    assert expected_seconds(spent, "c", False) == 30.0  # the longest so far
    spent[("a", True)] = 12.0
    assert expected_seconds(spent, "a", True) == 12.0


@pytest.mark.parametrize("flags, message", [
    (["--new-tokens", "0"], "must be at least 1"),
    (["--quantizations", "none,3bit"], "3bit"),
    (["--batch-sizes", "0"], "positive integers"),
    (["--models", ""], "at least one name"),
])
def test_bad_sizes_are_input_errors(tmp_path, capsys, flags, message):
    assert main(["doctor", "--device", "cpu", "--quick", "--out", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "doctor.json").exists()


@pytest.mark.slow  # a Ray cluster, Tune and MLflow: a minute or two
def test_quick_with_smoke_runs_the_sweep_on_the_device(tmp_path):
    assert main(["doctor", "--device", "cpu", "--quick", "--smoke", "--out", str(tmp_path), "--conf-dir", str(CONF),
                 "--quantizations", "none"]) == 0
    (row,) = json.loads((tmp_path / "doctor.json").read_text())["results"]
    smoke = row["smoke"]
    assert smoke["returncode"] == 0, smoke.get("error")
    assert "model.name=tiny-random" in smoke["command"] and "model.device=cpu" in smoke["command"]
    assert "cluster.num_replicas=1" in smoke["command"]
    assert Path(smoke["report"]).stat().st_size > 1000
    assert (tmp_path / "smoke" / "tiny-random-none" / "config.yaml").exists()
