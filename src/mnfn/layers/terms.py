"""The one rule that generates every term of an equivariant linear layer.

Every weight-space tensor is a list of *axes*, each indexing one neuron layer:
``W(i)`` has a row axis (layer ``i``, character ``d_i``) and a column axis (layer ``i-1``,
character ``1/d_{i-1}``); ``b(i)`` has one axis (layer ``i``, character ``d_i``). Conv kernel
positions are not axes: the group does not act on them, so they are folded into channels.

The group is a product over neuron layers, and each tensor's representation is a tensor
product over layers, so the space of equivariant maps ``S -> T`` factorises layer by layer.
For a neuron layer ``l`` with symmetry

* ``fixed`` (inputs, outputs): any linear map; a free parameter per (target, source) position;
* ``scale`` / ``sign``: ``T`` and ``S`` must both index ``l`` with equal character (for signs
  ``d = 1/d``, so rows and columns match too); the index passes through (``match``). Summing or
  broadcasting a scaled/signed axis would mix different factors, so it is forbidden;
* ``perm``: both index ``l``: ``match`` or ``ones`` (average, then broadcast); only ``S``:
  ``sum`` (average away); only ``T``: ``broadcast`` (the DeepSets/NFN terms).

A term is one choice per layer. A learned constant is allowed on a target with no scaled or
signed axis. :func:`enumerate_terms` returns the table of all terms; :func:`plan_term` gives each
its parameter shape and its meaning as one ``einsum``, and :func:`plan_groups` arranges the terms
into a few batched matmuls for execution (the table stays the single source of truth).
Completeness is tested numerically against the dimension of the commutant.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass
from typing import Sequence

from ..weightspace import Symmetry, WeightSpaceError, WeightSpaceSpec

__all__ = ["Axis", "TensorSite", "Term", "tensor_sites", "enumerate_terms", "resolve_symmetries", "EinsumPlan",
           "plan_term", "SiteLayout", "site_layout", "InputBlock", "OutputBlock", "Group", "plan_groups"]

# Per-layer modes of a term.
MATCH = "match"  # index passes through (delta)
ONES = "ones"  # perm: average over the source index, broadcast over the target index
SUM = "sum"  # perm: source-only axis averaged away
BROADCAST = "broadcast"  # perm: target-only axis, broadcast
MIX = "mix"  # fixed: free (target position, source position) parameter
TFIX = "tfix"  # fixed, target only: a parameter per target position
SFIX = "sfix"  # fixed, source only: a parameter per source position


@dataclass(frozen=True)
class Axis:
    layer: int  # neuron layer it indexes (0..L)
    exponent: int  # +1 for a row (d), -1 for a column (1/d)


@dataclass(frozen=True)
class TensorSite:
    """One weight or bias tensor of the weight space."""

    index: int  # position in the flat list [W1, b1, W2, b2, ...]
    name: str  # "W3", "b1"
    layer: int  # 1..L
    axes: tuple[Axis, ...]
    sizes: tuple[int, ...]  # sizes of the axes
    kernel: tuple[int, ...]  # conv kernel shape (folded into channels), () for dense/bias

    @property
    def kernel_size(self) -> int:
        k = 1
        for s in self.kernel:
            k *= s
        return k


@dataclass(frozen=True)
class Term:
    """``target <- source`` with one mode per neuron layer indexed by either tensor."""

    target: int
    source: int | None  # None: the learned constant (bias)
    modes: tuple[tuple[int, str], ...]  # (neuron layer, mode), sorted by layer

    def mode(self, layer: int) -> str | None:
        return dict(self.modes).get(layer)


def tensor_sites(spec: WeightSpaceSpec) -> list[TensorSite]:
    """The ``2L`` tensors of a weight space, in feature order ``W1, b1, ..., WL, bL``."""
    sites = []
    for i, layer in enumerate(spec.layers, 1):
        sites.append(TensorSite(2 * (i - 1), f"W{i}", i, (Axis(i, 1), Axis(i - 1, -1)), (layer.n_out, layer.n_in),
                                layer.kernel))
        sites.append(TensorSite(2 * (i - 1) + 1, f"b{i}", i, (Axis(i, 1),), (layer.n_out,), ()))
    return sites


def resolve_symmetries(spec: WeightSpaceSpec, symmetries: str | Sequence[str] = "monomial") -> tuple[str, ...]:
    """Per-neuron-layer symmetry ``(s_0, ..., s_L)``.

    ``"monomial"``: read from the activations (fixed ends); ``"hnp"``: every hidden layer
    permutation-only; ``"np"``: every layer, inputs and outputs included, permutation-only.
    """
    L = spec.num_layers
    if isinstance(symmetries, str):
        if symmetries == "monomial":
            return spec.neuron_symmetries()
        if symmetries == "hnp":
            return (Symmetry.FIXED, *([Symmetry.PERM] * (L - 1)), Symmetry.FIXED)
        if symmetries == "np":
            return tuple([Symmetry.PERM] * (L + 1))
        raise WeightSpaceError(f"unknown symmetry preset {symmetries!r}; use 'monomial', 'hnp', 'np' or a tuple")
    syms = tuple(symmetries)
    if len(syms) != L + 1 or any(s not in Symmetry.ALL for s in syms):
        raise WeightSpaceError(f"need {L + 1} symmetries from {Symmetry.ALL}, got {syms!r}")
    return syms


def _layer_options(sym: str, t_exp: int | None, s_exp: int | None) -> list[str]:
    """Allowed modes for one neuron layer, given its exponent in target and source (None: absent)."""
    if t_exp is None and s_exp is None:
        return [""]
    if sym == Symmetry.FIXED:
        if t_exp is not None and s_exp is not None:
            return [MIX]
        return [TFIX] if t_exp is not None else [SFIX]
    if sym == Symmetry.PERM:
        if t_exp is not None and s_exp is not None:
            return [MATCH, ONES]
        return [BROADCAST] if t_exp is not None else [SUM]
    if t_exp is None or s_exp is None:
        return []  # a scaled/signed axis can be neither created nor summed
    if sym == Symmetry.SCALE:
        return [MATCH] if t_exp == s_exp else []
    if sym == Symmetry.SIGN:
        return [MATCH]  # d = 1/d for signs: rows and columns carry the same factor
    raise WeightSpaceError(f"unknown symmetry {sym!r}")


def enumerate_terms(spec: WeightSpaceSpec, symmetries: Sequence[str]) -> list[Term]:
    """All terms of the complete equivariant linear layer for ``symmetries`` (one per neuron layer)."""
    sites = tensor_sites(spec)
    terms: list[Term] = []
    for t in sites:
        t_exp = {a.layer: a.exponent for a in t.axes}
        for s in sites:
            s_exp = {a.layer: a.exponent for a in s.axes}
            layers = sorted(set(t_exp) | set(s_exp))
            options = [_layer_options(symmetries[l], t_exp.get(l), s_exp.get(l)) for l in layers]
            for combo in itertools.product(*options):
                terms.append(Term(t.index, s.index, tuple((l, m) for l, m in zip(layers, combo) if m)))
        # A constant is invariant, so it may only land where the group acts trivially up to permutation.
        if all(symmetries[a.layer] in (Symmetry.FIXED, Symmetry.PERM) for a in t.axes):
            modes = tuple((a.layer, TFIX if symmetries[a.layer] == Symmetry.FIXED else BROADCAST)
                          for a in sorted(t.axes, key=lambda a: a.layer))
            terms.append(Term(t.index, None, modes))
    return terms


@dataclass(frozen=True)
class EinsumPlan:
    """How one term is computed: reduce source axes, einsum with the parameter, broadcast target axes."""

    reduce_dims: tuple[int, ...]  # source axis positions (after the batch and channel dims) to average
    equation: str
    param_shape: tuple[int, ...]  # (c_out * kT, [c_in * kS], fixed target sizes..., fixed source sizes...)
    broadcast: tuple[tuple[int, int], ...]  # (target axis position, size) to unsqueeze/expand, ascending
    fan_in: int  # inputs summed into one output entry by this term (for initialisation)


def plan_term(term: Term, sites: Sequence[TensorSite], c_in: int, c_out: int) -> EinsumPlan:
    """Turn a term into an einsum over ``(B, C*k, *axes)`` tensors (kernels folded into channels)."""
    t = sites[term.target]
    letters = iter(string.ascii_letters.replace("b", "").replace("o", "").replace("i", ""))
    modes = dict(term.modes)
    c_out_k = c_out * t.kernel_size
    if term.source is None:
        # Constant: parameter over fixed target axes, broadcast over permuted ones.
        t_letters, p_letters, p_shape, bcast = [], [], [c_out_k], []
        for n, a in enumerate(t.axes):
            if modes[a.layer] == TFIX:
                ch = next(letters)
                t_letters.append(ch)
                p_letters.append(ch)
                p_shape.append(t.sizes[n])
            else:
                bcast.append((n, t.sizes[n]))
        eq = f"o{''.join(p_letters)}->bo{''.join(t_letters)}"
        return EinsumPlan((), eq, tuple(p_shape), tuple(bcast), 1)
    s = sites[term.source]
    s_pos = {a.layer: n for n, a in enumerate(s.axes)}
    reduce_dims = tuple(sorted(s_pos[l] for l, m in modes.items() if m in (SUM, ONES)))
    # Letters for the source axes that survive the reduction.
    s_letter: dict[int, str] = {}
    for l in sorted(s_pos, key=lambda l: s_pos[l]):
        if modes.get(l) not in (SUM, ONES):
            s_letter[l] = next(letters)
    in_letters = "".join(s_letter[l] for l in sorted(s_letter, key=lambda l: s_pos[l]))
    out_letters, p_t, p_s, p_shape_t, p_shape_s, bcast = [], [], [], [], [], []
    fan_in = c_in * s.kernel_size
    for n, a in enumerate(t.axes):
        m = modes[a.layer]
        if m == MATCH:
            out_letters.append(s_letter[a.layer])
        elif m in (MIX, TFIX):
            ch = next(letters)
            out_letters.append(ch)
            p_t.append(ch)
            p_shape_t.append(t.sizes[n])
        elif m in (ONES, BROADCAST):
            bcast.append((n, t.sizes[n]))
        else:
            raise AssertionError(f"mode {m} on a target axis")
    for l, n in sorted(s_pos.items(), key=lambda kv: kv[1]):
        if modes.get(l) in (MIX, SFIX):
            p_s.append(s_letter[l])
            p_shape_s.append(s.sizes[n])
            fan_in *= s.sizes[n]
    eq = f"bi{in_letters},oi{''.join(p_t)}{''.join(p_s)}->bo{''.join(out_letters)}"
    shape = (c_out_k, c_in * s.kernel_size, *p_shape_t, *p_shape_s)
    return EinsumPlan(reduce_dims, eq, shape, tuple(bcast), fan_in)


# --- execution plan: terms grouped into batched matmuls -------------------------------------------
#
# Every term is ``Y[b, F_T, H_M] = P_term[F_T, F_S] @ reduce(X_S)[b, F_S, H_M]`` followed by a
# broadcast over the target's unmatched hidden axes, where
#
# * ``F`` ("features") are the channels, the folded kernel positions and the *fixed* axes of a
#   tensor, in that order (a fixed axis is mixed by free parameters, so it is just more channels);
# * ``H`` are its hidden (permuted / scaled / signed) axes, in tensor order; ``reduce`` averages the
#   source's ``sum``/``ones`` axes, and ``H_M`` are the ``match``ed axes that survive.
#
# So the terms that share the matched hidden axes ``M`` are one block matrix applied to the
# concatenation of their (reduced) sources: terms connected through a shared source or target
# form a *group*, executed as one ``bmm`` whose parameter matrix is assembled from the per-term
# parameters (a missing (target, source) pair inside a group is a zero block). The table of
# terms stays the single source of truth: :func:`plan_groups` only re-arranges it.


@dataclass(frozen=True)
class SiteLayout:
    """A tensor in ``(B, F, *H)`` form: ``F = channels * kernel * fixed axes``, ``H`` the hidden axes."""

    fixed: tuple[int, ...]  # axis positions of fixed axes (in tensor order)
    hidden: tuple[int, ...]  # axis positions of hidden axes (in tensor order)
    fixed_sizes: tuple[int, ...]
    hidden_sizes: tuple[int, ...]
    feat_per_channel: int  # kernel size * product of fixed sizes

    @property
    def permutation(self) -> tuple[int, ...]:
        """Dims of the folded ``(B, C*k, *axes)`` tensor in ``(B, C*k, *fixed, *hidden)`` order."""
        return (0, 1, *(p + 2 for p in self.fixed), *(p + 2 for p in self.hidden))

    @property
    def is_identity(self) -> bool:
        return self.permutation == tuple(range(len(self.permutation)))


def site_layout(site: TensorSite, symmetries: Sequence[str]) -> SiteLayout:
    from ..weightspace import Symmetry as _S

    fixed = tuple(n for n, a in enumerate(site.axes) if symmetries[a.layer] == _S.FIXED)
    hidden = tuple(n for n, a in enumerate(site.axes) if symmetries[a.layer] != _S.FIXED)
    fsz = tuple(site.sizes[n] for n in fixed)
    k = site.kernel_size
    for s in fsz:
        k *= s
    return SiteLayout(fixed, hidden, fsz, tuple(site.sizes[n] for n in hidden), k)


@dataclass(frozen=True)
class InputBlock:
    source: int
    reduce: tuple[int, ...]  # positions *within the source's hidden axes* to average
    features: int  # F_S = c_in * feat_per_channel


@dataclass(frozen=True)
class OutputBlock:
    target: int
    view: tuple[int, ...]  # per hidden axis of the target: its size if matched, else 1 (broadcast)
    features: int  # F_T = c_out * feat_per_channel


@dataclass(frozen=True)
class Group:
    """Terms sharing matched hidden layers ``matched``, executed as one (batched) matmul.

    ``blocks[r][c]`` is the index of the term mapping input block ``c`` to output block ``r``
    (``None``: a zero block). The parameter matrix is ``(sum F_out, sum F_in)``.
    """

    matched: tuple[int, ...]  # neuron layers of the matched hidden axes, in tensor order
    hidden_size: int  # product of the matched axes' sizes
    inputs: tuple[InputBlock, ...]
    outputs: tuple[OutputBlock, ...]
    blocks: tuple[tuple[int | None, ...], ...]

    @property
    def in_features(self) -> int:
        return sum(b.features for b in self.inputs)

    @property
    def out_features(self) -> int:
        return sum(b.features for b in self.outputs)

    @property
    def zero_blocks(self) -> int:
        return sum(t is None for row in self.blocks for t in row)


def _term_blocks(term: Term, sites: Sequence[TensorSite], layouts: Sequence[SiteLayout], c_in: int, c_out: int
                 ) -> tuple[tuple[int, ...], InputBlock, OutputBlock]:
    modes = dict(term.modes)
    t, s = sites[term.target], sites[term.source]  # type: ignore[index]
    lt, ls = layouts[term.target], layouts[term.source]  # type: ignore[index]
    reduce = tuple(h for h, p in enumerate(ls.hidden) if modes[s.axes[p].layer] in (SUM, ONES))
    s_matched = tuple(s.axes[p].layer for p in ls.hidden if modes[s.axes[p].layer] == MATCH)
    t_matched = tuple(t.axes[p].layer for p in lt.hidden if modes[t.axes[p].layer] == MATCH)
    if s_matched != t_matched:  # cannot happen for chain-structured nets (one tensor per layer pair)
        raise AssertionError(f"matched axes in different orders: {term}")
    view = tuple(t.sizes[p] if modes[t.axes[p].layer] == MATCH else 1 for p in lt.hidden)
    return (s_matched, InputBlock(term.source, reduce, c_in * ls.feat_per_channel),  # type: ignore[arg-type]
            OutputBlock(term.target, view, c_out * lt.feat_per_channel))


def plan_groups(terms: Sequence[Term], sites: Sequence[TensorSite], symmetries: Sequence[str], c_in: int,
                c_out: int) -> tuple[list[SiteLayout], list[Group]]:
    """Group the (non-constant) terms into connected blocks of one matmul each."""
    layouts = [site_layout(s, symmetries) for s in sites]
    by_matched: dict[tuple[int, ...], list[tuple[int, InputBlock, OutputBlock]]] = {}
    for n, term in enumerate(terms):
        if term.source is None:
            continue
        m, ib, ob = _term_blocks(term, sites, layouts, c_in, c_out)
        by_matched.setdefault(m, []).append((n, ib, ob))
    groups = []
    for m, items in by_matched.items():
        # Connected components of the bipartite graph input blocks <-> output blocks (union-find).
        parent: dict[object, object] = {}

        def find(x: object) -> object:
            while parent.setdefault(x, x) != x:
                x = parent[x]
            return x

        for _, ib, ob in items:
            parent[find(("i", ib))] = find(("o", ob))
        comps: dict[object, list[tuple[int, InputBlock, OutputBlock]]] = {}
        for it in items:
            comps.setdefault(find(("o", it[2])), []).append(it)
        for comp in comps.values():
            ins = list(dict.fromkeys(ib for _, ib, _ in comp))
            outs = list(dict.fromkeys(ob for _, _, ob in comp))
            table: list[list[int | None]] = [[None] * len(ins) for _ in outs]
            for n, ib, ob in comp:
                table[outs.index(ob)][ins.index(ib)] = n
            h = 1
            for size in outs[0].view:  # matched sizes (1 where broadcast): the same for every block
                h *= size
            groups.append(Group(m, h, tuple(ins), tuple(outs), tuple(tuple(r) for r in table)))
    return layouts, groups
