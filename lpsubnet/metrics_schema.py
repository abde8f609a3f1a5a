"""The documented shape of a run's ``metrics.json`` (pydantic models).

``docs/metrics.schema.json`` is generated from these models
(``python -m lpsubnet.metrics_schema > docs/metrics.schema.json``) and every run
validates its metrics against them before writing.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra='forbid')


class Accuracy(Strict):
    float_model: float = Field(description='float baseline, test set')
    pruned_float: float | None = Field(description='channel-pruned model before quantization, test set')
    quantized: float = Field(description='reduced QKeras model, test set')
    csim: float = Field(description='C simulation of the HLS project, test set')
    rtl: float | None = Field(description='cycle-accurate RTL simulation (subset of the test set), if run')


class Cost(Strict):
    parameters: int
    macs: int
    footprint_bits: int = Field(description='weights x weight bits + feature maps x activation bits')
    bops: int = Field(description='bit operations: MACs x weight bits x activation bits')
    performance_density: float = Field(description='test accuracy per megabit of footprint')


class LayerRow(Strict):
    name: str
    channels_before: int | None = Field(description='output channels before pruning (None: not a channel producer)')
    channels_after: int | None
    weight_bits: int | None
    weight_integer_bits: int | None
    activation_bits: int | None
    activation_integer_bits: int | None


class Verification(Strict):
    route: str
    tool: str
    samples: int
    exact_matches: int
    exact: bool
    max_abs_diff: float
    build_seconds: float | None
    run_seconds: float | None
    latency_cycles: int | None
    initiation_interval: int | None
    resources: dict


class Vendor(Strict):
    status: str = Field(description="'ran', 'tool missing' or 'failed'")
    message: str
    result: Verification | None = None


class OpenSynthesis(Strict):
    family: str = Field(description='the family Yosys mapped to (xc7, xcu, xcup, ecp5, nexus, ice40)')
    lut: int = Field(description="LUTs in Yosys's mapping (lut_kind says which); not vendor synthesis")
    lut_kind: str
    lut_by_size: dict
    ff: int
    carry: int
    dsp: int
    bram: int
    lut_estimate_da4ml: int
    ff_estimate_da4ml: int
    seconds: float = Field(description='Yosys wall time')
    placed: dict | None = Field(description='nextpnr-ecp5: device, utilization, fmax_mhz, bitstream (synth.place)')
    netlist: Verification | None = Field(
        description="the Yosys netlist's clock-by-clock simulation (synth.check_netlist)"
    )


class StageTime(Strict):
    name: str
    seconds: float
    cached: bool
    peak_rss_mib: float = Field(description='peak resident memory of the lpsubnet process (child builds excluded)')
    peak_rss_scope: str = Field(
        default='stage', description="'stage' (peak reset at the stage's start) or 'process so far' (running maximum)"
    )


class Verdict(Strict):
    exact: bool = Field(
        description='the C simulation, its second checks, the RTL and the Yosys netlist (when they ran) all bit-exact'
    )
    mismatches: list[str] = Field(description='one line per path that is not, with its counts')


class Metrics(Strict):
    lpsubnet_version: str
    verdict: Verdict
    dataset: dict
    compression: dict = Field(description='sparsity, bit widths, importance, schedule used')
    recovery: dict = Field(
        description='how the network was retrained: base rates, schedule, distillation, and per phase the planned '
        'and run epochs and the early-stopping record (pruner manifest), plus a one-line summary'
    )
    accuracy: Accuracy
    float_cost: Cost
    compressed_cost: Cost
    layers: list[LayerRow]
    csim: Verification
    rtl: Verification | None
    rtl_skipped_reason: str | None
    synth: OpenSynthesis | None = Field(None, description="Yosys's mapping of the RTL design (the synth stage)")
    synth_skipped_reason: str | None = None
    vendor: Vendor
    stages: list[StageTime]
    torch: dict | None = Field(
        None,
        description='for a PyTorch model (model.path): its source, input shapes, the conversion check (max |diff| '
        "of the float outputs) and the reduced model written back as compress/reduced.pt2 (the manifest's torch entry)",
    )


if __name__ == '__main__':
    print(json.dumps(Metrics.model_json_schema(), indent=2))
