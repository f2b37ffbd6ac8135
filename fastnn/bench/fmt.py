"""Formatting for the reports: seconds, ratios, labels, markdown tables."""

from __future__ import annotations

import math

__all__ = ["cores", "fmt_ratio", "fmt_s", "kernels_text", "label", "table"]


def fmt_s(s: float | None) -> str:
    """Seconds with a unit that keeps three or four digits: ``1.23 s``, ``4.56 ms``."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    if s >= 100:
        return f"{s:.0f} s"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def fmt_ratio(r: float | None) -> str:
    """A ratio as ``1.23x``, ``12.3x`` or ``123x``; ``-`` when missing."""
    if r is None or not math.isfinite(r):
        return "-"
    return f"{r:.0f}x" if r >= 100 else f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def label(row: dict) -> str:
    """The contender's label, with the Keras backend named when Keras ran."""
    kb = row.get("info", {}).get("keras_backend")
    if kb and row["label"] == "Keras 3":
        return f"Keras 3, {kb} backend"
    return row["label"]


def cores(m: dict):
    """The cores this process may use (all logical CPUs where affinity is unknown)."""
    return m.get("usable_cpus", m["logical_cpus"])


def table(header: list[str], align: str, rows) -> list[str]:
    """A markdown table: ``align`` is one ``l`` or ``r`` per column."""
    rule = "|" + "".join("---|" if a == "l" else "---:|" for a in align)
    return ["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(r) + " |" for r in rows)]


def kernels_text(kernels) -> str:
    """threadpoolctl entries as ``libscipy_openblas 0.3.31 (SkylakeX kernels), 2 threads``."""
    if not isinstance(kernels, list):
        return str(kernels or "unknown")
    parts = []
    for p in kernels:
        arch = f" ({p['architecture']} kernels)" if p.get("architecture") else ""
        name = p.get("prefix") or p.get("internal_api")
        version = f" {p['version']}" if p.get("version") else ""
        parts.append(f"{name}{version}{arch}, {p.get('num_threads')} threads")
    return "; ".join(dict.fromkeys(parts)) or "none loaded"
