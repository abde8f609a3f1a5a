"""The FPGA families Yosys maps an RTL project to, and what its cell counts mean in each.

A family names Yosys's synthesis command, the simulation models of its primitives (for
the netlist check) and how the mapped cells add up to LUTs, flip-flops, carry cells,
DSPs and block RAMs. A Xilinx part picks its family from its name; Lattice families are
chosen by name (``--family``): nextpnr places those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BadInputError


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    command: str  # Yosys's synthesis command, without -top
    sim_models: str  # Yosys's simulation models of the family's primitives
    lut_cells: str  # regex: a LUT cell; group 1 is its input count where the name says it
    ff_cells: str
    carry_cells: str
    dsp_cells: str
    bram_cells: str
    lut_kind: str  # what one counted LUT is
    lut_alias: tuple[tuple[str, str], ...] = ()  # cells counted as a LUT of a size: (('INV', 'LUT1'),)

    def counts(self, cells: dict[str, int]) -> dict:
        """LUTs (total and by inputs), FFs, carry, DSP and BRAM cells from Yosys's
        ``stat`` cell counts; every cell type is kept under ``cells`` as well."""
        by_size: dict[str, int] = {}
        totals = {'FF': 0, 'CARRY': 0, 'DSP': 0, 'BRAM': 0}
        for cell, count in cells.items():
            if cell.startswith('$'):  # Yosys's own bookkeeping cells ($scopeinfo)
                continue
            lut = re.fullmatch(self.lut_cells, cell)
            if lut:
                size = dict(self.lut_alias).get(cell) or (f'LUT{lut.group(1)}' if lut.group(1) else cell)
                by_size[size] = by_size.get(size, 0) + count
            for key, pattern in (
                ('FF', self.ff_cells),
                ('CARRY', self.carry_cells),
                ('DSP', self.dsp_cells),
                ('BRAM', self.bram_cells),
            ):
                if re.fullmatch(pattern, cell):
                    totals[key] += count
        return {
            'LUT': sum(by_size.values()),
            'LUT_by_size': dict(sorted(by_size.items())),
            **totals,
            'lut_kind': self.lut_kind,
            'cells': {k: v for k, v in sorted(cells.items()) if not k.startswith('$')},
        }


def _xilinx(name: str, title: str, dsp: str, bram: str) -> Family:
    return Family(
        name=name,
        title=title,
        # Out of context, as a core is synthesized for a larger design: no I/O buffers.
        command=f'synth_xilinx -family {name} -flatten -noiopad',
        sim_models='+/xilinx/cells_sim.v',
        # INV is a LUT1 once placed (Vivado has no separate inverter).
        lut_cells=r'LUT([1-6])|INV',
        ff_cells=r'FD[RSCP]E(_1)?|LD[CP]E',
        carry_cells=r'CARRY[48]',  # Yosys 0.70 maps UltraScale(+) adders to CARRY4 too
        dsp_cells=dsp,
        bram_cells=bram,
        lut_kind='6-input LUT (LUT1-LUT6; INV counted as LUT1)',
        lut_alias=(('INV', 'LUT1'),),
    )


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        _xilinx('xc7', 'Xilinx 7-series', 'DSP48E1', 'RAMB(18|36)E1'),
        _xilinx('xcu', 'Xilinx UltraScale', 'DSP48E2', 'RAMB(18|36)E2'),
        _xilinx('xcup', 'Xilinx UltraScale+', 'DSP48E2', 'RAMB(18|36)E2|URAM288'),
        Family(
            name='ecp5',
            title='Lattice ECP5',
            command='synth_lattice -family ecp5',
            sim_models='+/lattice/cells_sim_ecp5.v',
            lut_cells=r'LUT4()',
            ff_cells=r'TRELLIS_FF',
            carry_cells=r'CCU2C',  # two LUT4s each, in the same slice
            dsp_cells=r'MULT18X18D|ALU54B',
            bram_cells=r'DP16KD',
            lut_kind='4-input LUT (LUT4; each CCU2C carry cell holds two more)',
        ),
        Family(
            name='nexus',
            title='Lattice Nexus (CrossLink-NX, Certus-NX)',
            command='synth_lattice -family lifcl',
            sim_models='+/lattice/cells_sim_nexus.v',
            lut_cells=r'LUT4()',
            ff_cells=r'FD1P3[A-Z]{2}',
            carry_cells=r'CCU2',
            dsp_cells=r'MULT\w+|PREADD9|MULT9|MULT18\w*|REG18',
            bram_cells=r'DP16K|PDP16K|SP16K|LRAM|EBR\w*',
            lut_kind='4-input LUT (LUT4; each CCU2 carry cell holds two more)',
        ),
        Family(
            name='ice40',
            title='Lattice iCE40',
            command='synth_ice40 -dsp',
            sim_models='+/ice40/cells_sim.v',
            lut_cells=r'SB_LUT4()',
            ff_cells=r'SB_DFF\w*',
            carry_cells=r'SB_CARRY',
            dsp_cells=r'SB_MAC16',
            bram_cells=r'SB_RAM40_4K\w*|SB_SPRAM256KA',
            lut_kind="4-input LUT (SB_LUT4; SB_CARRY uses the LUT's carry logic)",
        ),
    )
}

LATTICE = tuple(name for name, family in FAMILIES.items() if family.title.startswith('Lattice'))

# Xilinx part names by family (the device name's start, after an optional xq/xa prefix).
# UltraScale+ device names end in "p" (xcku5p, xcvu13p) or are Zynq UltraScale+ (xczu),
# Artix/Kria UltraScale+ (xcau, xck26); plain UltraScale ones have no "p" (xcku040, xcvu095).
_XILINX_PARTS = (
    (r'x[cqa]7[aksvz]\w*', 'xc7'),
    (r'x[cq](zu|au|k2[46])\w*', 'xcup'),
    (r'x[cq](ku|vu)\d+p\b.*', 'xcup'),
    (r'x[cq](ku|vu)\d+\b.*', 'xcu'),
)


def family_of_part(part: str) -> Family:
    """The family Yosys maps a Xilinx ``part`` to; BadInputError for a part it has none for."""
    device = part.strip().lower().split('-')[0]
    for pattern, name in _XILINX_PARTS:
        if re.fullmatch(pattern, device):
            return FAMILIES[name]
    raise BadInputError(
        f'part {part!r}: Yosys has no synthesis family for it (synth_xilinx maps 7-series, UltraScale and '
        f'UltraScale+ parts, e.g. xc7a100t-csg324-1, xcku040-ffva1156-2-e, xcvu13p-flga2577-2-e); give --part of '
        f'one of those or --family {"|".join(LATTICE)}'
    )


def choose_family(part: str, family: str | None) -> Family:
    """``family`` by name when given, else the family of ``part``."""
    if family is None:
        return family_of_part(part)
    if family not in FAMILIES:
        raise BadInputError(f'unknown family {family!r}; choose one of {", ".join(FAMILIES)}')
    return FAMILIES[family]
