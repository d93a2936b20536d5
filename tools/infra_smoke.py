"""Infra smoke: the server deployment path, for real, on one machine with no Docker.

    make infra-smoke                                   # what CI runs (through `make test`)
    .venv/bin/python -m tools.infra_smoke              # the same, from the repository root
    .venv/bin/python -m tools.infra_smoke --keep       # keep the workspace and print where
    LANDMARK_SMOKE_PG_ADMIN=postgresql://me@db.internal:5432/postgres  .venv/bin/python -m tools.infra_smoke
    MLFLOW_BACKEND_URI=postgresql://me@db.internal:5432/mlflow_smoke   .venv/bin/python -m tools.infra_smoke

What runs, all on 127.0.0.1 and all torn down afterwards (also on failure or Ctrl-C):
1. PostgreSQL: a throwaway database ``landmark_smoke_<random>`` created through
   ``LANDMARK_SMOKE_PG_ADMIN`` (default ``postgresql://postgres@127.0.0.1:5432/test``, trust auth)
   and dropped at the end. With ``MLFLOW_BACKEND_URI`` set, that database is used as is and kept.
2. S3: moto's server mode (``python -m moto.server``) on a free port, with dummy credentials
   and a bucket, standing in for MinIO.
3. ``mlflow server`` started by infra/mlflow/entrypoint.sh, the script the compose stack runs:
   PostgreSQL backend, ``--artifacts-destination s3://...`` with ``--serve-artifacts``,
   ``--app-name basic-auth`` (admin password from the environment), ``--allowed-hosts``.
4. infra/mlflow/create_user.py (the compose job ``mlflow-users``) creates the non-admin
   ``trainer`` user, is re-run (idempotent) and re-syncs a rotated password.
5. The pipeline's own code over HTTP as that ``trainer`` user: cache latents, train the
   tiny base for 2 steps (tracking.configure/run_tags/run_params, adapter artifacts), evaluate,
   then promote.register_challenger + promote. A credential is planted in a param and in an
   environment-derived tag to prove tracking.scrub keeps it out of the server.
6. Checks through the MLflow REST API: anonymous requests get 401; the run, its params and tags
   (no credential), the adapter artifacts (in the S3 bucket, byte-identical when downloaded
   back), the run row in PostgreSQL, the registered version and its ``champion`` alias.

Exit status 0 when every check passed; 1 with ``infra-smoke: FAILED: <what>`` otherwise;
2 when PostgreSQL cannot be reached (with the command that starts it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from landmark_lora.env import apply_offline_defaults
from tests.helpers.ports import free_port
from tests.helpers.tiny_data import write_processed

DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PG_START_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
BUCKET = "landmark-mlflow"
ADMIN_USER, TRAINER_USER = "admin", "trainer"
REGISTERED_MODEL = "landmark-lora-smoke"
# A dev tool of the checkout: it starts the server with the checkout's own infra/ scripts.
ENTRYPOINT = Path(__file__).resolve().parents[1] / "infra" / "mlflow" / "entrypoint.sh"
CREATE_USER = ENTRYPOINT.with_name("create_user.py")
# Dummy S3 credentials: moto accepts anything; they only have to look like the real variables.
S3_ENV = {"AWS_ACCESS_KEY_ID": "smoke-access-key", "AWS_SECRET_ACCESS_KEY": "smoke-secret-key",
          "AWS_DEFAULT_REGION": "us-east-1"}


class SmokeFailure(RuntimeError):
    """A check failed; the message says which and what was seen."""


class PostgresUnreachable(SmokeFailure):
    pass


_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"infra-smoke: [{time.monotonic() - _T0:5.1f}s] {msg}", flush=True)


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeFailure(what)
    log(f"ok   {what}")


def wait_http(url: str, proc: subprocess.Popen, log_file: Path, timeout: float, what: str) -> None:
    """Poll ``url`` until it answers 200; fail early (with the log tail) if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SmokeFailure(f"{what} exited with status {proc.returncode} while starting:\n{tail(log_file)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SmokeFailure(f"{what} did not answer {url} within {timeout:.0f}s:\n{tail(log_file)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen | None, what: str) -> None:
    """SIGTERM the process group we started (mlflow forks uvicorn workers), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    log(f"stopped {what}")


# ---------------------------------------------------------------- PostgreSQL


def _pg_connect(uri: str):
    import psycopg

    try:
        return psycopg.connect(uri, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        raise PostgresUnreachable(
            f"cannot connect to PostgreSQL at {_redact(uri)}: {str(err).strip().splitlines()[0]}\n"
            f"  start the local cluster with: {PG_START_HINT}\n"
            "  or point LANDMARK_SMOKE_PG_ADMIN (a role that may CREATE DATABASE) or MLFLOW_BACKEND_URI at yours"
        ) from err


def _redact(uri: str) -> str:
    from landmark_lora.tracking import scrub

    return scrub({"uri": uri})["uri"]


@dataclass
class Database:
    """Where the server keeps its tables: a URI for this process, and the entrypoint's env."""

    uri: str
    entrypoint_env: dict[str, str]


@contextlib.contextmanager
def throwaway_database(admin_uri: str) -> Iterator[Database]:
    """A fresh role and database ``landmark_smoke_<random>``, dropped afterwards (even on failure).

    The role's password is random and full of URL-special characters, and the server gets it
    as POSTGRES_* parts, exactly as the compose stack passes them: the entrypoint must encode
    it (and escape % for configparser) or the server cannot connect."""
    from urllib.parse import quote, urlsplit

    from psycopg import sql

    name = f"landmark_smoke_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12) + "%/@:?#"
    with _pg_connect(admin_uri) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name)))
    log(f"created role and database {name}")
    admin = urlsplit(admin_uri)
    host, port = admin.hostname or "127.0.0.1", str(admin.port or 5432)
    try:
        yield Database(
            uri=f"postgresql://{name}:{quote(password, safe='')}@{host}:{port}/{name}",
            entrypoint_env={"POSTGRES_HOST": host, "POSTGRES_PORT": port, "POSTGRES_USER": name,
                            "POSTGRES_PASSWORD": password, "MLFLOW_DB": name, "MLFLOW_AUTH_DB": name},
        )
    finally:
        with _pg_connect(admin_uri) as conn:
            # FORCE (PostgreSQL 13+): a server that died mid-request may still hold connections.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        log(f"dropped database and role {name}")


