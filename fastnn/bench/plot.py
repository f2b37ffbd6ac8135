"""``scaling.png``: time per epoch against hidden width and against batch size."""

from __future__ import annotations

from pathlib import Path

__all__ = ["AXES", "plot_scaling"]

#: The two sweeps: results key and axis title.
AXES = (
    ("width", "hidden width w (11-w-w-1, batch 32)"),
    ("batch", "batch size (11-6-6-1)"),
)


def _plot_axis(ax, rows: list[dict], xlabel: str) -> None:
    """One panel: a line per contender (solid for fastnn, dashed for peers), log-log."""
    names = list(dict.fromkeys(r["contender"] for r in rows))
    for name in names:
        pts = sorted(
            (r["x"], r["per_epoch_s"], r["label"], r["kind"])
            for r in rows
            if r["contender"] == name
        )
        style = "-o" if pts[0][3] == "fastnn" else ":^" if pts[0][3] != "peer" else "--s"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=pts[0][2], markersize=4)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    xs_all = sorted({r["x"] for r in rows})
    if xs_all:
        ax.set_xticks(xs_all)
        ax.set_xticklabels([str(x) for x in xs_all])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("seconds per epoch")
    ax.grid(True, which="both", alpha=0.3)
    if names:
        ax.legend(fontsize=8)


def plot_scaling(res: dict, path: Path) -> None:
    """``scaling.png``: time per epoch vs hidden width and vs batch size, one line per
    backend and scaling peer (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sc = res.get("scaling") or {}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (axis, xlabel) in zip(axes, AXES, strict=True):
        _plot_axis(ax, [r for r in sc.get(axis, []) if "median_s" in r], xlabel)
    m = res["machine"]
    fig.suptitle(
        f"fastnn: time per epoch ({m['cpu']}, {m.get('usable_cpus', m['logical_cpus'])} cores; "
        f"{sc.get('data', '')})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
