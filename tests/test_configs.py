"""Every YAML file under configs/ loads against its task's defaults: a key a task does not know, or
a value of the wrong type, is caught here rather than minutes into a long run."""

from pathlib import Path

import pytest

from mnfn.models import MODELS
from mnfn.tasks import classify_inr, edit_inr, predict_gen
from mnfn.training.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
TASKS = {"classify_inr": (classify_inr.DEFAULTS, ["models"]), "edit_inr": (edit_inr.DEFAULTS, ["models"]),
         "predict_gen": (predict_gen.DEFAULTS, predict_gen.OPEN_SECTIONS)}


def test_every_config_has_a_task():
    assert CONFIGS
    for path in CONFIGS:
        assert any(path.stem.startswith(t) for t in TASKS), path.name


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path):
    defaults, open_sections = next(v for t, v in TASKS.items() if path.stem.startswith(t))
    cfg = load_config(defaults, path, open_sections=open_sections)
    assert cfg["experiment"]["models"], path.name
    for name in list(cfg["experiment"]["models"]) + list(cfg["models"]):
        assert name in MODELS, f"{path.name}: model {name} is not registered"
