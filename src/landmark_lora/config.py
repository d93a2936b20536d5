"""Typed view of params.yaml: the one place for every knob.

    from landmark_lora.config import load_params
    params = load_params()            # ./params.yaml
    params.data.resolution            # -> 64

An unknown key, a wrong type or an out-of-range value raises ConfigError with the dotted key and a
hint, e.g. ``params.yaml: data.resolutoin: unknown key (did you mean 'resolution'?)``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """A params.yaml problem, phrased for the person who edits the file."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(_Section):
    incoming: Path = Path("data/incoming")
    raw: Path = Path("data/raw")
    quarantine: Path = Path("data/quarantine")
    processed: Path = Path("data/processed")
    latents: Path = Path("data/latents")
    reports: Path = Path("reports")
    cache: Path = Path(".cache")

    @model_validator(mode="after")
    def _drop_raw_quarantine_apart(self) -> PathsConfig:
        # Ingest empties incoming into raw and quarantine: nested folders would ingest its own output.
        keys = ("incoming", "raw", "quarantine")
        where = {k: Path(getattr(self, k)).expanduser().resolve() for k in keys}
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                pa, pb = where[a], where[b]
                if pa == pb:
                    raise ValueError(
                        f"paths.{a} and paths.{b} are the same folder ({getattr(self, a)}); "
                        "give each of paths.incoming, paths.raw and paths.quarantine its own folder"
                    )
                inner, outer = (a, b) if pb in pa.parents else (b, a) if pa in pb.parents else (None, None)
                if inner and outer:
                    raise ValueError(
                        f"paths.{inner} ({getattr(self, inner)}) is inside paths.{outer} ({getattr(self, outer)}); "
                        "paths.incoming, paths.raw and paths.quarantine must not contain one another"
                    )
        return self


class SampleDataConfig(_Section):
    seed: int = 1234
    width: int = Field(192, ge=64, le=2048)
    height: int = Field(256, ge=64, le=2048)
    poses_per_view: int = Field(2, ge=1, le=10)
    plates_per_view: int = Field(2, ge=0, le=10, description="background plates (no person) per (landmark, angle)")
    jpeg_quality: int = Field(92, ge=50, le=100)


class IngestConfig(_Section):
    extensions: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp")
    min_side: int = Field(64, ge=1)
    max_aspect_ratio: float = Field(4.0, ge=1.0)
    max_pixels: int = Field(120_000_000, ge=1)  # header-declared pixel count above which a file is a decompression bomb
    max_file_mb: float = Field(200.0, gt=0)
    progress_threshold: int = Field(50, ge=0, description="show a progress bar from this many files")
    dvc_add: bool = True
    # A file changed (mtime/ctime) more recently than this may still be being written: it waits
    # in the drop folder for the next run. 0 = take every file as it is (tests).
    min_age_s: float = Field(10.0, ge=0, le=3600)
    # Processes that decode and hash photos, 0 = one per core (copies and records stay in order, in one process).
    workers: int = Field(0, ge=0, le=256)


class ValidationConfig(_Section):
    min_photos_per_landmark: int = Field(10, ge=1)
    min_side: int = Field(64, ge=1)
    max_side: int = Field(20_000, ge=1)
    max_aspect_ratio: float = Field(4.0, ge=1.0)
    max_unspecified_fraction: float = Field(0.5, ge=0.0, le=1.0)
    max_pose_chars: int = Field(80, ge=1)
    required_landmarks: tuple[str, ...] = ()
    # Composite generation needs a background plate for every (landmark, angle) it is asked for.
    require_plates: bool = True
    min_plate_side: int = Field(64, ge=1)


class DataConfig(_Section):
    resolution: int = Field(64, ge=32, le=2048, description="side of the square bucket; buckets keep its area")
    bucket_multiple: int = Field(8, ge=1, le=128)
    min_bucket_aspect: float = Field(0.5, gt=0.0, le=1.0)
    max_bucket_aspect: float = Field(2.0, ge=1.0, le=4.0)
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    person_detector: Literal["auto", "center"] = "auto"
    image_format: Literal["png", "jpg"] = "png"
    # Processes that decode, detect and crop photos missing from the cache. 0 = one per CPU core.
    workers: int = Field(0, ge=0, le=256)

    @model_validator(mode="after")
    def _resolution_fits_multiple(self) -> DataConfig:
        if self.resolution % self.bucket_multiple:
            raise ValueError(
                f"resolution ({self.resolution}) must be a multiple of bucket_multiple ({self.bucket_multiple})"
            )
        return self


