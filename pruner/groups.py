"""Which channels are tied, and where a channel mask goes.

The graph is read once (``analyze``). Every tensor's last axis is described by a
*channel map*: for each position, the channel group it belongs to and the channel
index inside that group (group -1: not prunable, e.g. the model input). Layer kinds
propagate maps through one table, ``LAYER_TABLE``, which also says how each kind cuts
its outputs and its inputs (in the spirit of Torch-Pruning's pruner table):

- producer (Dense, Conv1D/2D/3D, Conv2DTranspose, their QKeras Q-versions): creates a
  new channel group; cutting outputs slices the kernel's output axis and the bias,
  cutting inputs slices the kernel's input axis.
- depthwise (DepthwiseConv2D/QDepthwiseConv2D): passes channels through (output
  channel ``c*m+k`` is tied to input channel ``c``); cut both by its input channels.
- channelwise (BatchNormalization, activations, QActivation, PReLU): per-channel, cut
  its per-channel parameters.
- data (pooling, padding, up-sampling, dropout, ...): per-channel, no parameters,
  maps zero to zero.
- merge (Add, Subtract, Multiply, Maximum, Minimum, Average, and Concatenate along a
  non-channel axis): ties the channel groups of its inputs (one shared mask).
- concat (Concatenate on the channel axis): the output map is the inputs' maps one
  after another (index offsets).
- flatten (Flatten, Reshape to 1-D): position ``p`` of the output carries channel
  ``p mod C`` of the input (channels-last), so a following Dense cuts input rows.
- block (Softmax, Reshape, Permute, Lambda, depth-to-space layers): cannot be cut;
  the groups feeding it are never pruned, its output is unprunable.

Groups feeding the model output are never pruned. A mask goes on every tensor that is
produced by a producer, a depthwise, a channelwise or a merge layer, holds prunable
channels, and is not consumed only by a single channelwise or merge layer: i.e. after
the nonlinearity (after BatchNorm if there is none), after a residual add rather than
on one of its branches, so every layer that reads a pruned channel reads zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import PrunerError
from .graph import calls


class UnsupportedLayerError(PrunerError):
    """A layer the pruner cannot see through."""


# ---------------------------------------------------------------------------
# The table: layer class -> rule
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How one layer kind moves channels and how it is cut.

    ``kind``: producer | depthwise | channelwise | data | merge | concat | flatten |
    block | input | mask. For producers: ``width_key`` is the config key of the output
    width; ``out_axis``/``in_axis`` are the kernel axes of output/input channels
    (negative, counted from the end).
    """

    kind: str
    width_key: str | None = None
    out_axis: int = -1
    in_axis: int = -2
    kernel_names: tuple[str, ...] = ('kernel',)

    def cut_outputs(self, layer, weights: dict, keep: np.ndarray) -> dict:
        """Keep output channels ``keep`` of a producer's named weights."""
        out = dict(weights)
        if self.kind == 'producer':
            for name in self.kernel_names:
                if name in out:
                    out[name] = np.take(out[name], keep, axis=self.out_axis)
            if 'bias' in out:
                out['bias'] = out['bias'][keep]
        return out

    def cut_inputs(self, layer, weights: dict, keep: np.ndarray) -> dict:
        """Keep input channels (positions) ``keep`` of the layer's named weights."""
        out = dict(weights)
        if self.kind == 'producer':
            for name in self.kernel_names:
                if name in out:
                    out[name] = np.take(out[name], keep, axis=self.in_axis)
        elif self.kind == 'depthwise':
            name = next(n for n in ('kernel', 'depthwise_kernel') if n in out)
            multiplier = out[name].shape[-1]
            out[name] = np.take(out[name], keep, axis=-2)
            if 'bias' in out:
                out['bias'] = out['bias'][(keep[:, None] * multiplier + np.arange(multiplier)).ravel()]
        elif self.kind == 'channelwise':
            width = layer.input.shape[-1]
            for name, value in out.items():
                if value.ndim >= 1 and value.shape[-1] == width:
                    out[name] = np.take(value, keep, axis=-1)
        return out

    def filter_l1(self, layer) -> np.ndarray:
        """L1 norm of each output filter (producers only; Li et al. 2017)."""
        kernel = np.asarray(named_weights(layer)[self.kernel_names[0]])
        moved = np.moveaxis(np.abs(kernel), self.out_axis, -1)
        return moved.reshape(-1, moved.shape[-1]).sum(axis=0)


