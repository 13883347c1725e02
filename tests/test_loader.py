"""make_loader gives the same batches for the same seed whatever the number of workers; seed_worker,
sample_rng, RandomHorizontalFlip, SeededAugment and batch_to_device do what their docstrings say."""
from __future__ import annotations

import random
from collections import OrderedDict, defaultdict, namedtuple

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from helpers.lab.batches import assert_same_batch, describe
from helpers.collate import collate_keep_boxes
from helpers.lab.mistakes import FlipWithInitRng
from helpers.loader import RandomHorizontalFlip, SeededAugment, batch_to_device, make_loader, sample_rng, seed_worker
from helpers.project import DATA_SAMPLE

# helpers.transforms (and torchvision) are imported inside the tests that use them: the spawned worker
# imports this module to unpickle PatternDataset, and starts faster without them.

Batch = namedtuple("Batch", ["x", "name"])


class PatternDataset(Dataset):
    """Small tensor samples whose pixels say which sample they are and where they are (flips show)."""

    def __init__(self, n: int = 10, height: int = 4, width: int = 6) -> None:
        self.n, self.height, self.width = n, height, width

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        columns = torch.arange(self.width, dtype=torch.uint8).expand(3, self.height, self.width)
        mask = torch.zeros(1, self.height, self.width, dtype=torch.uint8)
        mask[..., : 1 + i % 3] = 1
        return {
            "image": (columns + 10 * i).contiguous(),
            "mask": mask,
            "boxes": torch.tensor([[0.0, 0.0, 1.0 + i % 3, float(self.height)]]),
            "name": f"sample{i}",
        }


def _epochs(num_workers: int, n_epochs: int = 2, seed: int = 0, **kwargs) -> list[list[dict]]:
    dataset = SeededAugment(PatternDataset(), RandomHorizontalFlip(0.5), seed=seed)
    loader = make_loader(dataset, 3, shuffle=True, seed=seed, num_workers=num_workers,
                         collate_fn=collate_keep_boxes, **kwargs)
    epochs = []
    for epoch in range(n_epochs):
        dataset.set_epoch(epoch)
        epochs.append(list(loader))
    return epochs


def _flipped_names(batches: list[dict]) -> list[str]:
    """The samples that came out mirrored (their first column is not column 0 of the pattern)."""
    return [name for b in batches for name, image in zip(b["name"], b["image"]) if image[0, 0, 0] % 10 != 0]


@pytest.fixture(scope="module")
def reference_epochs() -> list[list[dict]]:
    return _epochs(num_workers=0)


def test_same_seed_same_batches_in_the_main_process(reference_epochs):
    again = _epochs(num_workers=0)
    assert_same_batch(again, reference_epochs, "epochs")
    first, second = reference_epochs
    # Sanity: the epochs differ (new order, new flips), and flips do happen.
    assert [b["name"] for b in first] != [b["name"] for b in second]
    assert 0 < len(_flipped_names(first)) < 10
    assert _flipped_names(first) != _flipped_names(second)
    assert [len(b["name"]) for b in first] == [3, 3, 3, 1]
    other_seed = _epochs(num_workers=0, seed=1)
    assert [b["name"] for b in other_seed[0]] != [b["name"] for b in first]


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "not-persistent"])
def test_two_workers_give_the_same_batches(reference_epochs, persistent):
    # Persistent workers keep their own copy of the dataset: set_epoch must still reach them.
    epochs = _epochs(num_workers=2, persistent_workers=persistent, multiprocessing_context="fork")
    assert_same_batch(epochs, reference_epochs, "epochs")


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_one_worker_started_by_spawn_or_forkserver_gives_the_same_batches(reference_epochs, start_method):
    # spawn: macOS and Windows; forkserver: Linux from Python 3.14 (rehearsed here on today's Python)
    epochs = _epochs(num_workers=1, multiprocessing_context=start_method)
    assert_same_batch(epochs, reference_epochs, "epochs")


def test_make_loader_starts_workers_the_platform_way_and_preloads_a_forkserver():
    import multiprocessing
    from multiprocessing import forkserver

    from helpers.loader import FORKSERVER_PRELOAD, forkserver_preload, worker_context

    loader = make_loader(PatternDataset(), 4, shuffle=False, seed=0, num_workers=2)
    assert loader.multiprocessing_context is None  # the platform's start method, deliberately
    assert worker_context().get_start_method() == multiprocessing.get_start_method()
    assert forkserver._forkserver._preload_modules == list(FORKSERVER_PRELOAD)  # set on import
    assert worker_context("forkserver").get_start_method() == "forkserver"
    preload = forkserver._forkserver._preload_modules
    assert preload == forkserver_preload() and "torch" in preload and "helpers.loader" in preload
    assert set(preload) <= set(FORKSERVER_PRELOAD)


