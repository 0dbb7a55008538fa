"""Image-set loaders: digits (embedded), IDX, CIFAR binary/JPEG, grayscale, errors."""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mnfn.data import images as im
from mnfn.data.images import ImageSet, MissingDataError, load_images, to_grayscale
from mnfn.io import DataFormatError

DATA = os.environ.get("MNFN_DATA")
needs_data = pytest.mark.skipif(not DATA or not Path(DATA).is_dir(), reason="MNFN_DATA folder absent")


def _write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> None:
    head = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def _fake_idx_set(folder: Path, n_train: int = 20, n_test: int = 7, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, (a, b) in im.IDX_FILES.items():
        n = n_train if split == "train" else n_test
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        _write_idx(folder / f"{a}.gz", x)
        _write_idx(folder / f"{b}.gz", y)
        out[split] = (x, y)
    return out


def test_digits_split_deterministic_and_disjoint():
    tr = load_images("digits", "train")
    te = load_images("digits", "test")
    assert isinstance(tr, ImageSet)
    assert tr.images.shape == (1397, 1, 8, 8) and te.images.shape == (400, 1, 8, 8)
    assert tr.images.dtype == np.float32 and tr.labels.dtype == np.int64
    assert tr.images.min() >= 0 and tr.images.max() == 1.0
    assert tr.classes == tuple("0123456789") and tr.num_classes == 10
    again = load_images("digits", "test")
    np.testing.assert_array_equal(te.images, again.images)
    # Disjoint: no test image appears in train (sklearn digits has no exact duplicates across the split).
    trk = {r.tobytes() for r in tr.images}
    assert sum(r.tobytes() in trk for r in te.images) < 5
    assert len(load_images("digits", limit=10)) == 10


def test_idx_roundtrip_and_limit(tmp_path, monkeypatch):
    monkeypatch.delenv("MNFN_DATA", raising=False)
    truth = _fake_idx_set(tmp_path / "mnist")
    s = load_images("mnist", "train", root=tmp_path)
    x, y = truth["train"]
    np.testing.assert_array_equal(s.images[:, 0], x.astype(np.float32) / 255)
    np.testing.assert_array_equal(s.labels, y)
    s5 = load_images("mnist", "test", root=tmp_path, limit=5)
    assert s5.images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(s5.labels, truth["test"][1][:5])
    # The data folder also comes from $MNFN_DATA.
    monkeypatch.setenv("MNFN_DATA", str(tmp_path))
    assert len(load_images("mnist", "test")) == 7


def test_missing_files_message(tmp_path):
    with pytest.raises(MissingDataError) as ei:
        load_images("fashion-mnist", root=tmp_path / "nothing")
    msg = str(ei.value)
    assert "train-images-idx3-ubyte.gz" in msg and "mnfn data download" in msg and "nothing" in msg
    with pytest.raises(MissingDataError, match="cifar-10-binary.tar.gz"):
        load_images("cifar10", root=tmp_path)
    with pytest.raises(ValueError, match="unknown image set"):
        load_images("imagenet")


def test_truncated_idx(tmp_path):
    truth = _fake_idx_set(tmp_path / "mnist")
    p = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(raw[: len(raw) - 100]))
    with pytest.raises(DataFormatError, match="train-images-idx3-ubyte.gz.*truncated"):
        load_images("mnist", root=tmp_path)
    assert truth


def test_cifar_binary_folder_and_tar(tmp_path):
    rng = np.random.default_rng(1)
    recs = {}
    folder = tmp_path / "cifar10" / im.CIFAR_BIN_DIR
    folder.mkdir(parents=True)
    for split, names in im.CIFAR_BIN_FILES.items():
        for n in names:
            k = 3
            lab = rng.integers(0, 10, k, dtype=np.uint8)
            img = rng.integers(0, 256, (k, 3072), dtype=np.uint8)
            (folder / n).write_bytes(np.concatenate([lab[:, None], img], 1).tobytes())
            recs.setdefault(split, []).append((lab, img))
    s = load_images("cifar10", "train", root=tmp_path)
    assert s.images.shape == (15, 3, 32, 32)
    lab = np.concatenate([r[0] for r in recs["train"]])
    img = np.concatenate([r[1] for r in recs["train"]]).reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(s.labels, lab)
    np.testing.assert_array_equal(s.images, img.astype(np.float32) / 255)
    g = load_images("cifar10-gray", "test", root=tmp_path, limit=2)
    assert g.images.shape == (2, 1, 32, 32)
    # The same records inside the official tarball layout.
    tar_root = tmp_path / "t"
    (tar_root / "cifar10").mkdir(parents=True)
    with tarfile.open(tar_root / "cifar10" / im.CIFAR_BIN_TAR, "w:gz") as tar:
        tar.add(folder, arcname=im.CIFAR_BIN_DIR)
    t = load_images("cifar10", "train", root=tar_root, limit=4)
    np.testing.assert_array_equal(t.images, s.images[:4])


def test_cifar_jpeg_tar_parser(tmp_path, monkeypatch):
    """The JPEG tar.xz reader: canonical class-interleaved order, labels from folders, cache reuse."""
    from PIL import Image

    monkeypatch.setenv("MNFN_CACHE", str(tmp_path / "cache"))
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for cls in ("truck", "airplane"):
            for i in (1, 0):
                a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                b = io.BytesIO()
                Image.fromarray(a).save(b, format="JPEG", quality=95)
                info = tarfile.TarInfo(f"train/{cls}/{i:04d}.jpg")
                info.size = len(b.getvalue())
                tar.addfile(info, io.BytesIO(b.getvalue()))
    import lzma

    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / im.CIFAR_JPEG_TAR).write_bytes(lzma.compress(buf.getvalue()))
    s = load_images("cifar10", "train", root=tmp_path)
    np.testing.assert_array_equal(s.labels, [0, 9, 0, 9])  # 0000 airplane, 0000 truck, 0001 ...
    assert list((tmp_path / "cache" / "images").glob("*.npz"))
    s2 = load_images("cifar10", "train", root=tmp_path, limit=3)
    np.testing.assert_array_equal(s2.images, s.images[:3])


def test_grayscale_luma():
    x = np.zeros((1, 3, 2, 2), np.float32)
    x[0, 0] = 1.0
    np.testing.assert_allclose(to_grayscale(x), 0.299)
    x[0] = 1.0
    np.testing.assert_allclose(to_grayscale(x), 1.0, rtol=1e-6)


@needs_data
def test_real_mnist_fashion_limit():
    m = load_images("mnist", "test", limit=50)
    assert m.images.shape == (50, 1, 28, 28) and m.labels[:3].tolist() == [7, 2, 1]
    f = load_images("fashion-mnist", "train", limit=50)
    assert f.images.shape == (50, 1, 28, 28) and f.labels[0] == 9


@needs_data
def test_real_cifar_jpeg_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("MNFN_CACHE", str(tmp_path))
    s = load_images("cifar10-gray", "test", limit=20, cache=False)
    assert s.images.shape == (20, 1, 32, 32)
    assert s.labels[:10].tolist() == list(range(10))
