"""Weights are checked against the sha256 recorded beside them, and never unpickled as code.

The weights here are tiny random ones (tests/conftest.py `pack_tiny_weights`), written the way
`clipspot export` writes them: `pack_weights` records `<file>.sha256` beside the file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, pack_tiny_weights
from PIL import Image

from pipeline.errors import ClipSpotError
from pipeline.model.checkpoint import (
    file_sha256,
    read_checkpoint,
    sha256_path,
    verify_sha256,
    write_sha256,
)
from services.cli.main import main as clipspot

SHIPPED = REPO_ROOT / "weights" / "clipspot-default.pt"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pack_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.pt")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "sign.png"
    Image.new("RGB", (64, 48), "white").save(path)
    return path


def copy_with_record(source: Path, folder: Path) -> Path:
    target = folder / source.name
    shutil.copyfile(source, target)
    shutil.copyfile(sha256_path(source), sha256_path(target))
    return target


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_shipped_weights_match_their_record() -> None:
    record = sha256_path(SHIPPED).read_text()
    assert record == f"{file_sha256(SHIPPED)}  {SHIPPED.name}\n"  # `sha256sum -c` format
    verify_sha256(SHIPPED)


def test_pack_weights_writes_the_record(tiny: Path) -> None:
    assert sha256_path(tiny).read_text().split() == [file_sha256(tiny), tiny.name]


def test_a_corrupt_copy_is_one_clear_line_from_the_cli(tiny, image, tmp_path, capsys) -> None:
    copy = copy_with_record(tiny, tmp_path)
    flip_byte(copy, copy.stat().st_size // 2)  # inside the tensors: the zip still opens
    assert clipspot(["spot", str(image), "--weights", str(copy), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"clipspot spot: error: {copy}: sha256 ")
    assert f"does not match the recorded {file_sha256(tiny)[:16]}" in err
    assert f"({sha256_path(copy)}); the file is corrupt or was replaced" in err
    assert "\n" not in err and "Traceback" not in err


def test_an_intact_copy_loads_and_spots(tiny, image, tmp_path, capsys) -> None:
    copy = copy_with_record(tiny, tmp_path)
    assert clipspot(["spot", str(image), "--weights", str(copy), "--threads", "1"]) == 0
    assert capsys.readouterr().out.strip()  # one JSON line for the image


def test_no_record_means_no_check_and_a_bad_record_is_named(tiny, tmp_path) -> None:
    bare = tmp_path / "bare.pt"
    shutil.copyfile(tiny, bare)
    assert read_checkpoint(bare)["format"]  # no .sha256 beside it: loads unchecked
    sha256_path(bare).write_text("not-a-digest  bare.pt\n")
    with pytest.raises(ClipSpotError, match=r"bare\.pt\.sha256: not a sha256 record"):
        read_checkpoint(bare)
    assert write_sha256(bare) == file_sha256(bare)
    assert read_checkpoint(bare)["format"]


class Payload:
    """Unpickling this would run code: it must never happen for a weights file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_with_code_is_refused_not_run(tmp_path: Path) -> None:
    marker, evil = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"format": "clipspot-weights/1", "x": Payload(marker)}, evil)
    write_sha256(evil)  # even a matching record does not make it loadable
    with pytest.raises(ClipSpotError, match="not a readable checkpoint"):
        read_checkpoint(evil)
    assert not marker.exists()
