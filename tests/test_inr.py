"""INR sets: batched SIREN fitting, storage (resume, shards, merge), dataset, rendering, NFN interop, CLI."""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mnfn.cli import main as cli_main
from mnfn.data import inr
from mnfn.data.images import load_images
from mnfn.data.inr import (FitConfig, InrDataset, export_nfn, fit_sirens, images_to_targets, import_nfn, init_sirens,
                           make_coords, make_inr_dataset, merge_inr_datasets, net_seed, nfn_keys, psnr, read_index,
                           read_nfn_file, render)
from mnfn.io import DataFormatError
from mnfn.weightspace import siren_spec

FAST = FitConfig(max_steps=200)


def _mnist_like(n: int) -> np.ndarray:
    """A few 28x28 grayscale digits: real MNIST when the data folder has it, else sklearn digits upsampled."""
    try:
        return load_images("mnist", "train", limit=n).images
    except (DataFormatError, FileNotFoundError):
        x = torch.from_numpy(load_images("digits", "train", limit=n).images)
        return torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1).numpy()


def _chunk_arrays(root: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for p in sorted((root / "chunks").glob("*.npz")):
        with np.load(p, allow_pickle=False) as z:
            out[p.name] = {k: z[k] for k in z.files}
    return out


def _assert_same_sets(a: Path, b: Path) -> None:
    ca, cb = _chunk_arrays(a), _chunk_arrays(b)
    assert sorted(ca) == sorted(cb)
    for name in ca:
        assert sorted(ca[name]) == sorted(cb[name])
        for k in ca[name]:
            np.testing.assert_array_equal(ca[name][k], cb[name][k], err_msg=f"{name}:{k}")
    assert (a / "index.csv").read_text() == (b / "index.csv").read_text()


def _make_digits(out: Path, **kw) -> inr.MakeSummary:
    args = dict(num=20, splits=("train", "test"), seed=3, fit=FAST, batch_size=8, progress=False)
    args.update(kw)
    return make_inr_dataset(out, "digits", **args)


# --- conventions -------------------------------------------------------------------------------

def test_coords_are_yx_row_major_on_closed_grid():
    c = make_coords(2, 3)
    expected = torch.tensor([[-1, -1], [-1, 0], [-1, 1], [1, -1], [1, 0], [1, 1]], dtype=torch.float32)
    torch.testing.assert_close(c, expected)
    img = torch.arange(6.0).reshape(1, 1, 2, 3) / 5
    t = images_to_targets(img)
    assert t.shape == (1, 6, 1)
    torch.testing.assert_close(t[0, :, 0], torch.arange(6.0) / 5 * 2 - 1)


def test_psnr_convention_peak_two_on_minus_one_one():
    a = torch.zeros(1, 1, 4, 4)
    b = torch.full((1, 1, 4, 4), 0.1)
    # [0, 1] scale: MSE 0.01 -> 20 dB; [-1, 1] scale: MSE 0.04, peak 2 -> 10 log10(4 / 0.04) = 20 dB too.
    assert psnr(a, b).item() == pytest.approx(20.0)


def test_siren_init_ranges_and_per_net_seeds():
    spec = siren_spec(1)
    p = init_sirens([1, 2, 1], spec)
    assert [tuple(t.shape) for t in p] == [(3, 32, 2), (3, 32), (3, 32, 32), (3, 32), (3, 1, 32), (3, 1)]
    for t in p:
        torch.testing.assert_close(t[0], t[2])  # same seed, same net
        assert not torch.equal(t[0], t[1])
    assert p[0].abs().max() <= 1 / 2
    assert p[2].abs().max() <= math.sqrt(6 / 32) / 30
    assert p[4].abs().max() <= math.sqrt(6 / 32) / 30
    assert p[1].abs().max() <= 1 / math.sqrt(2) and p[3].abs().max() <= 1 / math.sqrt(32)
    assert net_seed(0, "train", 5) == net_seed(0, "train", 5)
    assert len({net_seed(0, "train", 5), net_seed(0, "test", 5), net_seed(1, "train", 5), net_seed(0, "train", 6)}) == 4


@pytest.mark.parametrize("channels", [1, 3])
def test_hand_written_gradients_match_autograd(channels):
    spec = siren_spec(channels)
    params = [t.double() for t in init_sirens(list(range(4)), spec)]
    coords = make_coords(5, 6, dtype=torch.float64)
    target = torch.rand(4, 30, channels, dtype=torch.float64) * 2 - 1
    mse, grads = inr._loss_and_grads([t.clone() for t in params], coords, target.clone(), 30.0, True)
    ps = [t.clone().requires_grad_() for t in params]
    h = coords.expand(4, 30, 2)
    for i in range(2):
        h = torch.sin(30 * (h @ ps[2 * i].transpose(1, 2) + ps[2 * i + 1][:, None]))
    y = h @ ps[4].transpose(1, 2) + ps[5][:, None]
    ref = ((y - target) ** 2).mean((1, 2))
    ref.sum().backward()
    torch.testing.assert_close(mse, ref)
    for p, g in zip(ps, grads):
        torch.testing.assert_close(g, p.grad)


# --- fitting and rendering ---------------------------------------------------------------------

def test_mnist_like_images_fit_to_30_db_and_render_matches():
    imgs = _mnist_like(6)
    res = fit_sirens(imgs, [net_seed(0, "train", i) for i in range(6)], FitConfig(max_steps=400), batch_size=4)
    assert (res.psnr >= 30).all(), res.psnr
    assert not res.missed.any()
    assert (res.steps > 0).all() and (res.steps < 400).all()
    assert res.features.spec == siren_spec(1) and res.features.channels == 1
    # The stored PSNR is that of exactly the stored weights, as render() draws them.
    drawn = render(res.features, (1, 28, 28), clamp=False)
    torch.testing.assert_close(psnr(drawn, torch.from_numpy(imgs)).float(), res.psnr, atol=1e-3, rtol=0)
    # A transposed grid would not reproduce asymmetric digits.
    assert (psnr(drawn.transpose(2, 3), torch.from_numpy(imgs)) < 25).all()
    clamped = render(res.features, (28, 28))
    assert clamped.min() >= 0 and clamped.max() <= 1
    assert (psnr(clamped, torch.from_numpy(imgs)) >= res.psnr.double() - 1e-4).all()


def test_nets_in_a_batch_do_not_interact():
    imgs = load_images("digits", "train", limit=5).images
    seeds = [net_seed(0, "train", i) for i in range(5)]
    batched = fit_sirens(imgs, seeds, FAST, batch_size=5)
    for j in (0, 3):
        alone = fit_sirens(imgs[j:j + 1], seeds[j:j + 1], FAST)
        assert alone.steps.item() == batched.steps[j].item()
        for (wa, ba), (wb, bb) in zip(alone.features, batched.features[j]):
            torch.testing.assert_close(wa, wb, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(ba, bb, atol=1e-6, rtol=1e-5)


def test_step_limit_stops_nets_and_records_misses():
    imgs = load_images("digits", "train", limit=3).images
    res = fit_sirens(imgs, [1, 2, 3], FitConfig(max_steps=2, target_psnr=99.0))
    assert res.steps.tolist() == [2, 2, 2]
    assert res.missed.all()
    assert torch.isfinite(res.psnr).all()


# --- make: resume, shards, merge ----------------------------------------------------------------

def test_make_writes_chunks_index_and_meta(tmp_path):
    s = _make_digits(tmp_path / "a")
    assert s.nets == 40 and s.chunks_done == s.chunks_expected == 6 and s.complete
    assert s.missed == 0 and s.median_psnr >= 30
    rows = read_index(tmp_path / "a")
    assert [r["split"] for r in rows] == ["train"] * 20 + ["test"] * 20
    assert [r["image_index"] for r in rows[:20]] == list(range(20))
    digits = load_images("digits", "train", limit=20)
    assert [r["label"] for r in rows[:20]] == digits.labels.tolist()
    meta = inr.read_meta(tmp_path / "a")
    assert meta["split_sizes"] == {"train": 1397, "test": 400}
    assert meta["image_shape"] == [1, 8, 8]
    assert not list((tmp_path / "a").rglob("*.tmp"))


def test_resume_after_interruption_gives_identical_results(tmp_path):
    full = tmp_path / "full"
    _make_digits(full)
    part = tmp_path / "part"
    s1 = _make_digits(part, max_chunks=2)
    assert s1.chunks_done == 2 and not s1.complete
    # A kill mid-write leaves at most a temporary file (atomic writes): it must not confuse the resume.
    (part / "chunks" / ".train-00002.npz.abc.npz.tmp").write_bytes(b"partial")
    s2 = _make_digits(part)
    assert s2.reused == 16 and s2.fitted_now == 24 and s2.complete
    _assert_same_sets(full, part)
    s3 = _make_digits(part)
    assert s3.fitted_now == 0 and s3.nets == 40


def test_shards_then_merge_equal_single_run(tmp_path):
    _make_digits(tmp_path / "single")
    shards = []
    for k in (0, 1, 2):
        d = tmp_path / f"shard{k}"
        s = _make_digits(d, shard=f"{k}/3")
        assert s.chunks_done == 2
        shards.append(d)
    merged = merge_inr_datasets(shards, tmp_path / "merged")
    assert merged.nets == 40 and merged.complete
    _assert_same_sets(tmp_path / "single", tmp_path / "merged")
    # Merging again (overlapping, identical chunks) is a no-op.
    merge_inr_datasets([tmp_path / "single", *shards], tmp_path / "merged")
    _assert_same_sets(tmp_path / "single", tmp_path / "merged")


def test_workers_give_the_same_bits(tmp_path):
    _make_digits(tmp_path / "one", num=16, splits=("train",))
    _make_digits(tmp_path / "two", num=16, splits=("train",), workers=2)
    _assert_same_sets(tmp_path / "one", tmp_path / "two")


def test_device_option_keeps_cpu_fits_bit_for_bit(tmp_path):
    """``device="cpu"`` and ``"auto"`` on a machine without CUDA are the default fit, bit for bit; a GPU
    with several workers is refused before anything is fitted."""
    x = _mnist_like(6)
    a = fit_sirens(x, list(range(6)), FAST, batch_size=4)
    b = fit_sirens(x, list(range(6)), FAST, batch_size=4, device="cpu")
    for t, u in zip(a.features.flatten(), b.features.flatten()):
        assert torch.equal(t, u)
    assert torch.equal(a.psnr, b.psnr) and torch.equal(a.steps, b.steps)
    assert b.features.weights[0].device.type == "cpu"
    _make_digits(tmp_path / "one", num=8, splits=("train",))
    if not torch.cuda.is_available():
        _make_digits(tmp_path / "auto", num=8, splits=("train",), device="auto")
        _assert_same_sets(tmp_path / "one", tmp_path / "auto")
    with pytest.raises(ValueError, match="workers=2 fit on CPU cores; on cuda use one worker"):
        _make_digits(tmp_path / "gpu", num=8, splits=("train",), device="cuda", workers=2)
    assert not (tmp_path / "gpu" / "meta.json").exists()


def test_make_refuses_a_folder_of_another_run(tmp_path):
    _make_digits(tmp_path / "a", num=8, splits=("train",))
    with pytest.raises(ValueError, match=r"meta\.json.*different settings.*plan"):
        _make_digits(tmp_path / "a", num=8, splits=("train",), seed=4)
    _make_digits(tmp_path / "b", num=8, splits=("train",), seed=4)
    with pytest.raises(ValueError, match="settings differ"):
        merge_inr_datasets([tmp_path / "a", tmp_path / "b"], tmp_path / "m")


def test_parse_shard():
    assert inr.parse_shard("2/4") == (2, 4)
    assert inr.parse_shard("0/4") == (0, 4)
    assert inr.parse_shard(None) == (0, 1)
    for bad in ("4/4", "5/4", "x", "1/0"):
        with pytest.raises(ValueError):
            inr.parse_shard(bad)


def test_random_selection_is_fixed_and_nested():
    a = inr.select_indices(1000, 10, "random")
    b = inr.select_indices(1000, 20, "random")
    assert len(a) == 10 and np.all(np.diff(a) > 0) and set(a) <= set(b)
    np.testing.assert_array_equal(inr.select_indices(1000, 3, "first"), [0, 1, 2])


# --- corrupt files --------------------------------------------------------------------------------

def test_corrupt_or_truncated_chunks_give_errors_naming_the_file(tmp_path):
    root = tmp_path / "a"
    _make_digits(root, num=8, splits=("train",))
    chunk = root / "chunks" / "train-00000.npz"
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=re.escape(str(chunk))):
        InrDataset(root)
    with pytest.raises(DataFormatError, match=re.escape(str(chunk)) + ".*Delete"):
        _make_digits(root, num=8, splits=("train",))
    chunk.write_bytes(b"not a zip at all")
    with pytest.raises(DataFormatError, match=re.escape(str(chunk))):
        InrDataset(root)
    # A readable chunk with a wrong shape.
    shutil.rmtree(root)
    _make_digits(root, num=8, splits=("train",))
    with np.load(chunk, allow_pickle=False) as z:
        arrs = {k: z[k] for k in z.files}
    arrs["weight_2"] = arrs["weight_2"][:, :, :16]
    np.savez(chunk, **arrs)
    with pytest.raises(DataFormatError, match=re.escape(str(chunk)) + ".*weight_2 has shape"):
        InrDataset(root)
    (root / "index.csv").write_text("row,split\n1,train\n")
    with pytest.raises(DataFormatError, match=re.escape(str(root / "index.csv"))):
        InrDataset(root)
    with pytest.raises(DataFormatError, match="meta.json"):
        InrDataset(tmp_path)


# --- dataset -------------------------------------------------------------------------------------

def test_inr_dataset_features_labels_images(tmp_path):
    root = tmp_path / "a"
    _make_digits(root, resize=(12, 12))
    ds = InrDataset(root, split="train", with_images=True)
    assert len(ds) == 20 and ds.spec == siren_spec(1) and ds.num_classes == 10 and ds.image_shape == (1, 12, 12)
    feats, label, image = ds[3]
    assert feats.batch_size == 1 and feats.channels == 1 and feats.spec == siren_spec(1)
    digits = load_images("digits", "train", limit=20)
    assert label == digits.labels[3]
    ref = torch.nn.functional.interpolate(torch.from_numpy(digits.images[3:4]), size=(12, 12), mode="bilinear",
                                          align_corners=False).clamp(0, 1)[0]
    torch.testing.assert_close(image, ref)
    fb, lb, ib = ds.batch([0, 3, 5])
    assert fb.batch_size == 3 and lb.tolist() == digits.labels[[0, 3, 5]].tolist() and ib.shape == (3, 1, 12, 12)
    for (w1, b1), (w2, b2) in zip(fb[1], feats):
        assert torch.equal(w1, w2) and torch.equal(b1, b2)
    # Rendering the stored nets reproduces the stored PSNR.
    drawn = ds.render([0, 3, 5], clamp=False)
    torch.testing.assert_close(psnr(drawn, ib).float(), ds.psnr[[0, 3, 5]], atol=1e-3, rtol=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=InrDataset.collate)
    f4, l4, i4 = next(iter(loader))
    assert f4.batch_size == 4 and l4.shape == (4,) and i4.shape == (4, 1, 12, 12)
    test = InrDataset(root, split="test")
    assert len(test) == 20 and len(test[0]) == 2
    assert len(InrDataset(root, split="all")) == 40
    tr, va = InrDataset(root, split="train", val_size=5), InrDataset(root, split="val", val_size=5)
    assert len(tr) == 15 and va.image_index.tolist() == list(range(15, 20))
    # NFN-style split points on the train + test net index (digits: 1397 train images).
    nfn_test = InrDataset(root, split="test", split_points=(10, 1400))
    assert nfn_test.splits == ["test"] * 17 and nfn_test.image_index.tolist() == list(range(3, 20))
    assert InrDataset(root, split="val", split_points=(10, 1400)).image_index.tolist() == list(range(10, 20)) + [0, 1, 2]


# --- NFN format ----------------------------------------------------------------------------------

class _NfnSineLayer(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x):
        return torch.sin(30.0 * self.linear(x))


class _NfnSiren(nn.Module):
    """The module layout of the NFN SIREN sets (keys net.0.linear.*, net.1.linear.*, net.2.*)."""

    def __init__(self, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(_NfnSineLayer(2, 32), _NfnSineLayer(32, 32), nn.Linear(32, out))

    def forward(self, x):
        return self.net(x)


def test_export_import_round_trip_is_exact_and_nfn_compatible(tmp_path):
    root = tmp_path / "a"
    _make_digits(root, num=10)
    dst = tmp_path / "nfn"
    assert export_nfn(root, dst, progress=False) == 20
    files = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.pth"))
    rows = read_index(root)
    expected = sorted(f"randinit_smaller_{r['label']}s/net{r['image_index'] + (1397 if r['split'] == 'test' else 0)}.pth"
                      for r in rows)
    assert files == expected
    # Loadable the NFN way, keys in NFN order, and the NFN module draws what render() draws.
    ds = InrDataset(root, split="all")
    r = rows[15]
    path = dst / f"randinit_smaller_{r['label']}s" / f"net{1397 + r['image_index']}.pth"
    sd = torch.load(path, weights_only=True)
    assert list(sd) == nfn_keys(2)
    model = _NfnSiren(1)
    model.load_state_dict(sd, strict=True)
    with torch.no_grad():
        out = model(make_coords(8, 8)).reshape(1, 8, 8, 1).permute(0, 3, 1, 2)
    torch.testing.assert_close((out + 1) / 2, ds.render([15], clamp=False), atol=1e-6, rtol=1e-5)
    # Round trip: identical bits, labels, splits, image indices.
    back = tmp_path / "back"
    s = import_nfn(dst, back, progress=False)
    assert s.nets == 20
    ds2 = InrDataset(back, split="all")
    assert ds2.labels.tolist() == ds.labels.tolist() and ds2.splits == ds.splits
    assert ds2.image_index.tolist() == ds.image_index.tolist()
    for (w1, b1), (w2, b2) in zip(ds.features, ds2.features):
        assert torch.equal(w1, w2) and torch.equal(b1, b2)
    assert ds2.spec == ds.spec and ds2.image_shape == ds.image_shape
    assert torch.isnan(ds2.psnr).all()
    # With --psnr the import renders every net against its image.
    s2 = import_nfn(dst, tmp_path / "back2", compute_psnr=True, progress=False)
    torch.testing.assert_close(InrDataset(tmp_path / "back2", split="all").psnr, ds.psnr, atol=1e-3, rtol=0)
    assert s2.median_psnr >= 30


def test_renumbered_export_is_contiguous(tmp_path):
    root = tmp_path / "a"
    _make_digits(root, num=4)
    dst = tmp_path / "nfn"
    export_nfn(root, dst, renumber=True, progress=False)
    idx = sorted(int(p.stem[3:]) for p in dst.rglob("*.pth"))
    assert idx == list(range(8))


def test_import_of_a_foreign_nfn_folder_infers_the_split(tmp_path):
    src = tmp_path / "mnist-inrs"
    spec = siren_spec(1)
    for idx, label in ((0, 5), (1, 0), (60000, 7)):
        m = _NfnSiren(1)
        (src / f"randinit_smaller_{label}s").mkdir(parents=True, exist_ok=True)
        torch.save(m.state_dict(), src / f"randinit_smaller_{label}s" / f"net{idx}.pth")
    (src / "randinit_smaller_aug0_3s").mkdir()  # another realisation: not part of this import
    torch.save(_NfnSiren(1).state_dict(), src / "randinit_smaller_aug0_3s" / "net2.pth")
    s = import_nfn(src, tmp_path / "out", progress=False)  # dataset guessed from the folder name
    assert s.nets == 3
    ds = InrDataset(tmp_path / "out", split="all")
    assert ds.meta["dataset"] == "mnist" and ds.spec == spec and ds.image_shape == (1, 28, 28)
    assert ds.splits == ["train", "train", "test"] and ds.image_index.tolist() == [0, 1, 0]
    assert ds.labels.tolist() == [5, 0, 7]
    with pytest.raises(ValueError, match="--dataset"):
        import_nfn(_copy_tree(src, tmp_path / "somewhere"), tmp_path / "out2", progress=False)


def _copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_bad_nfn_files_give_errors_naming_the_file(tmp_path):
    good = _NfnSiren(1).state_dict()
    d = tmp_path / "mnist" / "randinit_smaller_1s"
    d.mkdir(parents=True)
    path = d / "net0.pth"
    torch.save(good, path)
    assert len(read_nfn_file(path, siren_spec(1))) == 6
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ".*truncated"):
        read_nfn_file(path)
    with pytest.raises(DataFormatError, match=re.escape(str(path))):
        import_nfn(tmp_path / "mnist", tmp_path / "out", progress=False)
    bad = dict(good)
    del bad["net.1.linear.bias"]
    torch.save(bad, path)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ".*missing keys.*net.1.linear.bias"):
        read_nfn_file(path)
    bad = dict(good)
    bad["net.1.linear.weight"] = torch.zeros(32, 31)
    torch.save(bad, path)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + r".*net.1.linear.weight has shape \(32, 31\)"):
        read_nfn_file(path)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + r".*shape"):
        read_nfn_file(path, siren_spec(1))
    torch.save(torch.zeros(3), path)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ".*state dict"):
        read_nfn_file(path)
    # A consistent net of the wrong architecture is refused against the folder's first net.
    torch.save(good, path)
    torch.save(_NfnSiren(3).state_dict(), d / "net1.pth")
    with pytest.raises(DataFormatError, match="net1.pth.*shape"):
        import_nfn(tmp_path / "mnist", tmp_path / "out3", progress=False)


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_make_show_merge_export_import(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["inr", "make", "--dataset", "digits", "--num", "12", "--out", str(out), "--seed", "1", "--batch", "8", "--recipe", "fast",
            "--split", "both", "--no-progress"]
    assert cli_main(args + ["--max-chunks", "1"]) == 0
    text = capsys.readouterr().out
    assert "incomplete" in text
    assert cli_main(args) == 0
    text = capsys.readouterr().out
    m = re.search(r"^median PSNR: (\d+\.\d+) dB$", text, re.M)
    assert m and float(m.group(1)) >= 30
    assert re.search(r"^missed target \(30 dB\): 0 of 24$", text, re.M)
    png = tmp_path / "grid.png"
    assert cli_main(["inr", "show", str(out), "--out", str(png), "--num", "6"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli_main(["inr", "merge", str(out), "--out", str(tmp_path / "merged")]) == 0
    assert "median PSNR:" in capsys.readouterr().out
    assert cli_main(["inr", "export-nfn", str(out), "--out", str(tmp_path / "nfn"), "--no-progress"]) == 0
    assert "wrote 24 NFN SIREN files" in capsys.readouterr().out
    assert cli_main(["inr", "import-nfn", str(tmp_path / "nfn"), "--out", str(tmp_path / "back"), "--no-progress"]) == 0
    with open(tmp_path / "back" / "index.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 24
    # Errors are one line naming the file.
    bad = out / "chunks" / "train-00000.npz"
    bad.write_bytes(b"garbage")
    assert cli_main(["inr", "show", str(out), "--out", str(png)]) == 2
    assert str(bad) in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("MNFN_DATA"), reason="needs MNFN_DATA with MNIST")
def test_make_on_real_mnist(tmp_path):
    try:
        load_images("mnist", "test", limit=1)
    except (DataFormatError, FileNotFoundError):
        pytest.skip("MNIST not in MNFN_DATA")
    s = make_inr_dataset(tmp_path / "m", "mnist", num=8, splits=("test",), progress=False)
    assert s.nets == 8 and s.missed == 0 and s.median_psnr >= 30
    assert inr.read_meta(tmp_path / "m")["split_sizes"] == {"train": 60000, "test": 10000}


def test_shared_initialisation(tmp_path):
    """``init="shared"``: every net starts from one initialisation (weights differ only by fitting);
    the default gives each net its own seed, as before. A folder refuses the other setting."""
    assert inr.init_seeds(3, "test", [4, 7]) == [net_seed(3, "test", 4), net_seed(3, "test", 7)]
    shared = inr.init_seeds(3, "train", [0, 1], "shared")
    assert shared[0] == shared[1] == inr.init_seeds(3, "test", [9], "shared")[0]
    with pytest.raises(ValueError, match="init must be"):
        inr.init_seeds(3, "train", [0], "zero")
    frozen = FitConfig(max_steps=1, lr=1e-12)  # one negligible step: the stored weights are the initialisation
    _make_digits(tmp_path / "s", num=8, splits=("train", "test"), fit=frozen, init="shared")
    _make_digits(tmp_path / "i", num=8, splits=("train", "test"), fit=frozen)
    ws = torch.cat([InrDataset(tmp_path / "s", split).features.weights[1] for split in ("train", "test")])
    wi = InrDataset(tmp_path / "i", "train").features.weights[1]
    assert torch.allclose(ws, ws[:1].expand_as(ws), atol=1e-6)
    assert not torch.allclose(wi, wi[:1].expand_as(wi), atol=1e-3)
    assert inr.read_meta(tmp_path / "s")["plan"]["init"] == "shared"
    assert "init" not in inr.read_meta(tmp_path / "i")["plan"]  # folders made before the option still resume
    with pytest.raises(ValueError, match="different settings"):
        _make_digits(tmp_path / "s", num=8, splits=("train", "test"), fit=frozen)