# ---------------------------------------------------------------- the services


@dataclass
class Stack:
    workdir: Path
    db: Database
    s3_port: int = 0
    mlflow_port: int = 0
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    trainer_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def spawn(self, what: str, cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
        log_file = self.workdir / f"{what}.log"
        fh = log_file.open("wb")
        # Own process group, so stop() ends the server and the workers it forks, nothing else.
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                                start_new_session=True)
        fh.close()
        self.procs.append((what, proc))
        return proc, log_file

    def start_s3(self) -> None:
        self.s3_port = free_port()
        proc, log_file = self.spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                             "-p", str(self.s3_port)], {**os.environ, **S3_ENV})
        wait_http(self.s3_url + "/moto-api/", proc, log_file, 60, "moto S3 server")
        self.s3().create_bucket(Bucket=BUCKET)
        log(f"S3 (moto) on {self.s3_url}, bucket {BUCKET}")

    def s3(self):
        import boto3

        # Credentials passed explicitly: the pipeline side of this process never sees them.
        return boto3.client("s3", endpoint_url=self.s3_url, aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
                            region_name=S3_ENV["AWS_DEFAULT_REGION"])

    def start_mlflow(self) -> tuple[subprocess.Popen, Path]:
        """Start the server with infra/mlflow/entrypoint.sh, the script the compose stack runs.

        Returns at once: the server takes ~15 s to migrate its databases."""
        self.mlflow_port = free_port()
        if not ENTRYPOINT.exists():
            raise SmokeFailure(f"{ENTRYPOINT} is missing: run the smoke from a checkout of the repository")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "POSTGRES_"))}
        apply_offline_defaults(env)  # MLFLOW_DISABLE_TELEMETRY went with the MLFLOW_* above
        env.update(S3_ENV)
        env.update({
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # this venv's mlflow
            **self.db.entrypoint_env,  # the auth tables sit beside the tracking ones
            "MLFLOW_ADMIN_PASSWORD": self.admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
            "S3_BUCKET": BUCKET,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_url,
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(self.mlflow_port),
            "MLFLOW_WORKERS": "1",
            "TMPDIR": str(self.workdir),  # the rendered basic_auth.ini goes away with the workdir
        })
        return self.spawn("mlflow", ["sh", str(ENTRYPOINT)], env)

    def stop_all(self) -> None:
        for what, proc in reversed(self.procs):
            stop(proc, what)