_PRODUCERS = {
    'Dense': Rule('producer', 'units', -1, -2),
    'Conv1D': Rule('producer', 'filters', -1, -2),
    'Conv2D': Rule('producer', 'filters', -1, -2),
    'Conv3D': Rule('producer', 'filters', -1, -2),
    'Conv1DTranspose': Rule('producer', 'filters', -2, -1),
    'Conv2DTranspose': Rule('producer', 'filters', -2, -1),
}
_DEPTHWISE = {
    'DepthwiseConv2D': Rule('depthwise', kernel_names=('kernel', 'depthwise_kernel')),
    'DepthwiseConv1D': Rule('depthwise', kernel_names=('kernel', 'depthwise_kernel')),
}
_CHANNELWISE = {
    name: Rule('channelwise')
    for name in ('BatchNormalization', 'Activation', 'ReLU', 'LeakyReLU', 'ELU', 'PReLU', 'QActivation')
}
_DATA = {
    name: Rule('data')
    for name in (
        'MaxPooling1D', 'MaxPooling2D', 'MaxPooling3D', 'AveragePooling1D', 'AveragePooling2D', 'AveragePooling3D',
        'GlobalMaxPooling1D', 'GlobalMaxPooling2D', 'GlobalMaxPooling3D', 'GlobalAveragePooling1D',
        'GlobalAveragePooling2D', 'GlobalAveragePooling3D', 'ZeroPadding1D', 'ZeroPadding2D', 'ZeroPadding3D',
        'UpSampling1D', 'UpSampling2D', 'UpSampling3D', 'Cropping1D', 'Cropping2D', 'Cropping3D', 'Dropout',
        'SpatialDropout1D', 'SpatialDropout2D', 'SpatialDropout3D', 'GaussianNoise', 'GaussianDropout',
        'AlphaDropout', 'ActivityRegularization', 'Identity',
    )
}  # fmt: skip
_MERGE = {name: Rule('merge') for name in ('Add', 'Subtract', 'Multiply', 'Maximum', 'Minimum', 'Average')}
_OTHER = {
    'Concatenate': Rule('concat'),
    'Flatten': Rule('flatten'),
    'Reshape': Rule('flatten'),  # refined per layer in _rule_for: 1-D target -> flatten, same last axis -> data
    'Softmax': Rule('block'),
    'Permute': Rule('block'),
    'Lambda': Rule('block'),
    'InputLayer': Rule('input'),
    'ChannelMask': Rule('mask'),
}

LAYER_TABLE: dict[str, Rule] = {}
for _table in (_PRODUCERS, _DEPTHWISE, _CHANNELWISE, _DATA, _MERGE, _OTHER):
    LAYER_TABLE.update(_table)
# QKeras versions share the Keras layout of weights.
for _name, _rule in list(_PRODUCERS.items()) + list(_DEPTHWISE.items()):
    LAYER_TABLE['Q' + _name] = _rule

# Class-name fragments of depth-to-space (pixel shuffle) layers: treated as 'block'.
DEPTH_TO_SPACE = ('DepthToSpace', 'PixelShuffle', 'SubPixel')


def supported_kinds() -> str:
    return ', '.join(sorted(LAYER_TABLE)) + ' (and depth-to-space layers: ' + ', '.join(DEPTH_TO_SPACE) + ')'


