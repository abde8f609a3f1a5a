"""``HLSOptions``: hls4ml's options under hls4ml's names, each declared once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from declared_settings import setting

from ..core.options import TargetOptions
from ..errors import BadInputError
from .vendor import BACKENDS

IO_TYPES = ('io_parallel', 'io_stream')
# distributed_arithmetic: hls4ml's da4ml-generated adder graphs for Dense and Conv
# layers (constant multiplications without DSPs); fully unrolled, so ReuseFactor 1 only.
STRATEGIES = ('Latency', 'Resource', 'distributed_arithmetic')


@dataclass
class HLSOptions(TargetOptions):
    """hls4ml's options under hls4ml's names (backend, io_type, ReuseFactor, Strategy, ...)."""

    backend: Annotated[Literal[tuple(BACKENDS)], setting('HLS tool the project is for.')] = 'Vitis'  # type: ignore[valid-type]
    io_type: Annotated[Literal[IO_TYPES], setting("hls4ml's IOType.")] = 'io_parallel'  # type: ignore[valid-type]
    reuse_factor: Annotated[int, setting('hls4ml ReuseFactor.', ge=1)] = 1
    strategy: Annotated[
        Literal[STRATEGIES],  # type: ignore[valid-type]
        setting(
            "hls4ml Strategy; distributed_arithmetic: hls4ml's da4ml adder graphs for Dense/Conv (no DSPs, "
            'ReuseFactor 1).'
        ),
    ] = 'Latency'
    default_precision: Annotated[
        str | None,
        setting(
            'Accept layers that cannot be exact (float activations, batch norm) at this type; csim will not be exact.',
            config=False,
        ),
    ] = None

    def check(self) -> None:
        super().check()
        if self.strategy == 'distributed_arithmetic' and self.reuse_factor != 1:
            raise BadInputError(
                f'Strategy distributed_arithmetic builds fully unrolled adder graphs and needs ReuseFactor 1, '
                f'got {self.reuse_factor}; use Latency or Resource to share multipliers'
            )
