"""HGQ2 (High Granularity Quantization 2), the peer of the benchmark: per-weight and
per-activation bit widths learned under HGQ2's EBOPs resource regularizer ``beta``,
then converted to da4ml's combinational logic (the same cost model as lpsubnet's RTL
route, whose LUT figure is ``comb.cost``).

hgq2 ships a top-level ``qkeras`` module that would shadow qkeras-v3, so this script
runs only in the peer venv and imports nothing of the product (pruner, hls_backend,
lpsubnet, qkeras):

    PYTHONPATH=/work/main .venv-peer/bin/python -m bench.peer_hgq2 \\
        --task letter --seed 0 --beta 1e-5 --epochs 300 --out /tmp/x.json

One run: build the benchmark architecture from HGQ2 layers, train, calibrate the
integer bits (HGQ2's trace_minmax), evaluate, trace with HGQ2's da4ml plugin, run
da4ml's interpreter on the test inputs against the model, count the footprint, and
write the JSON to --out.
"""

from __future__ import annotations

import os

# One core: set before TensorFlow / da4ml's OpenMP start (an explicit setting wins).
os.environ.setdefault('KERAS_BACKEND', 'tensorflow')
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('DA_DEFAULT_THREADS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

TASKS = ('letter', 'digits')
TINY = (512, 128, 256)  # train / val / test samples of --tiny
# Adam with a cosine-decayed learning rate, as HGQ2's examples train (their JSC example
# starts at 3e-3). The batch size and epochs of each task are bench/peer.py's (HGQ_RECIPE,
# with the measurements that chose them); this script's --batch-size defaults to 128.
LEARNING_RATE = 3e-3
BATCH_SIZE = 128
# Initial bits: activations 1 integer + 3 fractional (HGQ2's examples); weights and biases
# keep HGQ2's defaults (8 bits, 2 of them integer, sign kept).
INIT_ACT = {'i0': 1, 'f0': 3}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog='python -m bench.peer_hgq2', description=__doc__.split('\n\n')[0])
    p.add_argument('--task', required=True, help=f'one of {", ".join(TASKS)}')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--beta', type=float, default=1e-5, help="EBOPs regularizer weight (HGQ2's beta), constant")
    p.add_argument('--epochs', type=int, default=300)
    p.add_argument('--out', required=True, type=Path, help='JSON result file (written atomically)')
    p.add_argument('--batch-size', type=int, default=BATCH_SIZE)
    p.add_argument(
        '--learning-rate', type=float, default=LEARNING_RATE, help="Adam's initial rate, cosine-decayed to 0"
    )
    p.add_argument('--tiny', action='store_true', help='first {} train / {} val / {} test samples'.format(*TINY))
    p.add_argument('--verbose', action='store_true', help="HGQ2's progress bar during training")
    return p.parse_args(argv)


def fail(message: str):
    print(f'peer_hgq2: error: {message}', file=sys.stderr)
    sys.exit(2)


def build_model(task: str, input_shape, n_out: int, beta: float):
    """The benchmark architecture (bench/models.py) from HGQ2 layers. Every weight layer
    has its own learned input quantizer (per element: the first layer's is the model's
    input quantizer), per-weight kernel and bias bit widths, and an EBOPs term of weight
    ``beta`` in the loss. Logits out, no output quantizer: da4ml keeps the exact sums."""
    import keras
    from hgq.config import LayerConfigScope, QuantizerConfigScope
    from hgq.layers import QBatchNormalization, QConv2D, QDense

    with LayerConfigScope(beta0=beta, enable_ebops=True), QuantizerConfigScope(place='datalane', **INIT_ACT):
        inp = keras.Input(tuple(input_shape), name='features')
        x = inp
        if task == 'letter':
            for i, units in enumerate((64, 32, 32), start=1):
                x = QDense(units, activation='relu', name=f'fc{i}')(x)
        else:  # digits
            for i, filters in enumerate((8, 16), start=1):
                x = QConv2D(filters, 3, padding='same', use_bias=False, name=f'conv{i}')(x)
                # HGQ2 0.2.0 has no fused conv+BN layer; its BN (quantized per-channel scale
                # and offset, own input quantizer) is traced by da4ml as a multiply-add.
                x = QBatchNormalization(name=f'bn{i}')(x)
                x = keras.layers.ReLU(name=f'relu{i}')(x)
                x = keras.layers.MaxPooling2D(2, name=f'pool{i}')(x)
            x = keras.layers.Flatten(name='flatten')(x)
            x = QDense(32, activation='relu', name='fc1')(x)
        out = QDense(n_out, name='classifier')(x)
    return keras.Model(inp, out, name=f'{task}_hgq2')


