"""torchrun entry for the multi-node resume tests: each rank runs the trainer in its own working
directory, ``LANDMARK_TEST_WORKDIR_<RANK>``, as ranks on two nodes each see their own disk.

    LANDMARK_TEST_WORKDIR_0=/a LANDMARK_TEST_WORKDIR_1=/b ACCELERATE_USE_CPU=1 \\
        torchrun --standalone --nproc_per_node 2 tests/stages/per_rank_workdir.py --params params.yaml
"""

import os
import sys

os.chdir(os.environ[f"LANDMARK_TEST_WORKDIR_{os.environ['RANK']}"])

from landmark_lora.stages.train import main  # noqa: E402  (after the chdir, as a node would start)

sys.exit(main(sys.argv[1:]))
