"""Which samples each optimiser step sees, and which of their captions drop: pure functions of the seed.

    plan = BatchPlan(split, per_rank=4, world=2, seed=42)
    plan.batch(micro=17, rank=1)              # indices into split, the same in every run and on resume
    plan.dropped(micro=17, rank=1, rate=0.05)  # which of those captions become the empty prompt
"""

from __future__ import annotations

import math
import random

from landmark_lora.diffusion.loss import Split


class BatchPlan:
    """Deterministic bucketed batches: micro-batch m of the whole run, for any rank.

    Each batch comes from one bucket (same shape). A bucket smaller than a batch wraps around. Batch m is
    a pure function of (seed, m): resuming at any step replays the batches an uninterrupted run would see.
    """

    def __init__(self, split: Split, per_rank: int, world: int, seed: int):
        self.split, self.per_rank, self.world, self.seed = split, per_rank, world, seed
        self.global_batch = per_rank * world
        self._epoch_cache: dict[int, list[list[int]]] = {}
        self.batches_per_epoch = len(self._epoch(0))

    def _epoch(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epoch_cache:
            rng = random.Random(self.seed * 1_000_003 + epoch)
            batches = []
            for key in sorted(self.split.buckets):
                idx = list(self.split.buckets[key])
                rng.shuffle(idx)
                n = max(1, math.ceil(len(idx) / self.global_batch))
                padded = (idx * math.ceil(n * self.global_batch / len(idx)))[: n * self.global_batch]
                batches += [padded[i * self.global_batch:(i + 1) * self.global_batch] for i in range(n)]
            rng.shuffle(batches)
            self._epoch_cache = {epoch: batches}  # keep one epoch in memory
        return self._epoch_cache[epoch]

    def batch(self, micro: int, rank: int) -> list[int]:
        epoch, pos = divmod(micro, self.batches_per_epoch)
        full = self._epoch(epoch)[pos]
        return full[rank * self.per_rank:(rank + 1) * self.per_rank]

    def dropped(self, micro: int, rank: int, rate: float) -> list[bool]:
        """Which captions of that batch become the empty prompt, as a pure function of (seed, micro, rank).

        Not the process-wide ``random``: another thread drawing from it (a server's retry jitter, say)
        would change which captions drop and break the exact replay of a resumed run.
        """
        rng = random.Random((self.seed * 1_000_003 + micro) * 65_537 + rank)
        return [rng.random() < rate for _ in range(self.per_rank)]

    def prior_seed(self, step: int, rank: int) -> int:
        """``train.prior``: the seed of optimiser step ``step``'s prior batch on ``rank`` (its images and noise)."""
        return ((self.seed * 1_000_003 + step) * 65_537 + rank) * 31 + 7

    def prior(self, step: int, rank: int, available: int, size: int) -> list[int]:
        """``train.prior``: which of the ``available`` prior images optimiser step ``step`` adds on ``rank``."""
        rng = random.Random(self.prior_seed(step, rank))
        return rng.sample(range(available), size) if size <= available else rng.choices(range(available), k=size)
