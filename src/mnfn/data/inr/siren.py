"""What a SIREN of an INR set is, as code: coordinates, pixels, PSNR, seeds, initialisation,
rendering, and the images nets are fitted to.

Conventions (the same in fitting, rendering, import and export; they match the NFN SIREN sets):

* **Network**: ``siren_spec(C)``: ``2 -> 32 -> 32 -> C`` dense layers, hidden activation
  ``sin(w0 * (W x + b))`` with ``w0 = 30`` on every hidden layer, linear output.
* **Initialisation** (Sitzmann et al. 2020, as in their reference code): first layer
  ``W ~ U(-1/n_in, 1/n_in)``, later layers ``W ~ U(-sqrt(6/n_in)/w0, sqrt(6/n_in)/w0)``; biases keep
  ``nn.Linear``'s default ``U(-1/sqrt(n_in), 1/sqrt(n_in))`` (the reference code re-initialises only
  the weights). Every net draws from its own generator, seeded from ``(seed, split, image index)``
  (:func:`net_seed`), so a net's weights do not depend on which chunk, shard or run fitted it.
* **Coordinates**: pixel ``(r, c)`` of an ``H x W`` image sits at ``(y, x) = (linspace(-1, 1, H)[r],
  linspace(-1, 1, W)[c])`` (grid endpoints included); inputs are ordered ``(y, x)`` and pixels are
  flattened row-major, as ``torch.meshgrid(..., indexing="ij")`` gives them (NFN's ``get_mgrid``).
* **Pixels**: images in ``[0, 1]`` are fitted as ``2 p - 1`` in ``[-1, 1]``; channel ``k`` of the
  output is channel ``k`` of the image. :func:`render` maps back with ``(y + 1) / 2``.
* **PSNR**: ``10 log10(2^2 / MSE)`` with the MSE over all pixels and channels on the ``[-1, 1]``
  scale (peak-to-peak 2), which equals ``10 log10(1 / MSE)`` on the ``[0, 1]`` scale.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...weightspace import WeightSpaceFeatures, WeightSpaceSpec
from ...networks import functional_forward
from .format import _SPLIT_CODE

__all__ = [
    "INIT_SCHEMES",
    "make_coords",
    "images_to_targets",
    "psnr",
    "net_seed",
    "init_sirens",
    "render",
]


# --- conventions as code -----------------------------------------------------------------------

def make_coords(height: int, width: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(H*W, 2)`` input coordinates ``(y, x)`` on ``[-1, 1]^2``, pixels in row-major order."""
    ys = torch.linspace(-1.0, 1.0, height, dtype=torch.float64)
    xs = torch.linspace(-1.0, 1.0, width, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)
    return grid.reshape(-1, 2).to(dtype)


