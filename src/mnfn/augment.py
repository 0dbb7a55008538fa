"""Moving weights by random elements of their symmetry group: the one augmentation mechanism.

Every net of a batch gets its own element ``g`` (a permutation and, per hidden layer, positive
scales or sign flips, as the layer's activation allows) and its weights become ``g . W``; targets
are unchanged (accuracy and class are invariant). Used on the fly (``ZooDataset(augment=...)``,
classify-inr's ``augment: true``), for the paper's robustness protocol (original + transformed
copies, :meth:`Augment.with_copies`), and for the transformed test conditions of experiment 1.
Elements act in float64 and the result is cast back, so float32 weights with scales up to 1e4
stay exact to float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .groups import ScaleDist, sample_element
from .symmetry import Symmetry, WeightSpaceError
from .weightspace import WeightSpaceFeatures, WeightSpaceSpec

__all__ = ["Augment", "FULL_GROUP"]


@dataclass(frozen=True)
class Augment:
    """Random group elements: ``scale`` draws the positive scales of scale-symmetric (ReLU) layers
    (``None``: no scaling); ``flip_signs`` flips signs of sign-symmetric (tanh, sin) layers;
    ``permute`` permutes hidden neurons. ``seed`` seeds the stream of a dataset that owns it.
    ``name`` is how the command line spelled it (``none``, ``sign``, ``scale:LO,HI``)."""

    scale: ScaleDist | None = ScaleDist("uniform", 1.0, 10.0)
    permute: bool = True
    flip_signs: bool = True
    seed: int = 0
    name: str = "custom"

    @staticmethod
    def parse(text: str | None, permute: bool = True) -> "Augment | None":
        """``none`` (or empty) -> ``None``; ``sign`` -> sign flips; ``scale:LO,HI`` (also ``uniform:`` or
        ``loguniform:``) -> positive scales from that distribution; permutations as ``permute``."""
        if text is None or text in ("", "none"):
            return None
        if text == "sign":
            return Augment(scale=None, flip_signs=True, permute=permute, name="sign")
        if text.startswith(("scale:", "uniform:", "loguniform:")):
            return Augment(scale=ScaleDist.parse(text), flip_signs=False, permute=permute, name=text)
        raise WeightSpaceError(f"augmentation must be none, scale:LO,HI or sign; got {text!r}")

    def check(self, spec: WeightSpaceSpec, what: str = "augmentation") -> None:
        """Refuse an augmentation that moves nothing the nets' group contains (scales on tanh nets,
        sign flips on ReLU nets): it would silently be the identity."""
        syms = set(spec.neuron_symmetries()[1:-1])
        if self.scale is not None and not self.flip_signs and Symmetry.SCALE not in syms:
            raise WeightSpaceError(f"{what} {self.name!r} scales hidden neurons, but these nets' activation gives "
                                   f"{sorted(syms)} symmetries (use 'sign' for tanh nets)")
        if self.flip_signs and self.scale is None and Symmetry.SIGN not in syms:
            raise WeightSpaceError(f"{what} {self.name!r} flips signs, but these nets' activation gives "
                                   f"{sorted(syms)} symmetries (use scale:LO,HI for ReLU nets)")

    def apply(self, feats: WeightSpaceFeatures, generator: torch.Generator, chunk: int = 4096) -> WeightSpaceFeatures:
        """Every net moved by its own element drawn from ``generator`` (float64, cast back)."""
        out = []
        for s in range(0, feats.batch_size, chunk):
            fb = feats[s:s + chunk]
            el = sample_element(fb.spec, fb.batch_size, generator, scale=self.scale, permute=self.permute,
                                flip_signs=self.flip_signs, dtype=torch.float64)
            out.append(el.act(fb.to(torch.float64)).to(feats.dtype))
        return out[0] if len(out) == 1 else WeightSpaceFeatures.collate(out)

    def with_copies(self, feats: WeightSpaceFeatures, targets: Tensor, copies: int,
                    generator: torch.Generator) -> tuple[WeightSpaceFeatures, Tensor]:
        """The robustness protocol: the originals followed by ``copies`` transformed copies."""
        if copies < 1:
            return feats, targets
        parts = [feats] + [self.apply(feats, generator) for _ in range(copies)]
        return WeightSpaceFeatures.collate(parts), targets.repeat(copies + 1)

    def batch_transform(self) -> Callable[[tuple[WeightSpaceFeatures, Tensor], torch.Generator],
                                          tuple[WeightSpaceFeatures, Tensor]]:
        """A trainer ``transform(batch, generator)``: moves the features of a ``(features, target)`` batch."""
        def transform(batch: tuple[WeightSpaceFeatures, Tensor], gen: torch.Generator) -> tuple[WeightSpaceFeatures, Tensor]:
            feats, target = batch
            return self.apply(feats, gen), target

        return transform


#: The whole group the activations allow, no scaling range: sign flips and permutations (SIRENs,
#: tanh nets) or permutations only (ReLU nets need a scale range: use ``Augment(scale=...)``).
FULL_GROUP = Augment(scale=None, permute=True, flip_signs=True, name="group")
