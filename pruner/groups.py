"""Which channels are tied, and where a channel mask goes.

The graph is read once (``analyze``). Every tensor's last axis is described by a
*channel map*: for each position, the channel group it belongs to and the channel
index inside that group (group -1: not prunable, e.g. the model input). Each layer's
kind (``pruner.layers``: one class per layer kind, registered by layer class)
propagates the maps; this module only keeps the books: new groups, groups tied by a
merge (union-find), groups blocked by a layer that cannot be cut.

Groups feeding the model output are never pruned. A mask goes on every tensor that is
produced by a maskable kind (producer, depthwise, channelwise, merge), holds prunable
channels, and is not consumed only by a single kind that absorbs masks (channelwise,
merge): i.e. after the nonlinearity (after BatchNorm if there is none), after a
residual add rather than on one of its branches, so every layer that reads a pruned
channel reads zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import PrunerError
from .graph import calls
from .layers import ChannelMap, LayerKind, UnsupportedLayerError, kind_for

__all__ = ['ChannelGroup', 'ChannelMap', 'GroupTable', 'UnsupportedLayerError', 'analyze', 'describe']


# ---------------------------------------------------------------------------
# The analysis
# ---------------------------------------------------------------------------


@dataclass
class ChannelGroup:
    """Channels tied together: one mask of ``channels`` entries."""

    index: int  # position among all groups (topological, by first producer)
    channels: int
    producers: list[str]  # producer layer names, in topological order
    prunable: bool = True
    reason: str = ''  # why not prunable
    mask_points: list[str] = field(default_factory=list)  # names of layers whose output is masked

    @property
    def name(self) -> str:
        return self.producers[0]


@dataclass
class GroupTable:
    """Result of ``analyze``: groups, per-layer kinds and channel maps."""

    groups: list[ChannelGroup]
    kinds: dict[str, LayerKind]  # layer name -> its kind (pruner.layers)
    maps: dict[str, ChannelMap]  # layer name -> map of its (first) output
    input_maps: dict[str, list[ChannelMap]]  # layer name -> maps of its inputs
    order: list[str]  # layer names, topological
    mask_points: dict[str, ChannelMap]  # layer name whose output is masked -> its map

    @property
    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def group_of(self, layer_name: str) -> ChannelGroup:
        for g in self.groups:
            if layer_name in g.producers:
                return g
        raise KeyError(f"layer '{layer_name}' is not a producer of any channel group")

    def keep_positions(self, cmap: ChannelMap, keep: dict[int, np.ndarray]) -> np.ndarray:
        """Positions of ``cmap`` that survive when group g keeps channels ``keep[g]``."""
        alive = np.ones(len(cmap.group), dtype=bool)
        for g, kept in keep.items():
            sel = cmap.group == g
            if np.any(sel):
                alive[sel] = np.isin(cmap.channel[sel], kept)
        return np.flatnonzero(alive)

    def mask_vector(self, cmap: ChannelMap, masks: dict[int, np.ndarray]) -> np.ndarray:
        """0/1 vector for a tensor with map ``cmap`` given per-group 0/1 masks."""
        out = np.ones(len(cmap.group), dtype=np.float32)
        for g, mask in masks.items():
            sel = cmap.group == g
            out[sel] = mask[cmap.channel[sel]]
        return out


class _UnionFind:
    def __init__(self):
        self.parent: list[int] = []

    def add(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class _Books:
    """What ``LayerKind.propagate`` may do to the groups: create one, tie several, block some."""

    def __init__(self):
        self.uf = _UnionFind()
        self.source_of: list[str] = []  # source id -> producer name
        self.source_width: list[int] = []
        self.blocked: dict[int, str] = {}  # source id -> reason

    def new_group(self, call, width: int) -> ChannelMap:
        s = self.uf.add()
        self.source_of.append(call.name)
        self.source_width.append(width)
        return ChannelMap(np.full(width, s), np.arange(width))

    def tie(self, cmaps: list[ChannelMap]) -> None:
        """Tie the groups of maps that each carry one whole group."""
        for m in cmaps[1:]:
            self.uf.union(int(cmaps[0].group[0]), int(m.group[0]))

    def block(self, cmap: ChannelMap, reason: str) -> None:
        for s in np.unique(cmap.group):
            if s >= 0:
                self.blocked.setdefault(int(s), reason)


def analyze(model, exclude_first: bool = False, exclude: tuple[str, ...] = ()) -> GroupTable:
    """Find the channel groups of a functional Keras model.

    ``exclude_first``: never prune the group of the first producer (e.g. the first
    conv of a generator). ``exclude``: layer names whose groups are never pruned.
    Raises ``UnsupportedLayerError`` naming the first layer the pruner cannot handle.
    """
    order = calls(model)
    graph = _Books()
    kinds: dict[str, LayerKind] = {}
    maps: dict[int, ChannelMap] = {}  # id(tensor) -> map (source ids, resolved later)
    input_maps: dict[str, list[ChannelMap]] = {}

    for call in order:
        kind = kind_for(call.layer)
        kinds[call.name] = kind
        ins = [maps[id(t)] for t in call.inputs]
        input_maps[call.name] = ins
        out = kind.propagate(call, ins, call.outputs[0].shape[-1], graph)
        for t in call.outputs:
            maps[id(t)] = out
        if len(call.outputs) > 1:
            graph.block(out, f"layer '{call.name}' has several outputs")

    for t in model.outputs:
        graph.block(maps[id(t)], "it feeds the model's output")
    uf, source_of, source_width, blocked = graph.uf, graph.source_of, graph.source_width, graph.blocked

    # Resolve sources to groups (topological order of first producer).
    root_to_group: dict[int, int] = {}
    groups: list[ChannelGroup] = []
    for s in range(len(source_of)):
        root = uf.find(s)
        if root not in root_to_group:
            root_to_group[root] = len(groups)
            groups.append(ChannelGroup(len(groups), source_width[s], []))
        groups[root_to_group[root]].producers.append(source_of[s])
    for s, reason in blocked.items():
        g = groups[root_to_group[uf.find(s)]]
        if g.prunable:
            g.prunable, g.reason = False, reason
    producers_in_order = [c.name for c in order if kinds[c.name].width_key is not None]
    if exclude_first and producers_in_order:
        g = next(g for g in groups if producers_in_order[0] in g.producers)
        if g.prunable:
            g.prunable, g.reason = False, 'first layer excluded (exclude_first=True)'
    for name in exclude:
        g = next((g for g in groups if name in g.producers), None)
        if g is None:
            raise PrunerError(f"exclude names '{name}', which is not a prunable layer of the model")
        if g.prunable:
            g.prunable, g.reason = False, f"excluded by name ('{name}')"

    def resolve(m: ChannelMap) -> ChannelMap:
        group = np.array([root_to_group[uf.find(int(s))] if s >= 0 else -1 for s in m.group], dtype=np.int64)
        # Positions of unprunable groups behave like the input: never cut.
        for g in groups:
            if not g.prunable:
                group[group == g.index] = -1
        return ChannelMap(group, m.channel.astype(np.int64))

    resolved_cache: dict[int, ChannelMap] = {}

    def res(m: ChannelMap) -> ChannelMap:
        if id(m) not in resolved_cache:
            resolved_cache[id(m)] = resolve(m)
        return resolved_cache[id(m)]

    out_maps = {c.name: res(maps[id(c.outputs[0])]) for c in order}
    in_maps = {name: [res(m) for m in ms] for name, ms in input_maps.items()}

    # Mask points.
    mask_points: dict[str, ChannelMap] = {}
    for call in order:
        if not kinds[call.name].maskable:
            continue
        cmap = out_maps[call.name]
        if not np.any(cmap.group >= 0):
            continue
        if len(call.consumers) == 1 and kinds[call.consumers[0].name].absorbs_mask:
            continue
        mask_points[call.name] = cmap
        for g in np.unique(cmap.group[cmap.group >= 0]):
            groups[int(g)].mask_points.append(call.name)

    return GroupTable(groups, kinds, out_maps, in_maps, [c.name for c in order], mask_points)


def describe(table: GroupTable) -> str:
    """A printable summary of the groups."""
    lines = []
    for g in table.groups:
        state = 'prunable' if g.prunable else f'fixed ({g.reason})'
        lines.append(f'group {g.index}: {g.channels} ch, producers {g.producers}, masks after {g.mask_points}, {state}')
    return '\n'.join(lines)
