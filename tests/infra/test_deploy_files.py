"""The deployment files are well-formed, consistent with each other and with the docs, and
hold no secrets: infra/docker-compose.yml, .env.example, the Dockerfiles and scripts, the
Kubernetes work-pool template and manifests, the accelerate configs.

    .venv/bin/python -m pytest tests/infra/test_deploy_files.py -q

`docker compose config` runs only where the compose plugin is installed (skipped otherwise);
everything else is parsed and checked here without Docker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "docker-compose.yml"
ENV_EXAMPLE = INFRA / ".env.example"
DOCS = ROOT / "docs" / "deploy.md"
WORK_POOL = INFRA / "kubernetes" / "gpu-work-pool.json"

SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|AUTH_STRING|ACCESS_KEY|API_KEY)", re.I)
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\}|\$\{[^{}]*\})*))?\}")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict:
    return compose()["services"]


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, nested defaults; $$ = $."""

    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name)
        if op in (":-", "-"):
            unset = value is None or (op == ":-" and value == "")
            return interpolate(arg, env) if unset else value
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise KeyError(f"{name}: {arg}")
            return value
        return value or ""

    prev = None
    while prev != text:
        prev, text = text, VAR.sub(one, text)
    return text


def compose_variables() -> dict[str, str | None]:
    """Every variable the compose file reads -> its operator (None, ':-', ':?')."""
    found: dict[str, str | None] = {}
    for m in VAR.finditer(COMPOSE.read_text().replace("$$", "\0")):  # $${X} is the container's, not compose's
        found.setdefault(m.group(1), m.group(2))
        if m.group(2) == ":?":
            found[m.group(1)] = ":?"
    return found


def filled_env() -> dict[str, str]:
    """.env.example with every empty secret filled by a dummy."""
    env = env_example()
    return {k: (v or f"dummy-{k.lower()}") for k, v in env.items()}


# ---------------------------------------------------------------- compose


def test_compose_defines_the_stack():
    svc = services()
    assert {"postgres", "minio", "minio-init", "mlflow", "mlflow-users", "prefect-server", "prefect-worker"} <= set(svc)


def test_every_long_running_service_has_a_healthcheck_and_one_shots_are_waited_for():
    svc = services()
    for name, spec in svc.items():
        if spec.get("restart") == "no":  # one-shot jobs: others wait for them to complete
            continue
        hc = spec.get("healthcheck") or {}
        assert hc.get("test"), f"service {name} has no healthcheck"
    for name, spec in svc.items():
        for dep, cond in (spec.get("depends_on") or {}).items():
            assert dep in svc, f"{name} depends on undefined service {dep}"
            if svc[dep].get("restart") == "no":
                assert cond["condition"] == "service_completed_successfully", (name, dep)
            else:
                assert cond["condition"] == "service_healthy", (name, dep)


def test_published_ports_bind_to_loopback_by_default():
    env = filled_env()
    env.pop("BIND_ADDR")  # the default must be loopback even without .env
    published = 0
    for name, spec in services().items():
        for port in spec.get("ports", []):
            assert isinstance(port, str) and port.startswith("${BIND_ADDR:-127.0.0.1}:"), (name, port)
            assert interpolate(port, env).startswith("127.0.0.1:"), (name, port)
            published += 1
    assert published >= 3
    assert "ports" not in services()["postgres"], "PostgreSQL is not published"


def test_no_secret_is_inlined_in_compose():
    """Secret-looking variables are required references (${VAR:?...}): no value, no default."""
    for name, spec in services().items():
        environment = spec.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: use the mapping form for environment"
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", str(value)), (
                    f"{name}.{key} = {value!r} is not ${{VAR:?}}")
    text = COMPOSE.read_text().replace("$$", "\0")
    for m in VAR.finditer(text):
        if SECRET_NAME.search(m.group(1)):
            assert m.group(2) == ":?", f"${{{m.group(1)}{m.group(2) or ''}...}} gives a secret a default"


