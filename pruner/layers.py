"""Layer kinds: one class per kind of layer, holding all the pruner knows about it.

Every stage of the pruner asks the layer's kind instead of testing class names:

- ``propagate``: how channel groups flow through the layer (``groups.analyze``). Every
  tensor's last axis has a ``ChannelMap``: per position, its channel group and the
  channel inside that group (group -1: not prunable).
- ``cut_outputs`` / ``cut_inputs``: which weights lose what when output channels or
  input positions go (``surgery.reduce``); ``width_key`` is the config key of the
  output width of layers that create channels.
- ``scale_outputs``: multiply each output channel (``surgery.fold_batchnorm``).
- ``quantized_weights`` / ``quantizes_output`` / ``to_qkeras``: what gets a fixed-point
  type and the layer's QKeras form (``quantize.plan_quantization``, ``surgery.to_qkeras``).
- ``macs``: multiply-accumulates per sample (``metrics``).

A subclass that declares ``handles`` (layer class names) registers itself;
``register_layer`` adds a user's own layer class, e.g.
``register_layer(MyScale, 'channelwise')`` or ``register_layer(MyConv, MyConvKind)``.
The families (``family``): producer (creates a new channel group: Dense, Conv), depthwise
(passes channels through, output ``c*m+k`` tied to input ``c``), channelwise (per
channel: BatchNorm, activations), data (per channel, no weights: pooling, padding),
merge (ties the groups of its inputs: Add, ...), concat (maps one after another),
flatten (position ``p`` carries channel ``p mod C``), block (cannot be cut: the groups
feeding it are never pruned), input, mask.

The weight-role table ``WEIGHT_ROLES`` is the one place that knows the Keras/QKeras
variable names of kernels and biases and the QKeras quantizer, constraint and
initializer keys that go with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import PrunerError


class UnsupportedLayerError(PrunerError):
    """A layer the pruner cannot see through."""


class SurgeryError(PrunerError):
    """A model that cannot be cut or converted; the message names the layer."""


# ---------------------------------------------------------------------------
# Weight roles
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightRole:
    """What a weight variable is, and the QKeras names that go with it."""

    role: str  # 'kernel' or 'bias'
    quantizer_key: str  # QKeras config key of its quantizer
    quantizer_attr: str  # QKeras layer attribute holding the quantizer object
    constraint_key: str  # config key and attribute of its constraint
    prefix: str  # prefix of its initializer / regularizer / constraint config keys


WEIGHT_ROLES: dict[str, WeightRole] = {
    'kernel': WeightRole('kernel', 'kernel_quantizer', 'kernel_quantizer_internal', 'kernel_constraint', 'kernel'),
    'depthwise_kernel': WeightRole(
        'kernel', 'depthwise_quantizer', 'depthwise_quantizer_internal', 'depthwise_constraint', 'depthwise'
    ),
    'bias': WeightRole('bias', 'bias_quantizer', 'bias_quantizer_internal', 'bias_constraint', 'bias'),
}
KERNEL_NAMES = tuple(name for name, r in WEIGHT_ROLES.items() if r.role == 'kernel')


def weight_name(variable) -> str:
    """The bare name of a layer variable ('kernel', 'bias', 'gamma', ...)."""
    return variable.path.split('/')[-1]


def named_weights(layer) -> dict:
    """Layer weights by bare variable name."""
    return {weight_name(w): np.asarray(w.numpy()) for w in layer.weights}


def set_named_weights(layer, weights: dict) -> None:
    for w in layer.weights:
        name = weight_name(w)
        if name in weights:
            w.assign(weights[name])


def kernel_of(weights: dict) -> str:
    """The name of the kernel among named weights."""
    return next(n for n in KERNEL_NAMES if n in weights)


def variable_for_role(layer, role: str) -> str:
    """The name of ``layer``'s variable that plays ``role`` ('kernel' or 'bias')."""
    names = [weight_name(w) for w in layer.weights]
    return next(n for n in names if n in WEIGHT_ROLES and WEIGHT_ROLES[n].role == role)


# ---------------------------------------------------------------------------
# Channel maps
# ---------------------------------------------------------------------------


