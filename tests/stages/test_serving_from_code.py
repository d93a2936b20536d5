"""The adapter as an MLflow model *from code*: the logged model holds no pickle of the python
model, loads with pickle deserialisation switched off, and makes the same image for a fixed seed
as the pipeline built straight from the base and the adapter (what the pickled model did).

    .venv/bin/python -m pytest tests/stages/test_serving_from_code.py -q
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from test_train import TINY, _deep_merge, workspace  # noqa: F401  (processed data + cached latents)

from landmark_lora.config import parse_params

PROMPT = "lmksnap snapshot photo, in front of Gyeongbokgung Palace, upper-body shot"
STEPS, GUIDANCE, SEED = 2, 5.0, 3


@pytest.fixture(scope="module")
def logged(workspace, tmp_path_factory):  # noqa: F811
    """Train 2 steps, log the pyfunc into a run of a fresh tracking store; the model's local copy."""
    import mlflow

    from landmark_lora.diffusion.components import resolve_base
    from landmark_lora.serving import log_adapter_model
    from landmark_lora.stages.train import run_training

    tmp = tmp_path_factory.mktemp("serving")
    old = os.getcwd()
    os.chdir(workspace)
    try:
        params = parse_params(_deep_merge(TINY, {"train": {"max_steps": 1, "eval_every": 100}}))
        run_training(params, log_mlflow=False)
        adapter, base = Path(params.model.dir).resolve() / "adapter", resolve_base(params.model).resolve()
    finally:
        os.chdir(old)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("serving", artifact_location=str(tmp / "artifacts"))
    with mlflow.start_run(experiment_id=experiment):
        info = log_adapter_model(adapter, "tiny", base, STEPS, GUIDANCE)
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp / "model")))
    return {"uri": uri, "model_uri": info.model_uri, "local": local, "adapter": adapter, "base": base}


@pytest.fixture(scope="module")
def reference(logged):
    """The image the pickled model made: the same class, the pipeline built from base + adapter."""
    from landmark_lora.diffusion.pipeline import load_pipeline
    from landmark_lora.serving import LandmarkLoraModel

    model = LandmarkLoraModel(None, STEPS, GUIDANCE)
    model.pipe = load_pipeline(logged["base"], logged["adapter"], device="auto")  # as load_context does
    return np.asarray(model.generate(PROMPT, SEED))


def test_logged_model_holds_code_not_a_pickle(logged):
    local = logged["local"]
    pickles = [p for p in local.rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]
    assert not pickles, pickles
    pyfunc = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert "python_model" not in pyfunc  # no python_model.pkl to load (cloudpickle_version is metadata only)
    assert pyfunc["model_code_path"].endswith("serving_model.py")
    assert (local / "serving_model.py").read_text().count("set_model(") == 1
    assert pyfunc["config"] == {"steps": STEPS, "guidance": GUIDANCE}  # tiny base: bundled, no base_ref


def test_loading_unpickles_nothing_and_makes_the_same_image(logged, reference, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")  # MLflow refuses any pickled model
    mlflow.set_tracking_uri(logged["uri"])
    model = mlflow.pyfunc.load_model(logged["model_uri"]).unwrap_python_model()
    assert (model.steps, model.guidance) == (STEPS, GUIDANCE)
    assert np.array_equal(np.asarray(model.generate(PROMPT, SEED)), reference)


def test_mlflow_models_predict_offline_gives_the_same_image(logged, reference, tmp_path):
    """`mlflow models predict --env-manager local` on the model directory, no pickles allowed."""
    (tmp_path / "in.json").write_text(json.dumps({"dataframe_records": [{"prompt": PROMPT, "seed": SEED}]}))
    env = dict(os.environ, MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false", HF_HUB_OFFLINE="1")
    out = subprocess.run([str(Path(sys.executable).parent / "mlflow"), "models", "predict", "-m", str(logged["local"]),
                          "-i", str(tmp_path / "in.json"), "-t", "json", "--env-manager", "local",
                          "-o", str(tmp_path / "out.json")], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    predictions = json.loads((tmp_path / "out.json").read_text())["predictions"]
    image = Image.open(io.BytesIO(base64.b64decode(predictions[0])))
    assert np.array_equal(np.asarray(image), reference)