def named_weights(layer) -> dict:
    """Layer weights by bare variable name ('kernel', 'bias', 'gamma', ...)."""
    return {w.path.split('/')[-1]: np.asarray(w.numpy()) for w in layer.weights}


def set_named_weights(layer, weights: dict) -> None:
    for w in layer.weights:
        w.assign(weights[w.path.split('/')[-1]])


def rule_for(layer) -> Rule:
    """The table entry for ``layer``, refined by its configuration; errors name the layer."""
    cls = layer.__class__.__name__
    if any(fragment in cls for fragment in DEPTH_TO_SPACE):
        return Rule('block')
    rule = LAYER_TABLE.get(cls)
    if rule is None:
        raise UnsupportedLayerError(
            f"layer '{layer.name}' ({cls}) is not supported by the channel pruner; supported layer kinds: {supported_kinds()}"
        )
    config = layer.get_config()
    if config.get('data_format', 'channels_last') != 'channels_last':
        raise UnsupportedLayerError(
            f"layer '{layer.name}' ({cls}) uses {config['data_format']}; only channels_last is supported"
        )
    if rule.kind == 'producer' and config.get('groups', 1) != 1:
        raise UnsupportedLayerError(
            f"layer '{layer.name}' ({cls}) is a grouped convolution (groups={config['groups']}); not supported"
        )
    if cls == 'Reshape':
        target = tuple(config['target_shape'])
        in_shape = tuple(layer.input.shape[1:])
        if len(target) == 1:
            return Rule('flatten')
        if target[-1] == in_shape[-1]:
            return Rule('data')
        return Rule('block')
    if cls == 'Concatenate':
        axis = config.get('axis', -1)
        rank = len(layer.output.shape)
        return Rule('concat') if axis in (-1, rank - 1) else Rule('merge')
    if cls in ('BatchNormalization',) and config.get('axis') not in (-1, len(layer.input.shape) - 1, [-1]):
        axis = config.get('axis')
        if not (isinstance(axis, list | tuple) and len(axis) == 1 and axis[0] in (-1, len(layer.input.shape) - 1)):
            raise UnsupportedLayerError(
                f"layer '{layer.name}' (BatchNormalization) normalizes axis {axis}; only the channel axis is supported"
            )
    if rule.kind == 'channelwise' and cls in ('Activation', 'QActivation'):
        act = config.get('activation')
        if isinstance(act, str) and act in ('softmax', 'log_softmax'):
            return Rule('block')
    return rule


def _mixes_channels(layer) -> bool:
    """A producer whose own activation mixes channels (softmax): its group is unprunable."""
    act = layer.get_config().get('activation')
    return isinstance(act, str) and act in ('softmax', 'log_softmax')


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
class ChannelMap:
    """Per position of a tensor's last axis: group index (-1: unprunable) and channel."""

    group: np.ndarray
    channel: np.ndarray

    def is_identity_of(self, g: int) -> bool:
        return bool(np.all(self.group == g) and np.array_equal(self.channel, np.arange(len(self.channel))))


@dataclass
class GroupTable:
    """Result of ``analyze``: groups, per-layer rules and channel maps."""

    groups: list[ChannelGroup]
    rules: dict[str, Rule]  # layer name -> rule
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


