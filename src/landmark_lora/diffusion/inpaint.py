"""Inpainting with the loaded base + LoRA: diffusers' StableDiffusionInpaintPipeline, offline.

    from landmark_lora.diffusion.inpaint import inpaint_pipeline, inpainter
    ipipe = inpaint_pipeline(pipe)                          # shares pipe's UNet, VAE, text encoder (and LoRA)
    ipipe = inpaint_pipeline(pipe, "models/sd-inpainting", adapter_dir="models/adapter")  # model.inpaint_base
    paint = inpainter(ipipe, "lmksnap snapshot photo, ...", steps=20, guidance=5.0)
    image = paint(plate, (10, 8, 46, 72), seed)             # the frame, the box redrawn

With an ordinary 4-channel SD 1.x UNet (or any plain UNet whose channels are its VAE's latents, like
the toy-world base's 8: ``blending_unet``) the pipeline inpaints by blending latents: at every step
the latents outside the mask are replaced by the plate's latents noised to that step, so the
region is drawn to fit what surrounds it. A real inpainting checkpoint (9-channel UNet, named
by ``model.inpaint_base``) sees the masked plate directly. Either way landmark_lora.composite
pastes the result back so that the plate's pixels outside the region stay exactly as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

LATENT_CELL = 8  # VAE downscale: the pipeline's mask works on 8 x 8 px cells


def inpaint_pipeline(pipe: Any, inpaint_base: str | Path | None = None, adapter_dir: str | Path | None = None) -> Any:
    """A StableDiffusionInpaintPipeline: from ``pipe``'s own components (its LoRA included), or from the
    local inpainting checkpoint ``inpaint_base`` with ``adapter_dir`` loaded on top."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionInpaintPipeline

    if inpaint_base is None:
        ipipe = StableDiffusionInpaintPipeline.from_pipe(pipe)
    else:
        path = Path(inpaint_base)
        if not path.is_dir():
            raise FileNotFoundError(f"model.inpaint_base: {path} is not a local diffusers folder (nothing is "
                                    "downloaded); set it to null to inpaint with the base + LoRA")
        ipipe = StableDiffusionInpaintPipeline.from_pretrained(
            str(path), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            local_files_only=True, torch_dtype=pipe.unet.dtype)
        ipipe.scheduler = DPMSolverMultistepScheduler.from_config(ipipe.scheduler.config)
        ipipe.to(pipe.device)
        if adapter_dir is not None:
            ipipe.load_lora_weights(str(adapter_dir))
    ipipe.set_progress_bar_config(disable=True)
    return ipipe


def region_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """White over ``box`` grown out to whole latent cells (the pipeline redraws those), black elsewhere."""
    w, h = size
    x0, y0, x1, y1 = box
    c = LATENT_CELL
    cell = (x0 // c * c, y0 // c * c, min(w, -(-x1 // c) * c), min(h, -(-y1 // c) * c))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((cell[0], cell[1], cell[2] - 1, cell[3] - 1), fill=255)
    return mask


@contextmanager
def blending_unet(ipipe: Any) -> Iterator[None]:
    """Let diffusers blend latents for any plain UNet. Its inpainting pipeline blends only when the UNet takes
    4 channels (SD 1.x latents); a plain UNet on other latents (the toy-world base: 8 in, 8 out, like its VAE)
    is the same case, so for the call its config says 4 (the weights and forward pass are untouched)."""
    unet, latent = ipipe.unet, ipipe.vae.config.latent_channels
    real = unet.config.in_channels
    if real in (4, 9) or real != latent:
        yield
        return
    unet.register_to_config(in_channels=4)
    try:
        yield
    finally:
        unet.register_to_config(in_channels=real)


def inpainter(ipipe: Any, prompt: str, steps: int = 20, guidance: float = 5.0, strength: float = 1.0) -> Any:
    """(plate, box, seed) -> the frame with the box redrawn for ``prompt`` (composite.Inpaint)."""
    import torch

    @torch.no_grad()
    def paint(plate: Image.Image, box: tuple[int, int, int, int], seed: int) -> Image.Image:
        gen = torch.Generator("cpu").manual_seed(int(seed))
        with blending_unet(ipipe):
            out = ipipe(prompt=prompt, image=plate, mask_image=region_mask(plate.size, box), width=plate.width,
                        height=plate.height, strength=strength, num_inference_steps=steps, guidance_scale=guidance,
                        generator=gen, output_type="pil")
        return out.images[0]

    return paint