class CaptionConfig(_Section):
    trigger: str = Field("lmksnap", min_length=1)
    # Parts are joined with ", ". A part that mentions an unspecified or empty field is dropped.
    template: tuple[str, ...] = (
        "{trigger} snapshot photo",
        "in front of {landmark}",  # first: short text encoders truncate the tail
        "{shot}",
        "{angle}",
        "person {pose}",
        "{description}",
        "{caption}",
    )
    shot_words: dict[str, str] = {"close_up": "close-up shot", "upper_body": "upper-body shot",
                                  "thigh_up": "thigh-up shot", "full_body": "full-body shot", "wide": "wide shot"}
    angle_words: dict[str, str] = {"eye_level": "eye-level angle", "low_angle": "low-angle shot from below",
                                   "high_angle": "high-angle shot from above"}


class ModelConfig(_Section):
    # "tiny" = embedded base built locally from config (models/base-tiny); otherwise a local
    # diffusers folder or a Hugging Face id already in the local cache (never downloaded).
    base: str = Field("tiny", min_length=1)
    dir: Path = Path("models")
    revision: str | None = None
    # A real inpainting checkpoint (9-channel UNet, local folder) for composite mode; null = the
    # loaded base + LoRA, which inpaints by blending latents.
    inpaint_base: str | None = None


