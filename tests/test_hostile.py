"""Hostile input: small files that announce huge sizes, deep nesting, alias bombs, invalid
arguments, full disks. Each case is one line: one `mnfn <command>: error: ...` line naming the file
or the option, exit code 2, in bounded time and memory (Python-level allocations, which include
numpy's, traced). Then a seeded fuzz test of every reader: random bytes, truncations and mutations
of valid files give a ``ValueError`` subclass naming the file, or a correct load; nothing else."""

from __future__ import annotations

import gzip
import io
import json
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fault_utils as fu
from mnfn.data import images as im
from mnfn.data.inr import FitConfig, load_chunk, make_inr_dataset, read_index, read_meta, read_nfn_file
from mnfn.data.zoo import read_zoo
from mnfn.io import read_json
from mnfn.training.config import load_config
from mnfn.weightspace import siren_spec

pytestmark = pytest.mark.usefixtures("one_thread")

# 10 s is the bound on an idle machine; the test allows 4x that so a busy CI core cannot fail it
# (what it catches is a hang or an unbounded read, not a slow start)
LIMIT_S, LIMIT_BYTES = 40.0, 500 << 20


def bounded_cli_error(argv, *needles) -> str:
    """``fu.assert_cli_error`` within :data:`LIMIT_S` seconds and :data:`LIMIT_BYTES` of traced memory."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        line = fu.assert_cli_error([str(a) for a in argv], *needles)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    took = time.monotonic() - t0
    assert took < LIMIT_S, f"{argv[:3]}: {took:.1f} s"
    assert peak < LIMIT_BYTES, f"{argv[:3]}: peak {peak / 2**20:.0f} MB"
    return line


@pytest.fixture(scope="module")
def inr_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "inr"
    make_inr_dataset(root, "digits", num=8, splits=("train", "test"), fit=FitConfig(max_steps=2), batch_size=8,
                     progress=False)
    return root


# --- arguments: every invalid value named, nothing written ------------------------------------------

ARGS = [  # (argv after `mnfn`, needles of the error line)
    (["zoo", "make", "--dataset", "digits", "--num-nets", "2", "--batch-size", "0"], ["--batch-size", "at least 1"]),
    (["zoo", "make", "--dataset", "digits", "--num-nets", "2", "--batch-size", "-5"], ["--batch-size"]),
    (["zoo", "make", "--dataset", "digits", "--num-nets", "2", "--train-images", "0"], ["--train-images"]),
    (["zoo", "make", "--dataset", "digits", "--num-nets", "2", "--threads", "-1"], ["--threads", "at least 0"]),
    (["zoo", "make", "--dataset", "digits", "--num-nets", "2", "--epochs", "-1"], ["--epochs"]),
    (["zoo", "make", "--dataset", "digits", "--num-nets", "2", "--workers", "0"], ["--workers"]),
    (["zoo", "make", "--dataset", "digits", "--num-nets", "2", "--max-new-nets", "-1"], ["--max-new-nets"]),
    (["inr", "make", "--dataset", "digits", "--resize", "0", "0"], ["--resize", "0 0"]),
    (["inr", "make", "--dataset", "digits", "--resize", "-2", "5"], ["--resize"]),
    (["inr", "make", "--dataset", "digits", "--resize", "100000", "100000"], ["--resize", "1024"]),
    (["inr", "make", "--dataset", "digits", "--target-psnr", "nan"], ["--target-psnr", "finite"]),
    (["inr", "make", "--dataset", "digits", "--num", "0"], ["--num"]),
    (["inr", "make", "--dataset", "digits", "--max-chunks", "-1"], ["--max-chunks"]),
    (["inr", "make", "--dataset", "digits", "--lr", "-1"], ["--lr", "positive"]),
    (["inr", "import-nfn", "SRC", "--train-size", "-5"], ["--train-size"]),
    (["train", "classify-inr", "--inrs", "SET", "--model", "mlp", "--device", "bogus"], ["--device", "bogus"]),
    (["train", "classify-inr", "--inrs", "SET", "--model", "mlp", "--epochs", "0"], ["--epochs"]),
    (["train", "classify-inr", "--inrs", "SET", "--model", "mlp", "--stop-after", "-1"], ["--stop-after"]),
    (["train", "classify-inr", "--inrs", "SET", "--model", "mlp", "--threads", "-1"], ["--threads"]),
    (["experiment", "classify-inr", "--inrs", "SET", "--train-sizes", "0,5"], ["--train-sizes"]),
    (["check", "--scale-lo", "10", "--scale-hi", "1"], ["--scale-lo"]),
]
if not torch.cuda.is_available():
    ARGS.append((["train", "classify-inr", "--inrs", "SET", "--model", "mlp", "--device", "cuda"],
                 ["--device cuda", "CUDA is not available"]))


@pytest.mark.parametrize("argv,needles", ARGS, ids=[" ".join(a[0][:2] + a[0][-2:]) for a in ARGS])
def test_invalid_argument(argv, needles, tmp_path, inr_set):
    out = tmp_path / "out"
    argv = [str(inr_set) if a == "SET" else str(tmp_path) if a == "SRC" else a for a in argv]
    if argv[1] in ("make", "import-nfn"):
        argv += ["--out", str(out)]
    bounded_cli_error(argv, *needles)
    assert not out.exists()  # refused before anything was written


# --- files that announce more than they hold ---------------------------------------------------------

def _idx_bytes(n_images: int, payload: bytes = b"\x00" * 784) -> bytes:
    return struct.pack(">HBBIII", 0, 8, 3, n_images, 28, 28) + payload


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_idx_header_claiming_a_billion_images(gz, tmp_path):
    d = tmp_path / "data" / "mnist"
    d.mkdir(parents=True)
    data = _idx_bytes(10**9)
    labels = struct.pack(">HBBI", 0, 8, 1, 10**9) + b"\x00"
    for name, blob in (("train-images-idx3-ubyte", data), ("train-labels-idx1-ubyte", labels)):
        if gz:
            (d / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (d / name).write_bytes(blob)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (d / name).write_bytes(b"")
    bounded_cli_error(["inr", "make", "--dataset", "mnist", "--split", "train", "--data", tmp_path / "data",
                       "--out", tmp_path / "o"], "train-images-idx3-ubyte", "announces")


def test_npz_member_announcing_gigabytes(inr_set, tmp_path):
    """A chunk whose weight_2 member claims 2 GB (its data is a few bytes): refused from the header."""
    import shutil

    root = tmp_path / "set"
    shutil.copytree(inr_set, root)
    chunk = sorted((root / "chunks").glob("train-*.npz"))[0]
    with np.load(chunk, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for k, a in arrays.items():
            member = io.BytesIO()
            if k == "weight_2":
                np.lib.format.write_array_header_1_0(
                    member, {"descr": "<f4", "fortran_order": False, "shape": (8, 32, 2_000_000)})
                member.write(b"\x00" * 64)
            else:
                np.lib.format.write_array(member, a, allow_pickle=False)
            zf.writestr(k + ".npy", member.getvalue())
    chunk.write_bytes(buf.getvalue())
    bounded_cli_error(["inr", "info", root], chunk.name, "weight_2", "(8, 32, 2000000)")


def test_config_alias_bomb_and_files_that_are_not_configs(tmp_path, inr_set):
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        bomb.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]")
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text("\n".join(bomb) + "\n")
    assert cfg.stat().st_size < 700
    base = ["train", "classify-inr", "--inrs", inr_set, "--model", "mlp", "--out", tmp_path / "r"]
    bounded_cli_error([*base, "--config", cfg], "bomb.yaml", "expands to more than")
    (tmp_path / "zero.yaml").write_text("extends: /dev/zero\n")
    bounded_cli_error([*base, "--config", tmp_path / "zero.yaml"], "/dev/zero", "not a regular file")
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 50_000 + "]" * 50_000 + "\n")
    bounded_cli_error([*base, "--config", tmp_path / "deep.yaml"], "deep.yaml", "nested")
    (tmp_path / "big.yaml").write_text("a: 1\n" + "#" * (2 << 20) + "\n")
    bounded_cli_error([*base, "--config", tmp_path / "big.yaml"], "big.yaml", "at most")


def test_json_nested_too_deep(tmp_path, inr_set):
    import shutil

    root = tmp_path / "set"
    shutil.copytree(inr_set, root)
    (root / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    bounded_cli_error(["inr", "info", root], "meta.json", "nested too deeply")
    exp = tmp_path / "nfn"
    exp.mkdir()
    (exp / "mnfn-export.json").write_text("[1, 2]")
    bounded_cli_error(["inr", "import-nfn", exp, "--out", tmp_path / "imp", "--dataset", "digits"],
                      "mnfn-export.json", "JSON object")


def test_full_disk_names_the_file(tmp_path, inr_set):
    fail = RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0; file write failed")
    with mock.patch("torch.save", side_effect=fail):
        bounded_cli_error(["train", "classify-inr", "--inrs", inr_set, "--model", "mlp", "--epochs", "1",
                           "--out", tmp_path / "r", "--no-progress"], "cannot write", "best.pt")
    enospc = OSError(28, "No space left on device")
    with mock.patch("numpy.savez", side_effect=enospc):
        bounded_cli_error(["inr", "make", "--dataset", "digits", "--num", "4", "--batch", "4", "--recipe", "fast",
                           "--max-steps", "1", "--out", tmp_path / "i", "--no-progress"],
                          "cannot write", "train-00000.npz", "No space left")
    assert not list((tmp_path / "i").rglob("*.npz"))  # nothing under a final name


def test_full_disk_during_zoo_make_names_the_part(tmp_path):
    with mock.patch("numpy.savez", side_effect=OSError(28, "No space left on device")):
        bounded_cli_error(["zoo", "make", "--dataset", "digits", "--num-nets", "2", "--epochs", "1",
                           "--train-images", "64", "--test-images", "64", "--out", tmp_path / "z", "--no-progress"],
                          "cannot write", ".npz", "No space left")


def test_refused_pickle_never_advises_unpickling(tmp_path):
    from mnfn.io import DataFormatError, load_torch

    torch.save({"w": torch.zeros(2), "obj": Path("/")}, tmp_path / "x.pt")
    with pytest.raises(DataFormatError) as info:
        load_torch(tmp_path / "x.pt")
    msg = str(info.value)
    assert "x.pt" in msg and "refused" in msg and "PosixPath" in msg and "weights_only" not in msg


def test_outputs_have_the_mode_of_a_plain_write(tmp_path, inr_set):
    import os

    old = os.umask(0o022)
    try:
        make_inr_dataset(tmp_path / "m", "digits", num=4, batch_size=4, fit=FitConfig(max_steps=1), progress=False)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "m").rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o644}, modes


# --- fuzzing every reader -------------------------------------------------------------------------------

def _mutations():
    return st.one_of(
        st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
        st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), min_size=1,
                                            max_size=8)),
        st.tuples(st.just("random"), st.binary(max_size=512)),
    )


def _mutate(blob: bytes, how) -> bytes:
    kind, arg = how
    if kind == "truncate":
        return blob[:int(len(blob) * arg)]
    if kind == "random":
        return arg
    b = bytearray(blob)
    for pos, val in arg:
        if b:
            b[min(int(pos * len(b)), len(b) - 1)] = val
    return bytes(b)


@pytest.fixture(scope="module")
def samples(inr_set, tmp_path_factory):
    """One valid file of each format and the reader that loads it."""
    from mnfn.data.inr import export_nfn

    d = tmp_path_factory.mktemp("fuzz")
    spec = siren_spec(1)
    chunk = sorted((inr_set / "chunks").glob("*.npz"))[0]
    export_nfn(inr_set, d / "nfn", progress=False)
    pth = next((d / "nfn").rglob("*.pth"))
    (d / "cfg.yaml").write_text("epochs: 3\nlr: 1.0e-3\nmodels:\n  mlp: {hidden: [8, 8]}\n")
    idx = d / "idx"
    idx.write_bytes(struct.pack(">HBBIII", 0, 8, 3, 2, 4, 4) + bytes(range(32)))
    from mnfn.tasks.classify_inr import DEFAULTS

    return {
        "chunk.npz": (chunk.read_bytes(), lambda p: load_chunk(p, spec)),
        "meta.json": ((inr_set / "meta.json").read_bytes(), read_json),
        "index.csv": ((inr_set / "index.csv").read_bytes(), None),
        "net.pth": (pth.read_bytes(), lambda p: read_nfn_file(p, spec)),
        "config.yaml": ((d / "cfg.yaml").read_bytes(),
                        lambda p: load_config(DEFAULTS, p, open_sections=["models"])),
        "images.idx": (idx.read_bytes(), im.read_idx),
    }


@pytest.mark.parametrize("fmt", ["chunk.npz", "meta.json", "index.csv", "net.pth", "config.yaml", "images.idx"])
def test_fuzz_readers(fmt, samples, inr_set, tmp_path_factory):
    blob, reader = samples[fmt]
    work = tmp_path_factory.mktemp(f"fuzz-{fmt}")
    if fmt == "index.csv":  # read through the set it indexes
        import shutil

        root = work / "set"
        shutil.copytree(inr_set, root)

        def reader(p):  # noqa: F811
            return read_index(root)

    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(how=_mutations())
    def run(how):
        path = (work / "set" / "index.csv") if fmt == "index.csv" else work / fmt
        path.write_bytes(_mutate(blob, how))
        t0 = time.monotonic()
        try:
            reader(path)
        except ValueError as exc:  # DataFormatError, ConfigError, WeightSpaceError
            assert path.name in str(exc) or str(path.parent) in str(exc), f"{fmt}: error names no file: {exc}"
        assert time.monotonic() - t0 < LIMIT_S

    run()
