"""Deliberate mistakes that appendix 04b (of notebook 04) runs to show what goes wrong: a random
transform whose RNG is made in ``__init__``, so every DataLoader worker repeats the same "random" draws.

Not part of the pipeline: the training path never imports ``helpers.lab`` (a test checks).

Notebooks: 04 teaches it (appendix 04b).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..loader import RandomHorizontalFlip

class FlipWithInitRng(RandomHorizontalFlip):
    """THE MISTAKE, kept so that a notebook can show it: a random flip drawing from an RNG made in ``__init__``.

    Every DataLoader worker gets its own copy of this object, all in the same state, so the workers
    repeat each other's "random" decisions: with 2 workers, batch 1 is flipped exactly like batch 0,
    batch 3 like batch 2, and so on. Use ``SeededAugment`` with ``RandomHorizontalFlip`` instead.
    """

    def __init__(self, p: float = 0.5, seed: int = 0) -> None:
        super().__init__(p)
        self.rng = np.random.default_rng(seed)

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator | None = None) -> dict[str, Any]:
        return super().__call__(sample, self.rng if rng is None else rng)