@dataclass
class ChannelMap:
    """Per position of a tensor's last axis: group index (-1: unprunable) and channel."""

    group: np.ndarray
    channel: np.ndarray

    @classmethod
    def fixed(cls, width: int) -> ChannelMap:
        """A map of positions that are never cut (like the model input)."""
        return cls(np.full(width, -1), np.arange(width))

    def copy(self) -> ChannelMap:
        return ChannelMap(self.group.copy(), self.channel.copy())

    def is_identity_of(self, g: int) -> bool:
        return bool(np.all(self.group == g) and np.array_equal(self.channel, np.arange(len(self.channel))))


def is_relu(layer) -> bool | None:
    """True for a plain ReLU activation of ``layer``, False for linear, None otherwise."""
    config = layer.get_config()
    if layer.__class__.__name__ == 'ReLU':
        plain = not config.get('max_value') and not config.get('negative_slope') and not config.get('threshold')
        return True if plain else None
    act = config.get('activation', 'linear')
    if act in (None, 'linear'):
        return False
    if act == 'relu':
        return True
    return None


def _softmax(config) -> bool:
    act = config.get('activation')
    return isinstance(act, str) and act in ('softmax', 'log_softmax')


def _clone(layer):
    config = layer.get_config()
    return layer.__class__.from_config(config)


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

_REGISTRY: dict[str, LayerKind] = {}
# Class-name fragments of depth-to-space (pixel shuffle) layers: they cannot be cut.
DEPTH_TO_SPACE = ('DepthToSpace', 'PixelShuffle', 'SubPixel')


def register_layer(layer_class, kind) -> LayerKind:
    """Tell the pruner how a layer class moves and cuts channels.

    ``layer_class``: a Keras layer class (or its class name, or a tuple of them).
    ``kind``: a ``LayerKind`` subclass or instance, or a family name for layers with
    no weights across channels: 'channelwise' (per-channel weights of the input's
    width on the last axis), 'data' (no weights), 'merge', 'block'.
    Returns the registered kind. Registering a name again replaces its kind.
    """
    if isinstance(kind, str):
        if kind not in FAMILIES:
            raise PrunerError(f'unknown layer family {kind!r}; choose one of {sorted(FAMILIES)} or pass a LayerKind')
        kind = FAMILIES[kind]()
    elif isinstance(kind, type) and issubclass(kind, LayerKind):
        kind = kind()
    if not isinstance(kind, LayerKind):
        raise PrunerError(f'register_layer needs a LayerKind subclass, instance or family name, got {kind!r}')
    classes = layer_class if isinstance(layer_class, tuple | list) else (layer_class,)
    for cls in classes:
        _REGISTRY[cls if isinstance(cls, str) else cls.__name__] = kind
    return kind


def registered() -> dict[str, LayerKind]:
    """Class name -> kind, for every registered layer class."""
    return dict(_REGISTRY)


def supported_kinds() -> str:
    return ', '.join(sorted(_REGISTRY)) + ' (and depth-to-space layers: ' + ', '.join(DEPTH_TO_SPACE) + ')'


def lookup(layer) -> LayerKind | None:
    """The registered kind of ``layer``'s class, or None (no checks, no refinement)."""
    cls = layer.__class__.__name__
    if any(fragment in cls for fragment in DEPTH_TO_SPACE):
        return BLOCK
    return _REGISTRY.get(cls)


def kind_for(layer) -> LayerKind:
    """The kind of ``layer``, refined by its configuration; errors name the layer."""
    kind = lookup(layer)
    cls = layer.__class__.__name__
    if kind is None:
        import difflib

        near = difflib.get_close_matches(cls, sorted(_REGISTRY), n=3, cutoff=0.0)
        raise UnsupportedLayerError(
            f"layer '{layer.name}' ({cls}) is not supported by the channel pruner; it knows {len(_REGISTRY)} layer "
            f'classes (`lpsubnet layers` or pruner.layers.supported_kinds() lists them), among them {", ".join(near)}; '
            'pruner.register_layer adds your own'
        )
    config = layer.get_config()
    if config.get('data_format', 'channels_last') != 'channels_last':
        raise UnsupportedLayerError(
            f"layer '{layer.name}' ({cls}) uses {config['data_format']}; only channels_last is supported"
        )
    return kind.refine(layer, config)


# ---------------------------------------------------------------------------
# The base class
# ---------------------------------------------------------------------------


