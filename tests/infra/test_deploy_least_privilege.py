"""Least privilege in the compose stack: MLflow and DVC hold different S3 keys, each limited to
its own prefix by a MinIO policy (infra/minio/init-minio.sh), and MLflow and Prefect reach
PostgreSQL as their own non-superuser roles that own only their databases
(infra/postgres/init-databases.sh).

    .venv/bin/python -m pytest tests/infra/test_deploy_least_privilege.py -q
"""

from __future__ import annotations

import fnmatch
import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from test_deploy_files import COMPOSE, DOCS, INFRA, _pg_reachable, filled_env, interpolate, services

MINIO_INIT = INFRA / "minio" / "init-minio.sh"
PG_INIT = INFRA / "postgres" / "init-databases.sh"


def env_of(service: str) -> dict[str, str]:
    """A service's environment as compose would pass it, from .env.example with dummy secrets."""
    env = filled_env()
    return {k: interpolate(str(v), env) for k, v in (services()[service].get("environment") or {}).items()}


def raw_env_of(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (services()[service].get("environment") or {}).items()}


# ---------------------------------------------------------------- S3: one key per client, one prefix each


def test_mlflow_and_dvc_use_different_s3_keys():
    mlflow, worker, init = raw_env_of("mlflow"), raw_env_of("prefect-worker"), raw_env_of("minio-init")
    assert "MLFLOW_S3_ACCESS_KEY_ID:?" in mlflow["AWS_ACCESS_KEY_ID"]
    assert "MLFLOW_S3_SECRET_ACCESS_KEY:?" in mlflow["AWS_SECRET_ACCESS_KEY"]
    assert "DVC_S3_ACCESS_KEY_ID:?" in worker["AWS_ACCESS_KEY_ID"]  # the worker runs dvc pull/push
    assert "DVC_S3_SECRET_ACCESS_KEY:?" in worker["AWS_SECRET_ACCESS_KEY"]
    assert env_of("mlflow")["AWS_ACCESS_KEY_ID"] != env_of("prefect-worker")["AWS_ACCESS_KEY_ID"]
    assert {"MLFLOW_S3_ACCESS_KEY_ID", "MLFLOW_S3_SECRET_ACCESS_KEY", "DVC_S3_ACCESS_KEY_ID",
            "DVC_S3_SECRET_ACCESS_KEY"} <= set(init)
    text = COMPOSE.read_text()
    assert "readwrite" not in text and "${S3_ACCESS_KEY_ID" not in text  # no key with the whole bucket
    for name, spec in services().items():  # the root credentials stay with MinIO and its init job
        if "MINIO_ROOT_PASSWORD" in str(spec.get("environment")):
            assert name in ("minio", "minio-init"), name


def _policy(prefix: str, bucket: str = "lmk-bucket") -> dict:
    out = subprocess.run(["sh", str(MINIO_INIT), "policy", prefix], env={**os.environ, "S3_BUCKET": bucket},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def allowed(policy: dict, action: str, bucket: str, key: str | None = None, prefix: str | None = None) -> bool:
    """IAM evaluation for Allow-only policies: an object action on bucket/key, or ListBucket with prefix."""
    resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow"
        if not any(fnmatch.fnmatchcase(action, a) for a in st["Action"]):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in st["Resource"]):
            continue
        cond = st.get("Condition", {}).get("StringLike", {}).get("s3:prefix")
        if cond is not None and not any(fnmatch.fnmatchcase(prefix or "", c) for c in cond):
            continue
        return True
    return False


@pytest.mark.parametrize("mine,other", [("mlflow", "dvc"), ("dvc", "mlflow")])
def test_each_s3_policy_covers_its_own_prefix_only(mine, other):
    p = _policy(mine)
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert allowed(p, action, "lmk-bucket", f"{mine}/1/abc/artifacts/model/MLmodel")
        assert not allowed(p, action, "lmk-bucket", f"{other}/1/abc/artifacts/model/MLmodel")
        assert not allowed(p, action, "lmk-bucket", "top-level-object")
        assert not allowed(p, action, "other-bucket", f"{mine}/x")
        assert not allowed(p, action, "lmk-bucket", f"{mine}-evil/x")  # a look-alike prefix
    assert allowed(p, "s3:ListBucket", "lmk-bucket", prefix=f"{mine}/files/md5/")
    assert not allowed(p, "s3:ListBucket", "lmk-bucket", prefix=f"{other}/")
    assert not allowed(p, "s3:ListBucket", "lmk-bucket", prefix="")
    assert not any(a in ("*", "s3:*") for st in p["Statement"] for a in st["Action"])
    assert not any("Admin" in a or "Policy" in a for st in p["Statement"] for a in st["Action"])


