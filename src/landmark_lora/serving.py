"""The adapter as an MLflow model: base + LoRA behind a pyfunc that makes images offline.

    landmark-lora generate --model champion --prompt "lmksnap snapshot photo, upper-body shot, ..." --out snap.png
    mlflow models predict -m models:/landmark-lora@champion -i prompts.json -t json --env-manager local

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
import io
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from landmark_lora.diffusion.pipeline import load_pipeline

# The file MLflow copies into each logged model and runs on load (it calls mlflow.models.set_model).
MODEL_CODE = Path(__file__).with_name("serving_model.py")


class LandmarkLoraModel(mlflow.pyfunc.PythonModel):
    """predict(DataFrame or list of dicts with ``prompt`` [, ``seed``, ``width``, ``height``]) ->
    list of base64 PNG strings."""

    def __init__(self, base_ref: str | None = None, steps: int = 20, guidance: float = 5.0) -> None:
        self.base_ref, self.steps, self.guidance = base_ref, steps, guidance
        self.pipe: Any = None  # a StableDiffusionPipeline once load_context ran

    def load_context(self, context: Any) -> None:
        config = context.model_config or {}  # models from code: the settings live in MLmodel
        self.base_ref = config.get("base_ref", self.base_ref)
        self.steps = int(config.get("steps", self.steps))
        self.guidance = float(config.get("guidance", self.guidance))
        base = context.artifacts.get("base") or self.base_ref
        self.pipe = load_pipeline(Path(base), Path(context.artifacts["adapter"]), device="auto")

    def generate(self, prompt: str, seed: int = 0, width: int | None = None, height: int | None = None) -> Any:
        import torch

        gen = torch.Generator("cpu").manual_seed(int(seed))
        size = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        return self.pipe(prompt, width=int(width or size), height=int(height or size), num_inference_steps=self.steps,
                         guidance_scale=self.guidance, generator=gen).images[0]

    # no type hints here: MLflow reads predict's hints as an input schema (and warns on Any)
    def predict(self, context, model_input, params=None):  # -> list of base64 PNG strings
        import pandas as pd

        rows = model_input.to_dict("records") if isinstance(model_input, pd.DataFrame) else list(model_input)
        out = []
        for row in rows:
            row = {"prompt": row} if isinstance(row, str) else row
            image = self.generate(row["prompt"], row.get("seed", 0), row.get("width"), row.get("height"))
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            out.append(base64.b64encode(buf.getvalue()).decode())
        return out


def log_adapter_model(adapter_dir: Path, base_spec: str, base_path: Path, steps: int, guidance: float) -> Any:
    """Log the pyfunc into the active run. Returns the ModelInfo."""
    artifacts = {"adapter": str(adapter_dir)}
    config: dict[str, Any] = {"steps": int(steps), "guidance": float(guidance)}
    if base_spec == "tiny":
        artifacts["base"] = str(base_path)
    else:
        config["base_ref"] = base_spec
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(MODEL_CODE),  # models from code: no pickle in the model directory
        model_config=config,
        artifacts=artifacts,
        pip_requirements=["landmark-lora", "diffusers", "peft", "torch", "transformers"],
        # An explicit signature: an input_example would make MLflow load and run the model here.
        signature=ModelSignature(
            inputs=Schema([ColSpec("string", "prompt"), ColSpec("long", "seed", required=False),
                           ColSpec("long", "width", required=False), ColSpec("long", "height", required=False)]),
            outputs=Schema([ColSpec("string")]),
        ),
    )


def load_registered(name: str, alias_or_version: str) -> LandmarkLoraModel:
    """``champion`` / ``challenger`` / a version number -> the loaded python model."""
    ref = f"models:/{name}/{alias_or_version}" if alias_or_version.isdigit() else f"models:/{name}@{alias_or_version}"
    return mlflow.pyfunc.load_model(ref).unwrap_python_model()
