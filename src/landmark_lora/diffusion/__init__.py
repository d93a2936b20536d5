"""Diffusion building blocks shared by the stages, serving and the toy world (no stage code here).

    from landmark_lora.diffusion.components import resolve_base, load_components   # base folder, frozen parts
    from landmark_lora.diffusion.latents import load_latents                        # the latent cache, read side
    from landmark_lora.diffusion.loss import Encoder, Split, evaluate_loss          # held-out denoising loss
    from landmark_lora.diffusion.trainer import setup, train_steps                  # the LoRA training loop
    from landmark_lora.diffusion.checkpoints import run_key, shared_resume_point    # atomic checkpoints, resume
    from landmark_lora.diffusion.pipeline import load_pipeline                      # base (+ LoRA) for images
    from landmark_lora.diffusion.base import ensure_base_model                      # tiny / toyworld / local base
    from landmark_lora.diffusion.lora_export import export_adapter                  # peft + kohya adapter files

Importing this package loads nothing heavy: torch and diffusers come with the submodules that need them.
"""
