"""The one number formatter of the report: at most 3 significant digits, everywhere.

- ``num(x[, approx=True])``: 3 significant digits ("≈" first when rounding changed an exact count);
  thousands separators from 1,000 on (``2,110``, ``16,400``); ``1.07e9`` from 10^9 on; "–" for
  None/NaN/inf; other values as escaped text.
- ``percent(x)``: ``num(100 x)``; ``signed(x)``: ``num`` with a leading ``+`` for positive values.
- ``interval(mid, lo, hi, pct=False, hi_text=None)``: ``mid [lo, hi]`` (``hi_text`` replaces
  a missing upper end, e.g. "not determined by these data").
- ``esc``: HTML escaping; ``sig_digits(token)`` / ``printed_numbers(html)``: to check the rule.

Not handled: locales (the separator is always a comma), units.
"""

from __future__ import annotations

import html as _html
import math
from typing import Any

SIG = 3


def esc(x: Any) -> str:
    return _html.escape(str(x))


def num(x: Any, sig: int = SIG, approx: bool = False) -> str:
    """``x`` rounded to ``sig`` significant digits (see the module docstring); ``approx``
    prefixes "≈" when rounding changed the value (for exact counts such as a design N)."""
    if x is None or isinstance(x, bool):
        return "–" if x is None else esc(x)
    if not isinstance(x, (int, float)):
        try:
            import numpy as np

            if isinstance(x, np.generic):
                return num(x.item(), sig)
        except ImportError:  # pragma: no cover
            pass
        return esc(x)
    x = float(x)
    if not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    r = round(x, sig - 1 - mag)
    if approx and r != x:
        return "≈" + num(x, sig)
    if abs(r) >= 1e9:
        m, e = f"{r:.{sig - 1}e}".split("e")
        return f"{m.rstrip('0').rstrip('.')}e{int(e)}"
    if abs(r) >= 1000:
        return f"{r:,.0f}"
    return f"{r:.{sig}g}"


def percent(x: Any) -> str:
    return "–" if x is None else num(100.0 * float(x))


def signed(x: Any) -> str:
    s = num(x)
    return f"+{s}" if x is not None and isinstance(x, (int, float)) and x > 0 else s


def interval(mid: Any, lo: Any, hi: Any, pct: bool = False, hi_text: str | None = None) -> str:
    f = percent if pct else num
    if lo is None and hi is None:
        return f(mid)
    hi_s = f(hi) if hi is not None else esc(hi_text or "–")
    return f"{f(mid)} <span class=sub>[{f(lo)}, {hi_s}]</span>"


def sig_digits(token: str) -> int:
    """Significant digits of a number as printed (``"16,400"`` -> 3, ``"0.0521"`` -> 3)."""
    t = token.replace(",", "").lstrip("+-−")
    t = t.split("e")[0].split("E")[0]
    if "." in t:
        d = t.replace(".", "").lstrip("0")
        return len(d)
    return len(t.strip("0")) or 1


def printed_numbers(html_text: str) -> list[str]:
    """Every number printed in an HTML fragment (tags removed), as written."""
    import re

    text = re.sub(r"<[^>]+>", " ", html_text)
    return re.findall(r"[-+−]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?", text)


__all__ = ["esc", "interval", "num", "percent", "printed_numbers", "sig_digits", "signed"]
