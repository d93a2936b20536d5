"""What the command modules share: the command line's logger and the catalogue of the params."""

from __future__ import annotations

from landmark_lora import logs
from landmark_lora.config import Params

# One logger for the whole command line (its lines read "landmark_lora.cli: ...").
log = logs.get_logger("landmark_lora.cli")


def catalogue_of(params: Params):
    from landmark_lora.catalogue import load_catalogue

    return load_catalogue(params.catalogue)