def test_one_generator_for_shuffle_and_workers_breaks_with_persistent_workers():
    """Why make_loader gives the sampler its own generator (PyTorch 2.x behaviour)."""

    def orders(num_workers, persistent):
        loader = DataLoader(list(range(8)), batch_size=8, shuffle=True, num_workers=num_workers,
                            persistent_workers=persistent, generator=torch.Generator().manual_seed(0),
                            multiprocessing_context="fork" if num_workers else None)
        return [next(iter(loader)).tolist() for _ in range(2)]

    main, persistent = orders(0, False), orders(2, True)
    assert main[0] == persistent[0]  # first epoch: the same order
    assert main[1] != persistent[1]  # second epoch: a persistent loader skipped one draw


class GlobalRngDataset(Dataset):
    """Draws from NumPy's global RNG, the state that seed_worker sets."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> float:
        return float(np.random.random())


class InitRngDataset(Dataset):
    """The mistake: an RNG object made in __init__, copied into every worker in the same state."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> float:
        return float(self.rng.random())


def _draws(dataset, num_workers: int) -> list[float]:
    np.random.seed(0)  # the main process's state, used when there are no workers
    loader = make_loader(dataset, 1, shuffle=False, seed=0, num_workers=num_workers,
                         multiprocessing_context="fork" if num_workers else None)
    return [float(x) for x in loader]


def test_global_rng_is_repeatable_only_for_the_same_number_of_workers():
    two_workers = _draws(GlobalRngDataset(), 2)
    assert _draws(GlobalRngDataset(), 2) == two_workers
    assert _draws(GlobalRngDataset(), 0) != two_workers
    # The worker's first draw is the one seed_worker's seed gives, with torch's per-worker seed.
    assert len(set(two_workers)) == 8


def test_rng_made_in_init_repeats_across_workers():
    draws = _draws(InitRngDataset(), 2)  # worker 0 loads samples 0 and 2, worker 1 loads 1 and 3
    assert draws[0] == draws[1] and draws[2] == draws[3] and draws[0] != draws[2]


def test_seed_worker_seeds_random_and_numpy_from_torch():
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(2**40 + 7)  # larger than NumPy accepts: seed_worker reduces it mod 2**32
        seed_worker(0)
        drawn = (random.random(), np.random.random())
        expected_seed = (2**40 + 7) % 2**32
        assert drawn == (random.Random(expected_seed).random(), np.random.RandomState(expected_seed).random_sample())
    finally:
        torch.random.set_rng_state(state)


def test_sample_rng():
    draw = lambda *key: sample_rng(*key).random(3).tolist()  # noqa: E731
    assert draw(0, 1, 2) == draw(0, 1, 2)
    assert len({tuple(draw(*key)) for key in [(0, 1, 2), (1, 1, 2), (0, 2, 2), (0, 1, 3), (0, 2, 1)]}) == 5
    assert draw(np.int64(3), 0, 0) == draw(3, 0, 0)
    for bad in [(-1, 0, 0), (0, 1.5, 0), (0, 0, True), (0, 0, "1")]:
        with pytest.raises(ValueError, match="sample_rng"):
            sample_rng(*bad)


# ---------------------------------------------------------------------------------------------------
# RandomHorizontalFlip and SeededAugment


