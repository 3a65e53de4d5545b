import datetime as dt

from kw_assets.event_watch import event_requests, prune

VALID = {"ny|2025-06-10", "ny|2025-06-11", "chi|2025-06-10"}


def test_an_event_is_requested_once_when_listed_and_once_when_it_settles():
    seen: dict[str, str] = {}
    first = event_requests(["KXHIGHNY-25JUN10", "KXHIGHCHI-25JUN10"], set(), seen, VALID)
    assert [(r.event, r.reason, r.partition) for r in first] == [("KXHIGHNY-25JUN10", "listed", "ny|2025-06-10"),
                                                                ("KXHIGHCHI-25JUN10", "listed", "chi|2025-06-10")]
    assert event_requests(["KXHIGHNY-25JUN10"], set(), seen, VALID) == []
    settled = event_requests(["KXHIGHNY-25JUN10"], {"KXHIGHNY-25JUN10"}, seen, VALID)
    assert [r.run_key for r in settled] == ["KXHIGHNY-25JUN10:settled"]
    assert event_requests(["KXHIGHNY-25JUN10"], {"KXHIGHNY-25JUN10"}, seen, VALID) == []


def test_an_event_first_seen_settled_asks_for_raw_data_and_the_graph():
    reasons = [r.reason for r in event_requests(["KXHIGHNY-25JUN11"], {"KXHIGHNY-25JUN11"}, {}, VALID)]
    assert reasons == ["listed", "settled"]


def test_unknown_tickers_and_partitions_not_yet_defined_wait():
    seen: dict[str, str] = {}
    assert event_requests(["KXHIGHNY-25JUN12", "NOTATICKER", "KXHIGHXX-25JUN10"], set(), seen, VALID) == []
    assert seen == {}  # a later look, once the partition exists, still requests it


def test_prune_forgets_events_older_than_the_window():
    seen = {"KXHIGHNY-25APR01": "settled", "KXHIGHNY-25JUN10": "listed", "garbage": "listed"}
    assert prune(seen, dt.date(2025, 6, 11)) == {"KXHIGHNY-25JUN10": "listed"}
