"""Small vectorised statistics shared by the brain modules.

``np.nanmedian`` falls back to a slow masked-array path along short axes; sorting with
NaN pushed to the end and picking the middle of the valid prefix is ~20x faster on the
``entity x day x window`` blocks used here and gives identical results.
"""

from __future__ import annotations

import numpy as np

from omnify.brain.types import DateArray, FloatArray, IntArray

MAD_TO_SD = 1.4826


def nanmedian_last(x: FloatArray) -> tuple[FloatArray, IntArray]:
    """Median along the last axis ignoring NaN, and the number of valid values."""
    s = np.sort(x, axis=-1)
    count = np.sum(~np.isnan(x), axis=-1)
    lo = np.clip((count - 1) // 2, 0, None)
    hi = np.clip(count // 2, 0, None)
    a = np.take_along_axis(s, lo[..., None], axis=-1)[..., 0]
    b = np.take_along_axis(s, hi[..., None], axis=-1)[..., 0]
    med = np.where(count > 0, 0.5 * (a + b), np.nan)
    return med, count


def robust_scale_last(x: FloatArray) -> tuple[FloatArray, IntArray]:
    """1.4826 x median absolute deviation along the last axis (a robust SD)."""
    med, count = nanmedian_last(x)
    mad, _ = nanmedian_last(np.abs(x - med[..., None]))
    return MAD_TO_SD * mad, count


def weekday(dates: DateArray) -> IntArray:
    """Monday = 0 ... Sunday = 6 (1970-01-01 was a Thursday)."""
    return ((dates.astype("datetime64[D]").astype(np.int64) + 3) % 7).astype(np.int64)


def centered_sum(x: FloatArray, width: int) -> FloatArray:
    """Sum over a centred window along the last axis; NaN where the window is incomplete."""
    half = width // 2
    c = np.cumsum(np.pad(x, [(0, 0)] * (x.ndim - 1) + [(1, 0)]), axis=-1)
    out = np.full(x.shape, np.nan)
    n = x.shape[-1]
    if n >= width:
        out[..., half : n - half] = c[..., width:] - c[..., : n - width + 1]
    return out
