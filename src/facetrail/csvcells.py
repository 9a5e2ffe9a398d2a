"""CSV cells that a spreadsheet opens as text, never as a formula.

OWASP's advice on CSV injection: a cell must not begin with a character that starts a formula, and since a
spreadsheet may split the file at another separator than the one it was written with (``;`` in many locales, tab,
``|``), or trim the spaces before a cell, no separator inside a cell may be followed by one either.
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
"""What makes a spreadsheet read a cell as a formula (or hide one behind a tab or carriage return): = + - @, tab, CR,
and the full-width ＝ ＋ － ＠ that some spreadsheets take for them."""
SEPARATORS = ",;|\t\r\n\""
"""Where a spreadsheet may begin a new cell (or a quoted one) inside what was written as one."""
_AFTER_SEPARATOR = re.compile(f"([{re.escape(SEPARATORS)}])(?=\\s*[{re.escape(''.join(FORMULA_STARTS))}])")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell. Text that a spreadsheet would run as a formula gets an apostrophe (shown as text, not
    run): at its start when it begins with one of FORMULA_STARTS, even after spaces, and after each separator that is
    followed by one. Numbers, and text that is exactly a number ("-5", "+0.25": a spreadsheet reads a constant, never
    a formula), are unchanged, so negative values stay negative; other text is unchanged."""
    if not isinstance(value, str) or _NUMBER.fullmatch(value):
        return value
    marked = _AFTER_SEPARATOR.sub(r"\1'", value)
    return "'" + marked if marked.lstrip().startswith(FORMULA_STARTS) else marked
