"""Shared value types of the brain: the in-memory frames it reads and the results it returns.

The brain is a set of pure functions. The service layer reads rows from the database,
packs them into the frames below (plain numpy column arrays, no ORM objects) and hands
them to :func:`omnify.brain.run.run_brain`; the results come back as frozen dataclasses
whose ``to_dict()`` output is JSON-serialisable (numpy scalars, arrays, dates and
non-finite floats are converted), so evidence can be stored in a JSON column as is.

Why column arrays rather than a DataFrame library: the modules vectorise over a dense
``entity x day`` matrix anyway, numpy is already a dependency, and a frame that is only
a few typed arrays keeps the import path light and the types checkable by mypy.

Input validation lives here too. Bad input (mismatched lengths, negative counts, NaN)
raises :class:`BrainInputError`, an ``UnprocessableEntity`` (422 problem+json), so an
endpoint that forwards user-provided parameters (for example a budget plan) returns a
clear client error instead of a 500.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from omnify.core.errors import UnprocessableEntity

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
DateArray = npt.NDArray[np.datetime64]

DateLike = date | datetime | str | np.datetime64
Factorized = tuple[list[str], IntArray]


class BrainInputError(UnprocessableEntity):
    """Input a brain module cannot work with; maps to a 422 problem response."""

    code = "brain-input-invalid"
    title = "Invalid input for the analytics engine"


# --------------------------------------------------------------------------- conversion


def to_jsonable(obj: Any) -> Any:
    """Convert results to plain JSON types.

    NaN and infinities become ``None`` (JSON has no representation for them and a
    chart library treats ``null`` as a gap, which is the intended meaning).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        if np.issubdtype(obj.dtype, np.datetime64):
            return [str(d) for d in obj.astype("datetime64[D]")]
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.datetime64):
        return str(obj.astype("datetime64[D]"))
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    return obj


