"""Synthetic sample photos: offline, deterministic, license-clean snapshots at the landmarks.

    landmark-lora sample-data        # -> synthetic.render.render_sample_set(params.paths.incoming, ...)

    from landmark_lora.synthetic.render import render_sample_set
    from landmark_lora.synthetic.photo import render_photo
    from landmark_lora.synthetic.person import POSES

Every photo is drawn from scratch with numpy + Pillow (no downloads, no model weights), so the
demo has a labelled training set with no licensing questions. Modules, bottom to top:

    canvas.py   camera angles, the world-unit Canvas, colours, seeding, shared drawing parts
    scenes.py   one procedural scene per catalogue landmark, a generic monument otherwise
    person.py   POSES, the person's look, pose, framing by shot type, and the drawing
    photo.py    render_photo / compose_photo: background + person + shake, light, noise
    render.py   render_sample_set: the whole set and its metadata.csv for ingest

Determinism: every random choice comes from a numpy Generator seeded by ``cfg.seed`` and a
blake2b hash of the photo's labels (never Python's salted ``hash()``), so two runs write
byte-identical files.
"""
