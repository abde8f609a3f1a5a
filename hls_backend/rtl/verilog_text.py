"""Reading Verilog as text, where parsing it would be more than the question needs."""

from __future__ import annotations

import re


def instantiates(text: str, module: str) -> bool:
    """Whether ``text`` instantiates ``module``: its name followed by a parameter list
    (``shift_adder #(...)``) or an instance name and a port list (``LUT4 lut (...)``)."""
    return re.search(rf'\b{re.escape(module)}\s*(?:#\s*\(|\w+\s*\()', text) is not None
