"""helpers.sample: the contract holds at every stage of the real pipeline, and a broken sample is named."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from helpers import sample as contract
from helpers.datafiles import read_file_lists
from helpers.dataset import FaceDataset
from helpers.loader import make_loader
from helpers.project import DATA_SAMPLE
from helpers.transforms import ConvertGroundTruth, Rescale, ToTensor, default_pipeline

SIZE = (48, 64)


@pytest.fixture(scope="module")
def lists():
    return read_file_lists(DATA_SAMPLE)


def test_every_stage_of_the_pipeline_keeps_the_contract(lists):
    raw = FaceDataset(lists.files_train[:4], lists.labels_train[:4])
    for i in range(len(raw)):
        contract.check(raw[i], "raw")
        contract.check(Rescale(SIZE)(raw[i]), "rescaled", SIZE)
    drafted = FaceDataset(lists.files_train[:4], lists.labels_train[:4], decode_size=SIZE)
    contract.check(drafted[0], "rescaled", SIZE)
    for keep in (False, True):
        ds = FaceDataset(lists.files_train[:8], lists.labels_train[:8], transform=default_pipeline(SIZE, keep_boxes=keep))
        contract.check(ds[0], "training", SIZE)
    batch = next(iter(make_loader(FaceDataset(lists.files_train[:8], lists.labels_train[:8],
                                              transform=default_pipeline(SIZE)), 4, shuffle=False, seed=0,
                                  num_workers=0)))
    contract.check(batch, "batch", SIZE)


def test_a_broken_sample_is_named_by_its_key(lists):
    good = FaceDataset(lists.files_train[:1], lists.labels_train[:1])[0]
    with pytest.raises(ValueError, match="'boxes' must be a \\(k, 4\\) float32 array"):
        contract.check({**good, "boxes": good["boxes"].astype(np.float64)}, "raw")
    with pytest.raises(ValueError, match="keys"):
        contract.check({k: v for k, v in good.items() if k != "name"}, "raw")
    out = v2.Compose([Rescale(SIZE), ConvertGroundTruth(), ToTensor()])(good)
    with pytest.raises(ValueError, match="'mask' must be"):
        contract.check({**out, "mask": out["mask"].float()}, "training")
    with pytest.raises(ValueError, match=r"expected \(24, 32\)"):
        contract.check(out, "training", (24, 32))
    with pytest.raises(ValueError, match="unknown stage"):
        contract.check(out, "later")
    assert torch.equal(out["mask"], ToTensor()(ConvertGroundTruth()(Rescale(SIZE)(good)))["mask"])


#: Variables that, by the code's own naming, hold a sample or a batch.
SAMPLE_NAMES = {"sample", "batch", "ours", "theirs"}


def test_every_key_the_code_reads_from_a_sample_is_a_contract_key():
    """The key names are defined once (``helpers.sample``); the code writes them as plain strings, as
    the notebooks do, so a typo (``sample["img"]``) would be a new, undefined key: none is."""
    import ast
    from pathlib import Path

    keys = {contract.IMAGE, contract.BOXES, contract.MASK, contract.NAME}
    root = Path(contract.__file__).parent
    seen, wrong = 0, []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in SAMPLE_NAMES
                    and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
                seen += 1
                if node.slice.value not in keys:
                    wrong.append(f"{path.relative_to(root.parent)}:{node.lineno}: {node.value.id}[{node.slice.value!r}]")
    assert seen > 20, f"only {seen} sample reads found: has the code's naming changed?"
    assert not wrong, "keys outside helpers.sample's contract:\n" + "\n".join(wrong)
