"""Reading checkpoint files: formats, header-only listing, and one clear error per kind of bad file."""

from __future__ import annotations

import os
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from jointav.errors import CheckpointFileError
from jointav.model_loader.checkpoint import (
    SAFETENSORS,
    TORCH_LEGACY,
    TORCH_ZIP,
    CheckpointReader,
    load_state_dict,
    read_header,
    sniff_format,
)
from conftest import fixture_dir


def _mixed_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(6, 5, generator=g),
        "a.bias": torch.randn(6, generator=g).to(torch.bfloat16),
        "b.weight": torch.randn(4, 3, 2, generator=g).to(torch.float16),
        "c.weight": (torch.randn(8, 8, generator=g) * 10).to(torch.float8_e4m3fn),
        "c.scale_weight": torch.tensor(0.5),
        "marker": torch.empty(0, dtype=torch.float8_e4m3fn),
    }


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def test_header_lists_the_fixture_names_shapes_and_dtypes_without_reading_data():
    path = fixture_dir("fusion_dit") / "weights.safetensors"
    header = read_header(path)
    assert header.format == SAFETENSORS and header.file_size == path.stat().st_size
    with safe_open(str(path), "pt") as f:
        assert set(header.tensors) == set(f.keys())
        for name in f.keys():
            assert list(header.tensors[name].shape) == list(f.get_slice(name).get_shape())
            assert header.tensors[name].dtype == torch.float32


@pytest.mark.parametrize("copy", [False, True], ids=["mmap", "read-one-at-a-time"])
def test_safetensors_tensors_read_back_bit_exact_in_every_dtype(tmp_path, copy):
    tensors = _mixed_tensors()
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, str(path), metadata={"note": "hello"})
    with CheckpointReader(path, copy=copy) as reader:
        assert reader.header.metadata == {"note": "hello"}
        for name, t in tensors.items():
            assert _same(reader.take(name), t), name


def test_pth_zip_and_legacy_formats_load_weights_only(tmp_path):
    tensors = _mixed_tensors()
    torch.save(tensors, tmp_path / "new.pth")
    # torch's legacy format cannot round-trip fp8 tensors at all; the rest must come back exactly
    legacy = {k: v for k, v in tensors.items() if v.dtype != torch.float8_e4m3fn}
    torch.save(legacy, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    for name, fmt, tensors in (("new.pth", TORCH_ZIP, tensors), ("old.pt", TORCH_LEGACY, legacy)):
        assert sniff_format(tmp_path / name) == fmt
        loaded, header = load_state_dict(tmp_path / name)
        assert header.format == fmt and set(loaded) == set(tensors)
        assert all(_same(loaded[k], v) for k, v in tensors.items())


def test_common_containers_are_unwrapped_only_when_unambiguous(tmp_path):
    sd = {"w": torch.ones(2, 2)}
    torch.save({"state_dict": sd, "epoch": 3, "optimizer_name": "adam"}, tmp_path / "wrapped.ckpt")
    loaded, _ = load_state_dict(tmp_path / "wrapped.ckpt")
    assert set(loaded) == {"w"}

    torch.save({"model": sd, "ema": {"w": torch.zeros(2, 2)}}, tmp_path / "two.pt")
    with pytest.raises(CheckpointFileError) as e:
        load_state_dict(tmp_path / "two.pt")
    assert "two.pt" in str(e.value) and "'model'" in str(e.value) and "'ema'" in str(e.value)
    loaded, _ = load_state_dict(tmp_path / "two.pt", unwrap="ema")
    assert torch.equal(loaded["w"], torch.zeros(2, 2))


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere" / "dit.safetensors"
    with pytest.raises(CheckpointFileError) as e:
        read_header(path)
    assert str(path) in str(e.value) and "not found" in str(e.value)


@pytest.mark.parametrize(
    "content, found",
    [
        (b"a prompt, not weights\nline two\n", "text file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "PNG image"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n", "Git LFS pointer"),
        (b"", "empty file"),
    ],
    ids=["text", "png", "lfs-pointer", "empty"],
)
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(tmp_path, content, found):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointFileError) as e:
        load_state_dict(path)
    msg = str(e.value)
    assert str(path) in msg and "not a checkpoint" in msg and found in msg and "expected" in msg


def test_truncated_safetensors_gives_the_byte_counts(tmp_path):
    real = fixture_dir("fusion_dit") / "weights.safetensors"
    data = real.read_bytes()
    path = tmp_path / "half.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointFileError) as e:
        load_state_dict(path)
    msg = str(e.value)
    assert str(path) in msg and "truncated" in msg
    # the size the header promises and the size found, both in bytes
    assert f"file size {len(data)} bytes" in msg and f"file size {len(data) // 2} bytes" in msg


def test_safetensors_cut_inside_its_header_is_reported_as_truncated(tmp_path):
    path = tmp_path / "stub.safetensors"
    save_file(_mixed_tensors(), str(path))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointFileError) as e:
        read_header(path)
    assert str(path) in str(e.value) and "truncated" in str(e.value) and "40 bytes" in str(e.value)


class _Exploit:
    """Unpickling this would create a marker file: the test asserts it never exists."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_a_pickle_that_would_execute_code_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(2), "payload": _Exploit(str(marker))}, path)
    for read in (read_header, load_state_dict):
        with pytest.raises(CheckpointFileError) as e:
            read(path)
        msg = str(e.value)
        assert str(path) in msg and "refused" in msg and "execute code" in msg
        assert re.search(r"GLOBAL \S*makedirs", msg), msg  # names the global it would have called
    assert not marker.exists()


def test_truncated_pth_is_reported_as_damaged(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(_mixed_tensors(), path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointFileError) as e:
        load_state_dict(path)
    assert str(path) in str(e.value) and "truncated" in str(e.value) and "300 bytes found" in str(e.value)


@pytest.mark.parametrize("kind", ["safetensors", "pth"])
def test_an_empty_state_dict_is_an_error(tmp_path, kind):
    path = tmp_path / f"empty.{kind}"
    if kind == "safetensors":
        save_file({}, str(path))
    else:
        torch.save({"epoch": 1}, path)
    with pytest.raises(CheckpointFileError) as e:
        load_state_dict(path)
    assert str(path) in str(e.value) and "no tensors" in str(e.value)
