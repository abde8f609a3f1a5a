"""Vendor route: the tool call is tested with a stub executable, the parser with fixture reports."""

import subprocess

import pytest

import hls_backend
from fpga_tests.cli_helpers import cli
from fpga_tests.hls_models import jet_mlp, save
from hls_backend.errors import BadInputError, ToolMissingError


@pytest.fixture(scope='module')
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp('vendor')
    hls_backend.write_project(save(jet_mlp(4), root), root / 'prj', n_default_samples=4)
    return root / 'prj'


def test_missing_vendor_tool_gives_one_line_hint(project):
    with pytest.raises(ToolMissingError) as info:
        hls_backend.synth(project, 'csynth')
    message = str(info.value)
    assert message.startswith('vitis-run not found on PATH')
    assert f'lpsubnet synth {project} --steps csynth' in message and '\n' not in message
    assert '`make vendor-csynth` in' in message
    # Several steps: the hint's make line names a target for each of them.
    with pytest.raises(ToolMissingError, match='`make vendor-csynth vendor-cosim` in'):
        hls_backend.synth(project, 'csynth,cosim')
    proc = cli('synth', project)
    assert proc.returncode == 4 and 'vitis-run not found on PATH' in proc.stderr


def test_stub_vitis_run_is_called_and_reports_parsed(project, stub_vitis_run):
    result = hls_backend.synth(project, 'csynth,cosim')
    assert (project / 'called_with.txt').read_text().split()[1:] == ['--tcl', 'build_prj.tcl', '--mode', 'hls']
    opts = (project / 'called_build_opt.tcl').read_text()
    assert '    csim 0\n' in opts and '    synth 1\n' in opts and '    cosim 1\n' in opts and '    export 0\n' in opts
    # cosim's measured latency wins over csynth's worst case
    assert result.latency_cycles == 10
    assert result.initiation_interval == 1
    assert result.resources == {
        'BRAM_18K': 0,
        'DSP': 12,
        'FF': 2317,
        'LUT': 10894,
        'URAM': 0,
        'EstimatedClockPeriod': 3.412,
    }
    assert result.checks['cosim']['Status'] == 'Pass'
    saved = (project / 'lpsubnet_vendor.json').read_text()
    assert '"latency_cycles": 10' in saved


def test_csynth_only_uses_synthesis_latency(project, stub_vitis_run):
    result = hls_backend.synth(project, ['csynth'])
    assert result.latency_cycles == 11 and 'cosim' not in result.checks


def test_unknown_step(project):
    with pytest.raises(BadInputError, match=r"unknown step\(s\) \['place'\]; choose from csim, csynth, cosim, export"):
        hls_backend.synth(project, 'csynth,place')


def test_generated_project_files(project):
    """The project carries lpsubnet's testbench, Makefile and README, with the commands that work."""
    test_cpp = (project / 'myproject_test.cpp').read_text()
    assert 'std::setprecision(17)' in test_cpp and 'myproject(x,' in test_cpp.replace(' ', '')
    makefile = (project / 'Makefile').read_text()
    assert 'vitis-run --tcl build_prj.tcl --mode hls' in makefile
    readme = (project / 'README.md').read_text()
    assert 'make csim' in readme and "input quantizer 'input_q'" in readme and 'softmax' in readme
    # The generated Makefile's vendor-free csim really builds and runs.
    proc = subprocess.run(['make', 'csim'], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = (project / 'tb_data' / 'csim_results.log').read_text().splitlines()
    expected = (project / 'tb_data' / 'tb_output_predictions.dat').read_text().splitlines()
    assert [list(map(float, a.split())) for a in lines] == [list(map(float, b.split())) for b in expected]