class LoraConfig(_Section):
    rank: int = Field(4, ge=1, le=1024)
    alpha: float = Field(4.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    text_encoder: bool = False
    text_encoder_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
    # Pivotal tuning: one new token per landmark name in the captions, its embedding trained beside
    # the LoRA (models/adapter/token_embeddings.safetensors; diffusion/token_embeddings.py).
    train_token_embeddings: bool = False
    token_embedding_lr: float = Field(1e-3, gt=0, le=10)

    @model_validator(mode="after")
    def _targets_given(self) -> LoraConfig:
        if not self.targets:
            raise ValueError("targets must name at least one UNet module (e.g. to_q)")
        return self


class PriorConfig(_Section):
    """Prior preservation (DreamBooth's prior loss): the base's own images at every shot type, trained beside
    the photos so the LoRA keeps the base's framing. README: "Prior preservation"."""

    per_shot: int = Field(0, ge=0, le=1000)  # base images per shot type; 0 = off
    weight: float = Field(1.0, ge=0, le=100)  # the prior loss's weight against the photos' loss
    batch: int = Field(2, ge=1)  # prior images per optimiser step and process
    prompt: str = "snapshot photo, in front of a park, {shot}, {angle}"  # {shot}/{angle}: caption words
    steps: int = Field(20, ge=1, le=200)
    guidance: float = Field(5.0, ge=1.0, le=30.0)
    seed: int = 0

    @field_validator("prompt")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        try:
            v.format(shot="", angle="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"{v!r}: only {{shot}} and {{angle}} may be filled in ({e})") from None
        return v


class TrainConfig(_Section):
    max_steps: int = Field(30, ge=1)
    learning_rate: float = Field(1e-3, gt=0, le=10)
    text_encoder_lr: float | None = Field(None, gt=0, le=10)  # the text encoder LoRA's; null = learning_rate
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    num_processes: int = Field(1, ge=1, le=1024)
    resume: str = Field("auto", description="auto | never | <checkpoint folder>")
    seed: int = 42
    warmup_steps: int = Field(3, ge=0)
    weight_decay: float = Field(1e-2, ge=0)
    adam_beta1: float = Field(0.9, gt=0, lt=1)
    adam_beta2: float = Field(0.999, gt=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False
    min_snr_gamma: float | None = Field(5.0, gt=0)
    noise_offset: float = Field(0.05, ge=0, le=1)
    caption_dropout: float = Field(0.05, ge=0, le=1)
    eval_every: int = Field(10, ge=1)
    eval_timesteps: tuple[int, ...] = (100, 300, 500, 700, 900)
    eval_seed: int = 1234
    checkpoint_every: int = Field(10, ge=1)
    checkpoints_keep: int = Field(2, ge=1)
    cached_latents: bool = True
    num_workers: int = Field(0, ge=0)
    # torch threads per process (torch.set_num_threads); null = torch's default (one per core).
    # 1: on a busy 2-core machine torch's 2 threads trained 10x slower (docs/results.md).
    threads: int | None = Field(1, ge=1, le=1024)
    compile: bool = False  # torch.compile the UNet's steps: faster after minutes of compiling (README)
    prior: PriorConfig = PriorConfig()

    @model_validator(mode="after")
    def _timesteps(self) -> TrainConfig:
        if not self.eval_timesteps or any(t < 0 or t > 999 for t in self.eval_timesteps):
            raise ValueError("eval_timesteps must be a non-empty list of ints in 0..999")
        if self.resume not in ("auto", "never") and not self.resume.strip():
            raise ValueError("resume must be auto, never or a checkpoint folder")
        return self


class EvalConfig(_Section):
    max_prompts: int = Field(10, ge=1, le=1000)
    seed: int = 2024
    num_inference_steps: int = Field(8, ge=1, le=200)
    guidance_scale: float = Field(5.0, ge=1.0, le=30.0)
    # Local CLIP checkpoint (folder) for clip_score; null = skipped. Never downloaded.
    clip_model: Path | None = None
    # landmark/angle/pose_accuracy are reported only when the offline classifier reads the real
    # val photos at least this well (share right), from at least this many of them; above 1 = never.
    min_calibration: float = Field(0.6, ge=0.0)
    min_calibration_photos: int = Field(10, ge=1)
    # Classifiers also trained on the train photos' round trips through the base's VAE, calibrated on the val
    # photos' (generations all come out of that decoder). Off in code: the tiny test base's VAE is random.
    classifier_vae_roundtrip: bool = False
    # shot_agreement's reader: detector (OpenCV), classifier (offline, calibrated), auto = the one that reads
    # the real val photos better (scoring.choose_shot_reader)
    shot_reader: Literal["auto", "detector", "classifier"] = "auto"
    # torch threads while scoring (evaluate, promote's rescoring); null = torch's default
    threads: int | None = Field(1, ge=1, le=1024)
    composite: bool = True  # also score composite mode (person inpainted on a real plate) beside text-to-image


class CompositeConfig(_Section):
    """Composite generation: the person inpainted into a background plate (landmark_lora.composite)."""

    feather_px: int = Field(4, ge=0, le=64, description="soft edge of the mask, inside the person region")
    corner: float = Field(0.5, ge=0.0, le=0.5, description="round the region's corners (share of its shorter side)")
    region_spread: float = Field(1.0, ge=0.0, le=4.0, description="grow the median person box by this many spreads")
    region_margin: float = Field(0.04, ge=0.0, le=0.5, description="and by this share of the image per side")
    strength: float = Field(1.0, gt=0.0, le=1.0, description="inpainting strength: 1 = redraw the region fully")
    num_inference_steps: int = Field(20, ge=1, le=200)
    guidance_scale: float = Field(5.0, ge=1.0, le=30.0)


# Metrics promotion.guard_tolerance may name: each is in reports/eval.json, higher is better.
GUARD_METRICS = ("background_consistency", "shot_agreement", "landmark_accuracy", "angle_accuracy", "pose_accuracy")


class PromotionConfig(_Section):
    registered_model: str = Field("landmark-lora", min_length=1)
    # Relative drop of eval_loss the challenger needs over the champion (0.01 = 1 % lower).
    min_improvement: float = Field(0.01, ge=0.0, lt=1.0)
    # Largest allowed absolute drop of each guard metric (higher is better for all of them).
    guard_tolerance: dict[str, float] = {"background_consistency": 0.05, "shot_agreement": 0.10}
    # Absolute sanity gates for any adapter, champion or first.
    max_eval_loss: float = Field(10.0, gt=0)
    min_output_change: float = Field(1e-3, ge=0.0, description="mean |adapter - base| pixel change, 0..1")
    # Largest ||LoRA update|| / ||base weight|| of any adapted layer: above it training blew up.
    max_delta_ratio: float = Field(2.0, gt=0)
    # Largest trained token-embedding norm / the base's mean token-embedding norm: above it, blown up.
    max_embedding_ratio: float = Field(20.0, gt=0)
    # Promote a version tagged reproducible=false (dirty tree, failed dvc push, ...): the
    # operator's call (also `landmark-lora promote --allow-unreproducible`).
    allow_unreproducible: bool = False

    @field_validator("guard_tolerance")
    @classmethod
    def _known_guards(cls, value: dict[str, float]) -> dict[str, float]:
        # A misspelt metric never matches a score, so its guard would be skipped without a word.
        for key in value:
            if key not in GUARD_METRICS:
                raise PydanticCustomError("unknown_key", "unknown key ({hint})",
                                          {"key": key, "hint": _did_you_mean(key, list(GUARD_METRICS))})
        return value


class MlflowConfig(_Section):
    # MLFLOW_TRACKING_URI in the environment overrides tracking_uri.
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_location: str = "mlruns/artifacts"
    experiment: str = Field("landmark-lora", min_length=1)
    system_metrics: bool = True


class Params(_Section):
    catalogue: Path | None = None
    paths: PathsConfig = PathsConfig()
    sample_data: SampleDataConfig = SampleDataConfig()
    ingest: IngestConfig = IngestConfig()
    validation: ValidationConfig = ValidationConfig()
    data: DataConfig = DataConfig()
    caption: CaptionConfig = CaptionConfig()
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    composite: CompositeConfig = CompositeConfig()
    promotion: PromotionConfig = PromotionConfig()
    mlflow: MlflowConfig = MlflowConfig()


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None) if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def _did_you_mean(key: str, known: list[str]) -> str:
    guess = difflib.get_close_matches(key, known, n=1)
    return f"did you mean '{guess[0]}'?" if guess else f"known keys: {', '.join(known)}"


def _explain(err: ValidationError, source: str) -> ConfigError:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not str(p).startswith("function-after"))
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            known = _known_keys(Params, loc)
            guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f" (did you mean '{guess[0]}'?)" if guess else f" (known keys: {', '.join(known)})"
            lines.append(f"{source}: {key}: unknown key{hint}")
        elif e["type"] == "unknown_key":  # a checked mapping (promotion.guard_tolerance): name the bad key
            lines.append(f"{source}: {key}.{e['ctx']['key']}: {e['msg']}")
        else:
            got = e.get("input")
            got_txt = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{source}: {key}: {e['msg']}{got_txt}")
    return ConfigError("invalid parameters:\n  " + "\n  ".join(lines))


def parse_params(raw: dict[str, Any] | None, source: str = "params.yaml") -> Params:
    """Validate a params mapping. ``source`` names the file in error messages."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise _explain(err, source) from None


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None) -> Params:
    """Read params.yaml (and optional dotted-key overrides) into a typed Params."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found. Run from the repository root or pass --params PATH.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    for dotted, value in (overrides or {}).items():
        raw = set_dotted(raw or {}, dotted, value)
    return parse_params(raw, source=str(path))


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs -> ``{"data.resolution": 128}`` for load_params (values are YAML).

        load_params("params.yaml", parse_overrides(["data.resolution=128", "train.max_steps=4"]))
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. --set data.resolution=128")
        out[key.strip()] = yaml.safe_load(value)
    return out


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``a.b.c = value`` applied."""
    out = dict(raw)
    head, _, rest = dotted.partition(".")
    if rest:
        inner = out.get(head) or {}
        if not isinstance(inner, dict):
            raise ConfigError(f"override {dotted}: '{head}' is not a section")
        out[head] = set_dotted(inner, rest, value)
    else:
        out[head] = value
    return out


def flatten(params: Params) -> dict[str, str]:
    """Flat ``section.key -> str(value)`` mapping (for MLflow params)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = str(value)

    walk("", params.model_dump(mode="json"))
    return flat
