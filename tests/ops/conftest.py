"""tests/ops/ borrows the tiny training recipe of tests/stages/test_train.py (TINY, _deep_merge):
put that folder on sys.path so `from test_train import ...` finds it whichever folder runs first."""

import sys
from pathlib import Path

_STAGES = str(Path(__file__).resolve().parents[1] / "stages")
if _STAGES not in sys.path:
    sys.path.append(_STAGES)
