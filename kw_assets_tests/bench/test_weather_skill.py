"""bench/weather_skill.py on a small CSV written here (no ../shared): the table, the JSON, hand-checked RPS."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

SPEC = importlib.util.spec_from_file_location("weather_skill", Path(__file__).resolve().parents[2] / "bench" / "weather_skill.py")
ws = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ws)


def test_category_rps_by_hand():
    # uniform PMF, observed in [c, c+1]: cumulative 1/6..5/6 vs indicators 0,0,0,1,1
    rps = ws.category_rps(np.array([[1, 2, 3, 4, 5]]) / 6, np.array([70.0]), np.array([70.0]))
    assert abs(rps[0] - (1 + 4 + 9 + 4 + 1) / 36 / 5) < 1e-12
    # N(c, 2.6), observed c - 6 (first category): indicators all 1
    cdf = ws.gaussian_cdf_at_thresholds(np.array([70.0]), np.array([2.6]), np.array([70.0]))
    expected = np.mean((norm.cdf((np.array([-5, -3, -1, 1, 3]) + 0.5) / 2.6) - 1) ** 2)
    assert abs(ws.category_rps(cdf, np.array([64.0]), np.array([70.0]))[0] - expected) < 1e-12


def write_csv(path: Path, n_days=40, seed=3):
    rng = np.random.default_rng(seed)
    rows = []
    for city, bias, sd in (("MIAMI_BEACH", 1.0, 1.5), ("DENVER", 0.0, 3.5)):
        for k in range(n_days):
            f2, f1 = rng.normal(80, 5), None
            f1 = f2 + rng.normal(0, 1)
            fp = f1 + rng.normal(0, 1)
            fa = fp + rng.normal(0, 0.7)
            y = np.round(fa + bias + rng.normal(0, sd))
            rows.append({"date": str(pd.Timestamp("2021-03-01") + pd.Timedelta(days=k))[:10], "city": city, "state": "XX",
                         "forecast_hi_2_prev_PM": round(f2), "forecast_lo_prev_AM": round(f2 - 15),
                         "forecast_hi_prev_AM": round(f1), "forecast_lo_prev_PM": round(fp - 15),
                         "forecast_hi_prev_PM": round(fp), "forecast_lo_current_AM": round(fa - 15),
                         "forecast_hi_current_AM": round(fa), "forecast_lo_current_PM": None, "actual_lo_current_PM": None,
                         "actual_hi_current_PM": y, "actual_lo_next_AM": None, "actual_hi_next_AM": None})
    rows[5]["actual_hi_current_PM"] = None  # skipped and counted
    rows[7]["forecast_hi_current_AM"] = None  # skipped at morning_of only
    pd.DataFrame(rows).to_csv(path, index=False)


def test_the_benchmark_prints_and_writes_every_number(tmp_path, capsys):
    csv, out = tmp_path / "nws.csv", tmp_path / "skill.json"
    write_csv(csv)
    result = ws.main(["--nws-csv", str(csv), "--json", str(out), "--score-from", "2021-03-11", "--n-paths", "1000"])
    printed = capsys.readouterr().out
    assert "prev_evening" in printed and "OVERALL" in printed and "skipped rows missing a forecast or the observed high: 1" in printed
    assert json.loads(out.read_text()) == result
    for h, n in (("prev_evening", 59), ("morning_of", 60 - 1)):
        overall = result[h]["overall"]
        assert set(overall) == {"n", "project", "gauss_2_6", "per_city_gauss", "uniform", "mae", "cover_50", "cover_90"}
        assert set(result[h]["cities"]) == {"MIAMI_BEACH", "DENVER"}
        assert overall["n"] == sum(c["n"] for c in result[h]["cities"].values())
        assert 0 < overall["project"] < overall["uniform"]  # a model with skill beats the uniform PMF
        assert 0.5 <= overall["cover_90"] <= 1.0
    # the uniform RPS is a function of where each observed high falls: recompute it from the CSV
    df = pd.read_csv(csv)
    df = df[(df["date"] >= "2021-03-11") & df["actual_hi_current_PM"].notna()]
    c = np.floor(df["forecast_hi_prev_PM"].to_numpy(float) + 0.5)
    uni = ws.category_rps(np.tile(np.arange(1, 6) / 6, (len(df), 1)), df["actual_hi_current_PM"].to_numpy(float), c)
    assert abs(result["prev_evening"]["overall"]["uniform"] - uni.mean()) < 1e-12
