"""Equivariant linear layers between weight-space features (Monomial-NFN, HNP and NP in one class).

The symmetry of every neuron layer is data (``"monomial"`` reads it from the activations,
``"hnp"``/``"np"`` are the permutation-only presets of Zhou et al. 2023), and the layer is the sum
of the terms :func:`~mnfn.layers.terms.enumerate_terms` allows — nothing is written per layer
position. Internally tensors use a *folded* layout ``(B, C*k, *axes)`` with conv kernel positions
folded into channels; models stay in that layout between layers (:func:`fold` / :func:`unfold`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from ..weightspace import WeightSpaceError, WeightSpaceFeatures, WeightSpaceSpec
from .kernels import AccumulateMatmul, OuterAdd, RowColSums, SharedMatmul
from .terms import (MIX, TFIX, EinsumPlan, Group, SiteLayout, Term, enumerate_terms, plan_groups, plan_term,
                    resolve_symmetries, tensor_sites)

__all__ = ["EquivariantLinear", "fold", "unfold"]


def _compiling() -> bool:
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else False


def _add(a: Tensor, b: Tensor, compiling: bool) -> Tensor:
    """``a + b``; a row part ``(B, F, n0, 1)`` plus a column part ``(B, F, 1, n1)`` through
    :class:`~mnfn.layers.kernels.OuterAdd` (its backward reads the gradient once for both)."""
    if not compiling and a.dim() == 4 and b.dim() == 4:
        if a.shape[-1] == 1 < a.shape[-2] and b.shape[-2] == 1 < b.shape[-1]:
            return OuterAdd.apply(a, b)
        if b.shape[-1] == 1 < b.shape[-2] and a.shape[-2] == 1 < a.shape[-1]:
            return OuterAdd.apply(b, a)
    return a + b


def _load_per_term_checkpoint(module: "EquivariantLinear", state_dict: dict, prefix: str, *args) -> None:
    """Read a checkpoint written with one parameter per term (``params.N``) into the grouped storage."""
    keys = [f"{prefix}params.{n}" for n in range(len(module.terms))]
    if keys[0] not in state_dict:
        return
    missing = [k for k in keys if k not in state_dict]
    if missing:
        raise WeightSpaceError(f"checkpoint has per-term parameters but lacks {missing[0]}")
    old = [state_dict.pop(k) for k in keys]
    for k, gi in ((k, gi) for gi, k in enumerate(module._group_weight) if k is not None):
        state_dict[f"{prefix}weights.{k}"] = module._assemble(gi, old)
    for n, slot in enumerate(module._slots):
        if slot[0] == "x":
            state_dict[f"{prefix}extra.{slot[1]}"] = old[n]


def fold(features: WeightSpaceFeatures) -> list[Tensor]:
    """``[W1, b1, ...]`` with conv kernels folded into channels: ``(B, C*kh*kw, n_out, n_in)``."""
    out = []
    for w, b in features:
        if w.dim() > 4:
            B, C, n_out, n_in = w.shape[:4]
            w = w.permute(0, 1, *range(4, w.dim()), 2, 3).reshape(B, -1, n_out, n_in)
        out += [w, b]
    return out


def unfold(tensors: Sequence[Tensor], spec: WeightSpaceSpec) -> WeightSpaceFeatures:
    """Inverse of :func:`fold`."""
    ws, bs = [], []
    for i, layer in enumerate(spec.layers):
        w, b = tensors[2 * i], tensors[2 * i + 1]
        if layer.kernel:
            B, Ck, n_out, n_in = w.shape
            k = layer.kernel_size
            w = w.reshape(B, Ck // k, *layer.kernel, n_out, n_in)
            nk = len(layer.kernel)
            w = w.permute(0, 1, 2 + nk, 3 + nk, *range(2, 2 + nk))
        ws.append(w)
        bs.append(b)
    return WeightSpaceFeatures(tuple(ws), tuple(bs), spec)


class EquivariantLinear(nn.Module):
    """A complete equivariant linear map ``c_in -> c_out`` channels on the weight space of ``spec``.

    ``T_out = sum_{terms S -> T} einsum(theta_term, reduce(S))`` (+ a learned constant where the
    group allows one). With ``symmetries="monomial"`` a ReLU layer gets the scale rules, a tanh/sin
    layer the sign rules, any other activation the permutation (HNP) rules.

    Parameters: one tensor per term, ``self.params[n]`` for ``self.terms[n]``, of shape
    ``self.plans[n].param_shape`` (``(c_out*k_T, [c_in*k_S], fixed target sizes, fixed source sizes)``)
    and meaning ``self.plans[n].equation`` (:meth:`forward_reference` runs exactly those einsums).

    Execution (:meth:`forward_folded`) does not loop over terms: :func:`~mnfn.layers.terms.plan_groups`
    groups the terms that share their matched hidden axes into blocks, and each block is one batched
    matmul ``(B, F_out, H) = P (F_out, F_in) @ cat(sources) (B, F_in, H)`` (``F``: channels x kernel x
    fixed axes, ``H``: hidden axes). The learned constants are added inside the same call (``baddbmm``).

    Storage: the block matrix ``P`` of a group is itself the ``nn.Parameter`` (``self.weights``), and
    its terms' tensors are views of its blocks, so no call copies parameters into place (for the zoo
    HNP's 16 -> 16 layer that copy was ~1M numbers a call). Constants, and the terms of a group with
    zero blocks, are parameters of their own (``self.extra``). Checkpoints with one parameter per
    term (``params.N``, the layout before) load unchanged.
    """

    def __init__(self, spec: WeightSpaceSpec, c_in: int, c_out: int, symmetries: str | Sequence[str] = "monomial",
                 bias: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.c_in, self.c_out = c_in, c_out
        self.symmetries = resolve_symmetries(spec, symmetries)
        self.sites = tensor_sites(spec)
        terms = enumerate_terms(spec, self.symmetries)
        if not bias:
            terms = [t for t in terms if t.source is not None]
        self.terms: tuple[Term, ...] = tuple(terms)
        self.plans: tuple[EinsumPlan, ...] = tuple(plan_term(t, self.sites, c_in, c_out) for t in terms)
        self._build_execution_plan()
        self._build_storage()
        self.reset_parameters()
        self._register_load_state_dict_pre_hook(_load_per_term_checkpoint, with_module=True)

    def _build_storage(self) -> None:
        """``self.weights``: one matrix per zero-free group; ``self.extra``: every other term.
        ``self._slots[n]``: ``("w", k, r0, c0)`` (term ``n`` is the block at row/column offsets
        ``r0, c0`` of ``weights[k]``) or ``("x", j)`` (``extra[j]``)."""
        slots: list[tuple | None] = [None] * len(self.terms)
        weights, self._group_weight = [], [None] * len(self.groups)
        for gi, g in enumerate(self.groups):
            if g.zero_blocks:
                continue
            self._group_weight[gi] = len(weights)
            r0 = 0
            for ob, row in zip(g.outputs, g.blocks):
                c0 = 0
                for ib, n in zip(g.inputs, row):
                    slots[n] = ("w", len(weights), r0, c0)  # type: ignore[index]
                    c0 += ib.features
                r0 += ob.features
            weights.append(nn.Parameter(torch.empty(g.out_features, g.in_features)))
        extra = []
        for n, plan in enumerate(self.plans):
            if slots[n] is None:
                slots[n] = ("x", len(extra))
                extra.append(nn.Parameter(torch.empty(plan.param_shape)))
        self._slots = tuple(slots)
        self.weights = nn.ParameterList(weights)
        self.extra = nn.ParameterList(extra)

    def term_param(self, n: int) -> Tensor:
        """Term ``n``'s parameter in its own shape (a view into its group's matrix, or its own)."""
        slot = self._slots[n]
        if slot[0] == "x":
            return self.extra[slot[1]]
        _, k, r0, c0 = slot
        shape = self.plans[n].param_shape
        n_t, n_s = self._fixed_counts[n]
        rows = shape[0] * math.prod(shape[2:2 + n_t])
        block = self.weights[k][r0:r0 + rows, c0:c0 + math.prod(shape) // rows]
        p = block.reshape(shape[0], *shape[2:2 + n_t], shape[1], *shape[2 + n_t:])
        # (o, *p_t, i, *p_s) -> (o, i, *p_t, *p_s): the inverse of :meth:`_term_matrix`
        return p.permute(0, 1 + n_t, *range(1, 1 + n_t), *range(2 + n_t, 2 + n_t + n_s)) if n_t else p

    @property
    def params(self) -> tuple[Tensor, ...]:
        """Every term's parameter, in term order (views: writing them writes the layer)."""
        return tuple(self.term_param(n) for n in range(len(self.terms)))

    # -- planning (once, at construction) ------------------------------------------------------
    def _build_execution_plan(self) -> None:
        layouts, groups = plan_groups(self.terms, self.sites, self.symmetries, self.c_in, self.c_out)
        self.layouts: tuple[SiteLayout, ...] = tuple(layouts)
        self.groups: tuple[Group, ...] = tuple(groups)
        # Per term: (number of fixed target axes, number of fixed source axes) of its parameter, to
        # turn (o, i, *p_t, *p_s) into the matrix (o * prod p_t, i * prod p_s).
        self._fixed_counts: list[tuple[int, int]] = []
        for term, plan in zip(self.terms, self.plans):
            modes = dict(term.modes)
            if term.source is None:
                self._fixed_counts.append((len(plan.param_shape) - 1, 0))
                continue
            n_t = sum(modes[a.layer] in (MIX, TFIX) for a in self.sites[term.target].axes)
            self._fixed_counts.append((n_t, len(plan.param_shape) - 2 - n_t))
        # Where each learned constant goes: the group holding its target's fully matched output block.
        self._group_bias: list[list[tuple[int, int] | None]] = [[None] * len(g.outputs) for g in self.groups]
        self._late_bias: list[tuple[int, int]] = []  # (target, term) constants added after the matmuls
        for n, term in enumerate(self.terms):
            if term.source is not None:
                continue
            full = self.layouts[term.target].hidden_sizes
            for gi, g in enumerate(self.groups):
                hit = [r for r, ob in enumerate(g.outputs) if ob.target == term.target and ob.view == full]
                if hit:
                    self._group_bias[gi][hit[0]] = (n, g.outputs[hit[0]].features)
                    break
            else:
                self._late_bias.append((term.target, n))
        # Sources are reduced by sums, not means (the backward of a mean writes a full-size scaled
        # copy of the gradient; that of a sum is a broadcast view): 1/N goes into the matrix instead.
        self._inv_count: tuple[tuple[float, ...], ...] = tuple(
            tuple(1.0 / math.prod(self.layouts[ib.source].hidden_sizes[r] for r in ib.reduce) for ib in g.inputs)
            for g in self.groups)
        self._scaled = tuple(any(inv != 1.0 for inv in invs) for invs in self._inv_count)
        self._plan_reductions()
        self._plan_accumulation()
        self._column_scales: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}
        # Inverse of each site's (B, C*k, *axes) -> (B, C*k, *fixed, *hidden) permutation.
        self._unpermute = tuple(tuple(sorted(range(len(l.permutation)), key=l.permutation.__getitem__))
                                for l in self.layouts)

    def _plan_reductions(self) -> None:
        """Each reduced source ``(site, hidden axes summed)`` is computed once per forward, and from
        the smallest already-computed reduction of the same site that it contains (the total of a
        16 x 16 hidden weight from its row sums, not from the full tensor). That saves a full-size
        pass in the forward and one gradient accumulation into the full tensor in the backward
        (the total's gradient flows into the row sums' small one)."""
        needed = sorted({(ib.source, ib.reduce) for g in self.groups for ib in g.inputs if ib.reduce},
                        key=lambda k: (k[0], len(k[1]), k[1]))
        steps: list[tuple[tuple[int, tuple[int, ...]], tuple[int, tuple[int, ...]] | None, tuple[int, ...]]] = []
        for src, red in needed:
            sizes = self.layouts[src].hidden_sizes
            bases = [k for k, _, _ in steps if k[0] == src and set(k[1]) < set(red)]
            if not bases:
                steps.append(((src, red), None, tuple(2 + r for r in red)))
                continue
            base = min(bases, key=lambda k: math.prod(n for a, n in enumerate(sizes) if a not in k[1]))
            remaining = [a for a in range(len(sizes)) if a not in base[1]]
            steps.append(((src, red), base, tuple(2 + remaining.index(r) for r in red if r not in base[1])))
        # Row and column sums of a two-hidden-axis site taken from the full tensor: one pass for both.
        pairs = []
        for src in sorted({k[0] for k, _, _ in steps}):
            first = {k[1] for k, b, _ in steps if k[0] == src and b is None}
            if len(self.layouts[src].hidden_sizes) == 2 and {(0,), (1,)} <= first:
                pairs.append(src)
        self._reductions = tuple(s for s in steps if not (s[0][0] in pairs and s[1] is None and len(s[0][1]) == 1))
        self._pair_sums = tuple(pairs)

    def _plan_accumulation(self) -> None:
        """Groups whose single output is a target's fully matched block, where other groups also
        write that target, run last and add their product *in place* onto the others' sum
        (:class:`~mnfn.layers.kernels.AccumulateMatmul`): one full-size pass per such target instead of one per broadcast part.
        Their learned constant moves onto the target's first (broadcast, small) part."""
        writers = [0] * len(self.sites)
        for g in self.groups:
            for ob in g.outputs:
                writers[ob.target] += 1
        acc = []
        taken: set[int] = set()  # one accumulating group per target (size-1 axes make several look full)
        for gi, g in enumerate(self.groups):
            ob = g.outputs[0]
            ok = (len(g.outputs) == 1 and g.hidden_size > 1 and writers[ob.target] > 1
                  and ob.view == self.layouts[ob.target].hidden_sizes and ob.target not in taken)
            if ok:
                taken.add(ob.target)
            acc.append(ok)
        self._accumulate = tuple(acc)
        self._order = tuple(sorted(range(len(self.groups)), key=lambda gi: acc[gi]))
        #: target -> group whose constant is added to that target's first part instead
        self._early_bias = {self.groups[gi].outputs[0].target: gi for gi in range(len(self.groups))
                            if acc[gi] and self._group_bias[gi][0] is not None}

    def reset_parameters(self) -> None:
        """Fan-in aware init: each output entry sums ``fan_in`` inputs over all of its terms, so
        ``std = 1/sqrt(fan_in)`` keeps the output variance near the input variance at any depth."""
        fan_in = [0] * len(self.sites)
        for term, plan in zip(self.terms, self.plans):
            if term.source is not None:
                fan_in[term.target] += plan.fan_in
        with torch.no_grad():
            for n, (term, plan) in enumerate(zip(self.terms, self.plans)):
                p = self.term_param(n)
                if term.source is None:
                    p.zero_()
                else:
                    # drawn contiguous in the term's own shape, then placed: the same numbers for a
                    # seed whichever way the term is stored
                    bound = math.sqrt(3.0 / max(fan_in[term.target], 1))
                    p.copy_(torch.empty(plan.param_shape, dtype=p.dtype, device=p.device).uniform_(-bound, bound))

    def num_terms(self) -> int:
        return len(self.terms)

    # -- execution -----------------------------------------------------------------------------
    def _term_matrix(self, n: int, p: Tensor | None = None) -> Tensor:
        """Parameter of term ``n`` (or ``p`` in its shape) as the matrix ``(F_T, F_S)`` of the grouped layout."""
        p = self.term_param(n) if p is None else p
        n_t, n_s = self._fixed_counts[n]
        rows = p.shape[0] * math.prod(p.shape[2:2 + n_t])
        if n_t:  # (o, i, *p_t, *p_s) -> (o, *p_t, i, *p_s)
            p = p.permute(0, *range(2, 2 + n_t), 1, *range(2 + n_t, 2 + n_t + n_s))
        return p.reshape(rows, -1)

    def group_matrix(self, gi: int, sums: bool = False) -> Tensor:
        """The assembled parameter matrix ``(sum F_out, sum F_in)`` of group ``gi``, applied to the
        sources' means; ``sums=True``: the same map for sources reduced by sums (each input block's
        columns divided by the number of entries it sums)."""
        k = self._group_weight[gi]
        m = self.weights[k] if k is not None else self._assemble(gi)
        if sums and self._scaled[gi]:
            # one product with the columns' 1/N (cached per dtype) per group, not one per block
            m = m * self._column_scale(gi, m)
        return m

    def _assemble(self, gi: int, params: Sequence[Tensor] | None = None) -> Tensor:
        """Group ``gi``'s block matrix built from per-term tensors (``params``, default the layer's)."""
        g = self.groups[gi]

        def term(n: int) -> Tensor:
            return self._term_matrix(n, None if params is None else params[n])

        if len(g.blocks) == 1 and len(g.blocks[0]) == 1:
            return term(g.blocks[0][0])  # type: ignore[arg-type]
        first = next(n for row in g.blocks for n in row if n is not None)
        ref = self.term_param(first) if params is None else params[first]  # dtype and device of the zeros
        rows = []
        for ob, row in zip(g.outputs, g.blocks):
            rows.append(torch.cat([term(n) if n is not None else ref.new_zeros(ob.features, ib.features)
                                   for ib, n in zip(g.inputs, row)], 1))
        return torch.cat(rows, 0)

    def _column_scale(self, gi: int, like: Tensor) -> Tensor:
        """The 1/N of each input column of group ``gi``, made exactly in ``like``'s dtype (cached)."""
        key = (gi, like.dtype, like.device)
        scale = self._column_scales.get(key)
        if scale is None:
            g = self.groups[gi]
            scale = torch.cat([torch.full((ib.features,), inv, dtype=like.dtype, device=like.device)
                               for ib, inv in zip(g.inputs, self._inv_count[gi])])
            self._column_scales[key] = scale
        return scale

    def _bias_vector(self, gi: int) -> Tensor | None:
        entries = self._group_bias[gi]
        if all(e is None for e in entries):
            return None
        g = self.groups[gi]
        parts = [self.term_param(e[0]).reshape(-1) if e is not None else self.term_param(0).new_zeros(ob.features)
                 for e, ob in zip(entries, g.outputs)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def forward_folded(self, xs: Sequence[Tensor]) -> list[Tensor]:
        """The layer on folded tensors ``(B, c_in*k, *axes)`` -> ``(B, c_out*k, *axes)``."""
        B = xs[0].shape[0]
        feats = []
        for lay, x in zip(self.layouts, xs):
            if not lay.is_identity:
                x = x.permute(lay.permutation)
            feats.append(x.reshape(B, -1, *lay.hidden_sizes))
        compiling = _compiling()
        reduced: dict[tuple[int, tuple[int, ...]], Tensor] = {}
        for src in self._pair_sums:
            x = feats[src]
            if compiling:
                row, col = x.sum(-1), x.sum(-2)
            else:
                # The sums and the full product read the same flat tensor, so autograd adds their
                # gradients in place (a gradient arriving through a reshape is a view: added out of place).
                n0, n1 = x.shape[2:]
                feats[src] = x = x.reshape(B, -1, n0 * n1)
                row, col = RowColSums.apply(x, n0, n1)
            reduced[(src, (1,))], reduced[(src, (0,))] = row, col
        for key, base, dims in self._reductions:
            reduced[key] = (feats[key[0]] if base is None else reduced[base]).sum(dim=dims)
        outs: list[Tensor | None] = [None] * len(self.sites)
        owned = [False] * len(self.sites)  # outs[t] is a fresh tensor of this call (safe to write in place)
        for gi in self._order:
            g = self.groups[gi]
            parts = []
            for ib in g.inputs:
                x = reduced[(ib.source, ib.reduce)] if ib.reduce else feats[ib.source]
                parts.append(x if x.shape == (B, ib.features, g.hidden_size) else x.reshape(B, ib.features, g.hidden_size))
            x = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            # Sums, not means, reach the product: the 1/N of each input column goes onto whichever
            # operand is smaller, the (F_out, F_in) matrix or the (B, F_in, H) input (for HNP's
            # fully pooled group, 800 x 800 against 32 x 800: one pass over 25x fewer numbers).
            if self._scaled[gi] and B * g.hidden_size < g.out_features:
                w = self.group_matrix(gi)
                x = x * self._column_scale(gi, x).reshape(1, -1, 1)
            else:
                w = self.group_matrix(gi, sums=True)
            if self._accumulate[gi] and not compiling:
                ob = g.outputs[0]
                prev = outs[ob.target]
                assert prev is not None
                # A fresh full-size tensor holding the other parts' sum (their broadcast add makes one).
                fresh = owned[ob.target] and tuple(prev.shape) == (B, ob.features, *ob.view) and prev.is_contiguous()
                acc = prev if fresh else prev.expand(B, ob.features, *ob.view).clone(
                    memory_format=torch.contiguous_format)
                outs[ob.target] = AccumulateMatmul.apply(w, x, acc)
                continue
            bias = self._bias_vector(gi)
            if g.hidden_size == 1:
                x2 = x.reshape(B, -1)
                y = (torch.addmm(bias, x2, w.t()) if bias is not None else torch.mm(x2, w.t())).unsqueeze(-1)
            elif compiling:
                # Under torch.compile: one GEMM over (F_in, B*H) instead of bmm on an expanded weight,
                # which inductor materialises (B copies of the matrix) in slow generated kernels.
                xt = x.transpose(0, 1).reshape(x.shape[1], -1)
                y = torch.addmm(bias.unsqueeze(-1), w, xt) if bias is not None else torch.mm(w, xt)
                y = y.view(-1, B, g.hidden_size).transpose(0, 1)
            elif len(g.outputs) == 1:
                y = SharedMatmul.apply(w, x, bias, (B, g.outputs[0].features, *g.outputs[0].view))
            else:
                y = SharedMatmul.apply(w, x, bias)
            r0 = 0
            for ob in g.outputs:
                part = y[:, r0:r0 + ob.features] if len(g.outputs) > 1 else y
                r0 += ob.features
                if tuple(part.shape) != (B, ob.features, *ob.view):
                    part = part.reshape(B, ob.features, *ob.view)
                prev = outs[ob.target]
                if prev is None:
                    eb = self._early_bias.get(ob.target)
                    if eb is not None and not compiling:
                        c = self._bias_vector(eb)
                        assert c is not None
                        part = part + c.reshape(1, -1, *([1] * len(ob.view)))
                        owned[ob.target] = True
                    outs[ob.target] = part
                else:
                    outs[ob.target] = _add(prev, part, compiling)
                    owned[ob.target] = True
        for t, n in self._late_bias:
            c = self.term_param(n).reshape(1, -1, *([1] * len(self.layouts[t].hidden)))
            outs[t] = c if outs[t] is None else outs[t] + c
        result = []
        for site, lay, unperm, y in zip(self.sites, self.layouts, self._unpermute, outs):
            assert y is not None
            shape = (B, self.c_out * site.kernel_size, *lay.fixed_sizes, *lay.hidden_sizes)
            if tuple(y.shape) != shape:
                y = y.expand(B, -1, *lay.hidden_sizes).reshape(shape)
            result.append(y if lay.is_identity else y.permute(unperm))
        return result

    def forward_reference(self, xs: Sequence[Tensor]) -> list[Tensor]:
        """The same layer, one ``torch.einsum`` per term (the literal reading of the term table).
        Slow; kept to test the grouped execution against."""
        B = xs[0].shape[0]
        outs: list[Tensor | None] = [None] * len(self.sites)
        reduced: dict[tuple[int, tuple[int, ...]], Tensor] = {}
        for term, plan, p in zip(self.terms, self.plans, self.params):
            if term.source is None:
                y = torch.einsum(plan.equation.replace("->bo", "->o"), p).unsqueeze(0)
            else:
                key = (term.source, plan.reduce_dims)
                x = reduced.get(key)
                if x is None:
                    x = xs[term.source]
                    if plan.reduce_dims:
                        x = x.mean(dim=tuple(d + 2 for d in plan.reduce_dims))
                    reduced[key] = x
                y = torch.einsum(plan.equation, x, p)
            for pos, _ in plan.broadcast:
                y = y.unsqueeze(pos + 2)
            prev = outs[term.target]
            outs[term.target] = y if prev is None else prev + y
        result = []
        for site, y in zip(self.sites, outs):
            assert y is not None
            result.append(y.expand(B, self.c_out * site.kernel_size, *site.sizes))
        return result

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        if features.channels != self.c_in:
            raise WeightSpaceError(f"layer expects {self.c_in} channels, features have {features.channels}")
        if features.spec.weight_shapes() != self.spec.weight_shapes():
            raise WeightSpaceError(
                f"layer built for [{self.spec.describe()}] got features of [{features.spec.describe()}]"
            )
        return unfold(self.forward_folded(fold(features)), features.spec)

    def extra_repr(self) -> str:
        return (f"{self.c_in}->{self.c_out}, symmetries={self.symmetries}, terms={len(self.terms)}, "
                f"matmuls={len(self.groups)}")
