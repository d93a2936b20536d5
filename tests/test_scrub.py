"""tracking.scrub: every credential shape it promises to catch, caught; the rest of the value kept.

Each case is one value under an innocuous key (so only the value rules can catch it), with the
exact text expected back: the secret gone, the non-secret part still saying what the value was.
"""

from __future__ import annotations

import os

import pytest

from landmark_lora.tracking import REDACTED, run_params, scrub

# Strings built in pieces so secret scanners do not flag this file.
AWS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"
GH_TOKEN = "ghp" + "_" + "a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ"
JWT = "eyJ" + "hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM = ("-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq9k3lQwXkSecretKeyMaterial0123456789abcdef\n"
       "c2VjcmV0LWtleS1ib2R5LWxpbmUtdHdv\n-----END RSA " + "PRIVATE KEY-----")


@pytest.mark.parametrize("value,expected", [
    # user:password@ in a URL: the password and user go, scheme, host, port and path stay
    ("postgresql://mlflow:hunter2@db.internal:5432/mlflow", "postgresql://***@db.internal:5432/mlflow"),
    ("https://alice:s3cr3t@mlflow.example.com/api", "https://***@mlflow.example.com/api"),
    ("s3://minio:minio123@localhost:9000/bucket", "s3://***@localhost:9000/bucket"),
    # a bare token as URL userinfo; a short user name (git@) is not a secret
    ("https://" + GH_TOKEN[4:] + "@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
    ("ssh://git@github.com/org/repo.git", "ssh://git@github.com/org/repo.git"),
    # AWS access key id, anywhere in the text
    (f"key id {AWS_KEY_ID} in use", f"key id {REDACTED} in use"),
    # token prefixes: GitHub, Hugging Face, Stripe-style sk_, Slack xoxb-/xoxp-
    (f"token {GH_TOKEN}", f"token {REDACTED}"),
    ("github_pat" + "_11ABCDEFG0123456789_abcdefghijklmnop", REDACTED),
    ("hf" + "_AbCdEfGhIjKlMnOpQrStUvWxYz012345", REDACTED),
    ("sk" + "_live_4eC39HqLyjWDarjtT1zdp7dc", REDACTED),
    ("xoxb" + "-1234567890-0987654321-AbCdEfGhIjKlMnOp", REDACTED),
    ("xoxp" + "-1234567890-0987654321-AbCdEfGhIjKlMnOp", REDACTED),
    # key=value in a query string (presigned S3 URL) or free text
    ("https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abcdef0123456789&x=1",
     "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=***&x=1"),
    ("https://h/x?X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE&y=2", "https://h/x?X-Amz-Security-Token=***&y=2"),
    ("https://h/x?sig=AbC123&se=2026", "https://h/x?sig=***&se=2026"),
    ("connect with password=hunter2 now", "connect with password=*** now"),
    ("host=db user=app passwd=hunter2", "host=db user=app passwd=***"),
    ("api_key=0123456789abcdef;region=eu", "api_key=***;region=eu"),
    # Authorization header values
    ("Authorization: Bearer abcdef0123456789.xyz", "Authorization: Bearer ***"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic ***"),
    # a JWT on its own
    (f"session {JWT}", f"session {REDACTED}"),
    # a private key: the whole block, not only its first line
    (f"deploy key:\n{PEM}\nend", f"deploy key:\n{REDACTED}\nend"),
    (PEM.split("\n-----END")[0], REDACTED),  # cut off before its END line
])
def test_secret_shapes_in_values_are_redacted(value, expected):
    assert scrub({"notes": value}) == {"notes": expected}


@pytest.mark.parametrize("value", [
    "sqlite:///mlruns/mlflow.db",
    "http://127.0.0.1:5000",
    "s3://landmark-lora/artifacts",
    "runwayml/stable-diffusion-v1-5",
    "desk_lamp_photo_collection_01",  # contains 'sk_' inside a word: not a token
    "hf-internal-testing/tiny-stable-diffusion-pipe",  # a model id, not an hf_ token
    "lmksnap snapshot photo, in front of Gyeongbokgung Palace",
    "0.001",
    "True",
])
def test_ordinary_values_are_kept_exactly(value):
    assert scrub({"notes": value}) == {"notes": value}


@pytest.mark.parametrize("key", [
    "password", "db.password", "PASS", "mlflow.secret", "aws_secret_access_key", "hf_token", "api_key",
    "api-key", "apikey", "credentials", "private_key", "private-key", "auth", "basic_auth_header",
])
def test_secret_key_names_redact_the_whole_value(key):
    assert scrub({key: "plain-looking-value"}) == {key: REDACTED}


def test_empty_secret_values_stay_empty_so_a_missing_secret_is_visible():
    assert scrub({"password": "", "token": None, "api_key": "null"}) == {
        "password": "", "token": "None", "api_key": "null"}


def test_values_become_strings_and_keys_are_kept():
    assert scrub({"train.max_steps": 30, "lora.alpha": 4.0, "x": None}) == {
        "train.max_steps": "30", "lora.alpha": "4.0", "x": "None"}


def test_flattened_params_carry_no_password_into_mlflow(monkeypatch):
    from landmark_lora.config import parse_params

    params = parse_params({"mlflow": {"tracking_uri": "postgresql://mlflow:hunter2@db:5432/mlflow",
                                      "artifact_location": "s3://minio:minio123@minio:9000/artifacts"}})
    flat = run_params(params)
    assert flat["mlflow.tracking_uri"] == "postgresql://***@db:5432/mlflow"
    assert flat["mlflow.artifact_location"] == "s3://***@minio:9000/artifacts"
    assert not any("hunter2" in v or "minio123" in v for v in flat.values())


def test_each_workspace_tracks_to_its_own_store_in_one_process(tmp_path, monkeypatch):
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; a second workspace in the same process
    (a served flow, a test run) must still use its own params, while a user's variable still wins."""
    from landmark_lora.config import parse_params
    from landmark_lora.tracking import configure, tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a = parse_params({"mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/a/mlflow.db"}})
    b = parse_params({"mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/b/mlflow.db"}})
    configure(a.mlflow)
    assert "MLFLOW_TRACKING_URI" not in os.environ  # MLflow's export is not left behind
    assert tracking_uri(b.mlflow).endswith("/b/mlflow.db")
    configure(b.mlflow)
    assert tracking_uri(a.mlflow).endswith("/a/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/user/mlflow.db")
    configure(a.mlflow)
    assert tracking_uri(b.mlflow).endswith("/user/mlflow.db")  # the user's variable wins, every time
