"""The errors the HLS back end raises, each with the process exit code the CLI uses.

Exit codes are distinct per kind so scripts can tell a bad input from a
mismatching design from a missing tool.
"""

from __future__ import annotations


class HLSBackendError(Exception):
    """Base class; ``exit_code`` is what ``lpsubnet`` exits with."""

    exit_code = 1


class BadInputError(HLSBackendError):
    """A file, option or array the user gave cannot be used (says which and why)."""

    exit_code = 2


class UnsupportedModelError(BadInputError):
    """The model holds a layer or quantizer the back end cannot make bit-exact."""


class DesignTooLargeError(BadInputError):
    """The fully unrolled RTL design would be larger than the route builds without being
    told to (``force_large``); ``size`` is the estimate (hls_backend.rtl.size.DesignSize)."""

    def __init__(self, message: str, size):
        super().__init__(message)
        self.size = size


class OutputExistsError(BadInputError):
    """The output directory exists and is not empty, and ``force`` was not given."""


class MismatchError(HLSBackendError):
    """Hardware simulation and the QKeras model disagree on at least one output bit."""

    exit_code = 3


class ToolMissingError(HLSBackendError):
    """A required external tool (g++, vivado_hls, vitis-run, verilator) is not on PATH."""

    exit_code = 4

    def __init__(self, message: str, tool: str, hint: str = ''):
        super().__init__(message)
        self.tool = tool
        self.hint = hint


class BuildError(HLSBackendError):
    """An external build (g++, vendor tool) ran and failed; the log path is in the message."""

    exit_code = 5
