"""The graph as a committed text file: asset keys with their group, upstream assets, partitioning, kinds
and checks; schedules, sensors and jobs. A change to the graph is then a visible diff in review.

    KW_UPDATE_SNAPSHOT=1 ./run test kw_assets_tests/defs/test_definitions_snapshot.py   # after a deliberate change
"""

import os
from pathlib import Path

import dagster as dg

from kw_assets.definitions import defs

SNAPSHOT = Path(__file__).resolve().parents[1] / "data" / "definitions.snapshot.txt"


def _partitioning(p: dg.PartitionsDefinition | None) -> str:
    if p is None:
        return "unpartitioned"
    if isinstance(p, dg.MultiPartitionsDefinition):
        return " x ".join(f"{d.name}({_partitioning(d.partitions_def)})" for d in p.partitions_defs)
    if isinstance(p, dg.StaticPartitionsDefinition):
        return ",".join(p.get_partition_keys())
    if isinstance(p, dg.TimeWindowPartitionsDefinition):
        return f"{p.cron_schedule} from {p.start.date()} {p.timezone}"
    return type(p).__name__


def graph_text() -> str:
    graph = defs.resolve_asset_graph()
    checks: dict[str, list[str]] = {}
    for k in graph.asset_check_keys:
        checks.setdefault(k.asset_key.to_user_string(), []).append(k.name)
    lines = ["# assets: key | group | upstream | partitions | kinds | checks"]
    for s in sorted(defs.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string()):
        key = s.key.to_user_string()
        lines.append(" | ".join([key, s.group_name or "-", ", ".join(sorted(d.asset_key.to_user_string() for d in s.deps)) or "-",
                                 _partitioning(s.partitions_def), ", ".join(sorted(s.kinds)) or "-",
                                 ", ".join(sorted(checks.get(key, []))) or "-"]))
    lines.append("# schedules: name | cron | timezone | job")
    for sch in sorted(defs.schedules or [], key=lambda s: s.name):
        job = getattr(sch, "job_name", None) or "-"
        lines.append(f"{sch.name} | {sch.cron_schedule} | {sch.execution_timezone or 'UTC'} | {job}")
    lines.append("# sensors: name | job")
    for sen in sorted(defs.sensors or [], key=lambda s: s.name):
        lines.append(f"{sen.name} | {', '.join(sorted(j.name for j in sen.jobs)) if sen.has_jobs else '-'}")
    lines.append("# jobs")
    lines += sorted(j.name for j in defs.jobs or [])
    return "\n".join(lines) + "\n"


def test_the_graph_matches_its_committed_snapshot():
    text = graph_text()
    if os.environ.get("KW_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.exists(), f"no snapshot yet: run with KW_UPDATE_SNAPSHOT=1 to write {SNAPSHOT}"
    assert text == SNAPSHOT.read_text(), "the graph changed: review the diff and re-run with KW_UPDATE_SNAPSHOT=1"


def test_every_asset_links_to_its_own_definition_once():
    for spec in defs.resolve_all_asset_specs():
        refs = spec.metadata["dagster/code_references"].code_references
        assert len(refs) == 1 and "kw_assets/defs/" in refs[0].file_path, (spec.key, refs)
        assert not refs[0].file_path.endswith("tables.py"), spec.key  # the asset's module, not the factory's
