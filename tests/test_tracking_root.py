"""Where a run is tracked does not depend on the folder a stage runs in (issue 17, points 1-2).

`dvc exp run --queue` runs the stages in a throw-away copy of the repo and sets DVC_ROOT to the
project; a relative SQLite store (the default) must land in the project, not in the copy.
"""

from __future__ import annotations

import pytest

from landmark_lora.config import parse_params

ENV = ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV")


def no_tracking_env(monkeypatch) -> None:
    """No tracking or DVC variable of the caller's (a test run inside `dvc exp run`, say)."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_relative_store_and_artifacts_resolve_against_dvc_root_not_the_copy(tmp_path, monkeypatch):
    from landmark_lora.tracking import artifact_location, tracking_uri

    project, copy = tmp_path / "project", tmp_path / "tmp-exp-copy"
    project.mkdir()
    copy.mkdir()
    no_tracking_env(monkeypatch)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(project))
    cfg = parse_params({}).mlflow  # sqlite:///mlruns/mlflow.db, mlruns/artifacts
    assert tracking_uri(cfg) == f"sqlite:///{project.resolve()}/mlruns/mlflow.db"
    assert artifact_location(cfg) == (project / "mlruns" / "artifacts").resolve().as_uri()
    assert not (copy / "mlruns").exists()


def test_without_dvc_root_the_working_directory_holds_the_store(tmp_path, monkeypatch):
    from landmark_lora.tracking import tracking_uri

    no_tracking_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri(parse_params({}).mlflow) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"


def test_absolute_store_and_the_users_variable_are_kept_as_they_are(tmp_path, monkeypatch):
    from landmark_lora.tracking import tracking_uri

    no_tracking_env(monkeypatch)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    cfg = parse_params({"mlflow": {"tracking_uri": "sqlite:////srv/mlflow/m.db"}}).mlflow
    assert tracking_uri(cfg) == "sqlite:////srv/mlflow/m.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking_uri(cfg) == "http://mlflow.internal:5000"


def test_runs_inside_dvc_exp_run_are_tagged_with_the_experiment_and_its_baseline(tmp_path, monkeypatch):
    from landmark_lora.tracking import run_tags

    no_tracking_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    params = parse_params({"paths": {"processed": str(tmp_path / "p")}})
    assert not {"dvc.exp_name", "dvc.exp_baseline_rev"} & set(run_tags(params))
    monkeypatch.setenv("DVC_EXP_NAME", "tawny-bloc")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0123456789abcdef0123456789abcdef01234567")
    tags = run_tags(params)
    assert tags["dvc.exp_name"] == "tawny-bloc"
    assert tags["dvc.exp_baseline_rev"] == "0123456789abcdef0123456789abcdef01234567"


def test_a_store_deleted_under_a_running_process_is_started_afresh(tmp_path, monkeypatch):
    """`rm mlruns/mlflow.db` beside a served flow: MLflow caches the store by URI and would go on
    using the deleted file (runs nobody can see); configure() drops it and a fresh store is made."""
    import mlflow

    from landmark_lora.tracking import configure

    no_tracking_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    cfg = parse_params({"mlflow": {"system_metrics": False}}).mlflow
    experiment_id = configure(cfg)
    run = mlflow.MlflowClient().create_run(experiment_id)
    (tmp_path / "mlruns" / "mlflow.db").unlink()
    configure(cfg)
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    with pytest.raises(mlflow.exceptions.MlflowException, match="not found"):
        mlflow.MlflowClient().get_run(run.info.run_id)


def test_sqlite_run_alive_reads_the_store_without_mlflow_and_agrees_with_it(tmp_path, monkeypatch):
    """The skip path's check (retrain/detect.py): a live run True, an unknown or deleted one False,
    a store that is not a local SQLite file None (MLflow is asked then)."""
    import mlflow

    from landmark_lora.tracking import configure, sqlite_run_alive

    no_tracking_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    cfg = parse_params({"mlflow": {"system_metrics": False}}).mlflow
    assert sqlite_run_alive(cfg, "0" * 32) is None  # no store file yet
    configure(cfg)
    with mlflow.start_run() as run:
        mlflow.log_metric("x", 1.0)
    run_id = run.info.run_id
    assert sqlite_run_alive(cfg, run_id) is True
    assert sqlite_run_alive(cfg, "0" * 32) is False
    mlflow.MlflowClient().delete_run(run_id)
    assert sqlite_run_alive(cfg, run_id) is False
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/")
    assert sqlite_run_alive(cfg, run_id) is None