def test_required_variables_are_all_in_env_example_and_the_file_interpolates():
    env = env_example()
    used = compose_variables()
    missing = sorted(v for v, op in used.items() if op == ":?" and v not in env)
    assert not missing, f"required by compose but not in .env.example: {missing}"
    undocumented = sorted(v for v in used if v not in env and f"# {v}=" not in ENV_EXAMPLE.read_text())
    assert not undocumented, f"compose reads variables .env.example does not mention: {undocumented}"
    rendered = interpolate(COMPOSE.read_text().replace("$$", "\0"), filled_env())
    assert yaml.safe_load(rendered.replace("\0", "$"))["services"]
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(COMPOSE.read_text(), {k: v for k, v in filled_env().items() if k != "POSTGRES_PASSWORD"})


def test_env_example_holds_placeholders_only():
    for key, value in env_example().items():
        if SECRET_NAME.search(key):
            assert value == "", f".env.example: {key} must be empty (a placeholder), not {value!r}"
    assert env_example()["BIND_ADDR"] == "127.0.0.1"
    assert ".env" in (INFRA / ".gitignore").read_text().split()


def test_no_credential_shapes_anywhere_in_infra_or_docs():
    from landmark_lora.tracking import _SECRET_VALUE

    # One line at a time ([ \t], and $ under (?m) is the end of the line): an empty placeholder
    # (`PASSWORD=` in .env.example) is fine, and must not swallow the next line as its value.
    suspicious = re.compile(r"(?im)(password|secret|token)[ \t]*[:=][ \t]*['\"]?(?!\$|\{|\*|<|\"\"|''|$)"
                            r"(?P<value>[A-Za-z0-9/+_\-]{8,})")
    for path in [*INFRA.rglob("*"), DOCS]:
        if not path.is_file() or path.name == ".env":
            continue
        text = path.read_text(errors="replace")
        assert not _SECRET_VALUE.search(text), f"{path}: {_SECRET_VALUE.search(text).group(0)}"
        for hit in suspicious.finditer(text):
            # `extraEnvVarsSecret: prefect-worker-auth` names a Kubernetes Secret the same file
            # creates (`kubectl create secret generic prefect-worker-auth`): a reference, not a value.
            if re.search(rf"create secret generic {re.escape(hit['value'])}\b", text):
                continue
            raise AssertionError(f"{path}: looks like an inlined secret: {hit.group(0)}")


def test_mlflow_runs_with_auth_postgres_s3_and_allowed_hosts():
    script = (INFRA / "mlflow" / "entrypoint.sh").read_text()
    for flag in ("--app-name basic-auth", "--serve-artifacts", "--artifacts-destination \"s3://", "--allowed-hosts"):
        assert flag in script, flag
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in script and "MLFLOW_BACKEND_STORE_URI" in script
    env = services()["mlflow"]["environment"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "ports" in services()["mlflow"]
    subprocess.run(["sh", "-n", str(INFRA / "mlflow" / "entrypoint.sh")], check=True)
    subprocess.run(["sh", "-n", str(INFRA / "postgres" / "init-databases.sh")], check=True)


def test_prefect_server_on_postgres_and_worker_reserves_gpus():
    svc = services()
    server = svc["prefect-server"]["environment"]
    assert server["PREFECT_SERVER_DATABASE_DRIVER"] == "postgresql+asyncpg"
    assert server["PREFECT_SERVER_DATABASE_HOST"] == "postgres"
    worker = svc["prefect-worker"]
    cmd = worker["command"]
    assert cmd[:3] == ["prefect", "worker", "start"] and cmd[cmd.index("--type") + 1] == "process"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert worker["environment"]["LANDMARK_LORA_HOME"] == "/workspace"


def test_worker_pool_matches_prefect_yaml():
    prefect_yaml = ROOT / "prefect.yaml"
    if not prefect_yaml.exists():
        pytest.skip("prefect.yaml not present")
    spec = yaml.safe_load(prefect_yaml.read_text())
    pools = {d["work_pool"]["name"] for d in spec["deployments"] if d.get("work_pool")}
    cmd = services()["prefect-worker"]["command"]
    pool = interpolate(cmd[cmd.index("--pool") + 1], {})
    assert pool in pools, f"compose worker polls {pool!r}, prefect.yaml deploys to {pools}"
    assert env_example()["PREFECT_WORK_POOL"] in pools
    names = {d["name"] for d in spec["deployments"]}
    assert "nightly-retrain" in names


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")
def test_docker_compose_config_validates(tmp_path):
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"docker compose plugin not installed: {(probe.stderr or probe.stdout).strip()[:120]}")
    env_file = tmp_path / "test.env"
    env_file.write_text("\n".join(f"{k}={v}" for k, v in filled_env().items()) + "\n")
    out = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env_file), "config",
                          "--format", "json"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)
    for name, spec in config["services"].items():
        for port in spec.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", (name, port)
    empty = tmp_path / "empty.env"
    empty.write_text("")
    missing = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "--env-file", str(empty), "config", "-q"],
                             capture_output=True, text=True, cwd=tmp_path, check=False,
                             env={k: v for k, v in os.environ.items() if k not in filled_env()})
    assert missing.returncode != 0  # required secrets unset -> compose refuses


