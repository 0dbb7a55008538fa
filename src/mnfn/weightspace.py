"""Weight spaces of MLPs and CNNs.

A network with ``L`` layers has weights ``W(i)`` of shape ``(n_i, n_{i-1}[, kh, kw])`` and biases
``b(i)`` of shape ``(n_i,)``, ``i = 1..L``. Neuron layer ``0`` (inputs) and ``L`` (outputs) are fixed;
hidden neuron layers ``1..L-1`` carry a symmetry that follows from the activation applied to them:

* ``scale``: positive scalings and permutations (ReLU, LeakyReLU, identity: positively homogeneous);
* ``sign``: sign flips and permutations (tanh, sin: odd functions);
* ``perm``: permutations only (any other elementwise activation).

:class:`WeightSpaceSpec` describes an architecture, :class:`WeightSpaceFeatures` is the immutable
batch every layer of the library takes and returns: per layer a weight tensor
``(B, C, n_out, n_in[, kh, kw])`` and a bias tensor ``(B, C, n_out)``. Reading torch networks into
features and running them is :mod:`mnfn.networks`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from .activations import ACTIVATIONS, Sine, activation_fn
from .symmetry import Symmetry, WeightSpaceError

__all__ = [
    "Symmetry",
    "ACTIVATIONS",
    "LayerSpec",
    "WeightSpaceSpec",
    "WeightSpaceFeatures",
    "Sine",
    "WeightSpaceError",
    "activation_fn",
    "mlp_spec",
    "cnn_spec",
    "siren_spec",
    "zoo_cnn_spec",
]


@dataclass(frozen=True)
class LayerSpec:
    """One dense or conv layer and the activation that follows it (``None`` after the last layer).

    ``kernel`` is ``()`` for dense layers and ``(kh, kw)`` for conv layers.
    """

    kind: str
    n_out: int
    n_in: int
    kernel: tuple[int, ...] = ()
    activation: str | None = None
    act_param: float | None = None
    stride: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("dense", "conv"):
            raise WeightSpaceError(f"layer kind must be 'dense' or 'conv', got {self.kind!r}")
        if self.kind == "dense" and self.kernel:
            raise WeightSpaceError("a dense layer has no kernel")
        if self.kind == "conv" and len(self.kernel) != 2:
            raise WeightSpaceError(f"a conv layer needs a (kh, kw) kernel, got {self.kernel!r}")
        if self.n_out < 1 or self.n_in < 1:
            raise WeightSpaceError(f"layer widths must be positive, got {self.n_out}x{self.n_in}")
        if self.activation is not None and self.activation not in ACTIVATIONS:
            raise WeightSpaceError(
                f"unknown activation {self.activation!r}; known: {sorted(ACTIVATIONS)}"
            )

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.n_out, self.n_in, *self.kernel)

    @property
    def kernel_size(self) -> int:
        return math.prod(self.kernel) if self.kernel else 1


@dataclass(frozen=True)
class WeightSpaceSpec:
    """An architecture: its layers, and where global average pooling sits.

    ``pool_after`` is the index (0-based) of the layer after whose activation a global average
    pool over the spatial axes flattens the feature map (CNNs), or ``None`` (MLPs, or a CNN whose
    output is the feature map of its last conv layer). ``in_shape`` is the input's
    non-batch shape, used by the functional forward for checks and by examples.
    """

    layers: tuple[LayerSpec, ...]
    pool_after: int | None = None
    in_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.layers) < 1:
            raise WeightSpaceError("a weight space needs at least one layer")
        for i, (a, b) in enumerate(zip(self.layers[:-1], self.layers[1:])):
            if b.n_in != a.n_out:
                raise WeightSpaceError(
                    f"layer {i + 2} takes {b.n_in} inputs but layer {i + 1} gives {a.n_out}"
                )
            if a.activation is None:
                raise WeightSpaceError(f"hidden layer {i + 1} needs an activation")
        if self.layers[-1].activation is not None:
            raise WeightSpaceError("the last layer must not have an activation")
        seen_dense = False
        for i, layer in enumerate(self.layers):
            if layer.kind == "dense":
                seen_dense = True
            elif seen_dense:
                raise WeightSpaceError(f"conv layer {i + 1} after a dense layer is not supported")
        pool = self.pool_after
        if pool is not None:
            if not 0 <= pool < len(self.layers) or self.layers[pool].kind != "conv":
                raise WeightSpaceError(f"pool_after={pool} must index a conv layer")
            if pool + 1 < len(self.layers) and self.layers[pool + 1].kind != "dense":
                raise WeightSpaceError("the layer after global pooling must be dense")
        else:
            kinds = {layer.kind for layer in self.layers}
            if kinds == {"conv", "dense"}:
                raise WeightSpaceError("a CNN with dense layers needs pool_after (global pooling)")

    # -- basic facts ---------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """L, the number of weight layers."""
        return len(self.layers)

    @property
    def widths(self) -> tuple[int, ...]:
        """``(n_0, n_1, ..., n_L)``."""
        return (self.layers[0].n_in, *(layer.n_out for layer in self.layers))

    @property
    def is_cnn(self) -> bool:
        return any(layer.kind == "conv" for layer in self.layers)

    def neuron_symmetries(self) -> tuple[str, ...]:
        """Symmetry of every neuron layer ``0..L``: fixed at both ends, else from the activation."""
        hidden = tuple(ACTIVATIONS[layer.activation].symmetry for layer in self.layers[:-1])  # type: ignore[index]
        return (Symmetry.FIXED, *hidden, Symmetry.FIXED)

    def num_params(self) -> int:
        return sum(math.prod(layer.weight_shape) + layer.n_out for layer in self.layers)

    def weight_shapes(self) -> list[tuple[int, ...]]:
        return [layer.weight_shape for layer in self.layers]

    def bias_shapes(self) -> list[tuple[int, ...]]:
        return [(layer.n_out,) for layer in self.layers]

    def describe(self) -> str:
        parts = []
        for i, layer in enumerate(self.layers):
            k = "x".join(map(str, layer.kernel))
            s = f"{layer.kind}{'[' + k + ']' if k else ''} {layer.n_in}->{layer.n_out}"
            if layer.activation:
                s += f" {layer.activation}"
            if self.pool_after == i:
                s += " gap"
            parts.append(s)
        return " | ".join(parts)


# --- convenient constructors -------------------------------------------------------------------

def mlp_spec(widths: Sequence[int], activation: str | Sequence[str] = "relu",
             act_param: float | None = None) -> WeightSpaceSpec:
    """Spec of an MLP with neuron widths ``(n_0, ..., n_L)``; ``activation`` per hidden layer or one for all."""
    L = len(widths) - 1
    acts = [activation] * (L - 1) if isinstance(activation, str) else list(activation)
    if len(acts) != L - 1:
        raise WeightSpaceError(f"need {L - 1} hidden activations, got {len(acts)}")
    layers = tuple(
        LayerSpec("dense", widths[i + 1], widths[i], activation=acts[i] if i < L - 1 else None,
                  act_param=act_param if i < L - 1 else None)
        for i in range(L)
    )
    return WeightSpaceSpec(layers, in_shape=(widths[0],))


def cnn_spec(in_channels: int, channels: Sequence[int], n_out: int, activation: str | Sequence[str] = "relu",
             kernel: int = 3, stride: int = 2, padding: int = 1, image_size: int | None = None,
             conv_last: bool = False) -> WeightSpaceSpec:
    """Spec of ``conv(k, stride) x len(channels) -> act -> GAP -> dense(n_out)``.

    With ``conv_last`` the final layer is a conv with ``n_out`` channels followed by global
    average pooling (no dense layer).
    """
    chans = [in_channels, *channels] + ([n_out] if conv_last else [])
    n_conv = len(chans) - 1
    n_hidden = n_conv if not conv_last else n_conv - 1
    acts = [activation] * n_hidden if isinstance(activation, str) else list(activation)
    if len(acts) != n_hidden:
        raise WeightSpaceError(f"need {n_hidden} hidden activations, got {len(acts)}")
    layers = [
        LayerSpec("conv", chans[i + 1], chans[i], (kernel, kernel), activation=acts[i] if i < n_hidden else None,
                  stride=stride, padding=padding)
        for i in range(n_conv)
    ]
    if not conv_last:
        layers.append(LayerSpec("dense", n_out, chans[-1]))
    in_shape = (in_channels, image_size, image_size) if image_size else None
    return WeightSpaceSpec(tuple(layers), pool_after=n_conv - 1, in_shape=in_shape)


def zoo_cnn_spec(activation: str = "relu", in_channels: int = 1, channels: int = 16, num_classes: int = 10,
                 image_size: int = 32) -> WeightSpaceSpec:
    """The Small CNN Zoo architecture: 3 conv 3x3 stride 2 layers of 16 channels, GAP, dense to 10."""
    return cnn_spec(in_channels, [channels] * 3, num_classes, activation, kernel=3, stride=2, padding=1,
                    image_size=image_size)


def siren_spec(out_channels: int = 1, hidden: int = 32, depth: int = 2, w0: float = 30.0) -> WeightSpaceSpec:
    """SIREN ``2 -> hidden x depth -> out`` with ``sin(w0 x)`` hidden activations (NFN INR sets)."""
    return mlp_spec([2, *([hidden] * depth), out_channels], "sin", act_param=w0)


# --- the feature batch -------------------------------------------------------------------------

@dataclass(frozen=True)
class WeightSpaceFeatures:
    """A batch of weight-space features: per layer ``W (B, C, n_out, n_in[, kh, kw])``, ``b (B, C, n_out)``.

    Immutable: every operation returns a new object. ``spec`` is the architecture the tensors
    belong to (shared by the batch; channels ``C`` are free).
    """

    weights: tuple[Tensor, ...]
    biases: tuple[Tensor, ...]
    spec: WeightSpaceSpec = field(compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", tuple(self.weights))
        object.__setattr__(self, "biases", tuple(self.biases))
        self.validate(check_finite=False)

    # -- validation ----------------------------------------------------------------------------
    def validate(self, check_finite: bool = True) -> "WeightSpaceFeatures":
        """Check shapes against ``spec`` (and, on request, that every value is finite)."""
        spec = self.spec
        if len(self.weights) != spec.num_layers or len(self.biases) != spec.num_layers:
            raise WeightSpaceError(
                f"expected {spec.num_layers} weight and bias tensors for spec [{spec.describe()}], "
                f"got {len(self.weights)} and {len(self.biases)}"
            )
        B, C = self.weights[0].shape[:2] if self.weights[0].dim() >= 2 else (None, None)
        for i, (w, b, layer) in enumerate(zip(self.weights, self.biases, spec.layers)):
            if w.dim() != 2 + len(layer.weight_shape) or tuple(w.shape[2:]) != layer.weight_shape:
                raise WeightSpaceError(
                    f"weight {i + 1} has shape {tuple(w.shape)}, expected (B, C, {', '.join(map(str, layer.weight_shape))})"
                )
            if b.dim() != 3 or b.shape[2] != layer.n_out:
                raise WeightSpaceError(f"bias {i + 1} has shape {tuple(b.shape)}, expected (B, C, {layer.n_out})")
            if tuple(w.shape[:2]) != (B, C) or tuple(b.shape[:2]) != (B, C):
                raise WeightSpaceError(
                    f"layer {i + 1}: batch/channel dims {tuple(w.shape[:2])}/{tuple(b.shape[:2])} differ from {(B, C)}"
                )
        if check_finite:
            for name, tensors in (("weight", self.weights), ("bias", self.biases)):
                for i, t in enumerate(tensors):
                    if not torch.isfinite(t).all():
                        bad = (~torch.isfinite(t)).flatten(1).any(1).nonzero().flatten().tolist()
                        raise WeightSpaceError(f"{name} {i + 1} has NaN/Inf values (batch items {bad[:10]})")
        return self

    # -- basic facts ---------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.weights[0].shape[0]

    @property
    def channels(self) -> int:
        return self.weights[0].shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return iter(zip(self.weights, self.biases))

    def __getitem__(self, idx: int | slice | Tensor) -> "WeightSpaceFeatures":
        """Select batch items (``features[2:5]``, ``features[mask]``)."""
        if isinstance(idx, int):
            n = self.batch_size
            if not -n <= idx < n:
                raise IndexError(f"index {idx} out of range for a batch of {n}")
            idx = slice(idx % n, idx % n + 1)
        return self.map(lambda t: t[idx])

    # -- transformations -----------------------------------------------------------------------
    def map(self, fn: Callable[[Tensor], Tensor]) -> "WeightSpaceFeatures":
        """Apply ``fn`` to every weight and bias tensor."""
        return WeightSpaceFeatures(tuple(fn(w) for w in self.weights), tuple(fn(b) for b in self.biases), self.spec)

    def map2(self, other: "WeightSpaceFeatures", fn: Callable[[Tensor, Tensor], Tensor]) -> "WeightSpaceFeatures":
        if other.spec.weight_shapes() != self.spec.weight_shapes():
            # Without this check torch would silently broadcast e.g. a width-1 layer against a wider one.
            raise WeightSpaceError(
                f"feature batches of different architectures: [{self.spec.describe()}] and [{other.spec.describe()}]"
            )
        return WeightSpaceFeatures(
            tuple(fn(a, b) for a, b in zip(self.weights, other.weights)),
            tuple(fn(a, b) for a, b in zip(self.biases, other.biases)),
            self.spec,
        )

    def to(self, *args, **kwargs) -> "WeightSpaceFeatures":
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "WeightSpaceFeatures":
        return self.map(Tensor.detach)

    def __add__(self, other: "WeightSpaceFeatures") -> "WeightSpaceFeatures":
        return self.map2(other, torch.add)

    def __sub__(self, other: "WeightSpaceFeatures") -> "WeightSpaceFeatures":
        return self.map2(other, torch.sub)

    def __mul__(self, scalar: float | Tensor) -> "WeightSpaceFeatures":
        return self.map(lambda t: t * scalar)

    __rmul__ = __mul__

    def cat_channels(self, other: "WeightSpaceFeatures") -> "WeightSpaceFeatures":
        return self.map2(other, lambda a, b: torch.cat([a, b], 1))

    # -- batching ------------------------------------------------------------------------------
    @staticmethod
    def collate(items: Sequence["WeightSpaceFeatures"]) -> "WeightSpaceFeatures":
        """Concatenate feature batches of one architecture along the batch axis."""
        if not items:
            raise WeightSpaceError("cannot collate an empty list of feature batches")
        spec = items[0].spec
        for j, item in enumerate(items[1:], 1):
            # Same shapes are not enough: a tanh net in a batch whose spec says ReLU would be moved
            # by (and its model would assume) the wrong symmetry group.
            if item.spec.layers != spec.layers or item.spec.pool_after != spec.pool_after:
                raise WeightSpaceError(
                    f"mixed architectures in one batch: item 0 is [{spec.describe()}], item {j} is [{item.spec.describe()}]"
                )
        L = spec.num_layers
        return WeightSpaceFeatures(
            tuple(torch.cat([it.weights[i] for it in items]) for i in range(L)),
            tuple(torch.cat([it.biases[i] for it in items]) for i in range(L)),
            spec,
        )

    def flatten(self) -> Tensor:
        """``(B, C * P)``: all entries, layer by layer, weight then bias (channel-major per tensor)."""
        parts = []
        for w, b in self:
            parts.append(w.flatten(1))
            parts.append(b.flatten(1))
        return torch.cat(parts, 1)

    @staticmethod
    def unflatten(flat: Tensor, spec: WeightSpaceSpec, channels: int = 1) -> "WeightSpaceFeatures":
        """Inverse of :meth:`flatten`."""
        B = flat.shape[0]
        expected = channels * spec.num_params()
        if flat.dim() != 2 or flat.shape[1] != expected:
            raise WeightSpaceError(f"flat features of shape {tuple(flat.shape)}; expected (B, {expected})")
        ws, bs, off = [], [], 0
        for layer in spec.layers:
            n = channels * math.prod(layer.weight_shape)
            ws.append(flat[:, off:off + n].reshape(B, channels, *layer.weight_shape))
            off += n
            n = channels * layer.n_out
            bs.append(flat[:, off:off + n].reshape(B, channels, layer.n_out))
            off += n
        return WeightSpaceFeatures(tuple(ws), tuple(bs), spec)

    @staticmethod
    def zeros_like_spec(spec: WeightSpaceSpec, batch: int, channels: int = 1, dtype: torch.dtype = torch.float32,
                        device: torch.device | str | None = None) -> "WeightSpaceFeatures":
        return WeightSpaceFeatures(
            tuple(torch.zeros(batch, channels, *s, dtype=dtype, device=device) for s in spec.weight_shapes()),
            tuple(torch.zeros(batch, channels, *s, dtype=dtype, device=device) for s in spec.bias_shapes()),
            spec,
        )

    def with_spec(self, spec: WeightSpaceSpec) -> "WeightSpaceFeatures":
        return replace(self, spec=spec)


def __getattr__(name: str):  # the module <-> features functions moved to mnfn.networks; old imports work
    if name in _MOVED:
        from . import networks

        return getattr(networks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_MOVED = frozenset({"spec_from_module", "features_from_modules", "features_to_module", "build_module",
                    "functional_forward"})
