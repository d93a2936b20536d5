#!/bin/sh
# MLflow tracking server for landmark-lora: PostgreSQL backend, S3 artifacts proxied by the
# server, basic auth on. Everything comes from the environment; nothing secret is on the
# command line (ps shows it) or in a committed file.
#
#   docker compose -f infra/docker-compose.yml up -d mlflow       # how the stack runs it
#   MLFLOW_BACKEND_STORE_URI=postgresql://me@127.0.0.1:5432/mlflow MLFLOW_ADMIN_PASSWORD=... \
#     S3_BUCKET=landmark MLFLOW_S3_ENDPOINT_URL=http://127.0.0.1:9000 infra/mlflow/entrypoint.sh
#                                                                  # outside Docker (the smoke does this)
#
# Either full URIs (MLFLOW_BACKEND_STORE_URI, MLFLOW_AUTH_DATABASE_URI) or their parts
# (POSTGRES_HOST/PORT/USER/PASSWORD, MLFLOW_DB, MLFLOW_AUTH_DB); the password is URL-encoded.
set -eu

: "${MLFLOW_ADMIN_PASSWORD:?set MLFLOW_ADMIN_PASSWORD (the basic-auth admin password)}"
: "${S3_BUCKET:?set S3_BUCKET (artifacts go to s3://\$S3_BUCKET/mlflow)}"

pg_uri() {  # pg_uri DBNAME -> the postgresql:// URI of DBNAME from POSTGRES_* (password URL-encoded)
    python - "$1" <<'PY'
import os, sys, urllib.parse as u
user = u.quote(os.environ.get("POSTGRES_USER", "landmark"), safe="")
pw = os.environ.get("POSTGRES_PASSWORD", "")
auth = user + (":" + u.quote(pw, safe="") if pw else "")
host = os.environ.get("POSTGRES_HOST", "postgres")
port = os.environ.get("POSTGRES_PORT", "5432")
print(f"postgresql://{auth}@{host}:{port}/{sys.argv[1]}")
PY
}

MLFLOW_BACKEND_STORE_URI="${MLFLOW_BACKEND_STORE_URI:-$(pg_uri "${MLFLOW_DB:-mlflow}")}"
auth_db_uri="${MLFLOW_AUTH_DATABASE_URI:-$(pg_uri "${MLFLOW_AUTH_DB:-mlflow_auth}")}"
export MLFLOW_BACKEND_STORE_URI

# The basic-auth config, readable by this user only. configparser treats % specially, so a
# percent-encoded password must be written as %%.
umask 077
auth_dir="$(mktemp -d)"
escaped_auth_uri="$(printf '%s' "$auth_db_uri" | sed 's/%/%%/g')"
cat > "$auth_dir/basic_auth.ini" <<INI
[mlflow]
default_permission = ${MLFLOW_DEFAULT_PERMISSION:-READ}
database_uri = ${escaped_auth_uri}
admin_username = ${MLFLOW_ADMIN_USER:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# Without a cache every request re-hashes the password (PBKDF2, ~1 s on a small CPU).
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL:-60}
INI
export MLFLOW_AUTH_CONFIG_PATH="$auth_dir/basic_auth.ini"
# Read once, on the first start against an empty user store; change it later with the
# update-password API (docs/deploy.md), not here.
export MLFLOW_AUTH_ADMIN_PASSWORD="$MLFLOW_ADMIN_PASSWORD"
unset MLFLOW_ADMIN_PASSWORD POSTGRES_PASSWORD
# The job executor runs GenAI scorers and forks ~8 worker processes; this pipeline uses none.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

port="${MLFLOW_PORT:-5000}"
exec mlflow server \
    --host "${MLFLOW_HOST:-0.0.0.0}" --port "$port" --workers "${MLFLOW_WORKERS:-2}" \
    --serve-artifacts --artifacts-destination "s3://${S3_BUCKET}/mlflow" \
    --app-name basic-auth \
    --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-localhost:$port,127.0.0.1:$port,mlflow:$port}" \
    "$@"