class LayerKind:
    """How one kind of layer moves, cuts and quantizes channels. Subclasses that set
    ``handles`` (layer class names) register themselves."""

    handles: tuple[str, ...] = ()
    family = 'base'
    width_key: str | None = None  # config key of the output width (layers that create channels)
    maskable = False  # a channel mask may follow its output
    absorbs_mask = False  # when it is the only reader of a maskable output, the mask moves after it
    foldable = False  # BatchNormalization right after it folds into its weights
    has_weights_across_channels = False  # counted as a weight layer in the metrics

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get('handles'):
            register_layer(cls.handles, cls)

    def __repr__(self):
        return f'{self.__class__.__name__}()'

    @property
    def kind(self) -> str:
        return self.family

    def refine(self, layer, config) -> LayerKind:
        """Check ``layer``'s configuration; return the kind that applies to it."""
        return self

    def propagate(self, call, ins: list[ChannelMap], width: int, graph) -> ChannelMap:
        """The channel map of the output. ``graph`` offers ``new_group(call, width)``,
        ``block(cmap, reason)`` and ``tie(cmaps)``."""
        raise NotImplementedError  # pragma: no cover - every registered kind overrides it

    def cut_outputs(self, layer, weights: dict, keep: np.ndarray) -> dict:
        """Weights after keeping output channels ``keep`` (only for kinds with ``width_key``)."""
        return weights

    def cut_inputs(self, layer, weights: dict, keep: np.ndarray) -> dict:
        """Weights after keeping input positions ``keep``."""
        return weights

    def scale_outputs(self, layer, weights: dict, scale: np.ndarray) -> dict:
        """Weights with each output channel multiplied by ``scale`` (foldable kinds)."""
        raise NotImplementedError  # pragma: no cover - only foldable kinds are asked

    def weight_values(self, layer) -> dict:
        """Kernel and bias by variable name, as the layer's quantizers see them."""
        return {n: v for n, v in named_weights(layer).items() if n in WEIGHT_ROLES}

    def quantized_weights(self, layer) -> dict:
        """Weight name -> the values its fixed-point type is chosen from ({}: none)."""
        return {}

    def quantizes_output(self, layer) -> bool:
        """True when the output gets an activation quantizer (a ReLU)."""
        return False

    def to_qkeras(self, call, args, kwargs, entry, is_output: bool):
        """The output tensor of the layer's QKeras form applied to ``args``."""
        new = _clone(call.layer)
        out = new(*args, **kwargs)
        new.set_weights(call.layer.get_weights())
        return out

    def macs(self, call) -> int:
        return 0


# ---------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------


class WeightLayer(LayerKind):
    """A conv or dense layer: a kernel (and maybe a bias) over channels."""

    maskable = True
    foldable = True
    has_weights_across_channels = True
    qkeras_class: str | None = None  # the QKeras class a float layer becomes (None: stays as it is)
    qkeras_kernel = 'kernel'  # the kernel's variable name in that QKeras class

    fused_class: str | None = None  # the QKeras class that carries a following BatchNorm inside (joint mode)

    def quantized_weights(self, layer) -> dict:
        return {} if self.qkeras_class is None else self.weight_values(layer)

    def quantizes_output(self, layer) -> bool:
        return self.qkeras_class is not None and bool(is_relu(layer))

    def qkeras_config(self, layer, config, entry, is_output: bool) -> dict:
        """The float config with quantizers set; errors name unsupported activations."""
        act = config.get('activation', 'linear')
        relu = is_relu(layer)
        if relu is None and not (act == 'softmax' and is_output):
            raise SurgeryError(
                f"layer '{layer.name}' ({layer.__class__.__name__}) has activation {act!r}; "
                'supported: relu, linear, softmax on the output'
            )
        for float_name, fixed in entry.weights.items():
            q_name = self.qkeras_kernel if WEIGHT_ROLES[float_name].role == 'kernel' else float_name
            config[WEIGHT_ROLES[q_name].quantizer_key] = fixed.quantizer()
        if relu:
            config['activation'] = entry.activation.quantizer()
        old, new = WEIGHT_ROLES['kernel'].prefix, WEIGHT_ROLES[self.qkeras_kernel].prefix
        if old != new:  # e.g. kernel_initializer -> depthwise_initializer
            for suffix in ('initializer', 'regularizer', 'constraint'):
                if f'{old}_{suffix}' in config:
                    config[f'{new}_{suffix}'] = config.pop(f'{old}_{suffix}')
        return config

    def qkeras_weights(self, layer, weights: dict) -> dict:
        return {self.qkeras_kernel if n in KERNEL_NAMES else n: v for n, v in weights.items()}

    def to_qkeras(self, call, args, kwargs, entry, is_output: bool):
        if self.qkeras_class is None:
            return super().to_qkeras(call, args, kwargs, entry, is_output)
        import qkeras

        config = self.qkeras_config(call.layer, call.layer.get_config(), entry, is_output)
        new = getattr(qkeras, self.qkeras_class).from_config(config)
        out = new(*args, **kwargs)
        set_named_weights(new, self.qkeras_weights(call.layer, named_weights(call.layer)))
        return out

    def _positions(self, call) -> int:
        return int(np.prod(call.outputs[0].shape[1:-1]))

    def macs(self, call) -> int:
        kernel = next((w for w in call.layer.weights if weight_name(w) in KERNEL_NAMES), None)
        return 0 if kernel is None else int(np.prod(kernel.shape)) * self._positions(call)


