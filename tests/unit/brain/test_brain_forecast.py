"""The local-linear-trend fatigue forecast (omnify.brain.forecast) on synthetic CTR ratios."""

from __future__ import annotations

import numpy as np

from omnify.brain.forecast import ForecastConfig, filter_trend, forecast_crossing


def _ratio(
    t_len: int, onset: int | None, fall: float, clicks: float = 400.0, sd: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    level = np.ones(t_len)
    if onset is not None:
        level[onset:] = 1.0 - fall * np.arange(t_len - onset)
    y = level * np.exp(rng.normal(0.0, sd, t_len))
    return y[None, :], np.full((1, t_len), clicks), np.ones((1, t_len), dtype=bool)


def test_flat_ratio_gives_flat_trend_and_no_forecast() -> None:
    y, e, v = _ratio(150, None, 0.0)
    st = filter_trend(y, e, v, ForecastConfig())
    assert abs(float(st.level[0]) - 1.0) < 0.05 and abs(float(st.slope[0])) < 0.003
    assert forecast_crossing(y, e, v, np.zeros(1, dtype=bool)) == [None]


def test_steady_wearout_is_forecast_with_an_interval_around_the_truth() -> None:
    # 0.8 % a day from day 120: on day 139 the fall is 15 %, the 20 % threshold is 6 days away
    y, e, v = _ratio(140, 120, 0.008, seed=3)
    [fc] = forecast_crossing(y, e, v, np.zeros(1, dtype=bool))
    assert fc is not None
    lo, hi = fc["interval_days"]
    assert lo <= fc["days_to_threshold"] <= hi and 1.0 <= fc["days_to_threshold"] <= 14.0
    assert 0.08 <= fc["current_drop"] < 0.2 and fc["fall_per_day"] > 0


def test_skip_and_recovery_drop_the_forecast() -> None:
    y, e, v = _ratio(140, 120, 0.008, seed=3)
    assert forecast_crossing(y, e, v, np.ones(1, dtype=bool)) == [None]
    # the same decline, then back at the old level for two weeks: no forecast
    back = np.concatenate([y, np.ones((1, 14))], axis=1)
    assert forecast_crossing(
        back, np.full((1, 154), 400.0), np.ones((1, 154), dtype=bool), np.zeros(1, dtype=bool)
    ) == [None]


def test_rows_are_independent() -> None:
    y1, e1, v1 = _ratio(140, 120, 0.008, seed=3)
    y2, e2, v2 = _ratio(140, None, 0.0, seed=4)
    both = forecast_crossing(np.vstack([y1, y2]), np.vstack([e1, e2]), np.vstack([v1, v2]), np.zeros(2, dtype=bool))
    assert both[0] == forecast_crossing(y1, e1, v1, np.zeros(1, dtype=bool))[0] and both[1] is None
