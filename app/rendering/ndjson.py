"""JSON text for NDJSON lines (the render's and the send sheet's streams).

UTF-8 as it is (`ensure_ascii=False`: a template in any language stays its size), except the three
characters that JSON leaves raw but common line splitters take for line breaks: NEL (U+0085), LINE
SEPARATOR and PARAGRAPH SEPARATOR (U+2028, U+2029). Python's `str.splitlines` and httpx's
`iter_lines` split on them, which would cut a line in two; escaped (`\\u2028`), every reader
decodes the same string. (JSON already escapes the other ASCII control characters.)
"""

from __future__ import annotations

import json
from typing import Any

_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def dumps(value: Any) -> str:
    """`value` as one line of JSON."""
    return json.dumps(value, ensure_ascii=False).translate(_BREAKS)


def inside(text: str) -> str:
    """`text` as the inside of a JSON string (without its quotes)."""
    return dumps(text)[1:-1]