class Producer(WeightLayer):
    """Creates a new channel group: cutting outputs slices the kernel's output axis and
    the bias, cutting inputs the kernel's input axis."""

    family = 'producer'
    out_axis = -1
    in_axis = -2

    def refine(self, layer, config):
        if config.get('groups', 1) != 1:
            raise UnsupportedLayerError(
                f"layer '{layer.name}' ({layer.__class__.__name__}) is a grouped convolution "
                f'(groups={config["groups"]}); not supported'
            )
        return self

    def propagate(self, call, ins, width, graph):
        out = graph.new_group(call, width)
        if _softmax(call.layer.get_config()):
            graph.block(out, f"layer '{call.name}' applies a softmax across its channels")
        return out

    def cut_outputs(self, layer, weights, keep):
        out = dict(weights)
        for name in KERNEL_NAMES:
            if name in out:
                out[name] = np.take(out[name], keep, axis=self.out_axis)
        if 'bias' in out:
            out['bias'] = out['bias'][keep]
        return out

    def cut_inputs(self, layer, weights, keep):
        out = dict(weights)
        for name in KERNEL_NAMES:
            if name in out:
                out[name] = np.take(out[name], keep, axis=self.in_axis)
        return out

    def scale_outputs(self, layer, weights, scale):
        out = dict(weights)
        name = kernel_of(out)
        shape = [1] * out[name].ndim
        shape[self.out_axis] = len(scale)
        out[name] = out[name] * np.reshape(scale, shape)
        return out

    def filter_l1(self, layer) -> np.ndarray:
        """L1 norm of each output filter (Li et al. 2017)."""
        weights = named_weights(layer)
        moved = np.moveaxis(np.abs(weights[kernel_of(weights)]), self.out_axis, -1)
        return moved.reshape(-1, moved.shape[-1]).sum(axis=0)


class DenseKind(Producer):
    handles = ('Dense',)
    width_key = 'units'
    qkeras_class = 'QDense'
    fused_class = 'QDenseBatchnorm'


class ConvKind(Producer):
    handles = ('Conv3D',)
    width_key = 'filters'


class Conv2DKind(ConvKind):
    handles = ('Conv2D',)
    qkeras_class = 'QConv2D'
    fused_class = 'QConv2DBatchnorm'


class Conv1DKind(ConvKind):
    handles = ('Conv1D',)
    qkeras_class = 'QConv1D'


class ConvTransposeKind(Producer):
    """Transposed convolutions keep output channels on the kernel's second-to-last axis."""

    handles = ('Conv1DTranspose',)
    width_key = 'filters'
    out_axis = -2
    in_axis = -1

    def _positions(self, call) -> int:
        return int(np.prod(call.inputs[0].shape[1:-1]))


class Conv2DTransposeKind(ConvTransposeKind):
    handles = ('Conv2DTranspose',)
    qkeras_class = 'QConv2DTranspose'