def images_to_targets(images: Tensor | np.ndarray) -> Tensor:
    """Images ``(N, C, H, W)`` in ``[0, 1]`` -> fitting targets ``(N, H*W, C)`` in ``[-1, 1]``."""
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    return (x.permute(0, 2, 3, 1).reshape(n, h * w, c) * 2.0 - 1.0).contiguous()


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR in dB per item of images in ``[0, 1]``: ``10 log10(1 / MSE)`` over all but the first axis.

    Identical to ``10 log10(2^2 / MSE)`` of the same images on the ``[-1, 1]`` scale.
    """
    mse = (pred.double() - target.double()).square().flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


def net_seed(seed: int, split: str, image_index: int) -> int:
    """The 63-bit seed of the net fitted to image ``image_index`` of ``split`` in a run seeded ``seed``."""
    if seed < 0 or image_index < 0:
        raise ValueError(f"seed and image index must be non-negative, got {seed}, {image_index}")
    state = np.random.SeedSequence([int(seed), _SPLIT_CODE[split], int(image_index)]).generate_state(1, np.uint64)
    return int(state[0]) & ((1 << 63) - 1)


#: How the nets of a set are initialised: each from its own seed (NFN's "randinit" sets), or all
#: from one shared initialisation (then the weights differ from net to net only by what fitting
#: changed, which is known to make INR sets easier to learn on).
INITS = ("independent", "shared")


def init_seeds(seed: int, split: str, image_indices: Sequence[int], init: str = "independent") -> list[int]:
    """Initialisation seeds of the nets fitted to ``image_indices`` of ``split``: :func:`net_seed`
    per net, or with ``init="shared"`` one seed for every net of every split."""
    if init == "independent":
        return [net_seed(seed, split, int(i)) for i in image_indices]
    if init == "shared":
        state = np.random.SeedSequence([int(seed), len(_SPLIT_CODE)]).generate_state(1, np.uint64)
        return [int(state[0]) & ((1 << 63) - 1)] * len(image_indices)
    raise ValueError(f"init must be one of {INITS}, got {init!r}")


def _siren_layers(spec: WeightSpaceSpec) -> list[tuple[int, int]]:
    return [(layer.n_out, layer.n_in) for layer in spec.layers]


#: Distributions a SIREN starts from (``FitConfig.init``). ``"siren"``: Sitzmann et al.'s reference
#: code, as in NFN's sets: first layer ``W ~ U(+-1/n_in)``, later ``W ~ U(+-sqrt(6/n_in)/w0)``, biases
#: ``nn.Linear``'s ``U(+-1/sqrt(n_in))``. ``"dws"``: DWSNets' sets: every layer, the first included,
#: ``W ~ U(+-sqrt(6/n_in)/w0)`` and all biases zero, so fitting must move the first layer too.
INIT_SCHEMES = ("siren", "dws")


def init_sirens(seeds: Sequence[int], spec: WeightSpaceSpec, scheme: str = "siren") -> list[Tensor]:
    """Initialisation of ``len(seeds)`` SIRENs: ``[W1 (n, o, i), b1 (n, o), W2, b2, ...]``.

    Net ``j`` draws ``W1, b1, W2, b2, ...`` in that order from ``torch.Generator().manual_seed(seeds[j])``
    (``scheme="dws"`` draws no biases). ``scheme``: see :data:`INIT_SCHEMES`.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init scheme must be one of {INIT_SCHEMES}, got {scheme!r}")
    w0 = float(spec.layers[0].act_param or 1.0)
    shapes = _siren_layers(spec)
    out = [[] for _ in range(2 * len(shapes))]
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        for i, (n_out, n_in) in enumerate(shapes):
            if scheme == "siren":
                wb = 1.0 / n_in if i == 0 else math.sqrt(6.0 / n_in) / w0
                bb = 1.0 / math.sqrt(n_in)  # nn.Linear's default bias range, kept by the SIREN reference
                out[2 * i].append((torch.rand(n_out, n_in, generator=g) * 2 - 1) * wb)
                out[2 * i + 1].append((torch.rand(n_out, generator=g) * 2 - 1) * bb)
            else:
                out[2 * i].append((torch.rand(n_out, n_in, generator=g) * 2 - 1) * (math.sqrt(6.0 / n_in) / w0))
                out[2 * i + 1].append(torch.zeros(n_out))
    return [torch.stack(t) for t in out]


def _params_to_features(params: Sequence[Tensor], spec: WeightSpaceSpec) -> WeightSpaceFeatures:
    ws = tuple(params[2 * i][:, None].contiguous() for i in range(spec.num_layers))
    bs = tuple(params[2 * i + 1][:, None].contiguous() for i in range(spec.num_layers))
    return WeightSpaceFeatures(ws, bs, spec)


def _flat_shapes(spec: WeightSpaceSpec) -> list[tuple[int, ...]]:
    out = []
    for n_out, n_in in _siren_layers(spec):
        out += [(n_out, n_in), (n_out,)]
    return out


# --- rendering -------------------------------------------------------------------------------

def render(features: WeightSpaceFeatures, image_shape: Sequence[int], clamp: bool = True,
           channel: int = 0) -> Tensor:
    """Images ``(B, C, H, W)`` in ``[0, 1]`` drawn by a batch of SIRENs (``(y + 1) / 2`` of their output).

    ``image_shape`` is ``(C, H, W)`` or ``(H, W)``; ``clamp`` clips to ``[0, 1]`` (off: the raw map,
    e.g. to recompute the fitting PSNR exactly). Runs :func:`mnfn.networks.functional_forward`
    on the coordinate grid of :func:`make_coords`.
    """
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (features.spec.layers[-1].n_out, *shape)
    if len(shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W) or (H, W), got {image_shape!r}")
    c, h, w = shape
    if features.spec.layers[-1].n_out != c:
        raise ValueError(f"the nets output {features.spec.layers[-1].n_out} channels, image_shape asks for {c}")
    coords = make_coords(h, w, dtype=features.dtype).to(features.device)
    y = functional_forward(features, coords, channel=channel)  # (B, H*W, C)
    img = (y.reshape(y.shape[0], h, w, c).permute(0, 3, 1, 2) + 1.0) / 2.0
    return img.clamp(0.0, 1.0) if clamp else img


# --- the images nets are fitted to ------------------------------------------------------------

def _resize(images: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or tuple(images.shape[-2:]) == tuple(size):
        return images
    # Bilinear (align_corners=False), e.g. 8x8 digits -> 28x28 "MNIST-like"; clipped back to [0, 1].
    x = F.interpolate(torch.from_numpy(images), size=tuple(size), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0).numpy()


def _load_split(dataset: str, split: str, data_root: str | Path | None, limit: int | None = None):
    from ..images import load_images  # images are needed only to fit/compare, not to read INR sets

    return load_images(dataset, split=split, root=data_root, limit=limit)