def widths(quantizer, shape) -> np.ndarray:
    """Per-element bit width k + i + f of an HGQ2 fixed-point quantizer applied to a tensor
    of ``shape`` (batch axis included); 0 where it keeps no magnitude bit (i + f <= 0)."""
    from keras import ops

    q = quantizer.quantizer
    k, i, f = (np.asarray(ops.convert_to_numpy(q.bw_mapper.bw_to_x(v, shape)), dtype=np.int64) for v in q.kif)
    return np.where(i + f > 0, k + i + f, 0)


def footprint(model, comb) -> dict:
    """Weights: every kernel / bias / BN scale and offset element at its own learned width.
    Activations: every element of the tensors the conv / dense layers read, at the width of
    the layer's input quantizer, plus the model outputs at the width da4ml derives for them
    (they are not quantized by the model)."""
    from hgq.layers import QBatchNormalization, QConv2D, QDense
    from keras import ops

    w_bits = nz_bits = n_nz = a_bits = 0
    for layer in model.layers:
        if isinstance(layer, QBatchNormalization):
            scale, offset = layer.qscaler_and_qoffset
            pairs = [(layer.kq, scale), (layer.bq, offset)]
        elif isinstance(layer, (QDense, QConv2D)):
            pairs = [(layer.kq, layer.qkernel)] + ([(layer.bq, layer.qbias)] if layer.bq is not None else [])
            a_bits += int(widths(layer.iq, (1,) + tuple(layer.input.shape[1:])).sum())
        else:
            continue
        for quantizer, value in pairs:
            value = np.asarray(ops.convert_to_numpy(value))
            bits = widths(quantizer, value.shape).reshape(value.shape)
            w_bits += int(bits.sum())
            nz_bits += int(bits[value != 0].sum())
            n_nz += int(np.count_nonzero(value))
    k, i, f = np.asarray(comb.out_kifs, dtype=np.int64)
    a_bits += int(np.maximum(k + i + f, 0).sum())
    return {
        'footprint_weight_bits': w_bits,
        'footprint_nonzero_weight_bits': nz_bits,
        'nonzero_weights': n_nz,
        'footprint_activation_bits': a_bits,
    }


