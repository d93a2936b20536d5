"""landmark-lora: keep a Stable Diffusion LoRA fresh for snapshots at Korean landmarks."""

__version__ = "0.1.0"
