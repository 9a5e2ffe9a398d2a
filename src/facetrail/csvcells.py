"""CSV cells that a spreadsheet opens as text, never as a formula."""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (or hide one behind a tab or carriage return)."""


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell: text starting with = + - @ tab or CR gets a leading apostrophe, so a spreadsheet shows
    it as text instead of running it (OWASP's advice on CSV injection); numbers and other text are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
