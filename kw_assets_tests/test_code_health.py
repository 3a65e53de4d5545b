"""No dead code and no unused imports in the package, the benches and the tests: ruff's pyflakes rules
(F) and vulture at 60% confidence. Names vulture cannot see being used are allowed here with the reason;
the Pandera fields are allowed by reading the table registry itself."""

import subprocess
import sys
from pathlib import Path

from kw_assets.schemas import TABLES

ROOT = Path(__file__).resolve().parents[1]
TREES = ["kw_assets", "bench", "kw_assets_tests"]
USED_OUTSIDE_VULTURES_SIGHT = {
    "auth_flow": "httpx calls an Auth's auth_flow",
    "handlers": "logging.Logger.handlers, set to buffer a worker's log records",
    "ELECTIONS_URL": "Kalshi's production base URL, for users who set kalshi_base_url",
    "DEMO_URL": "Kalshi's demo base URL, for users who set kalshi_base_url",
    "get_orderbook": "REST order-book snapshot of the live client; the order-book recorder (issue 14) starts from it",
    "pytestmark": "pytest reads a module's marks from it",
    "pytest_terminal_summary": "a pytest hook (conftest): the count of postgres tests run",
    "pytest_xdist_auto_num_workers": "a pytest-xdist hook (conftest): how many test processes -n auto starts",
    "setup_for_execution": "Dagster calls a ConfigurableResource's setup hook when a run initializes it",
    "config_type": "Dagster reads a ConfigurableClass's config schema (the instance's event log storage)",
    "from_config_value": "Dagster builds a ConfigurableClass from dagster.yaml with it",
    "strict": "Pandera model Config", "coerce": "Pandera model Config", "unique": "Pandera model Config",
    "ignore_na": "a Pandera Check's setting, read by Pandera when it runs the check",
}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


def test_no_unused_imports_or_names():
    out = _run("ruff", "check", "--select", "F", "--output-format", "concise", *TREES)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_dead_code():
    fields = {c for model in TABLES.values() for c in model.to_schema().columns}
    ignore = ",".join(sorted(fields | set(USED_OUTSIDE_VULTURES_SIGHT)))
    out = _run("vulture", *TREES, "--min-confidence", "60", "--ignore-names", ignore,
               "--ignore-decorators", "@row_check,@pa.check,@pytest.fixture")
    assert out.returncode == 0, out.stdout + out.stderr
