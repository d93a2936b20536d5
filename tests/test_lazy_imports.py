"""Each command imports only what it uses: a process per DVC stage and per nightly run pays for every
heavy import (seconds each on 2 cores; docs/benchmarks.md, "The nightly run's overhead").

Each check runs in a fresh interpreter (this test process has imported everything already).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers", "great_expectations", "mlflow", "prefect", "pandas", "cv2")


def _heavy_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("code", "allowed"), [
    ("import landmark_lora.cli; landmark_lora.cli.build_parser()", ()),  # `landmark-lora --help`, any command's parse
    ("import landmark_lora.retrain.quickskip", ()),  # the skip path of `landmark-lora run`
    ("import landmark_lora.stages.validate", ("pandas",)),  # GX only when the contract is checked
    ("import landmark_lora.stages.preprocess", ()),
])
def test_a_module_imports_no_heavy_package_it_does_not_use(code, allowed):
    assert [m for m in _heavy_after(code) if m not in allowed] == []


def test_preprocess_checks_captions_without_transformers():
    """The toy-world base ships tokenizer.json: the caption check reads it with `tokenizers`."""
    code = ("from landmark_lora.caption_fit import load_base_tokenizer\n"
            "from landmark_lora.config import ModelConfig\n"
            "assert load_base_tokenizer(ModelConfig(base='toyworld'))('a b', add_special_tokens=False).input_ids")
    assert _heavy_after(code) == []
