"""`python -m landmark_lora.cli ...`: the same as the `landmark-lora` command."""

import sys

from landmark_lora.cli import main

sys.exit(main())
