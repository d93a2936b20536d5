"""Create (or re-sync) a non-admin MLflow user for the trainer; stdlib only, idempotent.

    docker compose -f infra/docker-compose.yml run --rm mlflow-users          # the stack runs it once
    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 MLFLOW_ADMIN_PASSWORD=... \
      MLFLOW_TRAINER_USER=trainer MLFLOW_TRAINER_PASSWORD=... python infra/mlflow/create_user.py

The user is created with the admin's credentials. If it exists and its password no longer
matches MLFLOW_TRAINER_PASSWORD (it was rotated in .env), the password is updated. Prints
what it did, never a password. Exit 1 on any other answer from the server.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request


def call(base: str, method: str, path: str, user: str, password: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.loads(err.read() or b"{}")
        except ValueError:
            return err.code, {}


def main() -> int:
    base = os.environ.get("MLFLOW_TRACKING_URI", "http://mlflow:5000").rstrip("/")
    admin = os.environ.get("MLFLOW_ADMIN_USER", "admin")
    admin_pw = os.environ["MLFLOW_ADMIN_PASSWORD"]
    user = os.environ.get("MLFLOW_TRAINER_USER", "trainer")
    pw = os.environ["MLFLOW_TRAINER_PASSWORD"]
    for _ in range(30):  # the server may still be starting
        status, _ = call(base, "GET", "users/get?username=" + admin, admin, admin_pw)
        if status != 503:
            break
        time.sleep(2)
    if status == 401:
        print(f"create_user: the admin password is not accepted by {base} (it is read only on the "
              "server's first start; see docs/deploy.md, rotating secrets)", file=sys.stderr)
        return 1
    status, body = call(base, "POST", "users/create", admin, admin_pw, {"username": user, "password": pw})
    if status == 200:
        print(f"create_user: created user '{user}'")
        return 0
    if body.get("error_code") != "RESOURCE_ALREADY_EXISTS":
        print(f"create_user: users/create answered HTTP {status} {body.get('error_code', '')}", file=sys.stderr)
        return 1
    status, _ = call(base, "GET", "experiments/search?max_results=1", user, pw)
    if status == 200:
        print(f"create_user: user '{user}' exists and its password matches")
        return 0
    status, body = call(base, "PATCH", "users/update-password", admin, admin_pw, {"username": user, "password": pw})
    if status != 200:
        print(f"create_user: users/update-password answered HTTP {status} {body.get('error_code', '')}", file=sys.stderr)
        return 1
    print(f"create_user: user '{user}' existed; password updated from MLFLOW_TRAINER_PASSWORD")
    return 0


if __name__ == "__main__":
    sys.exit(main())
