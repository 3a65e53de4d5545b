import pytest

from kw_assets.model.fees import fee_cents

# Kalshi's published table: price -> (fee for 1 contract, fee for 100 contracts), symmetric above 0.50
PUBLISHED = {0.01: (1, 7), 0.05: (1, 34), 0.10: (1, 63), 0.15: (1, 90), 0.20: (2, 112), 0.25: (2, 132),
             0.30: (2, 147), 0.35: (2, 160), 0.40: (2, 168), 0.45: (2, 174), 0.50: (2, 175)}


@pytest.mark.parametrize("price", sorted(PUBLISHED))
def test_taker_fees_reproduce_the_published_table_on_both_sides(price):
    one, hundred = PUBLISHED[price]
    for p in {price, round(1 - price, 2)}:
        assert fee_cents(p, 1) == one
        assert fee_cents(p, 100) == hundred
        assert fee_cents(f"{p:.4f}", "100.00") == hundred  # the API's strings give the same cents


def test_ceiling_is_exact_where_floats_would_round_up():
    assert 0.07 * 100 * 0.5 * 0.5 * 100 > 175  # the float product is 175.00000000000003
    assert fee_cents(0.5, 100) == 175


def test_maker_fee_only_where_the_series_charges_makers():
    assert fee_cents(0.5, 100, maker=True, fee_type="quadratic") == 0  # weather series today
    assert fee_cents(0.5, 100, maker=True, fee_type="quadratic_with_maker_fees") == 44  # 43.75 -> 44
    assert fee_cents(0.5, 100, fee_multiplier=0.5) == 88  # 87.5 -> 88
    assert fee_cents(0.5, 100, fee_multiplier=0) == 0


def test_fees_are_never_negative_and_grow_with_size():
    for cents in range(0, 101):
        p = cents / 100
        fees = [fee_cents(p, c) for c in (0, 1, 7.5, 10, 1000)]
        assert min(fees) >= 0 and fees == sorted(fees)
    with pytest.raises(ValueError):
        fee_cents(1.2, 1)