def write_json(path: Path, data: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    with os.fdopen(fd, 'w') as f:
        json.dump(data, f, indent=2)
        f.write('\n')
    os.replace(tmp, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.task not in TASKS:
        fail(f'unknown task {args.task!r} (HGQ2 peer tasks: {", ".join(TASKS)})')
    from bench.data import DatasetMissing, load

    try:
        data = load(args.task)
    except (DatasetMissing, ImportError, OSError) as e:
        fail(f'data of task {args.task!r} missing: {e}')
    if args.tiny:
        n_tr, n_va, n_te = TINY
        data.x_train, data.y_train = data.x_train[:n_tr], data.y_train[:n_tr]
        data.x_val, data.y_val = data.x_val[:n_va], data.y_val[:n_va]
        data.x_test, data.y_test = data.x_test[:n_te], data.y_test[:n_te]

    start = time.perf_counter()
    import da4ml
    import hgq
    import keras
    import tensorflow as tf
    from da4ml.converter import trace_model
    from da4ml.trace import HWConfig, comb_trace
    from hgq.utils import trace_minmax
    from hgq.utils.sugar import FreeEBOPs, PBar

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(args.seed)

    n_out = int(max(data.y_train.max(), data.y_val.max(), data.y_test.max())) + 1
    model = build_model(args.task, data.x_train.shape[1:], n_out, args.beta)
    batch = args.batch_size
    steps = args.epochs * -(-len(data.x_train) // batch)
    lr = keras.optimizers.schedules.CosineDecay(args.learning_rate, max(steps, 1))
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=['accuracy'],
    )
    callbacks = [FreeEBOPs()]  # puts the EBOPs into the epoch logs
    if args.verbose:
        callbacks.append(PBar('loss: {loss:.3f}/{val_loss:.3f} - acc: {accuracy:.3f}/{val_accuracy:.3f}'))
    history = model.fit(
        data.x_train,
        data.y_train,
        batch_size=batch,
        epochs=args.epochs,
        validation_data=(data.x_val, data.y_val),
        callbacks=callbacks,
        verbose=0,
    )
    train_seconds = time.perf_counter() - start

    # The activations use WRAP overflow: training only tracks their integer bits (with
    # decay), so, as HGQ2's examples do before conversion, the integer bits and signs are
    # set from the ranges the training and validation data reach. This is the model that
    # is evaluated and converted; it returns the EBOPs of the calibrated model.
    ebops = trace_minmax(model, np.concatenate([data.x_train, data.x_val]), batch_size=1024)

    def accuracy(x, y):
        logits = model.predict(x, batch_size=1024, verbose=0)
        return float(np.mean(np.argmax(logits, axis=-1) == y)), logits

    val_acc, _ = accuracy(data.x_val, data.y_val)
    test_acc, logits = accuracy(data.x_test, data.y_test)

    # da4ml: HGQ2's plugin ('keras' entry point) replays every layer on symbolic fixed-point
    # inputs; the traced logic starts after the first layer's input quantizer, so its
    # interpreter is fed the inputs as that quantizer leaves them.
    t0 = time.perf_counter()
    inp, out = trace_model(model, hwconf=HWConfig(1, -1, -1))
    comb = comb_trace(inp, out)
    trace_seconds = time.perf_counter() - t0
    first = next(layer for layer in model.layers if isinstance(layer, hgq.layers.QLayerBase))
    xq = np.asarray(keras.ops.convert_to_numpy(first.iq(data.x_test, training=False)))
    traced = np.asarray(comb.predict(xq.reshape(len(xq), -1), n_threads=1), dtype=np.float64)
    ref = logits.reshape(len(logits), -1).astype(np.float64)
    exact_samples = int(np.all(traced == ref, axis=1).sum())
    lat_min, lat_max = comb.latency

    result = {
        'task': args.task,
        'seed': args.seed,
        'beta': args.beta,
        'epochs': args.epochs,
        'tiny': bool(args.tiny),
        'batch_size': batch,
        'learning_rate': args.learning_rate,
        'learning_rate_schedule': f'cosine decay from {args.learning_rate} to 0 over {steps} steps (Adam)',
        'test_accuracy': test_acc,
        'val_accuracy': val_acc,
        'train_accuracy_last_epoch': float(history.history['accuracy'][-1]),
        'lut_estimate': float(comb.cost),
        'latency': float(lat_max),
        'latency_min': float(lat_min),
        'exact': exact_samples == len(xq),
        'exact_samples': exact_samples,
        'samples': int(len(xq)),
        **footprint(model, comb),
        'ebops': int(ebops),
        'ebops_last_epoch': int(history.history['ebops'][-1]),
        'seconds': round(time.perf_counter() - start, 1),
        'train_seconds': round(train_seconds, 1),
        'trace_seconds': round(trace_seconds, 1),
        'split': {'train': len(data.x_train), 'val': len(data.x_val), 'test': len(data.x_test)},
        'versions': {
            'hgq2': hgq.__version__,
            'da4ml': da4ml.__version__,
            'keras': keras.__version__,
            'tensorflow': tf.__version__,
        },
        'notes': [
            f'architecture: {model_title(args.task)}; HGQ2 layers QDense/QConv2D/QBatchNormalization, '
            'per-weight and per-activation (per element) learned bit widths, HGQ2 default quantizers '
            '(weights KBI SAT_SYM, activations KIF WRAP), initial activations i=1 f=3, weights 8 bits',
            f'EBOPs regularizer beta={args.beta} constant from epoch 0 (no beta schedule); the final model '
            "of the last epoch is used (no Pareto-front checkpoint selection as in HGQ2's examples)",
            'integer bits and signs of the activations calibrated after training with '
            "hgq.utils.trace_minmax on train+val (HGQ2's route before conversion); accuracies and "
            'ebops are of the calibrated model; ebops_last_epoch is that of training',
            "lut_estimate = da4ml comb_trace(...).cost via HGQ2's da4ml plugin (trace_model, "
            "HWConfig(1, -1, -1), default solver options), as lpsubnet's RTL route; latency = "
            "comb.latency max (da4ml's combinational delay estimate, not clock cycles)",
            "exactness: da4ml CombLogic.predict on the test inputs after the first layer's input "
            "quantizer vs the HGQ2 model's float32 predict, every output equal, no tolerance",
            'footprint: weight bits = sum over every kernel, bias and BN scale/offset element of its '
            'learned width k+i+f (0 where i+f<=0); footprint_nonzero_weight_bits the same over nonzero '
            'quantized values; nonzero_weights counts them; activation bits = sum over every element of '
            "the tensors the conv/dense layers read (their input quantizers' k+i+f) plus the model outputs "
            "(da4ml's minimal k+i+f of each logit)",
        ]
        + (
            [
                'digits: HGQ2 0.2.0 has no fused conv+BN layer; BN kept as QBatchNormalization (traced '
                'by da4ml as a per-channel constant multiply-add); its input quantizer is not counted '
                'in the activation footprint (lpsubnet folds BN into the conv)'
            ]
            if args.task == 'digits'
            else []
        )
        + data.notes,
    }
    write_json(args.out, result)
    print(
        f'{args.task} seed {args.seed} beta {args.beta:g}: test acc {test_acc:.4f}, '
        f'~{comb.cost:,.0f} LUT, exact {exact_samples}/{len(xq)}, {result["seconds"]} s -> {args.out}'
    )
    return 0


def model_title(task: str) -> str:
    return {
        'letter': 'MLP 16-64-32-32-26 (ReLU), logits',
        'digits': 'Conv(8)-BN-ReLU-Pool, Conv(16)-BN-ReLU-Pool, Dense(32)-ReLU, Dense(10) logits',
    }[task]


if __name__ == '__main__':
    sys.exit(main())
