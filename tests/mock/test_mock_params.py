from __future__ import annotations

import dataclasses

import pytest

from bigcat.synthetic import MockParams


def test_defaults_are_the_brief() -> None:
    p = MockParams()
    assert p.feh_gradient == -0.5
    assert p.vertex_deg == -20.0
    assert p.bar_angle_deg == 27.0
    assert sum(p.population_fractions.values()) == pytest.approx(1.0)


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        MockParams().seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frac_bulge": 0.5}, "sum to 1"),
        ({"label_fraction_apogee": 1.5}, r"label_fraction_apogee must lie in \[0, 1\]"),
        ({"vertex_deg": 60.0}, "vertex_deg must lie"),
        ({"seed": -1}, "seed must be a non-negative int"),
        ({"dust_scale_height_kpc": 0.0}, "dust_scale_height_kpc must be > 0"),
        ({"g_max": 22.0}, "zero-point validity"),
        ({"feh_gradient": float("nan")}, "feh_gradient must be finite"),
    ],
)
def test_validation_messages(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MockParams(**kwargs)


def test_from_dict_did_you_mean() -> None:
    with pytest.raises(ValueError, match="Did you mean 'feh_gradient'"):
        MockParams.from_dict({"feh_gradiant": -0.4})
    assert MockParams.from_dict({"feh_gradient": -0.4}).feh_gradient == -0.4
