"""helpers.notebook: the source a notebook shows names the file the code lives in."""
from __future__ import annotations

from helpers.evaluation import evaluate
from helpers.inference import predict
from helpers.notebook import source_of


def test_a_decorated_function_is_shown_from_its_own_file():
    for fn, file in ((evaluate, "helpers/evaluation.py"), (predict, "helpers/inference.py")):
        text, where = source_of(fn)  # both wrapped by @torch.no_grad()
        assert where.startswith(f"{file}:"), where
        assert f"def {fn.__name__}(" in text


def test_a_method_is_dedented_and_a_part_has_its_own_line_numbers():
    import inspect

    from helpers.lab.collate_reading import collate_reading
    from helpers.dataset import FaceDataset

    text, where = source_of(FaceDataset.__len__)
    assert text.startswith("def __len__(")
    lines, first = inspect.getsourcelines(collate_reading)
    text, where = source_of(collate_reading, start="# 3.", stop="# 4.")
    assert text.startswith("# 3. NumPy scalars") and "# 4." not in text and not text.startswith(" ")
    begin = first + next(i for i, line in enumerate(lines) if line.strip().startswith("# 3."))
    assert where == f"helpers/lab/collate_reading.py:{begin}-{begin + text.count(chr(10)) - 1}"
    assert lines[begin - first].strip() == text.splitlines()[0]


def test_a_missing_marker_is_an_error():
    import pytest

    from helpers.lab.collate_reading import collate_reading

    with pytest.raises(ValueError, match="no line starts with"):
        source_of(collate_reading, start="# 42.")
