"""helpers.runconfig.teaching_folder: the folder notebooks 00-04 read ($FACES_DATA or data_sample)."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.datafiles import read_file_lists
from helpers.project import DATA_SAMPLE, ROOT
from helpers.runconfig import DATA_ENV_VAR, SAMPLE_FOLDER, env_data_folder, pick_config, teaching_folder


def test_unset_or_blank_gives_the_committed_sample(monkeypatch):
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    assert teaching_folder() == SAMPLE_FOLDER == Path("data_sample") and env_data_folder() is None
    assert not SAMPLE_FOLDER.is_absolute() and ROOT / SAMPLE_FOLDER == DATA_SAMPLE
    monkeypatch.setenv(DATA_ENV_VAR, "  ")
    assert teaching_folder() == SAMPLE_FOLDER


def test_the_sample_is_readable_from_the_repository_root(monkeypatch):
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    monkeypatch.chdir(ROOT)  # where the notebooks' Setup cell puts them
    lists = read_file_lists(teaching_folder())
    assert sum(len(v) for k, v in lists._asdict().items() if k.startswith("files_")) == 64  # every split
    assert all(f.startswith("data_sample/") for f in lists.files_train)  # relative: no machine path


def test_faces_data_is_followed(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "bbox.json").write_text("{}")
    monkeypatch.setenv(DATA_ENV_VAR, f" {mine} ")
    assert teaching_folder() == mine and teaching_folder() != SAMPLE_FOLDER
    assert pick_config("quick").data_dir == mine  # the same folder as the run config's
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV_VAR, "mine")  # relative to the working directory, as given
    assert teaching_folder() == Path("mine")


def test_faces_data_data_sample_counts_as_the_sample(monkeypatch):
    monkeypatch.chdir(ROOT)
    for value in ("data_sample", "./data_sample", "data_sample/"):
        monkeypatch.setenv(DATA_ENV_VAR, value)
        assert teaching_folder() == SAMPLE_FOLDER


@pytest.mark.parametrize("make", ["missing", "empty_folder", "file"])
def test_a_folder_without_bbox_json_is_refused_naming_the_variable(tmp_path, monkeypatch, make):
    target = tmp_path / "nowhere"
    if make == "empty_folder":
        target.mkdir()
    elif make == "file":
        target.write_text("not a folder")
    monkeypatch.setenv(DATA_ENV_VAR, str(target))
    with pytest.raises(ValueError, match=r"^FACES_DATA='.*nowhere': no bbox.json in that folder .*helpers.convert"):
        teaching_folder()
    with pytest.raises(ValueError, match=r"^FACES_DATA="):
        pick_config("quick")
    assert pick_config("quick", data_folder=None).data_folder is None  # an explicit override is not checked
