"""Writing the backtest report: PNG plots (matplotlib, headless) and one HTML page under data/reports/.
Every page carries the data source, with a warning when it is simulated."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from jinja2 import Environment, PackageLoader, select_autoescape  # noqa: E402
from markupsafe import Markup  # noqa: E402

from kw_assets.model.report import Chunks, daily_pnl, drawdown, pnl_by_entry_hour, report_contents  # noqa: E402
from kw_assets.sources import SIMULATED_BANNER  # noqa: E402

_TEMPLATES = Environment(loader=PackageLoader("kw_assets", "templates"), autoescape=select_autoescape(["j2", "html"]))
_TEMPLATES.filters["number"] = lambda v: f"{v:,.4g}" if isinstance(v, float) else v


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_equity(daily: pd.Series, folder: Path, banner: str) -> tuple[Path, Path]:
    equity = daily.cumsum()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.plot(pd.to_datetime(equity.index), equity.to_numpy(), color="#1f5fa8")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_title(f"Cumulative net P&L after fees ($){banner}")
    eq_path = _save(fig, folder / "equity.png")
    dd = drawdown(equity)
    fig, ax = plt.subplots(figsize=(8, 2.6))
    ax.fill_between(pd.to_datetime(dd.index), dd.to_numpy(), 0, color="#b03a2e", alpha=0.6)
    ax.set_title(f"Drawdown ($){banner}")
    return eq_path, _save(fig, folder / "drawdown.png")


def plot_reliability(tables: dict[str, pd.DataFrame], folder: Path, banner: str) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    for name, t in tables.items():
        t = t[t["count"] > 0]
        ax.plot(t["mean_p"], t["hit_rate"], marker="o", label=name)
    ax.set_xlabel("forecast probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(f"Reliability{banner}")
    ax.legend()
    return _save(fig, folder / "reliability.png")


def plot_pnl_by_hour(by_hour: pd.Series, folder: Path, banner: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar(by_hour.index, by_hour.to_numpy(), color=["#1e8449" if v >= 0 else "#b03a2e" for v in by_hour.to_numpy()])
    ax.set_xlabel("hour of entry (local standard time)")
    ax.set_title(f"Net P&L by hour of entry ($){banner}")
    return _save(fig, folder / "pnl_by_hour.png")


def write_html(folder: Path, source: str, warning: str | None, summary: dict, tables: dict[str, pd.DataFrame],
               images: list[Path]) -> Path:
    """``backtest_report.html`` from the Jinja2 template (everything escaped; tables by pandas)."""
    html_tables = {title: Markup(t.to_html(index=False, float_format=lambda x: f"{x:,.4g}")) for title, t in tables.items()}
    page = _TEMPLATES.get_template("backtest_report.html.j2").render(
        source=source, warning=warning, summary=summary, tables=html_tables, images=images)
    out = folder / "backtest_report.html"
    out.write_text(page)
    return out


@dataclass
class Report:
    """A written report: its source (with the simulated-data warning), numbers, tables, plots and page."""

    source: str
    warning: str | None
    stats: dict
    tables: dict[str, pd.DataFrame]
    images: list[Path]
    page: Path

    def markdown(self) -> str:
        return markdown_report(self.source, self.warning, self.stats, self.tables)


def write_report(folder: Path, fills: pd.DataFrame, scores: pd.DataFrame, sampled: tuple[int, Chunks],
                 markets: pd.DataFrame, settled: pd.DataFrame, mids: pd.DataFrame,
                 offsets: dict[str, pd.Timedelta], extra_tables: dict[str, pd.DataFrame] | None = None) -> Report:
    """The backtest report's plots and HTML page under ``folder``, from the frames ``report_contents`` takes
    (``sampled``: the most brackets, and the chunks or a function that applies its argument to each month's
    rows, e.g. ``queries.over_settled_months``), plus
    ``extra_tables`` (title -> table) after its own."""
    sources = sorted(fills["source"].unique())
    warning = SIMULATED_BANNER if "simulated" in sources else None
    banner = " [SIMULATED]" if warning else ""
    folder.mkdir(parents=True, exist_ok=True)
    n_brackets, chunks = sampled
    stats, tables, reliability = report_contents(fills, scores, chunks, markets, settled, mids, offsets, n_brackets)
    tables = {**tables, **(extra_tables or {})}
    images = [*plot_equity(daily_pnl(fills), folder, banner), plot_pnl_by_hour(pnl_by_entry_hour(fills, offsets), folder, banner)]
    if reliability:
        images.append(plot_reliability(reliability, folder, banner))
    source = ", ".join(sources)
    return Report(source, warning, stats, tables, images, write_html(folder, source, warning, stats, tables, images))


def markdown_table(frame: pd.DataFrame, max_rows: int = 12) -> str:
    """A small Markdown table for asset metadata (not ``DataFrame.to_markdown``: cells such as partition
    keys ``ny|2025-06-10`` hold pipes, which it does not escape)."""
    f = frame.head(max_rows)
    cols = [str(c) for c in f.columns]
    cell = lambda v: (f"{v:.4g}" if isinstance(v, float) else str(v)).replace("|", "/")  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in f.to_numpy(dtype=object).tolist()]
    return "\n".join(lines)


def markdown_report(source: str, warning: str | None, summary: dict, tables: dict[str, pd.DataFrame]) -> str:
    """The report as Markdown for the asset's metadata: source (and warning), the summary, every table."""
    parts = [f"**Source: {source}**" + (f"\n\n> **{warning}**" if warning else ""),
             "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:,.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                                                     for k, v in summary.items())]
    parts += [f"### {title}\n" + markdown_table(table, 24) for title, table in tables.items()]
    return "\n\n".join(parts)


def markdown_plots(images: list[Path]) -> str:
    """The plots inlined as base64 PNGs, for the asset's metadata."""
    return "\n\n".join(f"**{p.stem}**\n\n![{p.stem}](data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()})"
                       for p in images)
