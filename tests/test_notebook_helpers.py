"""helpers.notebook: the source a notebook shows names the file the code lives in."""
from __future__ import annotations

from helpers.notebook import source_of
from helpers.train import evaluate, predict


def test_a_decorated_function_is_shown_from_its_own_file():
    for fn in (evaluate, predict):  # both wrapped by @torch.no_grad()
        text, where = source_of(fn)
        assert where.startswith("helpers/train.py:"), where
        assert f"def {fn.__name__}(" in text
