"""The README's "how to add a derived table", followed step by step: a schema, a pure per-partition
function, one ``derived_table`` call, and the new table materializes, validated, from stored upstream rows."""

import dagster as dg
import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from kw_assets import schemas
from kw_assets.defs.features import minute_panel
from kw_assets.defs.raw import raw_assets
from kw_assets.defs.tables import derived_table
from kw_assets.warehouse import Warehouse


class BracketDayRange(schemas._Partitioned):  # step 1: the table's Pandera model
    bracket_index: Series[int] = pa.Field(ge=0)
    mid_low: Series[float] = pa.Field(ge=0, le=1)
    mid_high: Series[float] = pa.Field(ge=0, le=1)


def mid_range(panel: pd.DataFrame) -> pd.DataFrame:  # step 2: the per-partition work, pure
    names = {BracketDayRange.mid_low: "min", BracketDayRange.mid_high: "max"}  # a model's field is its column name
    out = panel.groupby("bracket_index")["mid"].agg(**names).reset_index()
    return out.assign(source=panel["source"].iloc[0])


def test_a_new_derived_table_is_one_call(resources, warehouse_path, instance, monkeypatch):
    monkeypatch.setitem(schemas.TABLES, "bracket_day_range", BracketDayRange)

    @derived_table("bracket_day_range", group="features", time_column=None,  # step 3: one call
                   inputs={"minute_panel": ("source", "bracket_index", "mid")},
                   description="Lowest and highest mid of each bracket over its trading day.")
    def bracket_day_range(context, wh, config):
        return lambda city, day, data: mid_range(data["minute_panel"])

    spec = next(iter(bracket_day_range.specs))
    assert {d.asset_key.to_user_string() for d in spec.deps} == {"minute_panel"}
    assert [c.name for c in bracket_day_range.check_specs] == ["bracket_day_range_schema"]
    result = dg.materialize([*raw_assets, minute_panel, bracket_day_range], partition_key="ny|2025-06-10",
                            resources=resources, instance=instance)
    assert result.success
    wh = Warehouse(warehouse_path)
    got, panel = wh.read("bracket_day_range"), wh.read("minute_panel")
    assert len(got) == panel["bracket_index"].nunique() == 6
    np.testing.assert_allclose(got.sort_values("bracket_index")["mid_high"], panel.groupby("bracket_index")["mid"].max())
    (event,) = result.asset_materializations_for_node("bracket_day_range")
    assert event.metadata["dagster/row_count"].value == 6
    assert event.metadata["dagster/table_name"].value == "warehouse.main.bracket_day_range"
