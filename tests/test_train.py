"""The generic trainer, metrics, config loading and the task registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnfn.io import load_torch
from mnfn.models import build_model
from mnfn.training import metrics as M
from mnfn.training.config import ConfigError, load_config, parse_override
from mnfn.training.train import ArrayData, Trainer, load_best, read_log, seed_everything
from mnfn.weightspace import WeightSpaceFeatures, zoo_cnn_spec


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread per test (tests/conftest.py)


# --- metrics ----------------------------------------------------------------------------------

def test_metrics_values():
    t = np.array([0.1, 0.2, 0.3, 0.4])
    assert M.kendall_tau(t, t) == pytest.approx(1.0)
    assert M.kendall_tau(-t, t) == pytest.approx(-1.0)
    assert M.kendall_tau([1.0, 3.0, 2.0, 4.0], t) == pytest.approx(2 / 3)
    assert M.kendall_tau(np.ones(4), t) == 0.0  # constant predictions rank nothing
    assert math.isnan(M.kendall_tau(t, np.ones(4)))
    assert M.r2(t, t) == pytest.approx(1.0)
    assert M.r2(np.full(4, t.mean()), t) == pytest.approx(0.0)
    assert M.mae(t + 0.1, t) == pytest.approx(0.1)
    assert M.accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 0.5
    assert M.compute_metrics(["tau", "mae"], torch.tensor(t), torch.tensor(t)) == {"tau": pytest.approx(1.0), "mae": 0.0}
    with pytest.raises(ValueError, match="unknown metric"):
        M.compute_metrics(["kendall"], t, t)
    assert M.is_better(0.5, None, True) and M.is_better(0.5, float("nan"), True)
    assert not M.is_better(float("nan"), 0.1, True) and M.is_better(0.1, 0.2, False)


# --- config -----------------------------------------------------------------------------------

DEFAULTS = {"epochs": 50, "lr": 1e-3, "batch_size": 8, "loss": "bce", "dropout": 0.0,
            "models": {"monomial": {"hidden": [16, 16, 5]}}, "eval": {"scales": [10.0, 100.0]}}


def test_config_overrides_and_types(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 2\nlr: 1e-4\nmodels:\n  monomial: {hidden: [4, 4, 2]}\n  hnp: {hidden: [8]}\n")
    cfg = load_config(DEFAULTS, f, ["batch_size=4", "eval.scales=[10, 1e4]", "dropout=0"], open_sections=["models"])
    assert cfg["epochs"] == 2 and cfg["lr"] == pytest.approx(1e-4) and isinstance(cfg["lr"], float)
    assert cfg["batch_size"] == 4 and cfg["eval"]["scales"] == [10, 1e4] and cfg["dropout"] == 0.0
    assert cfg["models"] == {"monomial": {"hidden": [4, 4, 2]}, "hnp": {"hidden": [8]}}
    assert DEFAULTS["epochs"] == 50  # defaults untouched
    g = tmp_path / "d.yaml"
    g.write_text("extends: c.yaml\nepochs: 3\n")
    assert load_config(DEFAULTS, g, open_sections=["models"])["lr"] == pytest.approx(1e-4)
    assert parse_override("a.b=[1,2]") == (["a", "b"], [1, 2])


def test_config_unknown_key_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="'epoch'.*did you mean 'epochs'"):
        load_config(DEFAULTS, None, ["epoch=3"])
    with pytest.raises(ConfigError, match="eval.scale"):
        load_config(DEFAULTS, None, ["eval.scale=[1]"])
    f = tmp_path / "c.yaml"
    f.write_text("learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(DEFAULTS, f)
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(DEFAULTS, None, ["batch_size=[1,2]"])


# --- trainer ----------------------------------------------------------------------------------

SPEC = zoo_cnn_spec("relu", image_size=8)


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = WeightSpaceFeatures(tuple(torch.randn(n, 1, *s, generator=g) for s in SPEC.weight_shapes()),
                            tuple(torch.randn(n, 1, *s, generator=g) for s in SPEC.bias_shapes()), SPEC)
    y = torch.sigmoid(3 * f.biases[-1].mean((1, 2)))  # an invariant target
    return ArrayData(f[:n - 12], y[:n - 12]), ArrayData(f[n - 12:], y[n - 12:])


def _bce(out, t):
    return F.binary_cross_entropy_with_logits(out.squeeze(-1), t)


def _train(out_dir, epochs=3, seed=0, **kw):
    seed_everything(seed)
    model = build_model("monomial", SPEC, hidden=[8, 8, 4], head=[8], dropout=0.1)
    tr, va = _data()
    t = Trainer(model, _bce, tr, va, metrics=["tau", "r2", "mae"], predict_fn=lambda o: torch.sigmoid(o.squeeze(-1)),
                epochs=epochs, batch_size=8, lr=3e-3, seed=seed, out_dir=out_dir, select="tau", progress=False,
                config={"what": "test"}, **kw)
    return t, t.fit()


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_result_and_files(tmp_path):
    t1, r1 = _train(tmp_path / "a")
    t2, r2 = _train(tmp_path / "b")
    strip = lambda hs: [{k: v for k, v in h.items() if k != "seconds"} for h in hs]  # noqa: E731
    assert strip(r1.history) == strip(r2.history)
    assert r1.best_value == r2.best_value and r1.best_epoch == r2.best_epoch
    assert _same_state(t1.model.state_dict(), t2.model.state_dict())
    for name in ("last.pt", "best.pt", "log.csv"):
        assert (tmp_path / "a" / name).is_file()
    log = read_log(tmp_path / "a" / "log.csv")
    assert [r["epoch"] for r in log] == [1, 2, 3] and "val_tau" in log[0]
    # weights-only loadable
    ck = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert ck["epoch"] == 3 and "optimizer" in ck and "rng" in ck
    _, r3 = _train(tmp_path / "c", seed=1)
    assert strip(r3.history) != strip(r1.history)


def test_resume_equals_uninterrupted(tmp_path):
    t_full, r_full = _train(tmp_path / "full", epochs=4)
    _, r_part = _train(tmp_path / "part", epochs=4, stop_after=2)
    assert r_part.epochs_done == 2 and not r_part.completed
    t_res, r_res = _train(tmp_path / "part", epochs=4)  # a new process would do the same: fresh model, resume
    assert r_res.completed
    strip = lambda hs: [{k: v for k, v in h.items() if k != "seconds"} for h in hs]  # noqa: E731
    assert strip(r_res.history) == strip(r_full.history)
    assert _same_state(t_res.model.state_dict(), t_full.model.state_dict())
    b_full, b_res = load_torch(tmp_path / "full" / "best.pt"), load_torch(tmp_path / "part" / "best.pt")
    assert b_full["epoch"] == b_res["epoch"] and _same_state(b_full["model"], b_res["model"])
    # a different config refuses to resume into the same folder
    seed_everything(0)
    model = build_model("monomial", SPEC, hidden=[8, 8, 4], head=[8], dropout=0.1)
    tr, va = _data()
    with pytest.raises(ValueError, match="another configuration"):
        Trainer(model, _bce, tr, va, epochs=5, out_dir=tmp_path / "part", progress=False, config={"what": "else"}).fit()
    # fewer epochs than the finished run trained: refused, not a result saying epochs 2, epochs_done 4
    with pytest.raises(ValueError, match="already trained 4 epochs, more than the 2"):
        _train(tmp_path / "part", epochs=2)


def test_best_checkpoint_never_rolls_back_live_model(tmp_path):
    t, r = _train(tmp_path / "a", epochs=4)
    last = load_torch(tmp_path / "a" / "last.pt")
    best = load_torch(tmp_path / "a" / "best.pt")
    assert _same_state(t.model.state_dict(), last["model"])  # live model = the last epoch's
    assert best["epoch"] == r.best_epoch and best["value"] == pytest.approx(r.best_value)
    assert max(h["val_tau"] for h in r.history) == pytest.approx(r.best_value)
    if r.best_epoch != 4:
        assert not _same_state(t.model.state_dict(), best["model"])
    load_best(t.model, tmp_path / "a")
    ev = t.evaluate(_data()[1], prefix="val_")
    assert ev["val_tau"] == pytest.approx(r.best_value)


def test_cli_lists_registered_tasks(capsys):
    from mnfn.cli import main
    from mnfn.tasks import registry

    assert main(["train"]) == 0
    out = capsys.readouterr().out
    registry.load_tasks()
    for name in registry.TRAIN_TASKS:
        assert name in out


def test_nonfinite_loss_raises_or_is_skipped_and_counted(tmp_path):
    calls = {"n": 0}

    def flaky(out, t):  # every third training step returns NaN
        calls["n"] += 1
        loss = _bce(out, t)
        return loss * float("nan") if calls["n"] % 3 == 0 and torch.is_grad_enabled() else loss

    tr, va = _data()
    seed_everything(0)
    model = build_model("statnn", SPEC, hidden=[8])
    with pytest.raises(FloatingPointError, match="nan"):
        Trainer(model, flaky, tr, va, epochs=1, progress=False).fit()
    calls["n"] = 0
    r = Trainer(model, flaky, tr, va, epochs=2, progress=False, on_nonfinite="skip").fit()
    assert all(h["skipped_steps"] >= 1 for h in r.history)
    assert all(torch.isfinite(p).all() for p in model.parameters())
