"""Channel masks in a Keras model.

``ChannelMask`` multiplies a tensor by a non-trainable 0/1 vector along its last
axis. While its ``collecting`` flag is on it also accumulates, per channel and per
call, mean(|a_c|) and the fraction of non-zero values of a_c over batch and spatial
positions, measured on its *unmasked* input: the statistics the activation
importance measures rank on.

``insert_masks`` rebuilds a functional model with a ChannelMask after each mask
point of a ``GroupTable`` (weights copied); ``MaskedModel`` keeps the per-group masks
and statistics in step with those layers.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .errors import PrunerError
from .graph import clone_layer, rebuild
from .groups import GroupTable, analyze


@keras.saving.register_keras_serializable(package='pruner')
class ChannelMask(keras.layers.Layer):
    """Multiply the last axis by a 0/1 mask; optionally record activation statistics."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)

    def build(self, input_shape):
        if input_shape[-1] != self.channels:
            raise PrunerError(f"ChannelMask '{self.name}' has {self.channels} channels, input has {input_shape[-1]}")
        self.mask = self.add_weight(name='mask', shape=(self.channels,), initializer='ones', trainable=False)
        self.collect_flag = self.add_weight(name='collect', shape=(), initializer='zeros', trainable=False)
        self.l1_sum = self.add_weight(name='l1_sum', shape=(self.channels,), initializer='zeros', trainable=False)
        self.l0_sum = self.add_weight(name='l0_sum', shape=(self.channels,), initializer='zeros', trainable=False)
        self.max_abs = self.add_weight(name='max_abs', shape=(self.channels,), initializer='zeros', trainable=False)
        self.calls = self.add_weight(name='calls', shape=(), initializer='zeros', trainable=False)

    def call(self, x):
        flag = self.collect_flag
        axes = tuple(range(len(x.shape) - 1))
        magnitude = ops.abs(x)
        self.l1_sum.assign_add(flag * ops.mean(magnitude, axis=axes))
        self.l0_sum.assign_add(flag * ops.mean(ops.cast(ops.not_equal(x, 0), x.dtype), axis=axes))
        self.max_abs.assign(ops.maximum(self.max_abs, flag * ops.max(magnitude, axis=axes)))
        self.calls.assign_add(flag)
        return x * ops.cast(self.mask, x.dtype)

    # --- Python-side controls (between batches) ---------------------------
    @property
    def collecting(self) -> bool:
        return bool(self.collect_flag.numpy() > 0)

    @collecting.setter
    def collecting(self, on: bool) -> None:
        self.collect_flag.assign(1.0 if on else 0.0)

    def reset_statistics(self) -> None:
        for v in (self.l1_sum, self.l0_sum, self.max_abs):
            v.assign(np.zeros(self.channels, dtype=np.float32))
        self.calls.assign(0.0)

    def statistics(self) -> dict:
        """Per-channel running means over the recorded calls (steps)."""
        n = float(self.calls.numpy())
        scale = 1.0 / n if n > 0 else 0.0
        return {
            'l1': self.l1_sum.numpy() * scale,
            'l0': self.l0_sum.numpy() * scale,
            'max_abs': self.max_abs.numpy().copy(),
            'steps': int(n),
        }

    def set_mask(self, mask) -> None:
        self.mask.assign(np.asarray(mask, dtype=np.float32))

    def get_config(self):
        return {**super().get_config(), 'channels': self.channels}


def mask_layer_name(layer_name: str) -> str:
    return f'{layer_name}_mask'


def insert_masks(model, table: GroupTable) -> keras.Model:
    """A copy of ``model`` (weights copied) with a ChannelMask after every mask point."""

    def transform(call, args, kwargs):
        layer = clone_layer(call.layer)
        out = layer(*args, **kwargs)
        layer.set_weights(call.layer.get_weights())
        if call.name in table.mask_points:
            out = ChannelMask(out.shape[-1], name=mask_layer_name(call.name))(out)
        return out

    return rebuild(model, transform, name=f'{model.name}_masked')


