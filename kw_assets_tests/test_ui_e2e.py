"""The UI as a user meets it: ``./run dev`` on a free port, two partitions materialized in one run launched
over GraphQL, then in headless Chromium the lineage page, each partition's own row count on the Partitions
tab, a settled check, a recorded day's order book (``orderbook_job``, as the L2 sensor requests it) on
``orderbook_l2``'s Partitions tab, and a dev log without undecided warnings. Skipped where no Chromium exists, except
in CI (which installs it)."""

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from kw_assets.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "data" / "test-artifacts"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    return shutil.which("chromium") or (os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium") or None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


PARTITIONS = ("ny|2025-06-10", "ny|2025-06-11")


def _value_after(text: str, label: str) -> str:
    """The first non-blank line after ``label`` in a page's text: a metadata table's value cell."""
    lines = [line.strip() for line in text.splitlines()]
    at = lines.index(label)
    return next(line for line in lines[at + 1:] if line)


def _record_a_day(root: Path, city: str, day: str) -> None:
    """A whole climate day of the simulated book, as the recorder would have written it."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from kw_assets.cities import get_city
    from kw_assets.recorder.segments import SEGMENT_SCHEMA
    from kw_assets.sources.simulator.world import build_world
    from kw_assets_tests.l2_records import recorded_rows
    w = build_world(get_city(city), dt.date.fromisoformat(day))
    folder = root / city / day
    folder.mkdir(parents=True)
    rows = recorded_rows(w, 7, w.open_time + 60, w.close_time)
    pq.write_table(pa.Table.from_pandas(rows, schema=SEGMENT_SCHEMA, preserve_index=False), folder / "000001.parquet")


@pytest.mark.slow
@pytest.mark.browser
def test_ui_runs_a_partition_over_graphql_and_shows_the_lineage(tmp_path):
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium (.ci/run installs Debian's chromium)")
        pytest.skip("no Chromium on this machine")
    from dagster_graphql import DagsterGraphQLClient
    from playwright.sync_api import sync_playwright

    home = tmp_path / "home"  # ./run dev copies dagster.local.yaml into it
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "KW_WAREHOUSE": str(tmp_path / "w.duckdb"), "PORT": str(port),
           "KW_L2_ROOT": str(tmp_path / "l2")}
    _record_a_day(tmp_path / "l2", "ny", "2025-06-10")
    proc = subprocess.Popen([str(ROOT / "run"), "dev"], cwd=ROOT,  # what a user types: ./run dev
                            env=env, stdout=open(tmp_path / "dev.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/server_info", 150)
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        deadline = time.monotonic() + 120
        while True:  # the code location may still be loading
            try:
                run_id = client.submit_job_execution("raw_job", tags={  # two partitions in one run
                    "dagster/asset_partition_range_start": "ny|2025-06-10",
                    "dagster/asset_partition_range_end": "ny|2025-06-11"})
                break
            except Exception:  # noqa: BLE001
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        status = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status = client.get_run_status(run_id).value
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(2)
        assert status == "SUCCESS", (tmp_path / "dev.log").read_text()[-4000:]
        # what l2_segments_sensor requests when the recorder closes a segment: orderbook_job for its partition
        book_run = client.submit_job_execution("orderbook_job", tags={"dagster/partition": "ny|2025-06-10"})
        deadline = time.monotonic() + 300
        while (book_status := client.get_run_status(book_run).value) not in ("SUCCESS", "FAILURE", "CANCELED"):
            assert time.monotonic() < deadline
            time.sleep(2)
        assert book_status == "SUCCESS", (tmp_path / "dev.log").read_text()[-4000:]

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROME_FLAGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/assets/kalshi_candles?view=lineage&lineageScope=neighbors"
                      "&lineageDepth=2", wait_until="networkidle")
            for name in ("kalshi_markets", "kalshi_candles", "minute_panel"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            try:  # a first visit may show a newsletter dialog over the graph
                page.get_by_role("button", name="Skip").click(timeout=8_000)
            except Exception:  # noqa: BLE001 - no dialog this time
                pass
            page.screenshot(path=str(ARTIFACTS / "ui-lineage.png"))
            shown = {}
            for key in PARTITIONS:  # each partition's own row count, as the Partitions tab shows it
                page.goto(f"http://127.0.0.1:{port}/assets/kalshi_trades?view=partitions&partition={key.replace('|', '%7C')}",
                          wait_until="networkidle")
                page.get_by_text("dagster/row_count", exact=True).first.wait_for(timeout=60_000)
                shown[key] = _value_after(page.inner_text("body"), "dagster/row_count")
            page.screenshot(path=str(ARTIFACTS / "ui-partition.png"))
            page.goto(f"http://127.0.0.1:{port}/assets/orderbook_l2?view=partitions&partition=ny%7C2025-06-10",
                      wait_until="networkidle")
            page.get_by_text("dagster/row_count", exact=True).first.wait_for(timeout=60_000)
            book_rows = _value_after(page.inner_text("body"), "dagster/row_count")
            page.screenshot(path=str(ARTIFACTS / "ui-orderbook.png"))
            page.goto(f"http://127.0.0.1:{port}/assets/kalshi_trades?view=checks", wait_until="networkidle")
            page.get_by_text("Latest execution").first.wait_for(timeout=60_000)
            checks_text = page.inner_text("body")
            browser.close()
        stored = Warehouse(env["KW_WAREHOUSE"]).read("kalshi_trades").groupby(["city", "climate_day"]).size()
        expected = {f"{c}|{d:%Y-%m-%d}": f"{n}" for (c, d), n in stored.items()}
        assert shown == expected and len(set(shown.values())) == 2, (shown, expected)
        assert book_rows == str(len(Warehouse(env["KW_WAREHOUSE"]).read("orderbook_l2"))) and int(book_rows) > 1000
        assert "Passed" in checks_text and "In progress" not in checks_text and "Running" not in checks_text
        assert (ARTIFACTS / "ui-lineage.png").stat().st_size > 10_000
        log = (tmp_path / "dev.log").read_text()
        undecided = [line for line in log.splitlines() if "Warning" in line or " - WARNING - " in line]
        assert not undecided, "\n".join(undecided[:10])  # a quiet start: every known warning is decided on
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
