from __future__ import annotations

import pickle

import pytest

from bigcat.photometry import PhotometryParams
from bigcat.schema import BANDS


def test_defaults_are_the_papers_values():
    p = PhotometryParams()
    assert p.max_excess_factor == 3.0
    assert p.max_ruwe == 1.4
    assert p.rjce_constant == 0.918
    assert p.rjce_intrinsic_h_w2 == 0.05
    assert dict(p.extinction_ratios) == {
        "bp": 1.002, "g": 0.789, "rp": 0.589, "j": 0.243,
        "h": 0.131, "ks": 0.078, "w1": 0.039, "w2": 0.026,
    }  # fmt: skip
    assert tuple(p.extinction_ratios) == BANDS
    assert p.giant_cut_slope == 492.101
    assert p.giant_cut_intercept == -53.827
    assert p.apply_zeropoint is True


def test_frozen_hashable_picklable():
    p = PhotometryParams(max_ruwe=1.3)
    with pytest.raises(AttributeError):
        p.max_ruwe = 2.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(p)) == p
    assert hash(p) == hash(PhotometryParams(max_ruwe=1.3))
    with pytest.raises(TypeError):
        p.extinction_ratios["j"] = 1.0  # type: ignore[index]


def test_ratio_mapping_is_copied():
    ratios = dict(PhotometryParams().extinction_ratios)
    p = PhotometryParams(extinction_ratios=ratios)
    ratios["j"] = 99.0
    assert p.extinction_ratios["j"] == 0.243


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_ruwe": -1.0}, r"max_ruwe must be > 0, got -1\.0"),
        ({"max_excess_factor": 0}, r"max_excess_factor must be > 0"),
        ({"rjce_constant": float("nan")}, r"rjce_constant must be finite"),
        ({"giant_cut_slope": "492"}, r"giant_cut_slope must be a number, got '492'"),
        ({"apply_zeropoint": 1}, r"apply_zeropoint must be True or False"),
    ],
)
def test_invalid_settings_name_the_field_and_value(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        PhotometryParams(**kwargs)


def test_ratio_errors_suggest_the_band():
    ratios = dict(PhotometryParams().extinction_ratios)
    ratios["W1"] = ratios.pop("w1")
    with pytest.raises(ValueError, match=r"unknown band\(s\) 'W1' \(did you mean 'w1'\?\)"):
        PhotometryParams(extinction_ratios=ratios)
    del ratios["W1"]
    with pytest.raises(ValueError, match=r"missing band\(s\) \['w1'\]"):
        PhotometryParams(extinction_ratios=ratios)
    with pytest.raises(ValueError, match=r"extinction_ratios\['j'\] must be > 0"):
        PhotometryParams(extinction_ratios={**PhotometryParams().extinction_ratios, "j": 0.0})
