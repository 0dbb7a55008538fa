"""Quickstart: trained nn.Sequential models -> features -> Monomial-NFN -> check its invariance."""
import torch
from torch import nn

from mnfn import features_from_modules, sample_element, ScaleDist
from mnfn.models import build_model

torch.manual_seed(0)
nets = [nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)) for _ in range(16)]
feats = features_from_modules(nets)                      # W: (16, 1, out, in, 3, 3), b: (16, 1, out)
model = build_model("monomial", feats.spec).eval()       # permutation x positive-scaling invariant
g = sample_element(feats.spec, batch=16, generator=0, scale=ScaleDist("loguniform", 1e-2, 1e2))
with torch.no_grad():
    y, y_g = model(feats), model(g.act(feats))           # g rescales and permutes hidden neurons
print("prediction shape:", tuple(y.shape))
print(f"max relative invariance error: {((y_g - y).norm() / y.norm()).item():.2e}")
