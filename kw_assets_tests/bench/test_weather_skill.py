"""bench/weather_skill.py on a small CSV written here (no ../shared): the table, the JSON, hand-checked RPS."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
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


def write_csv(path: Path, n_days=40, seed=3, cities=(("MIAMI_BEACH", 1.0, 1.5), ("DENVER", 0.0, 3.5))):
    rng = np.random.default_rng(seed)
    rows = []
    for city, bias, sd in cities:
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


def test_validation_scores_groups_of_cities_kalshi_does_not_list_with_the_emos_gaussian(tmp_path, capsys):
    """``--validate``: how model changes are chosen without the Kalshi cities. The Kalshi cities of the file
    are never drawn, each group is 7 cities scored like the main table, and its fast Gaussian PMFs score as
    the Monte Carlo does before any obs."""
    csv = tmp_path / "nws.csv"
    others = tuple((f"CITY_{k}", 0.5 * (k % 3), 1.5 + 0.3 * k) for k in range(8))
    write_csv(csv, cities=(("MIAMI_BEACH", 1.0, 1.5), ("DENVER", 0.0, 3.5), *others))
    result = ws.main(["--nws-csv", str(csv), "--validate", "1", "--score-from", "2021-03-11"])
    printed = capsys.readouterr().out
    assert "mean over the groups" in printed and "group 1: CITY_" in printed
    rows = result["validation"]
    assert [r["horizon"] for r in rows] == ["prev_evening", "morning_of"]
    cities = rows[0]["cities"].split(",")
    assert len(cities) == 7 and all(c.startswith("CITY_") for c in cities)
    assert rows[0]["n"] == 7 * 30  # the skipped rows are the Kalshi cities'
    for r in rows:
        assert abs(r["ratio"] - r["project"] / r["per_city_gauss"]) < 1e-12 and 0 <= r["cities_better_than_both"] <= 7
    # the Gaussian scores what the Monte Carlo scores before any obs
    df, _ = ws.load(str(csv), ("MIAMI_BEACH", "DENVER"))
    cfg = ws.emos.EmosConfig()
    fast = ws.score(df, ws.gaussian_pmfs(df, cfg), None, cfg.embargo_days)
    slow = ws.score(df, ws.project_pmfs(df, ws.WeatherModelConfig(n_paths=4000), cfg)[0], None, cfg.embargo_days)
    for h in ws.HORIZONS:
        assert fast[h]["overall"]["n"] == slow[h]["overall"]["n"]
        assert abs(fast[h]["overall"]["project"] - slow[h]["overall"]["project"]) < 0.003


def test_no_shape_scores_the_gaussian_on_the_same_rows(tmp_path, capsys):
    """``--no-shape``: the EMOS's Gaussian instead of its learned error shape; the same cities and rows, its own
    scores; a 90% interval's misses and coverage add up."""
    csv = tmp_path / "nws.csv"
    write_csv(csv, cities=tuple((f"CITY_{k}", 0.5 * (k % 3), 1.5 + 0.3 * k) for k in range(9)))
    shaped = ws.main(["--nws-csv", str(csv), "--validate", "1", "--score-from", "2021-03-11"])["validation"]
    plain = ws.main(["--nws-csv", str(csv), "--validate", "1", "--score-from", "2021-03-11", "--no-shape"])["validation"]
    capsys.readouterr()
    for a, b in zip(plain, shaped):
        assert (a["cities"], a["horizon"], a["n"]) == (b["cities"], b["horizon"], b["n"])
        assert a["project"] != b["project"] and abs(a["project"] - b["project"]) < 0.01
        assert abs(a["miss_low_90"] + a["miss_high_90"] + a["cover_90"] - 1) < 1e-12


def test_cold_windows_score_each_window_alone_from_a_prior_fitted_outside_it(tmp_path, capsys):
    """``--validate --cold-windows 2``: what a held-out file of a few months meets. Each window's rows are all
    scored (no days to learn from first), and nothing the group's cities did in the other window reaches them:
    scrambling the first window's observed highs of every city of the group leaves the second window's scores as
    they were. The summary counts the files where 6 of 7 cities beat both Gaussians at both horizons."""
    csv, scrambled = tmp_path / "nws.csv", tmp_path / "scrambled.csv"
    write_csv(csv, cities=tuple((f"CITY_{k}", 0.5 * (k % 3), 1.5 + 0.3 * k) for k in range(9)))
    args = ["--validate", "1", "--cold-windows", "2"]
    rows = pd.DataFrame(ws.main(["--nws-csv", str(csv), *args])["validation"])
    printed = capsys.readouterr().out
    assert list(rows["window"].unique()) == ["2021-03-01..2021-03-20", "2021-03-21..2021-04-09"]
    assert (rows["n"] == 7 * 20).all()  # every row of the window, from its first day
    met, files = ws.six_of_seven_at_both(rows)
    assert files == 2 and f"at both horizons: {met} of 2" in printed
    group = rows["cities"].iloc[0].split(",")
    df = pd.read_csv(csv)
    first = df["city"].isin(group) & (df["date"] <= "2021-03-20")
    df.loc[first, "actual_hi_current_PM"] = df.loc[first, "actual_hi_current_PM"] + 9
    df.to_csv(scrambled, index=False)
    again = pd.DataFrame(ws.main(["--nws-csv", str(scrambled), *args])["validation"])
    capsys.readouterr()
    second = rows["window"] == "2021-03-21..2021-04-09"
    pd.testing.assert_frame_equal(again[second].reset_index(drop=True), rows[second].reset_index(drop=True))
    assert not np.allclose(again.loc[~second, "project"], rows.loc[~second, "project"])
    with pytest.raises(SystemExit):
        ws.main(["--nws-csv", str(csv), "--cold-windows", "2"])  # only with --validate