def test_mlflow_artifacts_and_the_dvc_remote_sit_under_their_prefixes():
    entry = (INFRA / "mlflow" / "entrypoint.sh").read_text()
    assert '--artifacts-destination "s3://${S3_BUCKET}/mlflow"' in entry
    docs = DOCS.read_text()
    assert "dvc remote add -d s3 s3://landmark-lora/dvc" in docs
    assert "DVC_S3_ACCESS_KEY_ID" in docs and "MLFLOW_S3_ACCESS_KEY_ID" in docs


def _fake_mc(tmp_path: Path, user_info: str = "") -> Path:
    """An `mc` that records its arguments (and the policy files it is given) instead of calling MinIO."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mc = bin_dir / "mc"
    mc.write_text(f"""#!/bin/sh
echo "$*" >> "{tmp_path}/mc.log"
if [ "$1 $2 $3" = "admin policy create" ]; then cp "$6" "{tmp_path}/policy-$5.json"; fi
if [ "$1 $2 $3" = "admin user info" ]; then printf '%s\\n' "{user_info}"; fi
exit 0
""")
    mc.chmod(0o755)
    return bin_dir


def _init_env(bin_dir: Path, **over: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "S3_BUCKET": "lmk-bucket",
            "MINIO_ROOT_USER": "root", "MINIO_ROOT_PASSWORD": "rootpw12",
            "MLFLOW_S3_ACCESS_KEY_ID": "mlflow-key", "MLFLOW_S3_SECRET_ACCESS_KEY": "mlflow-secret",
            "DVC_S3_ACCESS_KEY_ID": "dvc-key", "DVC_S3_SECRET_ACCESS_KEY": "dvc-secret", **over}


def test_minio_init_attaches_one_prefix_policy_per_user(tmp_path):
    bin_dir = _fake_mc(tmp_path, user_info="Policy: readwrite")  # a user left from the one-key layout
    out = subprocess.run(["sh", str(MINIO_INIT)], env=_init_env(bin_dir), capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    log = (tmp_path / "mc.log").read_text().splitlines()
    assert "admin policy attach local landmark-lora-mlflow --user mlflow-key" in log
    assert "admin policy attach local landmark-lora-dvc --user dvc-key" in log
    assert "admin policy detach local readwrite --user mlflow-key" in log
    assert "admin policy detach local readwrite --user dvc-key" in log
    assert not any("attach local readwrite" in line for line in log)
    assert "anonymous set none local/lmk-bucket" in log
    assert json.loads((tmp_path / "policy-landmark-lora-mlflow.json").read_text()) == _policy("mlflow")
    assert json.loads((tmp_path / "policy-landmark-lora-dvc.json").read_text()) == _policy("dvc")


def test_minio_init_refuses_one_key_for_both(tmp_path):
    bin_dir = _fake_mc(tmp_path)
    out = subprocess.run(["sh", str(MINIO_INIT)], env=_init_env(bin_dir, DVC_S3_ACCESS_KEY_ID="mlflow-key"),
                         capture_output=True, text=True, check=False)
    assert out.returncode != 0 and "must differ" in out.stderr
    assert not (tmp_path / "mc.log").exists()


# ---------------------------------------------------------------- PostgreSQL: a role per service


def test_mlflow_and_prefect_connect_as_their_own_roles():
    pg, mlflow, prefect = raw_env_of("postgres"), raw_env_of("mlflow"), raw_env_of("prefect-server")
    superuser = env_of("postgres")["POSTGRES_USER"]
    assert env_of("mlflow")["POSTGRES_USER"] == "mlflow" != superuser
    assert env_of("prefect-server")["PREFECT_SERVER_DATABASE_USER"] == "prefect" != superuser
    assert "MLFLOW_DB_PASSWORD:?" in mlflow["POSTGRES_PASSWORD"]
    assert "PREFECT_DB_PASSWORD:?" in prefect["PREFECT_SERVER_DATABASE_PASSWORD"]
    assert "${POSTGRES_PASSWORD" not in str(list(mlflow.values()) + list(prefect.values()))  # the superuser's
    roles = dict(spec.split(":") for spec in env_of("postgres")["POSTGRES_ROLES"].split())
    assert roles == {"mlflow": "MLFLOW_DB_PASSWORD", "prefect": "PREFECT_DB_PASSWORD"}
    assert {"MLFLOW_DB_PASSWORD", "PREFECT_DB_PASSWORD"} <= set(pg)
    owners = dict(spec.split(":") for spec in env_of("postgres")["POSTGRES_DATABASES"].split())
    assert owners == {"mlflow": "mlflow", "mlflow_auth": "mlflow", "prefect": "prefect"}
    assert env_of("mlflow")["MLFLOW_DB"] in owners and env_of("mlflow")["MLFLOW_AUTH_DB"] in owners
    assert env_of("prefect-server")["PREFECT_SERVER_DATABASE_NAME"] == "prefect"


def test_init_databases_refuses_a_role_without_password(tmp_path):
    out = subprocess.run(["sh", str(PG_INIT)], env={**os.environ, "POSTGRES_USER": "postgres",
                                                     "POSTGRES_ROLES": "svc:SVC_PW_UNSET_HERE"},
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode != 0 and "SVC_PW_UNSET_HERE" in out.stderr and "infra/.env" in out.stderr


@pytest.mark.postgres
@pytest.mark.skipif(not _pg_reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432 (.ci/run starts it)")
def test_init_databases_makes_non_superuser_owners_that_cannot_cross():
    import psycopg

    tag = secrets.token_hex(3)
    a, b = f"lmk_a_{tag}", f"lmk_b_{tag}"
    dbs = [f"{a}_db", f"{a}_auth", f"{b}_db"]
    env = {**os.environ, "PGHOST": "127.0.0.1", "POSTGRES_USER": "postgres", "POSTGRES_DB": "test",
           "POSTGRES_ROLES": f"{a}:A_PW {b}:B_PW", "A_PW": "pw-'quoted\"-a", "B_PW": "pw-b",
           "POSTGRES_DATABASES": f"{dbs[0]}:{a} {dbs[1]}:{a} {dbs[2]}:{b}"}
    admin = "postgresql://postgres@127.0.0.1:5432/test"
    try:
        for _ in range(2):  # idempotent: a second run changes nothing and does not fail
            out = subprocess.run(["sh", str(PG_INIT)], env=env, capture_output=True, text=True, timeout=60,
                                 check=False)
            assert out.returncode == 0, out.stderr
            assert "pw-" not in out.stdout + out.stderr  # passwords never printed
        with psycopg.connect(admin, autocommit=True) as conn:
            roles = {r[0]: r[1:] for r in conn.execute(
                "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles "
                "WHERE rolname = ANY(%s)", ([a, b],))}
            owners = dict(conn.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database "
                                       "WHERE datname = ANY(%s)", (dbs,)).fetchall())
        assert roles == {a: (False, False, False, True), b: (False, False, False, True)}
        assert owners == {dbs[0]: a, dbs[1]: a, dbs[2]: b}
        with psycopg.connect(f"postgresql://{a}@127.0.0.1:5432/{dbs[0]}", password="pw-'quoted\"-a",
                             autocommit=True) as conn:
            conn.execute("CREATE TABLE runs (id int)")  # the owner can create its schema
        with pytest.raises(psycopg.OperationalError, match="permission denied|CONNECT"):
            psycopg.connect(f"postgresql://{a}@127.0.0.1:5432/{dbs[2]}", password="pw-'quoted\"-a")
        with pytest.raises(psycopg.OperationalError, match="permission denied|CONNECT"):
            psycopg.connect(f"postgresql://{b}@127.0.0.1:5432/{dbs[0]}", password="pw-b")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for db in dbs:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
            for role in (a, b):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')
