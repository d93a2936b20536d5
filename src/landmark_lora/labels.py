"""The drop folder's labels manifest: ``data/incoming/metadata.csv``, the incoming contract.

    from landmark_lora.labels import MANIFEST, MANIFEST_COLUMNS
    path = incoming / MANIFEST          # file,shot,angle,pose,caption; file relative to incoming

Ingest (``landmark_lora.ops.ingest``) reads it; the sample renderer
(``landmark_lora.synthetic.render``) writes it.
"""

from __future__ import annotations

MANIFEST = "metadata.csv"
MANIFEST_COLUMNS = ("file", "shot", "angle", "pose", "caption")
