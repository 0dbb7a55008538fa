"""Torch networks and weight-space features: reading ``nn.Sequential`` MLPs/CNNs into a
:class:`~mnfn.weightspace.WeightSpaceFeatures` batch, building modules back from one, and running
the ``B`` networks a batch describes without building modules (:func:`functional_forward`)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .activations import ACTIVATIONS, activation_fn, activation_for_module
from .symmetry import WeightSpaceError
from .weightspace import LayerSpec, WeightSpaceFeatures, WeightSpaceSpec

__all__ = ["spec_from_module", "features_from_modules", "build_module", "features_to_module", "functional_forward"]



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


# --- running the networks --------------------------------------------------------------------

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
