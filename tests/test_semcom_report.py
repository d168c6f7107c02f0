"""The comparison's figures and tables: what a reader has to be able to tell apart."""

from __future__ import annotations

from qgesco.semcom import report

GRID = [
    "analog-map",
    "digital-map",
    "digital-image",
    "digital-image-webp",
    "digital-image-hevc",
    "digital-image-avif",
    "deepjscc",
]


def test_every_real_scheme_has_its_own_colour_and_each_bound_shares_its_schemes():
    colours = [report._style(name)["color"] for name in GRID]
    assert len(set(colours)) == len(GRID)
    for name in GRID[1:6]:
        bound = report._style(name.replace("digital-", "ideal-", 1))
        assert bound["color"] == report._style(name)["color"] and bound["ls"] == "--"
    assert report._style("analog-map")["ls"] == "-"


def test_kid_spread_is_shown_only_when_there_is_one():
    assert report._kid({"kid": 0.35371, "kid_std": 0.0}) == "0.3537"
    assert report._kid({"kid": 0.35371, "kid_std": 0.0123}) == "0.3537 ± 0.0123"