class QuantizedDenseKind(DenseKind):
    """A QKeras layer already: it keeps its own quantizers."""

    handles = ('QDense',)
    qkeras_class = None
    fused_class = None


class QuantizedConvKind(ConvKind):
    handles = ('QConv1D', 'QConv2D', 'QConv3D')
    qkeras_class = None


# The BatchNormalization config keys and per-channel variables a fused layer carries.
BATCHNORM_KEYS = (
    'axis', 'momentum', 'epsilon', 'center', 'scale', 'beta_initializer', 'gamma_initializer',
    'moving_mean_initializer', 'moving_variance_initializer', 'beta_regularizer', 'gamma_regularizer',
    'beta_constraint', 'gamma_constraint',
)  # fmt: skip
BATCHNORM_WEIGHTS = ('gamma', 'beta', 'moving_mean', 'moving_variance')


class FusedBatchNorm(Producer):
    """QKeras's QDenseBatchnorm / QConv2DBatchnorm: a dense or conv layer with its
    BatchNorm inside. It trains with BatchNorm (batch statistics, until
    ``ema_freeze_delay`` steps) while its quantizers see the kernel and bias folded with
    the moving statistics, which is what the hardware computes. Cutting outputs also
    cuts the BatchNorm's per-channel variables. Without quantizers (as ``fuse_batchnorm``
    makes it) it becomes its QKeras form by getting them; with quantizers it stays."""

    foldable = False

    @staticmethod
    def unquantized(layer) -> bool:
        return layer.kernel_quantizer is None and layer.bias_quantizer is None

    def cut_outputs(self, layer, weights, keep):
        out = super().cut_outputs(layer, weights, keep)
        for name in BATCHNORM_WEIGHTS:
            if name in out:
                out[name] = out[name][keep]
        return out

    def weight_values(self, layer) -> dict:
        # QKeras's own folding, so the values are those its quantizers receive, to the last bit.
        kernel, bias = layer.get_folded_weights()
        return {'kernel': np.asarray(kernel), 'bias': np.asarray(bias)}

    def quantized_weights(self, layer) -> dict:
        return self.weight_values(layer) if self.unquantized(layer) else {}

    def to_qkeras(self, call, args, kwargs, entry, is_output):
        layer = call.layer
        if not self.unquantized(layer):
            return super().to_qkeras(call, args, kwargs, entry, is_output)
        config = layer.get_config()
        if is_relu(layer) is not False:
            raise SurgeryError(
                f"layer '{layer.name}' ({layer.__class__.__name__}) has activation {config.get('activation')!r}; "
                'supported: linear (a ReLU after it becomes a QActivation)'
            )
        for name, fixed in entry.weights.items():
            config[WEIGHT_ROLES[name].quantizer_key] = fixed.quantizer()
        new = layer.__class__.from_config(config)
        out = new(*args, **kwargs)
        new.set_weights(layer.get_weights())
        return out

    def unfused(self, call, args, kwargs):
        """The plain QKeras layer with the folded kernel and bias, applied to ``args``: in
        inference it computes the same values as the fused layer, bit for bit."""
        import qkeras

        layer = call.layer
        # The fused config is the plain layer's plus its BatchNorm's (whatever Keras version wrote them).
        own = set(layer.batchnorm.get_config()) - {'name', 'trainable', 'dtype'} | {'ema_freeze_delay', 'folding_mode'}
        config = {k: v for k, v in layer.get_config().items() if k not in own}
        new = getattr(qkeras, self.unfused_class).from_config(config)
        out = new(*args, **kwargs)
        set_named_weights(new, self.weight_values(layer))
        return out


class QuantizedDenseBatchnormKind(FusedBatchNorm):
    handles = ('QDenseBatchnorm',)
    width_key = 'units'
    unfused_class = 'QDense'


class QuantizedConv2DBatchnormKind(FusedBatchNorm):
    handles = ('QConv2DBatchnorm',)
    width_key = 'filters'
    unfused_class = 'QConv2D'


class QuantizedConvTransposeKind(ConvTransposeKind):
    handles = ('QConv1DTranspose', 'QConv2DTranspose')
    qkeras_class = None


