"""Weight spaces of MLPs and CNNs.

A network with ``L`` layers has weights ``W(i)`` of shape ``(n_i, n_{i-1}[, kh, kw])`` and biases
``b(i)`` of shape ``(n_i,)``, ``i = 1..L``. Neuron layer ``0`` (inputs) and ``L`` (outputs) are fixed;
hidden neuron layers ``1..L-1`` carry a symmetry that follows from the activation applied to them:

* ``scale``: positive scalings and permutations (ReLU, LeakyReLU, identity: positively homogeneous);
* ``sign``: sign flips and permutations (tanh, sin: odd functions);
* ``perm``: permutations only (any other elementwise activation).

:class:`WeightSpaceSpec` describes an architecture, :class:`WeightSpaceFeatures` is the immutable
batch every layer of the library takes and returns: per layer a weight tensor
``(B, C, n_out, n_in[, kh, kw])`` and a bias tensor ``(B, C, n_out)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .activations import ACTIVATIONS, Sine, activation_fn, activation_for_module
from .symmetry import Symmetry, WeightSpaceError

__all__ = [
    "Symmetry",
    "ACTIVATIONS",
    "LayerSpec",
    "WeightSpaceSpec",
    "WeightSpaceFeatures",
    "Sine",
    "WeightSpaceError",
    "spec_from_module",
    "features_from_modules",
    "features_to_module",
    "functional_forward",
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


# --- torch modules <-> features ----------------------------------------------------------------

_PASS_THROUGH = (nn.Dropout, nn.Identity, nn.Flatten)


def _conv_int(v: int | tuple[int, ...], what: str, name: str) -> int:
    vals = (v,) if isinstance(v, int) else tuple(v)
    if len(set(vals)) != 1 or not isinstance(vals[0], int):
        raise WeightSpaceError(f"{name}: only equal integer {what} on both axes is supported, got {v!r}")
    return vals[0]


def _parse_sequential(model: nn.Module) -> tuple[WeightSpaceSpec, list[nn.Module]]:
    if not isinstance(model, nn.Sequential):
        raise WeightSpaceError(
            f"only nn.Sequential models are supported (got {type(model).__name__}): a weight space needs the "
            "layers in order; wrap yours as nn.Sequential(Linear/Conv2d, activation, ..., AdaptiveAvgPool2d(1), Flatten, Linear)"
        )
    flat: list[tuple[str, nn.Module]] = []

    def walk(m: nn.Module, prefix: str) -> None:
        for name, child in m.named_children():
            if isinstance(child, nn.Sequential):
                walk(child, f"{prefix}{name}.")
            else:
                flat.append((f"{prefix}{name}", child))

    walk(model, "")
    layers: list[dict] = []
    mods: list[nn.Module] = []
    pool_after: int | None = None
    has_maxpool = None
    for name, m in flat:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if layers and layers[-1]["activation"] is None:
                raise WeightSpaceError(
                    f"module {name}: two weight layers without an activation between them are not supported"
                )
            if isinstance(m, nn.Conv2d):
                if layers and layers[-1]["kind"] == "dense":
                    raise WeightSpaceError(f"module {name}: a Conv2d after a Linear layer is not supported")
                if m.groups != 1 or _conv_int(m.dilation, "dilation", name) != 1:
                    raise WeightSpaceError(f"module {name}: grouped or dilated convolutions are not supported")
                if m.padding_mode != "zeros" or isinstance(m.padding, str):
                    raise WeightSpaceError(f"module {name}: only integer zero padding is supported")
                if m.bias is None:
                    raise WeightSpaceError(f"module {name}: layers without bias are not supported")
                layers.append(dict(kind="conv", n_out=m.out_channels, n_in=m.in_channels,
                                   kernel=tuple(m.kernel_size), activation=None,
                                   stride=_conv_int(m.stride, "stride", name),
                                   padding=_conv_int(m.padding, "padding", name)))
            else:
                if layers and layers[-1]["kind"] == "conv" and pool_after is None:
                    raise WeightSpaceError(
                        f"module {name}: a Linear after Conv2d needs global average pooling "
                        "(nn.AdaptiveAvgPool2d(1) + nn.Flatten) in between"
                    )
                if m.bias is None:
                    raise WeightSpaceError(f"module {name}: layers without bias are not supported")
                layers.append(dict(kind="dense", n_out=m.out_features, n_in=m.in_features, activation=None))
            mods.append(m)
        elif activation_for_module(m) is not None:
            if not layers:
                raise WeightSpaceError(f"module {name}: an activation before the first weight layer is not supported")
            if layers[-1]["activation"] is not None:
                raise WeightSpaceError(f"module {name}: two activations in a row are not supported")
            if pool_after is not None and len(layers) - 1 == pool_after:
                raise WeightSpaceError(f"module {name}: an activation after global pooling is not supported")
            layers[-1]["activation"], layers[-1]["act_param"] = activation_for_module(m)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            size = m.output_size
            if size not in (1, (1, 1)):
                raise WeightSpaceError(f"module {name}: only global average pooling (output size 1) is supported")
            if not layers or layers[-1]["kind"] != "conv":
                raise WeightSpaceError(f"module {name}: global pooling must follow a conv layer")
            pool_after = len(layers) - 1
        elif isinstance(m, _PASS_THROUGH):
            continue
        elif isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
            has_maxpool = name
            break
        else:
            raise WeightSpaceError(
                f"module {name} ({type(m).__name__}) is not supported: a weight space holds Linear/Conv2d layers, "
                f"elementwise activations ({', '.join(sorted(t.__name__ for a in ACTIVATIONS.values() for t in a.module_types))}), "
                "global average pooling, Flatten, Dropout and Identity"
            )
    if has_maxpool is not None:
        # Every activation of the model, also those after the max-pool (Conv2d, MaxPool2d, Tanh is common).
        acts = {found[0] for _, m in flat if (found := activation_for_module(m)) is not None}
        why = ("max-pooling does not commute with sign flips, so it breaks the symmetry of tanh/sin networks"
               if acts & {"tanh", "sin"} else
               "max-pooling is not part of the supported weight-space family; use global average pooling")
        raise WeightSpaceError(f"module {has_maxpool} (MaxPool2d): {why}")
    if not layers:
        raise WeightSpaceError("the model has no Linear or Conv2d layer")
    if layers[-1]["activation"] is not None:
        # A trailing activation is part of the model's function, not of its weights: refuse rather than drop it.
        raise WeightSpaceError("the model ends with an activation; remove it (apply it to the outputs yourself)")
    spec = WeightSpaceSpec(tuple(LayerSpec(**l) for l in layers), pool_after=pool_after)
    return spec, mods


def spec_from_module(model: nn.Module) -> WeightSpaceSpec:
    """The :class:`WeightSpaceSpec` of an ``nn.Sequential`` MLP or CNN."""
    return _parse_sequential(model)[0]


def features_from_modules(models: Sequence[nn.Module] | nn.Module, dtype: torch.dtype | None = None,
                          check_finite: bool = True) -> WeightSpaceFeatures:
    """Stack the weights of models of one architecture into features with ``C = 1``.

    Conv kernels keep torch's ``(out, in, kh, kw)`` order.
    """
    if isinstance(models, nn.Module):
        models = [models]
    if len(models) == 0:
        raise WeightSpaceError("no models given")
    spec, _ = _parse_sequential(models[0])
    per_layer_w: list[list[Tensor]] = [[] for _ in spec.layers]
    per_layer_b: list[list[Tensor]] = [[] for _ in spec.layers]
    for j, model in enumerate(models):
        s, mods = _parse_sequential(model)
        if s != spec:
            raise WeightSpaceError(
                f"mixed architectures: model 0 is [{spec.describe()}] but model {j} is [{s.describe()}]"
            )
        for i, m in enumerate(mods):
            per_layer_w[i].append(m.weight.detach())
            per_layer_b[i].append(m.bias.detach())
    ws = tuple(torch.stack(w)[:, None] for w in per_layer_w)
    bs = tuple(torch.stack(b)[:, None] for b in per_layer_b)
    if dtype is not None:
        ws = tuple(w.to(dtype) for w in ws)
        bs = tuple(b.to(dtype) for b in bs)
    feats = WeightSpaceFeatures(ws, bs, spec)
    return feats.validate(check_finite=check_finite)


def build_module(spec: WeightSpaceSpec) -> nn.Sequential:
    """A freshly initialised ``nn.Sequential`` of the architecture ``spec`` describes."""
    mods: list[nn.Module] = []
    for i, layer in enumerate(spec.layers):
        if layer.kind == "conv":
            mods.append(nn.Conv2d(layer.n_in, layer.n_out, layer.kernel, stride=layer.stride, padding=layer.padding))
        else:
            mods.append(nn.Linear(layer.n_in, layer.n_out))
        if layer.activation is not None:
            mods.append(ACTIVATIONS[layer.activation].make_module(layer.act_param))
        if spec.pool_after == i:
            mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*mods)


def features_to_module(features: WeightSpaceFeatures, index: int = 0, channel: int = 0) -> nn.Sequential:
    """Build an ``nn.Sequential`` holding the weights of batch item ``index`` (channel ``channel``)."""
    if not 0 <= index < features.batch_size:
        raise WeightSpaceError(f"index {index} out of range for a batch of {features.batch_size}")
    model = build_module(features.spec).to(features.dtype)
    weight_mods = [m for m in model if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        for m, w, b in zip(weight_mods, features.weights, features.biases):
            m.weight.copy_(w[index, channel])
            m.bias.copy_(b[index, channel])
    return model


# --- functional forward ------------------------------------------------------------------------

def functional_forward(features: WeightSpaceFeatures, x: Tensor, channel: int = 0) -> Tensor:
    """Run the ``B`` networks a feature batch describes, without building modules.

    ``x`` is either shared by all networks, ``(N, *in_shape)``, or per network, ``(B, N, *in_shape)``.
    Returns ``(B, N, *out_shape)``. Dense layers use batched matmuls; conv layers one grouped
    convolution over the whole batch.
    """
    spec = features.spec
    B = features.batch_size
    first = spec.layers[0]
    in_dims = 1 if first.kind == "dense" else 3
    if x.dim() == in_dims + 1:
        x = x.unsqueeze(0).expand(B, *x.shape)
    elif x.dim() != in_dims + 2 or x.shape[0] != B:
        raise WeightSpaceError(
            f"input of shape {tuple(x.shape)}: expected (N, {'C, H, W' if in_dims == 3 else 'd'}) "
            f"or (B={B}, N, ...)"
        )
    N = x.shape[1]
    if first.kind == "dense" and x.shape[-1] != first.n_in:
        raise WeightSpaceError(f"input has {x.shape[-1]} features, the network takes {first.n_in}")
    if first.kind == "conv" and x.shape[2] != first.n_in:
        raise WeightSpaceError(f"input has {x.shape[2]} channels, the network takes {first.n_in}")
    h = x.to(features.dtype)
    for i, (layer, w, b) in enumerate(zip(spec.layers, features.weights, features.biases)):
        w = w[:, channel]
        b = b[:, channel]
        if layer.kind == "conv":
            H, W_ = h.shape[-2:]
            # (B, N, c, H, W) -> (N, B*c, H, W): one grouped conv runs every network at once.
            hh = h.transpose(0, 1).reshape(N, B * layer.n_in, H, W_)
            out = F.conv2d(hh, w.reshape(B * layer.n_out, layer.n_in, *layer.kernel), b.reshape(-1),
                           stride=layer.stride, padding=layer.padding, groups=B)
            h = out.reshape(N, B, layer.n_out, *out.shape[-2:]).transpose(0, 1)
        else:
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if layer.activation is not None:
            h = activation_fn(layer.activation, layer.act_param)(h)
        if spec.pool_after == i:
            h = h.mean(dim=(-2, -1))
    return h