class MaskedModel:
    """A model with channel masks, and the per-group view of them.

    ``model``: the rebuilt Keras model (train it with fit). ``table``: the groups.
    Group masks are 0/1 numpy vectors (``masks[g]``); ``set_mask`` writes one group's
    mask into every ChannelMask that carries channels of that group.
    """

    def __init__(self, model, exclude_first: bool = False, exclude: tuple[str, ...] = ()):
        self.table = analyze(model, exclude_first=exclude_first, exclude=exclude)
        self.source = model
        self.model = insert_masks(model, self.table)
        self.mask_layers = {name: self.model.get_layer(mask_layer_name(name)) for name in self.table.mask_points}
        self.masks = {g.index: np.ones(g.channels, dtype=np.float32) for g in self.table.prunable}

    # --- masks ---------------------------------------------------------------
    def set_mask(self, group: int, keep) -> None:
        """Keep channels ``keep`` (indices) of group ``group``; zero the rest."""
        g = self.table.groups[group]
        if not g.prunable:
            raise PrunerError(f"group {group} ('{g.name}') is not prunable: {g.reason}")
        mask = np.zeros(g.channels, dtype=np.float32)
        mask[np.asarray(keep, dtype=np.int64)] = 1.0
        self.masks[group] = mask
        for name in g.mask_points:
            cmap = self.table.mask_points[name]
            self.mask_layers[name].set_mask(self.table.mask_vector(cmap, self.masks))

    def kept(self) -> dict[int, np.ndarray]:
        """Kept channel indices of every prunable group."""
        return {g: np.flatnonzero(m > 0) for g, m in self.masks.items()}

    # --- statistics ----------------------------------------------------------
    def _points(self, group: int) -> list[str]:
        """Mask points of a group; those that carry only this group first (the primary ones)."""
        g = self.table.groups[group]
        primary = [n for n in g.mask_points if self.table.mask_points[n].is_identity_of(group)]
        return primary or list(g.mask_points)

    def set_collecting(self, group: int, on: bool) -> None:
        for name in self._points(group):
            self.mask_layers[name].collecting = on

    def pause_collecting(self) -> list[str]:
        """Turn every collecting mask off; return their names (for ``resume_collecting``)."""
        paused = [n for n, layer in self.mask_layers.items() if layer.collecting]
        for n in paused:
            self.mask_layers[n].collecting = False
        return paused

    def resume_collecting(self, names) -> None:
        for n in names:
            self.mask_layers[n].collecting = True

    def reset_statistics(self, group: int) -> None:
        for name in self._points(group):
            self.mask_layers[name].reset_statistics()

    def statistics(self, group: int) -> dict:
        """Per-channel statistics of a group, averaged over its mask points."""
        g = self.table.groups[group]
        l1 = np.zeros(g.channels)
        l0 = np.zeros(g.channels)
        max_abs = np.zeros(g.channels)
        hits = np.zeros(g.channels)
        steps = 0
        for name in self._points(group):
            stats = self.mask_layers[name].statistics()
            cmap = self.table.mask_points[name]
            sel = cmap.group == group
            ch = cmap.channel[sel]
            np.add.at(l1, ch, stats['l1'][sel])
            np.add.at(l0, ch, stats['l0'][sel])
            np.add.at(hits, ch, 1.0)
            np.maximum.at(max_abs, ch, stats['max_abs'][sel])
            steps = max(steps, stats['steps'])
        hits = np.maximum(hits, 1.0)
        return {'l1': l1 / hits, 'l0': l0 / hits, 'max_abs': max_abs, 'steps': steps, 'group_index': group}

    def producers(self, group: int) -> list:
        """(layer, kind) of the group's producers in the masked model."""
        g = self.table.groups[group]
        return [(self.model.get_layer(n), self.table.kinds[n]) for n in g.producers]
