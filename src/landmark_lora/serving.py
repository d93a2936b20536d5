"""The adapter as an MLflow model: base + LoRA behind a pyfunc that makes images offline.

    landmark-lora generate --model champion --prompt "lmksnap snapshot photo, upper-body shot, ..." --out snap.png
    landmark-lora generate --mode composite --landmark gyeongbokgung --angle low_angle --shot upper_body \
        --pose waving --out snap.png          # the person inpainted into a real background plate
    mlflow models predict -m models:/landmark-lora@champion -i prompts.json -t json --env-manager local

Input rows: ``{"prompt": ..., "seed": 3}`` (text-to-image, the default mode) or ``{"mode": "composite",
"landmark": ..., "angle": ..., "shot": ..., "pose": ..., "seed": 3, "plate": optional name, "prompt":
optional}``. The model bundles the plate library and ``person_regions.json`` as artifacts (when
preprocess built them), with the composite, caption and catalogue settings in its model_config.

Why a pyfunc and not ``mlflow.diffusers``: that flavour records the base model only by
Hugging Face id or path; the embedded tiny base is a local folder, so it would not load on
another machine. The pyfunc bundles the adapter always, and the base when it is the embedded
tiny one (a few MB); a real checkpoint is referenced by id/path and its fingerprint.

Logged as MLflow *models from code*: the model directory holds ``serving_model.py`` (a copy of
``landmark_lora/serving_model.py``) and its settings in ``MLmodel`` (``model_config``), not a
cloudpickled object, so loading a model never unpickles anything from the artifact store.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from landmark_lora.artifacts import Layout, read_person_regions, read_plates_in
from landmark_lora.composite import Composite, Request, compose
from landmark_lora.config import CompositeConfig, Params
from landmark_lora.diffusion.inpaint import inpaint_pipeline, inpainter
from landmark_lora.diffusion.pipeline import load_pipeline
from landmark_lora.plates import PlateError, choose_plate, load_plate

# The file MLflow copies into each logged model and runs on load (it calls mlflow.models.set_model).
MODEL_CODE = Path(__file__).with_name("serving_model.py")


class LandmarkLoraModel(mlflow.pyfunc.PythonModel):
    """predict(DataFrame or list of dicts, see the module docstring) -> list of base64 PNG strings."""

    def __init__(self, base_ref: str | None = None, steps: int = 20, guidance: float = 5.0) -> None:
        self.base_ref, self.steps, self.guidance = base_ref, steps, guidance
        self.pipe: Any = None  # a StableDiffusionPipeline once load_context ran
        self.ipipe: Any = None  # its inpainting twin, made on the first composite request
        self.plates_dir: Path | None = None
        self.regions: dict[str, Any] = {}
        self.config: dict[str, Any] = {}

    def load_context(self, context: Any) -> None:
        config = context.model_config or {}  # models from code: the settings live in MLmodel
        self.config = dict(config)
        self.base_ref = config.get("base_ref", self.base_ref)
        self.steps = int(config.get("steps", self.steps))
        self.guidance = float(config.get("guidance", self.guidance))
        self.pipe = load_pipeline(base_folder(context.artifacts.get("base"), self.base_ref),
                                  Path(context.artifacts["adapter"]), device="auto")
        if context.artifacts.get("plates"):
            self.plates_dir = Path(context.artifacts["plates"])
        if context.artifacts.get("person_regions"):
            self.regions = read_person_regions(Path(context.artifacts["person_regions"]))

    def generate(self, prompt: str, seed: int = 0, width: int | None = None, height: int | None = None) -> Any:
        import torch

        gen = torch.Generator("cpu").manual_seed(int(seed))
        size = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        return self.pipe(prompt, width=int(width or size), height=int(height or size), num_inference_steps=self.steps,
                         guidance_scale=self.guidance, generator=gen).images[0]

    def prompt_for(self, landmark: str, angle: str, shot: str, pose: str) -> str:
        """The training caption for these labels, from the caption settings and catalogue bundled in the model."""
        from landmark_lora.catalogue import Landmark, render_caption
        from landmark_lora.config import CaptionConfig

        landmarks = self.config.get("landmarks") or {}
        if landmark not in landmarks:
            raise ValueError(f"landmark '{landmark}' is not in this model's catalogue ({', '.join(sorted(landmarks))})")
        return render_caption(CaptionConfig(**self.config.get("caption", {})), Landmark(**landmarks[landmark]),
                              shot, angle, pose)

    def composite(self, req: Request, plates_dir: Path | None = None,
                  regions: dict[str, Any] | None = None) -> Composite:
        """The person for ``req.shot`` inpainted into a plate of (landmark, angle); ``plates_dir``/``regions``
        stand in for a model logged without them (the workspace's library)."""
        plates_dir = self.plates_dir or plates_dir
        regions = self.regions or regions or {}
        if plates_dir is None or not regions:
            raise PlateError("this model was logged without a plate library or person regions (composite mode): "
                             "run `dvc repro` with background plates and promote again, or generate in a workspace "
                             "whose data/processed has plates")
        if self.ipipe is None:
            self.ipipe = inpaint_pipeline(self.pipe, self.config.get("inpaint_base"))
        cfg = CompositeConfig(**self.config.get("composite", {}))
        prompt = req.prompt or self.prompt_for(req.landmark, req.angle, req.shot, req.pose)
        return composite_snapshot(self.ipipe, plates_dir, regions, cfg, req, prompt)

    # no type hints here: MLflow reads predict's hints as an input schema (and warns on Any)
    def predict(self, context, model_input, params=None):  # -> list of base64 PNG strings
        import pandas as pd

        rows = model_input.to_dict("records") if isinstance(model_input, pd.DataFrame) else list(model_input)
        out = []
        for row in rows:
            row = {"prompt": row} if isinstance(row, str) else {k: v for k, v in row.items() if not _missing(v)}
            if row.get("mode", "t2i") == "composite":
                size = (int(row["width"]), int(row["height"])) if row.get("width") and row.get("height") else None
                image = self.composite(Request(row["landmark"], row["angle"], row["shot"], row.get("pose", "unspecified"),
                                               int(row.get("seed", 0)), row.get("plate"), row.get("prompt"), size)).image
            else:
                image = self.generate(row["prompt"], row.get("seed", 0), row.get("width"), row.get("height"))
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            out.append(base64.b64encode(buf.getvalue()).decode())
        return out


def base_folder(bundled: str | None, base_ref: str | None) -> Path:
    """The base's diffusers folder: the bundled copy (tiny base), else ``base_ref`` resolved like
    ``model.base`` (``toyworld`` = the base shipped in the package, a local folder, a cached hub id)."""
    if bundled:
        return Path(bundled)
    if not base_ref:
        raise ValueError("this model names no base (neither a bundled 'base' artifact nor base_ref); log it again")
    from landmark_lora.diffusion.base import ensure_base_model

    return Path(ensure_base_model(base_ref))


def _missing(value: Any) -> bool:
    """A column a row left empty (pandas fills it with None or NaN)."""
    return value is None or (isinstance(value, float) and value != value)


def composite_snapshot(ipipe: Any, plates_dir: Path, regions: dict[str, Any], cfg: CompositeConfig, req: Request,
                       prompt: str) -> Composite:
    """Pick the plate (by name, else by seed), inpaint the person region for the shot, paste back."""
    record = choose_plate(read_plates_in(plates_dir), req.landmark, req.angle, req.seed, req.plate)
    image = load_plate(plates_dir, record, req.size)
    paint = inpainter(ipipe, prompt, cfg.num_inference_steps, cfg.guidance_scale, cfg.strength)
    return compose(image, record.name, regions, req.shot, cfg, paint, req.seed)


def composite_in_workspace(model: LandmarkLoraModel, params: Params, req: Request) -> Composite:
    """``model.composite`` with the workspace's caption settings for the prompt, and its plate library and
    person regions standing in for a model logged without them (``landmark-lora generate --mode composite``)."""
    from landmark_lora.catalogue import load_catalogue, render_caption

    catalogue = load_catalogue(params.catalogue)
    if req.landmark not in catalogue:
        raise PlateError(f"landmark '{req.landmark}' is not in the catalogue ({', '.join(sorted(catalogue))})")
    if not req.prompt:
        prompt = render_caption(params.caption, catalogue[req.landmark], req.shot, req.angle, req.pose)
        req = dataclasses.replace(req, prompt=prompt)
    layout = Layout.of(params)
    return model.composite(req, plates_dir=layout.plates_dir, regions=read_person_regions(layout))


def log_adapter_model(adapter_dir: Path, base_spec: str, base_path: Path, steps: int, guidance: float,
                      composite: dict[str, Any] | None = None) -> Any:
    """Log the pyfunc into the active run. Returns the ModelInfo. ``composite``: what composite mode needs,
    from ``composite_bundle`` (plate library, person regions and settings); None = text-to-image only."""
    artifacts = {"adapter": str(adapter_dir)}
    config: dict[str, Any] = {"steps": int(steps), "guidance": float(guidance)}
    if base_spec == "tiny":
        artifacts["base"] = str(base_path)
    else:
        config["base_ref"] = base_spec
    if composite:
        artifacts.update(composite["artifacts"])
        config.update(composite["config"])
    cols = [ColSpec("string", "prompt", required=False), ColSpec("long", "seed", required=False),
            ColSpec("long", "width", required=False), ColSpec("long", "height", required=False)]
    cols += [ColSpec("string", c, required=False) for c in ("mode", "landmark", "angle", "shot", "pose", "plate")]
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(MODEL_CODE),  # models from code: no pickle in the model directory
        model_config=config,
        artifacts=artifacts,
        pip_requirements=["landmark-lora", "diffusers", "peft", "torch", "transformers"],
        # An explicit signature: an input_example would make MLflow load and run the model here.
        signature=ModelSignature(inputs=Schema(cols), outputs=Schema([ColSpec("string")])),
    )


def composite_bundle(plates_dir: Path, regions_path: Path, composite: CompositeConfig, caption: Any,
                     catalogue: dict[str, Any], inpaint_base: str | None = None) -> dict[str, Any] | None:
    """What ``log_adapter_model`` bundles for composite mode; None when preprocess built no plates."""
    if not read_plates_in(plates_dir) or not Path(regions_path).is_file():
        return None
    config = {"composite": composite.model_dump(mode="json"), "caption": caption.model_dump(mode="json"),
              "landmarks": {slug: asdict(lm) for slug, lm in catalogue.items()}}
    if inpaint_base:
        config["inpaint_base"] = str(inpaint_base)
    return {"artifacts": {"plates": str(plates_dir), "person_regions": str(regions_path)}, "config": config}


def load_registered(name: str, alias_or_version: str) -> LandmarkLoraModel:
    """``champion`` / ``challenger`` / a version number -> the loaded python model."""
    ref = f"models:/{name}/{alias_or_version}" if alias_or_version.isdigit() else f"models:/{name}@{alias_or_version}"
    return mlflow.pyfunc.load_model(ref).unwrap_python_model()
