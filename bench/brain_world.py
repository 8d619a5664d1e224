"""An ad account that behaves like a real one, with the truth written down: the bench's generator.

Written to the list in issue 17 *before* the detectors were rebuilt, and not tuned to
them since (its parameters are fixed here, documented in bench/README.md, and the bench
reports the worst of several seeds). It does not share code or models with
``omnify.brain``: its holidays are a hard-coded US retail calendar, its noise is
binomial/gamma-Poisson/log-normal, its spend response is a power law or an exponential
reach cap (the brain fits Hill curves), its fatigue is linear or exponential.

One client, one currency, one year (2025): ``n_ads`` ads in ``n_campaigns`` campaigns on
three platforms and three ad accounts.

* **Delivery.** Each campaign has a budget (log-normal across campaigns, so some are
  tiny) edited every 2-8 weeks by up to +-30 %, a pacing noise, and launches either on
  day 0 or during the year. Its spend is split among its live ads by persistent weights.
  Impressions = spend / CPM, where the CPM rises with the campaign's spend (diminishing
  returns: the auction gets dearer as a campaign pushes), with the platform's weekday
  rhythm and the holiday market.
* **Ads.** Launch dates staggered; about one in five is switched off before the end. A
  learning phase of 3-7 days ramps impressions up from about a fifth and makes CTR
  erratic. CTR = base x platform weekday factor x holiday factor x slow drift (+-12 % over
  the ad's life) x transient dips x fatigue x day noise (log-normal, SD 0.05-0.25 per
  ad); clicks are binomial. A fifth of the ads are low-volume (a few hundred impressions
  a day or fewer).
* **Transient dips** (35 % of ads, 1-2 each): CTR x (0.6-0.85) for 3-10 days, entering
  and leaving abruptly or over 1-2 days, then fully recovered.
* **Fatigue** (30 % of ads that live at least 90 days, onset 21+ days into the ad's life
  and at least 30 days before the end): CTR falls to a floor of 0.35-0.7 of its level,
  either exponentially (time constant 5-25 days) or linearly (reaching the floor in
  14-56 days). Conversion rate falls by 0-60 % of the CTR's fall. A further 8 % of ads
  get a *mild* decline (to 0.88-0.95) that is not fatigue.
* **Market (US retail calendar).** Valentine's Day, Easter, Mother's Day, Memorial Day,
  Independence Day, Prime Day (8-11 July 2025), Labor Day, Halloween, Thanksgiving,
  Black Friday to Cyber Monday, the Christmas run-up, Christmas Day and the week after.
  Each day has shared multipliers on CPM, CTR, conversion rate and budgets (advertisers
  raise budgets for Black Friday); each campaign reacts with its own sensitivity
  (0.5-1.5 x the shared log effect).
* **Conversions and revenue.** Conversions are gamma-Poisson (shape 15) around clicks x
  conversion rate (per campaign, weekday rhythm, holiday factor); revenue is
  conversions x average order value x log-normal spread.
* **Incidents** (the anomaly truth), per campaign, about 3 a year, never in a
  campaign's first 6 weeks nor within 2 weeks of another: spend spike (x1.8-3.5, 1-3
  days, a runaway budget), spend drop (x0.05-0.4, 1-5 days, a delivery problem),
  tracking loss (conversions and revenue x0-0.2, 1-4 days), conversion-rate drop
  (x0.3-0.6, 2-7 days, a broken landing page), order-value drop (x0.3-0.6, 2-6 days).
* **Missing data.** About 2 % of ad rows are lost at random, and each ad account has
  about three sync gaps of 2-6 days a year (every row of the account missing). Days
  without delivery have no row, as platforms report them.

The response truth for the budget section is each campaign's expected steady-state
revenue as a function of its daily spend, at the ad mix and rates of the last 28 days
(no noise, no holiday, average weekday).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

START = date(2025, 1, 1)
PLATFORMS = ("meta", "google", "tiktok")
# Weekday multipliers (Mon..Sun).
IMP_DOW = {
    "meta": np.array([0.95, 0.97, 0.98, 1.00, 1.02, 1.04, 1.04]),
    "google": np.array([1.08, 1.08, 1.06, 1.04, 0.98, 0.88, 0.88]),
    "tiktok": np.array([0.90, 0.92, 0.95, 1.00, 1.05, 1.10, 1.10]),
}
CTR_DOW = {
    "meta": np.array([0.97, 0.96, 0.97, 0.99, 1.02, 1.05, 1.06]),
    "google": np.array([1.05, 1.05, 1.04, 1.02, 0.98, 0.93, 0.92]),
    "tiktok": np.array([0.93, 0.94, 0.95, 0.98, 1.04, 1.09, 1.10]),
}
CVR_DOW = np.array([1.02, 1.03, 1.02, 1.0, 0.98, 0.95, 0.99])

# US retail calendar 2025: (first day, last day, log-effects on cpm, ctr, cvr, budget).
US_RETAIL_2025: list[tuple[str, str, str, float, float, float, float]] = [
    ("valentines", "2025-02-10", "2025-02-14", 0.05, 0.03, 0.10, 0.0),
    ("easter", "2025-04-18", "2025-04-20", 0.0, -0.03, -0.10, 0.0),
    ("mothers_day", "2025-05-07", "2025-05-11", 0.05, 0.03, 0.10, 0.0),
    ("memorial_day", "2025-05-23", "2025-05-26", 0.05, 0.02, 0.15, 0.10),
    ("independence_day", "2025-07-03", "2025-07-05", -0.05, -0.05, -0.20, 0.0),
    ("prime_day", "2025-07-08", "2025-07-11", 0.20, 0.05, 0.15, 0.15),
    ("labor_day", "2025-08-29", "2025-09-01", 0.05, 0.02, 0.12, 0.10),
    ("halloween", "2025-10-30", "2025-10-31", 0.03, 0.0, -0.05, 0.0),
    ("thanksgiving", "2025-11-27", "2025-11-27", 0.15, -0.05, -0.15, 0.0),
    ("black_friday", "2025-11-28", "2025-11-28", 0.45, 0.10, 0.55, 0.45),
    ("bfcm_weekend", "2025-11-29", "2025-11-30", 0.35, 0.08, 0.35, 0.35),
    ("cyber_monday", "2025-12-01", "2025-12-01", 0.40, 0.10, 0.45, 0.40),
    ("christmas_rush", "2025-12-02", "2025-12-20", 0.15, 0.04, 0.15, 0.10),
    ("christmas_eve", "2025-12-24", "2025-12-24", -0.05, -0.05, -0.30, 0.0),
    ("christmas", "2025-12-25", "2025-12-25", -0.15, -0.10, -0.50, -0.10),
    ("post_christmas", "2025-12-26", "2025-12-31", 0.0, -0.02, 0.10, 0.0),
]
# Pre-Black-Friday build-up: a ramp over the 10 days before Thanksgiving.
BUILD_UP = ("2025-11-17", "2025-11-26", 0.10, 0.02, 0.08, 0.10)

INCIDENT_KINDS = ("spend_spike", "spend_drop", "tracking_loss", "cvr_drop", "value_drop")


@dataclass
class Dip:
    ad: int
    start: int
    end: int  # inclusive
    depth: float


@dataclass
class Incident:
    campaign: int
    start: int
    end: int  # inclusive
    kind: str
    factor: float
    effect_z: float = 0.0
    """Size of the incident in SDs of its total under the generator's own noise (an oracle's view)."""


@dataclass
class Curve:
    """True steady-state response: revenue per day at a daily spend ``s``."""

    kind: str  # "power" | "cap"
    k: float
    e: float
    cap: float

    def revenue(self, s: np.ndarray | float) -> np.ndarray:
        s = np.maximum(np.asarray(s, dtype=np.float64), 0.0)
        if self.kind == "power":
            out: np.ndarray = self.k * s ** (1.0 - self.e)
        else:
            out = self.k * self.cap * (1.0 - np.exp(-s / self.cap))
        return out


@dataclass
class World:
    n_days: int
    dates: np.ndarray  # datetime64[D], the grid
    # long rows (after missing-data removal)
    ad: np.ndarray
    day: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    conversions: np.ndarray
    spend: np.ndarray
    revenue: np.ndarray
    # entities
    ad_campaign: np.ndarray
    ad_start: np.ndarray
    ad_end: np.ndarray  # last live day, inclusive
    ad_platform: list[str]
    campaign_account: np.ndarray
    campaign_platform: list[str]
    campaign_start: np.ndarray
    # truth
    fatigue_onset: dict[int, int]
    fatigue_kind: dict[int, str]
    fatigue_floor: dict[int, float]
    ctr_mult: np.ndarray  # ad x day, the noise-free CTR multiplier of fatigue, dips and drift
    fatigue_mult: np.ndarray  # ad x day, fatigue alone
    expected_clicks: np.ndarray  # ad x day, noise-free expected clicks
    mild_decline: set[int]
    dips: list[Dip]
    incidents: list[Incident]
    sync_gaps: list[tuple[int, int, int]]  # (account, first day, last day)
    holidays: list[tuple[str, int, int]]
    curves: dict[int, Curve]
    current_budget: np.ndarray
    ad_names: list[str] = field(default_factory=list)


def optimum(curves: list[Curve], total: float, cap: np.ndarray | None = None) -> np.ndarray:
    """Budgets that maximise the summed revenue of concave curves at a total (equal marginal returns).

    ``cap`` optionally bounds each budget from above (a bounded oracle).
    """

    def spend_at(lam: float) -> np.ndarray:
        out = np.zeros(len(curves))
        for i, cv in enumerate(curves):
            if cv.kind == "power":
                out[i] = ((1.0 - cv.e) * cv.k / lam) ** (1.0 / cv.e)
            elif cv.k > lam:
                out[i] = cv.cap * np.log(cv.k / lam)
        return out if cap is None else np.minimum(out, cap)

    lo, hi = 1e-12, 1e12
    for _ in range(200):
        mid = float(np.sqrt(lo * hi))
        if spend_at(mid).sum() > total:
            lo = mid
        else:
            hi = mid
    return spend_at(hi)


def _day(s: str) -> int:
    return (date.fromisoformat(s) - START).days


def market(n_days: int) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """Shared log-effects (4 x days: cpm, ctr, cvr, budget) of the US retail calendar."""
    eff = np.zeros((4, n_days))
    spans: list[tuple[str, int, int]] = []
    for name, a, b, *vals in US_RETAIL_2025:
        d0, d1 = _day(a), _day(b)
        if d0 >= n_days:
            continue
        eff[:, d0 : min(d1, n_days - 1) + 1] += np.array(vals)[:, None]
        spans.append((name, d0, min(d1, n_days - 1)))
    a, b, *vals = BUILD_UP
    d0, d1 = _day(str(a)), _day(str(b))
    if d0 < n_days:
        ramp = np.linspace(0.2, 1.0, d1 - d0 + 1)
        for k, v in enumerate(vals):
            seg = eff[k, d0 : min(d1, n_days - 1) + 1]
            seg += float(v) * ramp[: seg.shape[0]]
    return eff, spans


def _budget_path(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.empty(n)
    level, t = 1.0, 0
    while t < n:
        length = int(rng.integers(14, 57))
        out[t : t + length] = level
        level = float(np.clip(level * np.exp(rng.uniform(-0.3, 0.3)), 0.5, 2.0))
        t += length
    return out


def generate(
    seed: int,
    n_ads: int = 500,
    n_campaigns: int = 40,
    n_days: int = 365,
    *,
    staggered: bool = True,
    wearout: bool = False,
) -> World:
    """One client's year. ``staggered=False``: every ad live every day (the timing run).

    ``wearout=True`` is the forecast section's world: fatigue is a slow wear-out (a linear
    fall to the floor over 30-90 days, or exponential with a time constant of 20-60 days)
    and 15 % of the ads decline mildly (to 0.85-0.95) and never cross the threshold.
    """
    rng = np.random.default_rng(seed)
    days = np.arange(n_days)
    dates = np.datetime64(START.isoformat(), "D") + days.astype("timedelta64[D]")
    wd = np.array([(START + timedelta(days=int(d))).weekday() for d in days])
    mk, holidays = market(n_days)

    # ---- campaigns
    n_accounts = 3
    c_platform = [PLATFORMS[c % 3] for c in range(n_campaigns)]
    c_account = np.array([c % n_accounts for c in range(n_campaigns)])
    c_start = np.where(rng.random(n_campaigns) < 0.3, rng.integers(20, 200, n_campaigns), 0)
    if not staggered:
        c_start[:] = 0
    c_ref = np.exp(rng.normal(np.log(250.0), 1.1, n_campaigns)).clip(8.0, 6000.0)  # the campaign's scale
    c_cpm = np.exp(rng.normal(np.log(9.0), 0.35, n_campaigns))
    c_sens = rng.uniform(0.5, 1.5, n_campaigns)
    c_cvr = np.exp(rng.normal(np.log(0.035), 0.5, n_campaigns)).clip(0.004, 0.2)
    c_aov = np.exp(rng.normal(np.log(65.0), 0.4, n_campaigns))
    c_resp = np.where(rng.random(n_campaigns) < 0.5, 0, 1)  # 0 power law, 1 reach cap
    c_e = rng.uniform(0.3, 0.7, n_campaigns)  # power law: revenue ~ spend^(1-e), elasticity 0.3-0.7
    c_cap = c_ref * np.exp(rng.uniform(np.log(0.8), np.log(3.0), n_campaigns))  # reach-cap spend scale
    # The advertiser funds campaigns roughly by their return: the budgets are the optimum for
    # the campaigns' typical efficiency, each off by a log-normal error (SD 0.5, about +-65 %).
    eff = c_cvr * c_aov * 1000.0 / c_cpm * 0.012 * np.exp(0.55**2 / 2)
    prior = [
        Curve("power", float(eff[c] * c_ref[c] ** c_e[c]), float(c_e[c]), 0.0)
        if c_resp[c] == 0
        else Curve("cap", float(eff[c]), 0.0, float(c_cap[c]))
        for c in range(n_campaigns)
    ]
    best = optimum(prior, float(c_ref.sum()))
    c_budget = np.clip(best * np.exp(rng.normal(0.0, 0.5, n_campaigns)), 5.0, 20000.0)
    budget = np.zeros((n_campaigns, n_days))
    for c in range(n_campaigns):
        life = n_days - c_start[c]
        budget[c, c_start[c] :] = c_budget[c] * _budget_path(rng, life)
    budget_mult = np.exp(c_sens[:, None] * mk[3][None, :])
    pacing = np.clip(rng.normal(0.93, 0.05, (n_campaigns, n_days)), 0.6, 1.0)
    imp_dow = np.vstack([IMP_DOW[p][wd] for p in c_platform])
    c_spend = budget * budget_mult * pacing * (0.85 + 0.15 * imp_dow)

    # ---- incidents (campaign level)
    incidents: list[Incident] = []
    spend_f = np.ones((n_campaigns, n_days))
    conv_f = np.ones((n_campaigns, n_days))
    value_f = np.ones((n_campaigns, n_days))
    for c in range(n_campaigns):
        life = n_days - c_start[c]
        taken = np.zeros(n_days, dtype=bool)
        for _ in range(int(rng.poisson(3.0 * life / 365.0))):
            lo = c_start[c] + 42
            if lo >= n_days - 3:
                break
            d0 = int(rng.integers(lo, n_days - 1))
            kind = INCIDENT_KINDS[int(rng.integers(len(INCIDENT_KINDS)))]
            dur = {
                "spend_spike": (1, 3),
                "spend_drop": (1, 5),
                "tracking_loss": (1, 4),
                "cvr_drop": (2, 7),
                "value_drop": (2, 6),
            }[kind]
            d1 = min(d0 + int(rng.integers(dur[0], dur[1] + 1)) - 1, n_days - 1)
            if taken[max(0, d0 - 14) : d1 + 15].any():
                continue
            taken[d0 : d1 + 1] = True
            sl = slice(d0, d1 + 1)
            if kind == "spend_spike":
                f = rng.uniform(1.8, 3.5)
                spend_f[c, sl] *= f
            elif kind == "spend_drop":
                f = rng.uniform(0.05, 0.4)
                spend_f[c, sl] *= f
            elif kind == "tracking_loss":
                f = rng.uniform(0.0, 0.2)
                conv_f[c, sl] *= f
            elif kind == "cvr_drop":
                f = rng.uniform(0.3, 0.6)
                conv_f[c, sl] *= f
            else:
                f = rng.uniform(0.3, 0.6)
                value_f[c, sl] *= f
            incidents.append(Incident(c, d0, d1, kind, round(float(f), 3)))
    c_spend = c_spend * spend_f

    # CPM rises with spend pushed above the campaign's level (diminishing returns).
    rel = np.divide(c_spend, c_ref[:, None], out=np.ones_like(c_spend), where=c_spend > 0)
    cpm_push = np.where(
        c_resp[:, None] == 0,
        np.maximum(rel, 1e-6) ** c_e[:, None],
        np.divide(
            np.maximum(c_spend, 1e-9) / c_cap[:, None],
            1.0 - np.exp(-np.maximum(c_spend, 1e-9) / c_cap[:, None]),
        ),
    )
    cpm = (
        c_cpm[:, None]
        * cpm_push
        * np.exp(c_sens[:, None] * mk[0][None, :])
        * np.exp(rng.normal(0, 0.06, (n_campaigns, n_days)))
        / (0.9 + 0.1 * imp_dow)
    )

    # ---- ads
    counts = rng.multinomial(n_ads - n_campaigns, rng.dirichlet(np.full(n_campaigns, 2.0))) + 1
    a_campaign = np.repeat(np.arange(n_campaigns), counts)
    a_start = np.empty(n_ads, dtype=np.int64)
    a_end = np.full(n_ads, n_days - 1, dtype=np.int64)
    for a in range(n_ads):
        c0 = int(c_start[a_campaign[a]])
        if not staggered:
            a_start[a] = 0
            continue
        a_start[a] = c0 if rng.random() < 0.35 else int(rng.integers(c0, max(c0 + 1, n_days - 20)))
        if rng.random() < 0.2:
            a_end[a] = min(n_days - 1, a_start[a] + int(rng.integers(30, 250)))
    alive = (days[None, :] >= a_start[:, None]) & (days[None, :] <= a_end[:, None])
    weight = rng.gamma(1.5, 1.0, n_ads)[:, None] * np.exp(rng.normal(0, 0.15, (n_ads, n_days)))
    age = days[None, :] - a_start[:, None]
    learn_len = rng.integers(3, 8, n_ads)[:, None]
    in_learning = (age >= 0) & (age < learn_len)
    ramp = np.where(in_learning, 0.2 + 0.8 * np.clip(age / learn_len, 0, 1), 1.0)
    weight = weight * alive * ramp
    c_w = np.zeros((n_campaigns, n_days))
    np.add.at(c_w, a_campaign, weight)
    share = np.divide(weight, c_w[a_campaign], out=np.zeros_like(weight), where=c_w[a_campaign] > 0)
    c_spend = c_spend * (c_w > 0)
    spend = c_spend[a_campaign] * share
    imps = rng.poisson(np.maximum(spend / cpm[a_campaign] * 1000.0, 0.0)).astype(np.float64)

    # CTR
    p0 = np.exp(rng.normal(np.log(0.012), 0.55, n_ads)).clip(0.002, 0.08)
    od = rng.uniform(0.05, 0.25, n_ads)
    ctr_dow = np.vstack([CTR_DOW[c_platform[c]][wd] for c in a_campaign])
    sens = c_sens[a_campaign][:, None]
    drift = 1.0 + rng.uniform(-0.12, 0.12, n_ads)[:, None] * np.clip(age, 0, None) / 365.0
    learn_ctr = np.where(in_learning, np.exp(rng.normal(0, 0.25, n_ads))[:, None], 1.0)
    dips: list[Dip] = []
    dip_mult = np.ones((n_ads, n_days))
    fat_mult = np.ones((n_ads, n_days))
    cvr_fat = np.ones((n_ads, n_days))
    onsets: dict[int, int] = {}
    kinds: dict[int, str] = {}
    floors: dict[int, float] = {}
    mild: set[int] = set()
    for a in range(n_ads):
        life = int(a_end[a] - a_start[a] + 1)
        if life >= 90 and a_end[a] - (a_start[a] + 21) >= 30 and rng.random() < 0.30:
            o = int(a_start[a] + rng.integers(21, life - 29))
            floor = float(rng.uniform(0.35, 0.7))
            t = np.arange(n_days - o, dtype=np.float64)
            if rng.random() < 0.5:
                tau = float(rng.uniform(20, 60) if wearout else rng.uniform(5, 25))
                curve = floor + (1 - floor) * np.exp(-t / tau)
                kinds[a] = "exponential"
            else:
                length = float(rng.uniform(30, 90) if wearout else rng.uniform(14, 56))
                curve = 1.0 - (1.0 - floor) * np.clip(t / length, 0, 1)
                kinds[a] = "linear"
            fat_mult[a, o:] = curve
            cvr_fat[a, o:] = 1.0 - rng.uniform(0.0, 0.6) * (1.0 - curve)
            onsets[a] = o
            floors[a] = floor
        elif life >= 60 and rng.random() < (0.15 if wearout else 0.08):
            o = int(a_start[a] + rng.integers(14, life - 14))
            floor = float(rng.uniform(0.85, 0.95) if wearout else rng.uniform(0.88, 0.95))
            t = np.arange(n_days - o, dtype=np.float64)
            fat_mult[a, o:] = floor + (1 - floor) * np.exp(-t / float(rng.uniform(5, 30)))
            mild.add(a)
        if rng.random() < 0.35 and life >= 30:
            end_free = onsets.get(a, int(a_end[a]) + 1)
            for _ in range(int(rng.integers(1, 3))):
                d0 = int(rng.integers(a_start[a] + 10, max(a_start[a] + 11, a_end[a] - 5)))
                dur = int(rng.integers(3, 11))
                d1 = min(d0 + dur - 1, int(a_end[a]))
                if d1 >= end_free - 3:  # keep dips clear of a fatigue onset: they are scored apart
                    continue
                depth = float(rng.uniform(0.15, 0.4))
                edge = int(rng.integers(0, 3))
                prof = np.ones(d1 - d0 + 1)
                for k in range(edge):
                    w = (k + 1) / (edge + 1)
                    if k < prof.shape[0]:
                        prof[k] = min(prof[k], w)
                        prof[-1 - k] = min(prof[-1 - k], w)
                dip_mult[a, d0 : d1 + 1] *= 1.0 - depth * prof
                dips.append(Dip(a, d0, d1, depth))
    mult = drift * dip_mult * fat_mult
    ctr_mean = p0[:, None] * ctr_dow * np.exp(sens * mk[1][None, :]) * learn_ctr * mult
    ctr = np.clip(ctr_mean * np.exp(rng.normal(0, 1, (n_ads, n_days)) * od[:, None]), 0, 0.6)
    clicks = rng.binomial(imps.astype(np.int64), ctr).astype(np.float64)
    exp_clicks = imps * np.clip(ctr_mean, 0, 0.6)

    # conversions and revenue
    cvr = (
        c_cvr[a_campaign][:, None]
        * CVR_DOW[wd][None, :]
        * np.exp(sens * mk[2][None, :])
        * cvr_fat
        * conv_f[a_campaign]
        * np.exp(rng.normal(0, 0.08, (n_ads, n_days)))
    )
    lam = clicks * np.clip(cvr, 0, 1) * rng.gamma(15.0, 1 / 15.0, (n_ads, n_days))
    conv = rng.poisson(lam).astype(np.float64)
    aov = c_aov[a_campaign][:, None] * value_f[a_campaign]
    revenue = np.round(conv * aov * np.exp(rng.normal(0, 0.4, (n_ads, n_days)) / np.sqrt(np.maximum(conv, 1))), 2)
    spend = np.round(spend, 2)

    # incident sizes under the generator's own noise (oracle view), on campaign totals
    for inc in incidents:
        c = inc.campaign
        rows = a_campaign == c
        sl = slice(inc.start, inc.end + 1)
        if inc.kind.startswith("spend"):
            inc.effect_z = float("inf")
            continue
        mu = (exp_clicks[rows, sl] * np.clip(cvr[rows, sl] / conv_f[c, sl], 0, 1)).sum(axis=0)
        if inc.kind == "value_drop":
            inc.effect_z = float(abs(np.log(inc.factor)) / (0.4 / np.sqrt(max(mu.sum(), 1e-9))))
        else:
            shift = float((mu * (1 - conv_f[c, sl])).sum())
            inc.effect_z = shift / float(np.sqrt((mu + mu**2 / 15.0).sum()) + 1e-9)

    # ---- missing data
    present = imps > 0
    present &= rng.random((n_ads, n_days)) >= 0.02
    gaps: list[tuple[int, int, int]] = []
    for acc in range(n_accounts):
        for _ in range(int(rng.poisson(3.0))):
            d0 = int(rng.integers(30, n_days - 2))
            d1 = min(d0 + int(rng.integers(2, 7)) - 1, n_days - 1)
            gaps.append((acc, d0, d1))
            rows = c_account[a_campaign] == acc
            present[np.ix_(rows, np.arange(d0, d1 + 1))] = False

    # incidents that nothing could see: no delivery that day, or every day inside a sync gap
    gap_days = {(acc, d) for acc, d0, d1 in gaps for d in range(d0, d1 + 1)}
    for inc in incidents:
        days_c = range(inc.start, inc.end + 1)
        seen = [d for d in days_c if (int(c_account[inc.campaign]), d) not in gap_days and c_spend[inc.campaign, d] > 0]
        if not seen:
            inc.effect_z = 0.0

    # ---- response truth and current budgets
    curves: dict[int, Curve] = {}
    last = slice(n_days - 28, n_days)
    for c in range(n_campaigns):
        rows = a_campaign == c
        s_tot = float(spend[rows, last].sum())
        if s_tot <= 0:
            continue
        # expected revenue per impression at the current mix, without noise or holidays
        w = spend[rows, last]
        base_ctr = (p0[rows][:, None] * mult[rows, last] * ctr_dow[rows, last]).clip(0, 0.6)
        cvr_c = c_cvr[c] * float(CVR_DOW.mean()) * cvr_fat[rows, last]
        rpi = float((w * base_ctr * cvr_c).sum() / max(w.sum(), 1e-9)) * float(c_aov[c])
        if c_resp[c] == 0:
            # imps = s / cpm0 * 1000 * (s / L)^-e  ->  revenue = k s^(1-e)
            k = rpi * 1000.0 / c_cpm[c] * c_ref[c] ** c_e[c]
            curves[c] = Curve("power", k, float(c_e[c]), 0.0)
        else:
            # imps = cap (1 - exp(-s/cap)) / cpm0 * 1000
            curves[c] = Curve("cap", rpi * 1000.0 / c_cpm[c], 0.0, float(c_cap[c]))
    current = budget[:, -1] * np.where(budget[:, -1] > 0, 1.0, 0.0)

    ai, di = np.nonzero(present)
    return World(
        n_days=n_days,
        dates=dates,
        ad=ai,
        day=di,
        impressions=imps[ai, di],
        clicks=clicks[ai, di],
        conversions=conv[ai, di],
        spend=spend[ai, di],
        revenue=revenue[ai, di],
        ad_campaign=a_campaign,
        ad_start=a_start,
        ad_end=a_end,
        ad_platform=[c_platform[c] for c in a_campaign],
        campaign_account=c_account,
        campaign_platform=c_platform,
        campaign_start=c_start,
        fatigue_onset=onsets,
        fatigue_kind=kinds,
        fatigue_floor=floors,
        ctr_mult=mult,
        fatigue_mult=fat_mult,
        expected_clicks=exp_clicks,
        mild_decline=mild,
        dips=dips,
        incidents=incidents,
        sync_gaps=gaps,
        holidays=holidays,
        curves=curves,
        current_budget=current,
        ad_names=[f"Creative {a:03d}" for a in range(n_ads)],
    )