class JsonMixin:
    """``to_dict()`` for result dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        out = to_jsonable(self)
        assert isinstance(out, dict)
        return out


def _refuse_times(arr: Any, name: str) -> None:
    """Hourly (or finer) rows are refused: summing them into days silently would hide a partial day."""
    if arr.size == 0:
        return
    if np.issubdtype(arr.dtype, np.datetime64):
        if np.datetime_data(arr.dtype)[0] in ("D", "W", "M", "Y"):
            return
        has_time = bool((arr != arr.astype("datetime64[D]")).any())
    elif arr.dtype == object and isinstance(arr.flat[0], datetime):
        has_time = any(isinstance(v, datetime) and v.time() != datetime.min.time() for v in arr.ravel())
    elif arr.dtype.kind in "US":
        has_time = any("T" in str(v) or ":" in str(v) for v in arr.ravel()[:1000])
    else:
        return
    if has_time:
        raise BrainInputError(
            f"{name}: rows carry times of day (hourly data). The brain works on calendar days: sum the hours "
            "into days in the client's time zone (and leave out a day that is not over yet) before sending them"
        )


def as_dates(values: Sequence[DateLike] | npt.ArrayLike, name: str = "date", *, daily: bool = False) -> DateArray:
    """Coerce dates (ISO strings, ``date``, ``datetime64``) to ``datetime64[D]``.

    ``daily=True`` refuses values with a time of day (hourly rows) with a clear error.
    """
    try:
        arr = np.asarray(values)
        if daily:
            _refuse_times(arr, name)
        if arr.dtype == object and arr.size and isinstance(arr.flat[0], datetime):
            arr = np.asarray([v.date() if isinstance(v, datetime) else v for v in arr.ravel()])
        out = arr.astype("datetime64[D]").ravel()
    except (TypeError, ValueError) as exc:
        raise BrainInputError(f"{name}: cannot be read as calendar dates ({exc})") from exc
    if out.size and np.isnat(out).any():
        raise BrainInputError(f"{name}: contains missing dates")
    return out


def as_float(values: npt.ArrayLike | None, name: str, n: int, *, allow_negative: bool = False) -> FloatArray:
    """Coerce a numeric column, checking its length and that it is finite (and >= 0)."""
    if values is None:
        return np.zeros(n, dtype=np.float64)
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise BrainInputError(f"{name}: not numeric ({exc})") from exc
    if arr.shape[0] != n:
        raise BrainInputError(f"{name}: has {arr.shape[0]} values, expected {n}")
    if not np.isfinite(arr).all():
        raise BrainInputError(f"{name}: contains NaN or infinite values")
    if not allow_negative and (arr < 0).any():
        raise BrainInputError(f"{name}: contains negative values")
    return arr


def as_labels(values: Sequence[str] | npt.ArrayLike | None, name: str, n: int, default: str = "") -> list[str]:
    if values is None:
        return [default] * n
    if isinstance(values, list) and all(type(v) is str for v in values):
        out: list[str] = values  # already clean: no copy (the common case, from DB rows)
    else:
        out = [str(v) for v in np.asarray(values, dtype=object).ravel().tolist()]
    if len(out) != n:
        raise BrainInputError(f"{name}: has {len(out)} values, expected {n}")
    return out


def to_day(value: DateLike | Any) -> np.datetime64:
    """One calendar day as ``datetime64[D]`` (from a date, datetime, ISO string or datetime64)."""
    arr: Any = np.asarray(value).astype("datetime64[D]")
    out: np.datetime64 = arr[()]
    return out


def to_date(value: DateLike) -> date:
    return date.fromisoformat(str(to_day(value)))


# --------------------------------------------------------------------------- input frames


@dataclasses.dataclass(frozen=True, eq=False)
class DailyAdMetrics:
    """Daily delivery of ads in long format: one row per (ad, date).

    This is the shape of the normalised ``daily metrics`` table. Duplicate rows for one
    (ad, date) are summed when the frame is pivoted (a sync that split a day over two
    rows must not distort the series). ``frequency`` is optional (not every platform
    reports it); a row with zero impressions is a day the ad did not deliver.
    """

    ad_id: list[str]
    date: DateArray
    impressions: FloatArray
    clicks: FloatArray
    conversions: FloatArray
    spend: FloatArray
    revenue: FloatArray
    campaign_id: list[str]
    account_id: list[str]
    platform: list[str]
    frequency: FloatArray | None = None
    _cache: dict[str, Any] = dataclasses.field(default_factory=dict, init=False, repr=False)

    def codes(self, column: str) -> Factorized:
        """Factorised labels of a label column, computed once per frame."""
        key = f"codes:{column}"
        if key not in self._cache:
            self._cache[key] = factorize(getattr(self, column))
        out: Factorized = self._cache[key]
        return out

    def ad_pivot(self, end: DateLike | None = None) -> Pivot:
        """Dense ad x day matrices up to ``end`` (cached): what every module starts from."""
        end_d = None if end is None else to_day(end)
        key = f"pivot:{end_d}"
        if key not in self._cache:
            cols = {
                "impressions": self.impressions,
                "clicks": self.clicks,
                "conversions": self.conversions,
                "spend": self.spend,
                "revenue": self.revenue,
            }
            if self.frequency is not None:
                cols["freq_x_imps"] = self.frequency * self.impressions
            self._cache[key] = pivot(
                self.codes("ad_id"),
                self.date,
                cols,
                {"campaign_id": self.campaign_id, "account_id": self.account_id, "platform": self.platform},
                end=end_d,
            )
        out: Pivot = self._cache[key]
        return out

    @classmethod
    def build(
        cls,
        *,
        ad_id: Sequence[str] | npt.ArrayLike,
        date: Sequence[DateLike] | npt.ArrayLike,
        impressions: npt.ArrayLike,
        clicks: npt.ArrayLike,
        conversions: npt.ArrayLike | None = None,
        spend: npt.ArrayLike | None = None,
        revenue: npt.ArrayLike | None = None,
        campaign_id: Sequence[str] | npt.ArrayLike | None = None,
        account_id: Sequence[str] | npt.ArrayLike | None = None,
        platform: Sequence[str] | npt.ArrayLike | None = None,
        frequency: npt.ArrayLike | None = None,
    ) -> DailyAdMetrics:
        dates = as_dates(date, daily=True)
        n = dates.shape[0]
        ads = as_labels(ad_id, "ad_id", n)
        imps = as_float(impressions, "impressions", n)
        clk = as_float(clicks, "clicks", n)
        if (clk > imps).any():
            raise BrainInputError("clicks: more clicks than impressions on some rows")
        return cls(
            ad_id=ads,
            date=dates,
            impressions=imps,
            clicks=clk,
            conversions=as_float(conversions, "conversions", n),
            spend=as_float(spend, "spend", n),
            revenue=as_float(revenue, "revenue", n),
            campaign_id=as_labels(campaign_id, "campaign_id", n, default="campaign"),
            account_id=as_labels(account_id, "account_id", n, default="account"),
            platform=as_labels(platform, "platform", n, default="unknown"),
            frequency=None if frequency is None else as_float(frequency, "frequency", n),
        )

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> DailyAdMetrics:
        """Build from dict rows (e.g. SQLAlchemy ``mappings()``)."""
        rows = list(rows)
        keys = ("impressions", "clicks", "conversions", "spend", "revenue")
        has_freq = bool(rows) and all(r.get("frequency") is not None for r in rows)
        try:
            return cls.build(
                ad_id=[r["ad_id"] for r in rows],
                date=[r["date"] for r in rows],
                **{k: [r.get(k) or 0 for r in rows] for k in keys},
                campaign_id=[r.get("campaign_id", "campaign") for r in rows],
                account_id=[r.get("account_id", "account") for r in rows],
                platform=[r.get("platform", "unknown") for r in rows],
                frequency=[r["frequency"] for r in rows] if has_freq else None,
            )
        except KeyError as exc:
            raise BrainInputError(f"row is missing the column {exc}") from exc

    def __len__(self) -> int:
        return int(self.date.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class Pivot:
    """A long frame reshaped to dense ``entity x day`` matrices over one date grid.

    ``rows`` counts the input rows behind each cell: a cell with no row is *missing*
    (a sync gap, a lost row, or a day without delivery, which platforms do not report),
    never a measured zero. The value matrices hold 0 there only so sums stay simple;
    every module reads ``present`` before trusting a cell.
    """

    keys: list[str]
    dates: DateArray
    values: dict[str, FloatArray]
    attrs: dict[str, list[str]]
    rows: FloatArray | None = None

    @property
    def present(self) -> BoolArray:
        if self.rows is None:
            out: BoolArray = np.ones(self.shape, dtype=bool)
            return out
        return np.asarray(self.rows > 0, dtype=bool)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.keys), int(self.dates.shape[0])

    def rollup(self, attr: str, keep_attrs: Sequence[str] = ()) -> Pivot:
        """Sum rows sharing the attribute ``attr`` (e.g. ads -> campaigns)."""
        labels, codes = factorize(self.attrs[attr])
        onehot = np.zeros((len(labels), len(self.keys)))
        onehot[codes, np.arange(len(self.keys))] = 1.0
        _, first = np.unique(codes, return_index=True)
        return Pivot(
            labels,
            self.dates,
            {k: onehot @ v for k, v in self.values.items()},
            {a: [self.attrs[a][i] for i in first.tolist()] for a in keep_attrs},
            None if self.rows is None else onehot @ self.rows,
        )

    def window(self, start: np.datetime64 | None, end: np.datetime64 | None) -> Pivot:
        """Columns between ``start`` and ``end`` (inclusive)."""
        lo = 0 if start is None else int(np.searchsorted(self.dates, to_day(start)))
        hi = self.dates.shape[0] if end is None else int(np.searchsorted(self.dates, to_day(end), "right"))
        return Pivot(
            self.keys,
            self.dates[lo:hi],
            {k: v[:, lo:hi] for k, v in self.values.items()},
            self.attrs,
            None if self.rows is None else self.rows[:, lo:hi],
        )


def factorize(labels: Sequence[str]) -> tuple[list[str], IntArray]:
    """Stable codes for labels, in order of first appearance (dict lookups beat np.unique on str)."""
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(x, len(index)) for x in labels), dtype=np.int64, count=len(labels))
    return list(index), codes


def pivot(
    keys: Sequence[str] | Factorized,
    dates: DateArray,
    columns: Mapping[str, FloatArray],
    attrs: Mapping[str, Sequence[str]] | None = None,
    *,
    start: np.datetime64 | None = None,
    end: np.datetime64 | None = None,
) -> Pivot:
    """Sum rows into dense matrices; ``rows`` counts the rows behind each cell (0 = missing).

    ``keys`` may be pre-factorised ``(labels, codes)`` so a frame pivoted several times
    pays for the string work once.
    """
    if isinstance(keys, tuple):
        labels, codes = keys
    else:
        labels, codes = factorize(keys)
    if not labels:
        empty = np.zeros((0, 0))
        return Pivot([], np.array([], dtype="datetime64[D]"), dict.fromkeys(columns, empty), {}, empty)
    d0 = to_day(start) if start is not None else dates.min()
    d1 = to_day(end) if end is not None else dates.max()
    grid = np.arange(d0, d1 + np.timedelta64(1, "D"), dtype="datetime64[D]")
    day = (dates - d0).astype(np.int64)
    keep = (day >= 0) & (day < grid.shape[0])
    flat = codes[keep] * grid.shape[0] + day[keep]
    size = len(labels) * grid.shape[0]
    values = {
        name: np.bincount(flat, weights=col[keep], minlength=size)
        .astype(np.float64)
        .reshape(len(labels), grid.shape[0])
        for name, col in columns.items()
    }
    rows = np.bincount(flat, minlength=size).astype(np.float64).reshape(len(labels), grid.shape[0])
    _, first_row = np.unique(codes, return_index=True)
    out_attrs = {name: [seq[i] for i in first_row.tolist()] for name, seq in (attrs or {}).items()}
    return Pivot(labels, grid, values, out_attrs, rows)


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class FatigueResult(JsonMixin):
    """Creative-fatigue verdict for one ad (see :mod:`omnify.brain.fatigue`)."""

    ad_id: str
    campaign_id: str
    fatigued: bool
    score: float
    onset_date: str | None
    detected_date: str | None
    wasted_spend: float
    ctr_drop: float
    cvr_drop: float | None
    reason: str
    evidence: dict[str, Any]
    state: str = "healthy"
    """``fatigued``, ``declining`` (too young to call), ``recovering`` (a dip that came back),
    ``healthy`` or ``insufficient_data``."""
    onset_interval: tuple[str, str] | None = None
    """95% likelihood-ratio interval of the onset date."""
    forecast: dict[str, Any] | None = None
    """When the CTR is expected to cross the fatigue threshold at its current trend (None when not confident)."""


@dataclasses.dataclass(frozen=True)
class AnomalyIncident(JsonMixin):
    """One incident: consecutive anomalous days of one entity, all metrics merged."""

    key: str
    entity_id: str
    level: str
    start_date: str
    end_date: str
    ongoing: bool
    primary_metric: str
    direction: str
    severity: str
    peak_z: float
    money_at_stake: float
    metrics: dict[str, dict[str, Any]]
    evidence: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ResponseCurve(JsonMixin):
    """Fitted Hill-with-adstock revenue response of one campaign (daily units)."""

    campaign_id: str
    beta: float
    half_saturation: float
    shape: float
    decay: float
    r2: float
    n_obs: int
    sigma: float
    covariance: list[list[float]]
    spend_range: tuple[float, float]
    marginal_roas_band: tuple[float, float] | None = None
    """90% interval of the revenue from one more unit of daily spend at the current level."""
    family: str = "hill"
    """``hill`` (beta x^s / (K^s + x^s)), ``constant-elasticity`` (beta x^s, half_saturation = inf),
    ``saturating`` (Michaelis-Menten, shape 1) or ``exponential`` (beta (1 - exp(-x / half_saturation))^s)."""
    elasticity: float | None = None
    elasticity_raw: float | None = None
    """The campaign's own estimate before shrinkage towards the client's other campaigns."""
    elasticity_se: float | None = None
    max_spend: float | None = None
    """Highest daily spend the curve is trusted at (from the fit's uncertainty).

    None: the allocator's ``extrapolation_limit`` x the highest daily spend seen."""


@dataclasses.dataclass(frozen=True)
class CampaignAllocation(JsonMixin):
    campaign_id: str
    current: float
    recommended: float
    lower_bound: float
    upper_bound: float
    expected_revenue_current: float
    expected_revenue_recommended: float
    marginal_roas: float | None
    """Revenue from one more unit of daily spend at the planned budget."""
    locked: bool
    reason: str
    planned: float | None = None
    """The best daily budget (the plan); ``recommended`` is today's step towards it within the guardrail."""
    expected_revenue_planned: float = 0.0


@dataclasses.dataclass(frozen=True)
class AllocationResult(JsonMixin):
    total_budget: float
    campaigns: list[CampaignAllocation]
    expected_revenue_change: float
    band_low: float
    band_high: float
    band_level: float
    probability_positive: float
    curves: list[ResponseCurve]
    evidence: dict[str, Any]
    path: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """The guarded day-by-day path to the plan: budgets, expected revenue and its band at each step.
    ``expected_revenue_change`` and the band are the plan's (where the path leads)."""


@dataclasses.dataclass(frozen=True)
class BGNBDParams(JsonMixin):
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int
    converged: bool


@dataclasses.dataclass(frozen=True)
class GammaGammaParams(JsonMixin):
    p: float
    q: float
    v: float
    log_likelihood: float
    n_customers: int
    converged: bool


@dataclasses.dataclass(frozen=True, eq=False)
class RFM:
    """Per-customer summary in days: repeat purchases, recency, age, mean repeat value.

    ``frequency`` counts repeat purchase days (the first purchase is the trial and is
    not counted), ``recency`` is the time from the first to the last purchase, ``T`` is
    the time from the first purchase to the end of observation; ``monetary`` is the mean
    value of the repeat purchases (0 when there are none), following Fader, Hardie & Lee.
    """

    customer_id: list[str]
    frequency: FloatArray
    recency: FloatArray
    T: FloatArray
    monetary: FloatArray

    @classmethod
    def build(
        cls,
        *,
        frequency: npt.ArrayLike,
        recency: npt.ArrayLike,
        T: npt.ArrayLike,
        monetary: npt.ArrayLike | None = None,
        customer_id: Sequence[str] | npt.ArrayLike | None = None,
    ) -> RFM:
        freq = np.asarray(frequency, dtype=np.float64).ravel()
        n = freq.shape[0]
        freq = as_float(freq, "frequency", n)
        rec = as_float(recency, "recency", n)
        age = as_float(T, "T", n)
        mon = as_float(monetary, "monetary", n)
        if (np.abs(freq - np.round(freq)) > 1e-9).any():
            raise BrainInputError("frequency: must be whole numbers of repeat purchases")
        if (rec > age + 1e-9).any():
            raise BrainInputError("recency: cannot exceed T (time since first purchase)")
        # A repeat customer with a zero mean order value is real data (free or fully refunded
        # orders: CDNOW has them); Gamma-Gamma leaves such customers out of its fit.
        ids = as_labels(customer_id, "customer_id", n) if customer_id is not None else [str(i) for i in range(n)]
        return cls(ids, freq, np.where(freq > 0, rec, 0.0), age, mon)

    def __len__(self) -> int:
        return int(self.frequency.shape[0])


@dataclasses.dataclass(frozen=True)
class SegmentSummary(JsonMixin):
    segment: str
    customers: int
    expected_purchases: float
    expected_value: float
    historical_value: float


@dataclasses.dataclass(frozen=True)
class LTVResult(JsonMixin):
    """Per-customer 12-month predictions and segment summaries.

    ``method`` is ``bgnbd+gamma-gamma`` when both models were fitted, or ``naive``
    (historical purchase rate x mean order value) when the data could not support a fit;
    ``reason`` says why.
    """

    method: str
    reason: str
    horizon_days: float
    bgnbd: BGNBDParams | None
    gamma_gamma: GammaGammaParams | None
    customer_id: list[str]
    expected_purchases: FloatArray
    expected_order_value: FloatArray
    expected_value: FloatArray
    p_alive: FloatArray
    segment: list[str]
    segments: list[SegmentSummary]
    evidence: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class CampaignIdea(JsonMixin):
    key: str
    title: str
    rationale: str
    platform: str | None
    audience: str | None
    creative_angle: str | None
    suggested_daily_budget: float | None
    expected_impact: float | None
    confidence: float
    source: str
    evidence: dict[str, Any]
