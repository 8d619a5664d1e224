"""A public, real, labelled dataset the brain is never tuned on: CDNOW customer transactions.

Provenance: the CDNOW "master" file (23,570 customers who made their first purchase at
the CDNOW online music store in the first quarter of 1997, every purchase until the end
of June 1998: customer id, date, number of CDs, dollar value), published by Fader and
Hardie with "Counting Your Customers the Easy Way" (2005) and shipped inside the
``Lifetimes`` package on PyPI (``lifetimes/datasets/CDNOW_master.txt``, pinned by the
``bench`` extra). We read the file only; the package's code is never imported.

Protocol (the paper's): calibrate on the 39 weeks to 30 September 1997, predict each
customer's repeat purchases (purchase days) and spend in the following 39 weeks, compare
with what they did. The brain's own ``rfm_from_orders`` and ``customer_ltv`` do all the
work, with the product's defaults; the naive baseline is each customer's past rate.
"""

from __future__ import annotations

import importlib.util
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from omnify.brain.ltv import LTVConfig, customer_ltv, rfm_from_orders

CAL_END = date(1997, 9, 30)
HOLDOUT_END = date(1998, 6, 30)
#: The published BG/NBD fit to this calibration period (weeks), Fader, Hardie & Lee (2005).
PUBLISHED_WEEKS = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


def cdnow_file() -> Path | None:
    """Locate the data file inside the installed ``lifetimes`` package without importing it."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_master.txt"
    return path if path.exists() else None


def eval_cdnow() -> dict[str, Any]:
    path = cdnow_file()
    if path is None:
        return {"skipped": "install the bench extra (pip install -e '.[bench]') for the Lifetimes package's CDNOW file"}
    raw = np.loadtxt(path, dtype=np.int64, usecols=(0, 1), skiprows=1)
    cust = raw[:, 0].astype(str)
    day = np.array([f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}" for d in raw[:, 1]], dtype="datetime64[D]")
    amount = np.loadtxt(path, usecols=3, skiprows=1)
    cal_end, hold_end = np.datetime64(CAL_END), np.datetime64(HOLDOUT_END)
    horizon = float((hold_end - cal_end).astype(int))
    cal = day <= cal_end
    rfm = rfm_from_orders(cust[cal].tolist(), day[cal], amount[cal], CAL_END)
    res = customer_ltv(rfm, LTVConfig(horizon_days=horizon))
    # actual holdout behaviour: distinct purchase days and spend per customer
    index = {c: i for i, c in enumerate(rfm.customer_id)}
    hold = (day > cal_end) & (day <= hold_end)
    hold_days: dict[int, set[Any]] = {}
    hold_spend = np.zeros(len(rfm))
    for c, d, a in zip(cust[hold].tolist(), day[hold].tolist(), amount[hold].tolist(), strict=True):
        i = index.get(c)
        if i is None:
            continue
        hold_days.setdefault(i, set()).add(d)
        hold_spend[i] += a
    actual = np.zeros(len(rfm))
    for i, ds in hold_days.items():
        actual[i] = len(ds)
    pred = res.expected_purchases
    naive = np.divide(rfm.frequency, rfm.T, out=np.zeros(len(rfm)), where=rfm.T > 0) * horizon
    out: dict[str, Any] = {
        "dataset": "CDNOW master (Lifetimes package), 23,570 customers, calibration to 1997-09-30, holdout 39 weeks",
        "customers": len(rfm),
        "method": res.method,
        "holdout_repeat_purchases_actual": int(actual.sum()),
        "holdout_repeat_purchases_predicted": round(float(pred.sum()), 1),
        "holdout_total_error": round(float(pred.sum() / max(actual.sum(), 1) - 1.0), 4),
        "mae_purchases": round(float(np.mean(np.abs(pred - actual))), 4),
        "mae_purchases_naive": round(float(np.mean(np.abs(naive - actual))), 4),
        "holdout_spend_actual": round(float(hold_spend.sum()), 2),
        "holdout_spend_predicted": round(float(res.expected_value.sum()), 2),
        "mae_spend": round(float(np.mean(np.abs(res.expected_value - hold_spend))), 3),
    }
    naive_value = naive * np.where(rfm.frequency > 0, rfm.monetary, float(rfm.monetary[rfm.frequency > 0].mean()))
    out["mae_spend_naive"] = round(float(np.mean(np.abs(naive_value - hold_spend))), 3)
    if res.bgnbd is not None:
        fit = {"r": res.bgnbd.r, "alpha": res.bgnbd.alpha / 7.0, "a": res.bgnbd.a, "b": res.bgnbd.b}
        out["bgnbd_weeks"] = {k: round(v, 4) for k, v in fit.items()}
        out["bgnbd_published_weeks"] = PUBLISHED_WEEKS
        out["bgnbd_max_rel_diff_from_published"] = round(
            max(abs(fit[k] - v) / v for k, v in PUBLISHED_WEEKS.items()), 4
        )
    # customers ranked by predicted value: share of the holdout spend from the predicted top 20 %
    top = np.argsort(-res.expected_value)[: len(rfm) // 5]
    out["top20pct_share_of_holdout_spend"] = round(float(hold_spend[top].sum() / max(hold_spend.sum(), 1e-9)), 4)
    return out