def _numpy_sample(boxes, height=6, width=9):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return {"image": image, "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4), "name": "x.jpg"}


def test_flip_moves_boxes_with_the_pixels():
    sample = _numpy_sample([[1, 2, 4, 5], [0, 0, 9, 1]])
    out = RandomHorizontalFlip(p=1.0)(sample)
    assert np.array_equal(out["image"], sample["image"][:, ::-1])
    assert out["boxes"].tolist() == [[5, 2, 8, 5], [0, 0, 9, 1]]
    assert out["boxes"].dtype == np.float32 and out["name"] == "x.jpg"
    assert out["image"].flags.c_contiguous
    assert sample["boxes"].tolist()[0] == [1, 2, 4, 5]  # the input is not modified
    twice = RandomHorizontalFlip(p=1.0)(out)
    assert np.array_equal(twice["image"], sample["image"]) and np.array_equal(twice["boxes"], sample["boxes"])
    assert RandomHorizontalFlip(p=0.0)(sample) is sample
    empty = RandomHorizontalFlip(p=1.0)(_numpy_sample([]))
    assert empty["boxes"].shape == (0, 4)
    with pytest.raises(ValueError, match="p must lie in"):
        RandomHorizontalFlip(p=1.5)


@pytest.mark.parametrize(
    "boxes",
    [[[1, 2, 4, 5]], [[0, 0, 9, 6], [3.25, 1.75, 7.75, 2.25]], [[-2, -1, 3.25, 2]], [[8.75, 0, 9, 6]]],
)
def test_flip_then_mask_equals_mask_then_flip(boxes):
    from helpers.transforms import ConvertGroundTruth, ToTensor, boxes_to_mask

    sample = _numpy_sample(boxes)
    flip = RandomHorizontalFlip(p=1.0)
    mask_then_flip = flip(ConvertGroundTruth(keep_boxes=True)(sample))
    flip_then_mask = ConvertGroundTruth(keep_boxes=True)(flip(sample))
    assert np.array_equal(mask_then_flip["mask"], flip_then_mask["mask"])
    assert np.array_equal(flip_then_mask["mask"], boxes_to_mask(flip(sample)["boxes"], 6, 9))
    # After ToTensor (CxHxW image, 1xHxW mask) the flip gives the same pixels.
    tensors = flip(ToTensor()(ConvertGroundTruth(keep_boxes=True)(sample)))
    assert np.array_equal(tensors["image"].permute(1, 2, 0).numpy(), mask_then_flip["image"])
    assert np.array_equal(tensors["mask"][0].numpy(), mask_then_flip["mask"])
    assert np.array_equal(tensors["boxes"].numpy(), mask_then_flip["boxes"])


def test_flip_and_mask_disagree_only_for_an_edge_on_a_pixel_centre():
    from helpers.transforms import ConvertGroundTruth

    # x_max = 3.5 is the centre of column 3: [x_min, x_max) leaves it out, but flipped it becomes
    # x_min = 9 - 3.5 = 5.5, the centre of column 5, which [x_min, x_max) takes in.
    sample = _numpy_sample([[0, 0, 3.5, 2]])
    flip = RandomHorizontalFlip(p=1.0)
    mask_then_flip = flip(ConvertGroundTruth()(sample))["mask"]
    flip_then_mask = ConvertGroundTruth()(flip(sample))["mask"]
    assert mask_then_flip[0].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert flip_then_mask[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]


def test_flip_draws_from_the_given_rng():
    flip = RandomHorizontalFlip(0.5)
    sample = _numpy_sample([[1, 2, 4, 5]])
    decisions = [flip(sample, sample_rng(0, 0, i)) is not sample for i in range(40)]
    assert decisions == [sample_rng(0, 0, i).random() < 0.5 for i in range(40)]
    assert 5 < sum(decisions) < 35


def test_seeded_augment():
    dataset = SeededAugment(PatternDataset(), RandomHorizontalFlip(0.5), seed=3)
    assert len(dataset) == 10 and dataset.epoch == 0
    first = [dataset[i] for i in range(10)]
    assert_same_batch([dataset[i] for i in range(10)], first)
    dataset.set_epoch(4)
    assert dataset.epoch == 4
    changed = [dataset[i] for i in range(10)]
    assert _flipped_names([{"name": [s["name"] for s in first], "image": [s["image"] for s in first]}]) != \
        _flipped_names([{"name": [s["name"] for s in changed], "image": [s["image"] for s in changed]}])
    with pytest.raises(ValueError, match="epoch"):
        dataset.set_epoch(-1)
    with pytest.raises(ValueError, match="seed"):
        SeededAugment(PatternDataset(), RandomHorizontalFlip(), seed=-5)


# ---------------------------------------------------------------------------------------------------
# make_loader and batch_to_device


def test_make_loader_defaults_and_errors():
    data = PatternDataset()
    loader = make_loader(data, 4, shuffle=False, seed=0, num_workers=0)
    assert isinstance(loader.sampler, SequentialSampler)
    assert loader.pin_memory == torch.cuda.is_available()
    assert not loader.persistent_workers and loader.worker_init_fn is seed_worker
    assert [n for b in loader for n in b["name"]] == [f"sample{i}" for i in range(10)]
    loader = make_loader(data, 4, shuffle=True, seed=0, num_workers=2, drop_last=True, prefetch_factor=3)
    assert isinstance(loader.sampler, RandomSampler) and loader.persistent_workers
    assert loader.drop_last and loader.prefetch_factor == 3
    with pytest.raises(ValueError, match="persistent_workers"):
        make_loader(data, 4, shuffle=True, seed=0, num_workers=0, persistent_workers=True)
    with pytest.raises(ValueError, match="prefetch_factor"):
        make_loader(data, 4, shuffle=True, seed=0, num_workers=0, prefetch_factor=2)
    with pytest.raises(ValueError, match="num_workers"):
        make_loader(data, 4, shuffle=True, seed=0, num_workers=-1)


def test_batch_to_device_keeps_the_structure():
    batch = OrderedDict(
        image=torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
        nested=[torch.ones(2), (torch.zeros(1), "a")],
        pair=Batch(torch.zeros(3), ["n1", "n2"]),
        counts=defaultdict(int, k=torch.tensor([1, 2])),
        number=3,
    )
    moved = batch_to_device(batch, "meta")
    assert describe(moved) == (
        "OrderedDict({'image': uint8 tensor (2, 3, 4, 4) on meta, 'nested': list[2]: [float32 tensor (2,) on meta, "
        "tuple[2]: [float32 tensor (1,) on meta, str]], 'pair': Batch(x=float32 tensor (3,) on meta, "
        "name=list[2] of str), 'counts': defaultdict({'k': int64 tensor (2,) on meta}), 'number': int})"
    )
    assert moved["counts"].default_factory is int and moved["number"] == 3
    same = batch_to_device(batch, "cpu")
    assert same["image"] is batch["image"]  # already there: no copy
    assert_same_batch(same, batch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_pinned_batches_reach_the_gpu():
    loader = make_loader(PatternDataset(), 4, shuffle=True, seed=0, num_workers=0, collate_fn=collate_keep_boxes)
    batch = next(iter(loader))
    assert loader.pin_memory and batch["image"].is_pinned() and batch["boxes"][0].is_pinned()
    on_gpu = batch_to_device(batch, "cuda")
    torch.cuda.synchronize()
    assert on_gpu["image"].is_cuda and on_gpu["boxes"][0].is_cuda
    assert_same_batch(batch_to_device(on_gpu, "cpu", non_blocking=False), batch)


# ---------------------------------------------------------------------------------------------------
# With the real FaceDataset on data_sample/


def test_face_dataset_batches_are_the_same_with_and_without_workers():
    from helpers.datafiles import read_file_lists
    from helpers.dataset import FaceDataset
    from helpers.transforms import default_pipeline

    files, _, labels, _ = read_file_lists(DATA_SAMPLE, test_fraction=0.2, seed=0)[:4]
    dataset = SeededAugment(FaceDataset(files[:8], labels[:8], transform=default_pipeline((48, 64))),
                            RandomHorizontalFlip(0.5), seed=0)
    runs = []
    for num_workers in (0, 2):
        loader = make_loader(dataset, 4, shuffle=True, seed=0, num_workers=num_workers,
                             multiprocessing_context="fork" if num_workers else None)
        runs.append(list(loader))
    assert_same_batch(runs[1], runs[0], "batches")
    assert describe(runs[0][0]) == (
        "{'image': uint8 tensor (4, 3, 48, 64), 'name': list[4] of str, 'mask': uint8 tensor (4, 1, 48, 64)}"
    )


def test_flip_with_init_rng_repeats_itself_in_every_worker():
    """The mistake FlipWithInitRng keeps for the notebook: each worker starts from the same RNG state."""
    n, batch_size = 12, 3

    def flips(num_workers):
        dataset = PatternDataset(n)
        dataset_flipped = _TransformedPattern(dataset, FlipWithInitRng(0.5, seed=0))
        loader = make_loader(dataset_flipped, batch_size, shuffle=False, seed=0, num_workers=num_workers,
                             multiprocessing_context="fork" if num_workers else None, persistent_workers=False)
        return [[bool(image[0, 0, 0] % 10) for image in b["image"]] for b in loader]

    two = flips(2)
    assert two[0] == two[1] and two[2] == two[3]  # worker 1 repeats worker 0 batch for batch
    assert two[0] != two[2] and any(map(any, two))
    assert flips(2) == two  # and every run (each worker gets a fresh copy) repeats the same draws
    main = flips(0)
    assert main[0] == two[0] and main[1] != main[0]  # one copy in the main process: no repetition
    flip = FlipWithInitRng(1.0)
    sample = _numpy_sample([[1, 2, 4, 5]])
    assert flip(sample)["boxes"].tolist() == [[5, 2, 8, 5]]


class _TransformedPattern(Dataset):
    def __init__(self, dataset, transform):
        self.dataset, self.transform = dataset, transform

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.transform(self.dataset[i])
