"""Small charts rendered server-side as PNG (matplotlib, Agg): alert images and report figures.

pyplot keeps global state, so figures are drawn one at a time under a lock; the Agg
backend needs no display. Imported lazily: processes that never draw never load it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence

_lock = threading.Lock()


def line_chart_png(dates: Sequence[str], series: dict[str, Sequence[float]], *, title: str, ylabel: str,
                   color: str = "#2563EB", width: float = 6.4, height: float = 2.6) -> bytes:
    """A small line chart as PNG bytes (the first series in ``color``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with _lock:
        fig, ax = plt.subplots(figsize=(width, height), dpi=110)
        try:
            palette = [color, "#F97316", "#10B981", "#8B5CF6"]
            x = list(range(len(dates)))
            for i, (name, values) in enumerate(series.items()):
                ax.plot(x, list(values), marker="o", markersize=3, linewidth=2, color=palette[i % len(palette)],
                        label=name)
            step = max(1, len(dates) // 7)
            ax.set_xticks(x[::step], [d[5:] for d in dates][::step], fontsize=8)
            ax.tick_params(axis="y", labelsize=8)
            ax.set_title(title, fontsize=10, loc="left")
            ax.set_ylabel(ylabel, fontsize=8)
            ax.grid(alpha=0.25)
            ax.spines[["top", "right"]].set_visible(False)
            if len(series) > 1:
                ax.legend(fontsize=8, frameon=False)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            return buf.getvalue()
        finally:
            plt.close(fig)