class Depthwise(WeightLayer):
    """Passes channels through: output channel ``c*m+k`` is tied to input channel ``c``;
    cut both ways by its input channels."""

    family = 'depthwise'
    handles = ('DepthwiseConv1D',)

    def propagate(self, call, ins, width, graph):
        (cin,) = ins
        mult = width // len(cin.group)
        return ChannelMap(np.repeat(cin.group, mult), np.repeat(cin.channel, mult))

    def cut_inputs(self, layer, weights, keep):
        out = dict(weights)
        name = kernel_of(out)
        multiplier = out[name].shape[-1]
        out[name] = np.take(out[name], keep, axis=-2)
        if 'bias' in out:
            out['bias'] = out['bias'][(keep[:, None] * multiplier + np.arange(multiplier)).ravel()]
        return out

    def scale_outputs(self, layer, weights, scale):
        out = dict(weights)
        name = kernel_of(out)
        kernel = out[name]  # output channel c*m+k sits at kernel[..., c, k]
        out[name] = kernel * np.reshape(scale, kernel.shape[-2:])
        return out


class DepthwiseConv2DKind(Depthwise):
    handles = ('DepthwiseConv2D',)
    qkeras_class = 'QDepthwiseConv2D'
    qkeras_kernel = 'depthwise_kernel'


class QuantizedDepthwiseKind(Depthwise):
    handles = ('QDepthwiseConv1D', 'QDepthwiseConv2D')


class PassThrough(LayerKind):
    """The output map is the input's."""

    def propagate(self, call, ins, width, graph):
        (cin,) = ins
        return cin.copy()


class Channelwise(PassThrough):
    """Per channel: cut its per-channel parameters (any weight whose last axis is the input's width)."""

    family = 'channelwise'
    maskable = True
    absorbs_mask = True

    def cut_inputs(self, layer, weights, keep):
        out = dict(weights)
        width = layer.input.shape[-1]
        for name, value in out.items():
            if value.ndim >= 1 and value.shape[-1] == width:
                out[name] = np.take(value, keep, axis=-1)
        return out


class BatchNormKind(Channelwise):
    handles = ('BatchNormalization',)

    def refine(self, layer, config):
        axis = config.get('axis')
        axes = list(axis) if isinstance(axis, list | tuple) else [axis]
        if len(axes) != 1 or axes[0] not in (-1, len(layer.input.shape) - 1):
            raise UnsupportedLayerError(
                f"layer '{layer.name}' (BatchNormalization) normalizes axis {axis}; only the channel axis is supported"
            )
        return self

    def to_qkeras(self, call, args, kwargs, entry, is_output):
        raise SurgeryError(
            f"layer '{call.name}' is a BatchNormalization that could not be folded into a conv/dense layer; "
            'QBatchNormalization is not used (not exact in hardware): place BatchNorm right after a conv/dense'
        )


class ActivationKind(Channelwise):
    """Float activations: a plain ReLU becomes a QActivation(quantized_relu); linear vanishes;
    a softmax is allowed only on the model's output."""

    handles = ('Activation', 'ReLU', 'LeakyReLU', 'ELU', 'PReLU')

    def refine(self, layer, config):
        if layer.__class__.__name__ == 'Activation' and _softmax(config):
            return SOFTMAX
        return self

    def quantizes_output(self, layer):
        return layer.__class__.__name__ in ('ReLU', 'Activation') and bool(is_relu(layer))

    def to_qkeras(self, call, args, kwargs, entry, is_output):
        layer = call.layer
        if self.quantizes_output(layer):
            import qkeras

            return qkeras.QActivation(entry.activation.quantizer(), name=call.name)(*args, **kwargs)
        if layer.__class__.__name__ == 'Activation' and layer.get_config().get('activation') == 'linear':
            return args[0]
        raise SurgeryError(
            f"layer '{call.name}' ({call.kind}) is an activation without a fixed-point form here; "
            'supported: relu, linear, softmax on the output'
        )


class QuantizedActivationKind(Channelwise):
    handles = ('QActivation',)

    def refine(self, layer, config):
        return BLOCK if _softmax(config) else self