# ---------------------------------------------------------------- REST helpers


def rest(stack: Stack, method: str, path: str, auth: tuple[str, str] | None,
         body: dict | None = None, query: str = "") -> tuple[int, dict]:
    import base64

    url = f"{stack.mlflow_url}/api/2.0/mlflow/{path}" + (f"?{query}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, {}


def create_user(stack: Stack) -> str:
    env = {**os.environ, "MLFLOW_TRACKING_URI": stack.mlflow_url, "MLFLOW_ADMIN_USER": ADMIN_USER,
           "MLFLOW_ADMIN_PASSWORD": stack.admin_password, "MLFLOW_TRAINER_USER": TRAINER_USER,
           "MLFLOW_TRAINER_PASSWORD": stack.trainer_password}
    proc = subprocess.run([sys.executable, str(CREATE_USER)], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SmokeFailure(f"{CREATE_USER.name} exited {proc.returncode}: {output.strip()}")
    for secret in (stack.admin_password, stack.trainer_password):
        if secret in output:
            raise SmokeFailure(f"{CREATE_USER.name} printed a password")
    return output


# ---------------------------------------------------------------- the pipeline side


def smoke_params(stack: Stack):
    from landmark_lora.config import parse_params

    return parse_params({
        # lr 1e-2: two steps at the default 1e-3 change the tiny base's image less than the
        # promotion.min_output_change gate asks, and the first adapter must be promoted.
        "train": {"max_steps": 2, "batch_size": 2, "eval_every": 2, "checkpoint_every": 100, "warmup_steps": 1,
                  "eval_timesteps": [200, 600], "learning_rate": 1e-2},
        "eval": {"max_prompts": 2, "num_inference_steps": 2},
        # A scratch folder, not a git + DVC checkout: its lineage is incomplete by design (the
        # version is tagged reproducible=false and checked below); promotion is allowed anyway.
        "promotion": {"registered_model": REGISTERED_MODEL, "allow_unreproducible": True},
        # Planted: a credential in a param. MLFLOW_TRACKING_URI wins, so it is never used,
        # but run_params logs it: it must reach the server as ://***@.
        "mlflow": {"system_metrics": False, "experiment": "landmark-lora-smoke",
                   "tracking_uri": f"http://{TRAINER_USER}:{stack.trainer_password}@127.0.0.1:{stack.mlflow_port}"},
    }, source="infra-smoke params")


@contextlib.contextmanager
def pipeline_env(stack: Stack, workspace: Path, planted_token: str) -> Iterator[None]:
    """chdir into the workspace and set the client's environment, restored afterwards."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    for key in list(os.environ):
        if key.startswith(("AWS_", "MLFLOW_")):  # the client needs no S3 credentials: artifacts are proxied
            del os.environ[key]
    apply_offline_defaults()  # MLFLOW_DISABLE_TELEMETRY back
    os.environ.update({
        "MLFLOW_TRACKING_URI": stack.mlflow_url,
        "MLFLOW_TRACKING_USERNAME": TRAINER_USER,
        "MLFLOW_TRACKING_PASSWORD": stack.trainer_password,
        "HF_HUB_OFFLINE": "1",
        # Planted: an environment-derived tag (run_tags copies it) carrying a token.
        "PREFECT__FLOW_RUN_ID": f"smoke-run token={planted_token}",
    })
    os.chdir(workspace)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def run_smoke(workdir: Path, db: Database) -> None:
    stack = Stack(workdir=workdir, db=db)
    workspace = workdir / "workspace"
    workspace.mkdir()
    # No known token prefix: only the key=value rule of tracking.scrub can catch it.
    planted_token = secrets.token_urlsafe(18)
    try:
        stack.start_s3()
        mlflow_proc, mlflow_log = stack.start_mlflow()
        started = time.monotonic()

        # While the server migrates its databases: data and latents need no tracking server.
        from landmark_lora.stages.cache_latents import cache_latents

        write_processed(workspace)  # tests/helpers/tiny_data.py: data/processed/ in the layout preprocess writes
        with pipeline_env(stack, workspace, planted_token):
            params = smoke_params(stack)
            cache_latents(params)
        wait_http(stack.mlflow_url + "/health", mlflow_proc, mlflow_log, 150, "mlflow server")
        log(f"mlflow server (PostgreSQL + S3 artifacts, basic auth) on {stack.mlflow_url} "
            f"after {time.monotonic() - started:.0f}s")

        # -- auth
        status, _ = rest(stack, "GET", "experiments/search", None, query="max_results=1")
        check(status == 401, f"anonymous request is refused (HTTP {status}, want 401)")
        status, _ = rest(stack, "GET", "experiments/search", (ADMIN_USER, "wrong-" + stack.admin_password),
                         query="max_results=1")
        check(status == 401, f"wrong password is refused (HTTP {status}, want 401)")
        # infra/mlflow/create_user.py, as the compose job mlflow-users runs it: create, re-run, rotate.
        out = create_user(stack)
        check("created user" in out, f"create_user.py: admin (password from the environment) creates '{TRAINER_USER}'")
        out = create_user(stack)
        check("password matches" in out, "create_user.py is idempotent")
        stack.trainer_password = secrets.token_urlsafe(18)
        out = create_user(stack)
        check("password updated" in out, "create_user.py re-syncs a rotated trainer password")

        # -- the pipeline, as the trainer user, over HTTP
        with pipeline_env(stack, workspace, planted_token):
            run_id, adapter_sha, report = _run_pipeline(params)
        _verify(stack, params, run_id, adapter_sha, report, planted_token)
    finally:
        stack.stop_all()


def _run_pipeline(params) -> tuple[str, str, dict]:
    from landmark_lora.ops.promote import promote
    from landmark_lora.stages.evaluate import evaluate
    from landmark_lora.stages.train import run_training

    t0 = time.monotonic()
    result = run_training(params)
    check(result.run_id is not None and result.steps == 2,
          f"run_training logged 2 steps to run {result.run_id} ({time.monotonic() - t0:.0f}s)")
    weights = Path(params.model.dir) / "adapter" / "pytorch_lora_weights.safetensors"
    adapter_sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    t0 = time.monotonic()
    evaluate(params)
    log(f"evaluate logged its metrics and samples to the run ({time.monotonic() - t0:.0f}s)")
    t0 = time.monotonic()
    report = promote(params)
    log(f"promote ({time.monotonic() - t0:.0f}s): {report['decision']} version {report['challenger']['version']}: "
        f"{report['reason']}")
    return result.run_id, adapter_sha, report


def _verify(stack: Stack, params, run_id: str, adapter_sha: str, report: dict, planted_token: str) -> None:
    import mlflow
    from mlflow import MlflowClient

    trainer = (TRAINER_USER, stack.trainer_password)
    status, body = rest(stack, "GET", "runs/get", trainer, query=f"run_id={run_id}")
    check(status == 200, f"runs/get over REST as '{TRAINER_USER}' (HTTP {status})")
    run = body["run"]
    params_kv = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    tags_kv = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    check(run["info"]["status"] == "FINISHED", f"run status {run['info']['status']}")
    check(params_kv.get("train.max_steps") == "2" and params_kv.get("lora.rank") == "4",
          "run params (run_params) are on the server")
    check(tags_kv.get("stage") == "train" and "git_sha" in tags_kv and "data_version" in tags_kv,
          "run tags (run_tags) are on the server")
    stored = json.dumps(run)
    secrets_to_find = [(stack.trainer_password, "trainer password"), (stack.admin_password, "admin password"),
                       (planted_token, "planted token")]
    if stack.db.entrypoint_env.get("POSTGRES_PASSWORD"):
        secrets_to_find.append((stack.db.entrypoint_env["POSTGRES_PASSWORD"], "database password"))
    for secret, what in secrets_to_find:
        check(secret not in stored, f"{what} appears nowhere in the stored run")
    check(params_kv.get("mlflow.tracking_uri", "").startswith("http://***@"),
          f"planted credential param stored redacted: {params_kv.get('mlflow.tracking_uri')}")
    check(tags_kv.get("prefect_flow_run_id") == "smoke-run token=***",
          f"planted env-derived tag stored redacted: {tags_kv.get('prefect_flow_run_id')}")
    check(run["info"]["artifact_uri"].startswith("mlflow-artifacts:"),
          f"artifacts go through the server's proxy ({run['info']['artifact_uri']})")

    # artifacts: listed by the server, stored in the bucket, identical when downloaded back
    with _client_env(stack):
        client = MlflowClient(stack.mlflow_url)
        names = {Path(a.path).name for a in client.list_artifacts(run_id, "adapter")}
        check("pytorch_lora_weights.safetensors" in names, f"adapter artifacts listed: {sorted(names)}")
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="adapter", dst_path=tmp)
            got = hashlib.sha256((Path(local) / "pytorch_lora_weights.safetensors").read_bytes()).hexdigest()
        check(got == adapter_sha, "adapter downloaded back from the server is byte-identical")
    keys = [o["Key"] for page in stack.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])]
    check(any(k.endswith(f"{run_id}/artifacts/adapter/pytorch_lora_weights.safetensors") for k in keys),
          f"adapter stored in s3://{BUCKET}/ ({len(keys)} objects)")
    check(any(k.endswith("MLmodel") for k in keys), "registered pyfunc model (MLmodel) stored in S3")

    # backend: the run is a row in this PostgreSQL database
    with _pg_connect(stack.db.uri) as conn:
        row = conn.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,)).fetchone()
    check(row is not None and row[0] == "FINISHED", "run row present in PostgreSQL (runs table)")

    # registry: the version, its tags and the champion alias
    name = params.promotion.registered_model
    check(report["decision"] == "promoted", f"first adapter promoted ({report['reason']})")
    status, body = rest(stack, "GET", "registered-models/alias", trainer, query=f"name={name}&alias=champion")
    check(status == 200, f"registered-models/alias champion over REST (HTTP {status})")
    version = body["model_version"]
    check(version["version"] == report["challenger"]["version"] and version["run_id"] == run_id,
          f"'{name}' version {version['version']} (run {run_id}) holds alias champion")
    vtags = {t["key"]: t["value"] for t in version.get("tags", [])}
    check(vtags.get("promotion_decision") == "promoted" and "eval_loss" in vtags,
          f"version tags record the decision and metrics (eval_loss {vtags.get('eval_loss')})")
    check(vtags.get("reproducible") == "false" and "not a git checkout" in vtags.get("reproducible_reason", ""),
          "version tagged reproducible=false with its reason (a scratch folder: no git, no DVC remote)")
    with _client_env(stack):
        challenger = MlflowClient(stack.mlflow_url).get_model_version_by_alias(name, "challenger")
    check(challenger.version == version["version"], "MlflowClient sees the same version as challenger")


@contextlib.contextmanager
def _client_env(stack: Stack) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update({"MLFLOW_TRACKING_URI": stack.mlflow_url, "MLFLOW_TRACKING_USERNAME": TRAINER_USER,
                       "MLFLOW_TRACKING_PASSWORD": stack.trainer_password})
    try:
        import mlflow

        mlflow.set_tracking_uri(stack.mlflow_url)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# ---------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.infra_smoke", description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace and logs")
    args = parser.parse_args(argv)
    apply_offline_defaults()
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # GitPython (via mlflow) stays quiet without git
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="landmark-infra-smoke-"))
    try:
        own_backend = os.environ.get("MLFLOW_BACKEND_URI")
        if own_backend:
            with _pg_connect(own_backend):
                pass
            log(f"using MLFLOW_BACKEND_URI {_redact(own_backend)} (kept)")
            run_smoke(workdir, Database(own_backend, {"MLFLOW_BACKEND_STORE_URI": own_backend,
                                                      "MLFLOW_AUTH_DATABASE_URI": own_backend}))
        else:
            with throwaway_database(os.environ.get("LANDMARK_SMOKE_PG_ADMIN", DEFAULT_PG_ADMIN)) as db:
                run_smoke(workdir, db)
    except PostgresUnreachable as err:
        log(f"FAILED: {err}")
        return 2
    except SmokeFailure as err:
        log(f"FAILED: {err}")
        log(f"logs: {workdir}")
        args.keep = True
        return 1
    except Exception as err:  # anything unexpected is a failure too, with its cause
        log(f"FAILED: {type(err).__name__}: {err}")
        log(f"logs: {workdir}")
        args.keep = True
        raise
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    log(f"OK: server path verified in {time.monotonic() - t0:.0f}s (PostgreSQL + S3 artifacts + basic auth)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