# ---------------------------------------------------------------- docs


def doc_services() -> set[str]:
    text = DOCS.read_text()
    section = text.split("## Services", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\|\s*`([a-z0-9-]+)`\s*\|", section, re.M))


def test_docs_name_exactly_the_compose_services():
    assert doc_services() == set(services())


def test_every_service_a_docs_command_uses_is_defined():
    svc = set(services())
    cmd = re.compile(r"docker compose [^\n`]*?\b(?:up|logs|exec|run|restart|stop|start|ps|pull|build)\b"
                     r"((?:\s+[-\w.=/]+)*)")
    used = set()
    for m in cmd.finditer(DOCS.read_text()):
        for word in m.group(1).split():
            if not word.startswith("-") and "=" not in word and "/" not in word:
                used.add(word)
                break  # the first bare word is the service; the rest is its command
    assert used, "docs/deploy.md shows no docker compose commands"
    assert used <= svc, f"docs use undefined services: {sorted(used - svc)}"


def test_docs_cover_the_path_from_bare_server_to_nightly_and_several_nodes():
    text = DOCS.read_text()
    for needle in ("nvidia-ctk", "cp infra/.env.example infra/.env", "prefect deploy --name nightly-retrain",
                   "dvc remote add -d s3 s3://", "dvc remote modify s3 endpointurl", "dvc remote modify --local s3",
                   "train.num_processes", "infra/accelerate/8gpu.yaml", "infra/accelerate/multi-node.yaml",
                   "infra/accelerate/fsdp.yaml", "dvc pull", ".cache", "gpu-work-pool.json", "make infra-smoke"):
        assert needle in text, f"docs/deploy.md does not mention {needle!r}"


# ---------------------------------------------------------------- Kubernetes


def test_work_pool_template_is_valid_for_prefect_and_requests_gpus():
    from prefect.server.schemas.actions import WorkPoolCreate
    from prefect.utilities.templating import apply_values

    template = json.loads(WORK_POOL.read_text())
    WorkPoolCreate(name="landmark-lora-k8s", type="kubernetes", base_job_template=template)  # Prefect's own check
    props = template["variables"]["properties"]
    defaults = {k: v["default"] for k, v in props.items() if "default" in v}

    import jsonschema

    for key, value in defaults.items():  # what the server checks when the pool is created
        schema = {k: v for k, v in props[key].items() if k not in ("title", "description", "default")}
        jsonschema.validate(value, schema)

    config = apply_values(template["job_configuration"], {**defaults, "name": "retrain", "env": {"A": "1"}})
    pod = config["job_manifest"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert "cpu" not in container["resources"]["limits"]  # unset variables are dropped, not sent empty
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {v["name"] for v in pod["volumes"]} == {"workspace", "dshm"}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/workspace", "/dev/shm"}
    refs = {next(iter(e.values()))["name"] for e in container["envFrom"]}
    assert refs == {"landmark-lora-config", "landmark-lora-secrets"}
    eight = apply_values(template["job_configuration"], {**defaults, "gpu_count": 8})
    container = eight["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8


def test_kubernetes_manifests_parse_and_match_the_template_defaults():
    props = json.loads(WORK_POOL.read_text())["variables"]["properties"]
    docs = {}
    for path in sorted((INFRA / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "kind" in doc:
                assert doc.get("apiVersion") and doc["metadata"]["name"], path
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    assert ("Namespace", props["namespace"]["default"]) in docs
    cm = docs[("ConfigMap", props["config_map_name"]["default"])]
    assert all(isinstance(v, str) for v in cm["data"].values())
    assert not [k for k in cm["data"] if SECRET_NAME.search(k)], "secrets belong in the Secret, not the ConfigMap"
    assert cm["data"]["LANDMARK_LORA_HOME"] == "/workspace"
    pvc = docs[("PersistentVolumeClaim", props["workspace_pvc"]["default"])]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    values = yaml.safe_load((INFRA / "kubernetes" / "worker-values.yaml").read_text())
    assert values["worker"]["config"]["type"] == "kubernetes"


# ---------------------------------------------------------------- images and accelerate


def test_dockerfiles_install_pinned_versions_and_ignore_the_workspace():
    trainer = (INFRA / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{CUDA_IMAGE\}", trainer, re.M) and "nvidia/cuda:" in trainer
    assert '-c constraints.txt -e ".[server]"' in trainer and "USER trainer" in trainer
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") if "*" in ignore else 0] == "*" and "!src/" in ignore
    mlflow = (INFRA / "mlflow" / "Dockerfile").read_text()
    assert "-c /tmp/constraints.txt" in mlflow and "psycopg[binary]" in mlflow and "Flask-WTF" in mlflow


def test_server_extra_is_pinned_in_constraints():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {re.split(r"[=<>\[]", line)[0].lower().replace("_", "-")
            for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    for req in project["optional-dependencies"]["server"] + ["moto"]:
        name = re.split(r"[=<>\[ ]", req)[0].lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in constraints.txt"
    assert "psycopg-binary" in pins


@pytest.mark.parametrize("name,kind,procs", [("1gpu", "NO", 1), ("8gpu", "MULTI_GPU", 8),
                                             ("multi-node", "MULTI_GPU", 16), ("fsdp", "FSDP", 8)])
def test_accelerate_configs_load_and_launch_as_intended(name, kind, procs):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    path = INFRA / "accelerate" / f"{name}.yaml"
    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type.name == kind and cfg.num_processes == procs
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "landmark_lora.stages.train"])
    args, _, _ = _validate_launch_command(args)
    assert args.num_processes == procs
    if kind == "FSDP":
        from accelerate.utils import FullyShardedDataParallelPlugin
        from accelerate.utils.launch import prepare_multi_gpu_env

        assert args.use_fsdp
        env = prepare_multi_gpu_env(args)
        saved = dict(os.environ)
        try:
            os.environ.update(env)
            plugin = FullyShardedDataParallelPlugin()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert plugin.fsdp_version == 2 and plugin.state_dict_type.name == "FULL_STATE_DICT"
        assert plugin.transformer_cls_names_to_wrap == ["BasicTransformerBlock"]


def test_fsdp_wraps_a_block_the_unet_has(tmp_path):
    """The wrap class named in fsdp.yaml exists in the (tiny) UNet, as in real SD UNets."""
    from landmark_lora.config import parse_params
    from landmark_lora.diffusion.components import load_components, resolve_base

    params = parse_params({"model": {"dir": str(tmp_path / "models")}})
    parts = load_components(resolve_base(params.model), unet=True, vae=False, text=False)
    fsdp = yaml.safe_load((INFRA / "accelerate" / "fsdp.yaml").read_text())["fsdp_config"]
    wrap = fsdp["fsdp_transformer_layer_cls_to_wrap"]
    assert any(type(m).__name__ == wrap for m in parts.unet.modules())


# ---------------------------------------------------------------- scripts against the local PostgreSQL


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.postgres
@pytest.mark.skipif(not _pg_reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432 (.ci/run starts it)")
def test_init_databases_script_creates_each_database():
    import secrets

    import psycopg

    names = [f"landmark_init_{secrets.token_hex(3)}_{i}" for i in range(2)]
    env = {**os.environ, "PGHOST": "127.0.0.1", "POSTGRES_USER": "postgres", "POSTGRES_DB": "test",
           "POSTGRES_DATABASES": " ".join(names)}
    try:
        out = subprocess.run(["sh", str(INFRA / "postgres" / "init-databases.sh")], env=env, capture_output=True,
                             text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
            found = {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,))}
        assert found == set(names)
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_create_user_script_is_stdlib_only():
    """The compose job runs it on a bare python image: no third-party imports."""
    import ast

    tree = ast.parse((INFRA / "mlflow" / "create_user.py").read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules
