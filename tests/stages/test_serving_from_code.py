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


# ---------------------------------------------------------------- composite mode

REGIONS = {"shots": {"upper_body": {"box": [0.25, 0.25, 0.75, 1.0], "spread": [0.02, 0.02, 0.02, 0.0], "count": 4}}}


def _plate_library(processed: Path) -> Path:
    """A plate library as preprocess writes it: one 56x72 plate of gyeongbokgung/low_angle, and the regions."""
    from landmark_lora.artifacts import Layout, PlateRecord, write_person_regions, write_plates

    layout = Layout.of_processed(processed)
    plate = PlateRecord("gyeongbokgung", "low_angle", "lowplate", "gyeongbokgung/low_angle/lowplate.png", 56, 72,
                        "gyeongbokgung/lowplate.jpg", "s")
    (layout.plates_dir / plate.file).parent.mkdir(parents=True)
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(60, 200, (72, 56, 3), dtype=np.uint8)).save(layout.plates_dir / plate.file)
    write_plates(layout, [plate])
    write_person_regions(layout, REGIONS)
    return processed


@pytest.fixture(scope="module")
def logged_composite(logged, tmp_path_factory):
    """The same adapter logged with the plate library, regions and composite settings bundled."""
    import mlflow

    from landmark_lora.artifacts import Layout
    from landmark_lora.catalogue import load_catalogue
    from landmark_lora.serving import composite_bundle, log_adapter_model

    tmp = tmp_path_factory.mktemp("serving-composite")
    layout = Layout.of_processed(_plate_library(tmp / "processed"))
    params = parse_params({"composite": {"num_inference_steps": 2, "feather_px": 3, "region_margin": 0.0}})
    bundle = composite_bundle(layout.plates_dir, layout.person_regions, params.composite, params.caption,
                              load_catalogue())
    assert bundle is not None
    mlflow.set_tracking_uri(logged["uri"])
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("serving").experiment_id):
        info = log_adapter_model(logged["adapter"], "tiny", logged["base"], STEPS, GUIDANCE, bundle)
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp / "model")))
    with Image.open(layout.plates_dir / "gyeongbokgung/low_angle/lowplate.png") as im:
        plate = np.asarray(im.convert("RGB"))
    return {"local": local, "plate": plate}


def _mlflow_models_predict(model_dir: Path, rows: list[dict], tmp_path: Path) -> list[str]:
    """`mlflow models predict --env-manager local` on a model directory, offline, no pickles allowed."""
    (tmp_path / "in.json").write_text(json.dumps({"dataframe_records": rows}))
    env = dict(os.environ, MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false", HF_HUB_OFFLINE="1")
    out = subprocess.run([str(Path(sys.executable).parent / "mlflow"), "models", "predict", "-m", str(model_dir),
                          "-i", str(tmp_path / "in.json"), "-t", "json", "--env-manager", "local",
                          "-o", str(tmp_path / "out.json")], env=env, capture_output=True, text=True, timeout=600,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text())["predictions"]


def _png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def test_mlflow_models_predict_gives_the_same_image_and_with_mode_composite_keeps_the_plate(
        logged_composite, reference, tmp_path):
    """One `mlflow models predict` (the CLI's start-up is most of its cost), two rows: a plain prompt
    (the image the pickled model made) and a composite request (the plate kept outside the person)."""
    from landmark_lora.composite import feather_mask, person_region
    from landmark_lora.config import CompositeConfig

    rows = [{"prompt": PROMPT, "seed": SEED},
            {"mode": "composite", "landmark": "gyeongbokgung", "angle": "low_angle", "shot": "upper_body",
             "pose": "waving", "seed": 1}]
    plain, composite = _mlflow_models_predict(logged_composite["local"], rows, tmp_path)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(plain)))), reference)
    image = _png(composite)
    plate = logged_composite["plate"]
    assert image.shape == plate.shape
    cfg = CompositeConfig(feather_px=3, region_margin=0.0)
    mask = feather_mask((56, 72), person_region(REGIONS, "upper_body", (56, 72), cfg), cfg.feather_px, cfg.corner)
    assert np.array_equal(image[mask == 0], plate[mask == 0])  # the plate's own pixels, bit for bit
    assert np.abs(image[mask == 1].astype(int) - plate[mask == 1]).mean() > 5  # a person region was drawn


def test_composite_input_errors_name_what_exists(logged_composite):
    import mlflow

    model = mlflow.pyfunc.load_model(str(logged_composite["local"]))
    row = {"mode": "composite", "landmark": "gyeongbokgung", "angle": "high_angle", "shot": "upper_body"}
    with pytest.raises(Exception, match=r"no background plate for gyeongbokgung/high_angle.*low_angle: lowplate"):
        model.predict([row])
    with pytest.raises(Exception, match=r"no person region for shot 'wide'"):
        model.predict([{**row, "angle": "low_angle", "shot": "wide"}])
    with pytest.raises(Exception, match=r"smaller than the asked 128x128"):
        model.predict([{**row, "angle": "low_angle", "width": 128, "height": 128}])


def test_a_model_on_the_shipped_toyworld_base_finds_it(tmp_path):
    """model.base: toyworld is logged by name (base_ref), not bundled: loading resolves it to the shipped
    folder, as `landmark-lora generate` on the default run's champion needs."""
    from landmark_lora.diffusion.base import ensure_base_model
    from landmark_lora.serving import base_folder

    assert base_folder(None, "toyworld") == Path(ensure_base_model("toyworld"))
    assert base_folder(str(tmp_path), "toyworld") == tmp_path  # a bundled base wins
    with pytest.raises(ValueError, match="names no base"):
        base_folder(None, None)