def analyze(model, exclude_first: bool = False, exclude: tuple[str, ...] = ()) -> GroupTable:
    """Find the channel groups of a functional Keras model.

    ``exclude_first``: never prune the group of the first producer (e.g. the first
    conv of a generator). ``exclude``: layer names whose groups are never pruned.
    Raises ``UnsupportedLayerError`` naming the first layer the pruner cannot handle.
    """
    order = calls(model)
    uf = _UnionFind()
    source_of: list[str] = []  # source id -> producer name
    source_width: list[int] = []
    blocked: dict[int, str] = {}  # source id -> reason
    rules: dict[str, Rule] = {}
    maps: dict[int, ChannelMap] = {}  # id(tensor) -> map (source ids, resolved later)
    input_maps: dict[str, list[ChannelMap]] = {}
    unprunable = -1

    def block(cmap: ChannelMap, reason: str):
        for s in np.unique(cmap.group):
            if s >= 0:
                blocked.setdefault(int(s), reason)

    for call in order:
        layer = call.layer
        rule = rule_for(layer)
        rules[call.name] = rule
        ins = [maps[id(t)] for t in call.inputs]
        input_maps[call.name] = ins
        width = call.outputs[0].shape[-1]
        kind = rule.kind
        if kind == 'input':
            out = ChannelMap(np.full(width, unprunable), np.arange(width))
        elif kind == 'producer':
            s = uf.add()
            source_of.append(call.name)
            source_width.append(width)
            out = ChannelMap(np.full(width, s), np.arange(width))
            if _mixes_channels(layer):
                blocked[s] = f"layer '{call.name}' applies a softmax across its channels"
        elif kind == 'depthwise':
            (cin,) = ins
            mult = width // len(cin.group)
            out = ChannelMap(np.repeat(cin.group, mult), np.repeat(cin.channel, mult))
        elif kind in ('channelwise', 'data', 'mask'):
            (cin,) = ins
            out = ChannelMap(cin.group.copy(), cin.channel.copy())
        elif kind == 'merge':
            first = ins[0]
            simple = all(
                len(np.unique(m.group)) == 1 and np.array_equal(m.channel, np.arange(len(m.channel))) for m in ins
            )
            if simple and all(m.group[0] >= 0 for m in ins):
                for m in ins[1:]:
                    uf.union(int(first.group[0]), int(m.group[0]))
                out = ChannelMap(first.group.copy(), first.channel.copy())
            else:
                for m in ins:
                    block(
                        m, f"layer '{call.name}' ({call.kind}) combines inputs whose channels cannot be tied one to one"
                    )
                out = ChannelMap(np.full(width, unprunable), np.arange(width))
        elif kind == 'concat':
            out = ChannelMap(np.concatenate([m.group for m in ins]), np.concatenate([m.channel for m in ins]))
        elif kind == 'flatten':
            (cin,) = ins
            reps = width // len(cin.group)
            out = ChannelMap(np.tile(cin.group, reps), np.tile(cin.channel, reps))
        elif kind == 'block':
            for m in ins:
                block(m, f"layer '{call.name}' ({call.kind}) cannot be cut along channels")
            out = ChannelMap(np.full(width, unprunable), np.arange(width))
        else:  # pragma: no cover - table and kinds are kept in sync
            raise AssertionError(kind)
        for t in call.outputs:
            maps[id(t)] = out
        if len(call.outputs) > 1:
            for m in [out]:
                block(m, f"layer '{call.name}' has several outputs")

    for t in model.outputs:
        block(maps[id(t)], "it feeds the model's output")

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
    producers_in_order = [c.name for c in order if rules[c.name].kind == 'producer']
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
    absorbing = ('channelwise', 'merge')
    mask_points: dict[str, ChannelMap] = {}
    for call in order:
        if rules[call.name].kind not in ('producer', 'depthwise', 'channelwise', 'merge'):
            continue
        cmap = out_maps[call.name]
        if not np.any(cmap.group >= 0):
            continue
        if len(call.consumers) == 1 and rules[call.consumers[0].name].kind in absorbing:
            continue
        mask_points[call.name] = cmap
        for g in np.unique(cmap.group[cmap.group >= 0]):
            groups[int(g)].mask_points.append(call.name)

    return GroupTable(groups, rules, out_maps, in_maps, [c.name for c in order], mask_points)


def describe(table: GroupTable) -> str:
    """A printable summary of the groups."""
    lines = []
    for g in table.groups:
        state = 'prunable' if g.prunable else f'fixed ({g.reason})'
        lines.append(f'group {g.index}: {g.channels} ch, producers {g.producers}, masks after {g.mask_points}, {state}')
    return '\n'.join(lines)
