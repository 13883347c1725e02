"""A real photograph through the whole pipeline: scikit-image's astronaut (Eileen Collins, NASA, public
domain; ``skimage.data.astronaut()`` ships in the wheel, no download), saved as a JPEG in a sub-folder
with a face box checked by eye, read by the project's loader, and batched by a DataLoader worker."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers.datafiles import read_file_lists
from helpers.dataset import FaceDataset
from helpers.loader import make_loader
from helpers.transforms import boxes_to_mask, default_pipeline

pytest.importorskip("skimage.data", reason="scikit-image (requirements.txt) ships the photo")

from helpers.real_photo import ASTRONAUT_FACE as FACE_BOX  # noqa: E402
from helpers.real_photo import ASTRONAUT_NAME, astronaut, face_scores, model_on_astronaut, write_astronaut_folder  # noqa: E402

SIZE = (120, 160)  # notebook 05's quick run size: the square photo is squeezed to 4:3, as every image is


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    rgb = astronaut()
    assert rgb.shape == (512, 512, 3) and rgb.dtype == np.uint8
    return write_astronaut_folder(tmp_path_factory.mktemp("real"))


def test_the_box_is_on_the_face(photo_folder):
    """Skin inside the box (red > green > blue, bright), and the box is not the whole picture."""
    rgb = np.asarray(Image.open(photo_folder / ASTRONAUT_NAME)).astype(float)
    x0, y0, x1, y1 = FACE_BOX
    centre = rgb[y0 + 30:y1 - 30, x0 + 15:x1 - 15].reshape(-1, 3).mean(0)  # cheeks, nose, mouth
    assert centre[0] > centre[1] > centre[2] and centre[0] > 150, centre
    assert (x1 - x0) * (y1 - y0) < 0.05 * 512 * 512  # about 3.5% of the photo: a small face


def test_a_real_photo_goes_through_the_whole_pipeline(photo_folder):
    lists = read_file_lists(photo_folder, test_fraction=0.0)  # the project's own loader and checks
    ds = FaceDataset(lists.files_train, lists.labels_train, transform=default_pipeline(SIZE), root=photo_folder)
    loader = make_loader(ds, batch_size=1, shuffle=False, seed=0, num_workers=1)
    (batch,) = list(loader)
    assert batch["name"] == [ASTRONAUT_NAME]
    image, mask = batch["image"], batch["mask"]
    assert image.shape == (1, 3, *SIZE) and str(image.dtype) == "torch.uint8"
    assert mask.shape == (1, 1, *SIZE)
    # the mask is exactly the face box rescaled to 120x160 and drawn by the pixel-centre rule
    sy, sx = SIZE[0] / 512, SIZE[1] / 512
    scaled = np.array([[FACE_BOX[0] * sx, FACE_BOX[1] * sy, FACE_BOX[2] * sx, FACE_BOX[3] * sy]], np.float32)
    expected = boxes_to_mask(scaled, *SIZE)
    assert np.array_equal(mask[0, 0].numpy(), expected)
    rows, cols = np.nonzero(expected)
    assert (cols.min(), cols.max() + 1, rows.min(), rows.max() + 1) == (56, 83, 16, 42)
    # and it covers the face in the rescaled image: skin-coloured pixels under the mask
    pixels = image[0].permute(1, 2, 0).numpy().astype(float)
    face = pixels[mask[0, 0].numpy() == 1].mean(0)
    rest = pixels[mask[0, 0].numpy() == 0].mean(0)
    assert face[0] > face[1] > face[2] and face[0] > rest[0], (face, rest)


def test_face_scores_and_a_model_on_the_photo():
    from helpers.model import build_model
    from helpers.transforms import boxes_to_mask

    perfect = boxes_to_mask(np.array([FACE_BOX], np.float32), 512, 512).astype(float)
    assert face_scores(perfect) == {"iou": 1.0, "precision": 1.0, "recall": 1.0, "face_share": 85 * 108 / 512**2,
                                    "mean_score_in_box": 1.0, "mean_score_outside": 0.0}
    everything = face_scores(np.ones((512, 512)))
    assert everything["recall"] == 1.0 and everything["face_share"] == 1.0
    assert everything["iou"] == everything["precision"] == 85 * 108 / 512**2
    scores = model_on_astronaut(build_model(base_channels=4, levels=2, max_channels=8), SIZE, device="cpu")
    assert all(0.0 <= v <= 1.0 for v in scores.values())
