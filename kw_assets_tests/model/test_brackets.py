import math

import numpy as np
import pytest

from kw_assets.model.brackets import BracketError, bracket_bounds, bracket_of, parse_bracket_label, tiling_problems


@pytest.mark.parametrize("strike_type,floor,cap,expected", [
    ("between", 79, 80, (79, 80)),          # 79 or 80, both ends inclusive (ticker -B79.5)
    ("greater", 86, None, (87, math.inf)),  # strictly greater than 86: 87 and up (-T86)
    ("less", None, 79, (-math.inf, 78)),    # strictly less than 79: 78 and below (-T79)
    ("greater_or_equal", 87, None, (87, math.inf)),
    ("less_or_equal", None, 78, (-math.inf, 78)),
])
def test_strike_fields_give_whole_degree_bounds(strike_type, floor, cap, expected):
    assert bracket_bounds(strike_type, floor, cap) == expected


def test_settled_high_maps_to_exactly_one_bracket():
    lows = np.array([-np.inf, 79, 81, 83, 85, 87])
    highs = np.array([78, 80, 82, 84, 86, np.inf])
    assert bracket_of([78, 79, 80, 81, 86, 87, 120, -10], lows, highs).tolist() == [0, 1, 1, 2, 4, 5, 5, 0]
    assert tiling_problems(lows, highs) == []


def test_gaps_and_overlaps_are_reported():
    assert "gap between 80 and 83" in tiling_problems(np.array([-np.inf, 79, 83]), np.array([78, 80, np.inf]))[0]
    assert "overlap" in tiling_problems(np.array([-np.inf, 78, 81]), np.array([78, 80, np.inf]))[0]
    assert "no upper tail" in tiling_problems(np.array([-np.inf, 79]), np.array([78, 80]))[0]


def test_unknown_strike_type_is_rejected_by_name():
    with pytest.raises(BracketError, match="unknown strike_type 'custom'"):
        bracket_bounds("custom", 1, 2)
    with pytest.raises(BracketError, match="needs floor_strike"):
        bracket_bounds("greater", None, None)


@pytest.mark.parametrize("label,bounds", [
    ("79° to 80°", (79, 80)),
    ("78° or below", (-math.inf, 78)),
    ("87° or above", (87, math.inf)),
    ("<79°", (-math.inf, 78)),
    (">86°", (87, math.inf)),
])
def test_website_labels_parse_to_the_same_semantics(label, bounds):
    assert bracket_bounds(*parse_bracket_label(label)) == bounds


def test_unreadable_label():
    with pytest.raises(BracketError, match="cannot read a bracket"):
        parse_bracket_label("warm-ish")
