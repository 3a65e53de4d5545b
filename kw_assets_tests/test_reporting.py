"""The HTML report page: rendered from its Jinja2 template with everything a user sees escaped."""

import pandas as pd

from kw_assets import reporting


def test_the_report_page_escapes_text_and_keeps_the_simulated_warning(tmp_path):
    tables = {"P&L <by city>": pd.DataFrame({"city": ["<ny>"], "net": [-12.3456]})}
    page = reporting.write_html(tmp_path, "simulated", "SIMULATED DATA: not evidence of edge", {"net_pnl": -12.3456,
                                "days": 3}, tables, [tmp_path / "equity.png"]).read_text()
    assert "Data source: <b>simulated</b>" in page and "<p class=\"warn\">SIMULATED DATA: not evidence of edge</p>" in page
    assert "<h2>P&amp;L &lt;by city&gt;</h2>" in page and "<td>&lt;ny&gt;</td>" in page and "<ny>" not in page
    assert "<td>-12.35</td>" in page and "<img src=\"equity.png\"" in page