class Data(PassThrough):
    """Per channel, no weights, maps zero to zero (pooling, padding, dropout...)."""

    family = 'data'
    handles = (
        'MaxPooling1D', 'MaxPooling2D', 'MaxPooling3D', 'AveragePooling1D', 'AveragePooling2D', 'AveragePooling3D',
        'GlobalMaxPooling1D', 'GlobalMaxPooling2D', 'GlobalMaxPooling3D', 'GlobalAveragePooling1D',
        'GlobalAveragePooling2D', 'GlobalAveragePooling3D', 'ZeroPadding1D', 'ZeroPadding2D', 'ZeroPadding3D',
        'UpSampling1D', 'UpSampling2D', 'UpSampling3D', 'Cropping1D', 'Cropping2D', 'Cropping3D', 'Dropout',
        'SpatialDropout1D', 'SpatialDropout2D', 'SpatialDropout3D', 'GaussianNoise', 'GaussianDropout',
        'AlphaDropout', 'ActivityRegularization', 'Identity',
    )  # fmt: skip


class Merge(LayerKind):
    """Ties the channel groups of its inputs (one shared mask)."""

    family = 'merge'
    handles = ('Add', 'Subtract', 'Multiply', 'Maximum', 'Minimum', 'Average')
    maskable = True
    absorbs_mask = True

    def propagate(self, call, ins, width, graph):
        simple = all(len(np.unique(m.group)) == 1 and np.array_equal(m.channel, np.arange(len(m.channel))) for m in ins)
        if simple and all(m.group[0] >= 0 for m in ins):
            graph.tie(ins)
            return ins[0].copy()
        for m in ins:
            graph.block(
                m, f"layer '{call.name}' ({call.kind}) combines inputs whose channels cannot be tied one to one"
            )
        return ChannelMap.fixed(width)


class Concat(LayerKind):
    """Concatenate on the channel axis: the inputs' maps one after another; along any
    other axis it is a merge."""

    family = 'concat'
    handles = ('Concatenate',)

    def refine(self, layer, config):
        axis = config.get('axis', -1)
        return self if axis in (-1, len(layer.output.shape) - 1) else MERGE

    def propagate(self, call, ins, width, graph):
        return ChannelMap(np.concatenate([m.group for m in ins]), np.concatenate([m.channel for m in ins]))


class Flatten(LayerKind):
    """Position ``p`` of the output carries channel ``p mod C`` of the input
    (channels-last), so a following Dense cuts input rows."""

    family = 'flatten'
    handles = ('Flatten',)

    def propagate(self, call, ins, width, graph):
        (cin,) = ins
        reps = width // len(cin.group)
        return ChannelMap(np.tile(cin.group, reps), np.tile(cin.channel, reps))


class ReshapeKind(Flatten):
    """A 1-D target is a flatten, one that keeps the last axis a data layer, anything else a block."""

    handles = ('Reshape',)

    def refine(self, layer, config):
        target = tuple(config['target_shape'])
        if len(target) == 1:
            return FLATTEN
        if target[-1] == tuple(layer.input.shape[1:])[-1]:
            return DATA
        return BLOCK


class Block(LayerKind):
    """Cannot be cut along channels: the groups feeding it are never pruned."""

    family = 'block'
    handles = ('Permute', 'Lambda')

    def propagate(self, call, ins, width, graph):
        for m in ins:
            graph.block(m, f"layer '{call.name}' ({call.kind}) cannot be cut along channels")
        return ChannelMap.fixed(width)


class SoftmaxKind(Block):
    """A softmax mixes channels; in the QKeras model it stays float, on the output only."""

    handles = ('Softmax',)

    def to_qkeras(self, call, args, kwargs, entry, is_output):
        if not is_output:
            raise SurgeryError(
                f"layer '{call.name}' ({call.kind}) is an activation without a fixed-point form here; "
                'supported: relu, linear, softmax on the output'
            )
        return super().to_qkeras(call, args, kwargs, entry, is_output)


class InputKind(LayerKind):
    family = 'input'
    handles = ('InputLayer',)

    def propagate(self, call, ins, width, graph):
        return ChannelMap.fixed(width)


class MaskKind(PassThrough):
    """The pruner's own ChannelMask."""

    family = 'mask'
    handles = ('ChannelMask',)


BLOCK, DATA, FLATTEN, MERGE, SOFTMAX = Block(), Data(), Flatten(), Merge(), SoftmaxKind()
FAMILIES: dict[str, type[LayerKind]] = {'channelwise': Channelwise, 'data': Data, 'merge': Merge, 'block': Block}
