"""Settings of the per-star photometric transforms (METHOD.md section 2).

Every default is the paper's value (Fallows & Sanders), and every one is a setting.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bigcat.schema import BANDS

logger = logging.getLogger(__name__)


class FrozenRatios(Mapping[str, float]):
    """Read-only, hashable and picklable mapping band -> A_band/A_V (dimensionless).

    ``types.MappingProxyType`` cannot be pickled, and the settings travel to Dask workers.
    """

    def __init__(self, data: Mapping[str, float] | Any = ()) -> None:
        self._data: dict[str, float] = dict(data)

    def __getitem__(self, key: str) -> float:
        return self._data[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenRatios({self._data!r})"


#: Wang & Chen (2019) extinction ratios A_band / A_V for the eight bands of ``schema.BANDS``.
WANG_CHEN_2019_A_OVER_AV: Mapping[str, float] = FrozenRatios(
    {
        "bp": 1.002,
        "g": 0.789,
        "rp": 0.589,
        "j": 0.243,
        "h": 0.131,
        "ks": 0.078,
        "w1": 0.039,
        "w2": 0.026,
    }
)


def _default_ratios() -> Mapping[str, float]:
    return FrozenRatios(WANG_CHEN_2019_A_OVER_AV)


def _finite(name: str, value: object) -> float:
    """Return ``value`` as a float, or raise naming the setting when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"PhotometryParams.{name} must be a number, got {value!r} ({type(value).__name__})."
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"PhotometryParams.{name} must be finite, got {value!r}.")
    return value


@dataclass(frozen=True)
class PhotometryParams:
    """Settings of the photometry kernels; defaults are the paper's values.

    Attributes
    ----------
    max_excess_factor : float
        Largest accepted Gaia BP/RP flux excess factor ``phot_bp_rp_excess_factor``
        (dimensionless). Rows with a larger (or non-finite) value fail the quality cut;
        a value equal to the limit passes. Paper: 3.0.
    max_ruwe : float
        Largest accepted Gaia renormalised unit weight error ``ruwe`` (dimensionless).
        Equal passes. Paper: 1.4.
    rjce_constant : float
        Factor of the RJCE law A_Ks = k (H - W2 - c) (mag of A_Ks per mag of colour excess).
        Paper (Majewski et al. 2011): 0.918. Note that the Wang & Chen (2019) ratios below
        imply A_Ks / E(H - W2) = 0.078 / (0.131 - 0.026) = 0.743 instead; the two constants
        are independent settings and the choice is recorded with the run.
    rjce_intrinsic_h_w2 : float
        Intrinsic colour c = (H - W2)_0 of the RJCE law (mag). 0.05 is the WISE W2 form used
        for APOGEE targeting (Zasowski et al. 2013); Majewski et al. (2011) give 0.08 for
        IRAC [4.5].
    extinction_ratios : Mapping[str, float]
        Extinction ratio A_band / A_V (dimensionless) for each of the eight bands of
        ``bigcat.schema.BANDS``. Only ratios to ``ks`` are used:
        A_band = A_Ks * ratio[band] / ratio["ks"]. Default: Wang & Chen (2019).
    giant_cut_slope : float
        Slope of the giant cut of eq. 7, M_pseudo < slope (J0 - H0) + intercept
        (M_pseudo units per mag of colour). Paper: 492.101.
    giant_cut_intercept : float
        Intercept of the giant cut of eq. 7, in the units of M_pseudo (mas x 10^(0.2 J0)).
        Paper: -53.827.
    apply_zeropoint : bool
        Correct Gaia parallaxes for the Lindegren et al. (2021) zero-point before they are
        used. When False, ``parallax_zp`` equals ``parallax`` and every row carries the
        ``zeropoint_unavailable`` bit.
    """

    max_excess_factor: float = 3.0
    max_ruwe: float = 1.4
    rjce_constant: float = 0.918
    rjce_intrinsic_h_w2: float = 0.05
    extinction_ratios: Mapping[str, float] = field(default_factory=_default_ratios)
    giant_cut_slope: float = 492.101
    giant_cut_intercept: float = -53.827
    apply_zeropoint: bool = True

    def __post_init__(self) -> None:
        for name in (
            "max_excess_factor",
            "max_ruwe",
            "rjce_constant",
            "rjce_intrinsic_h_w2",
            "giant_cut_slope",
            "giant_cut_intercept",
        ):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))
        for name in ("max_excess_factor", "max_ruwe", "rjce_constant"):
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"PhotometryParams.{name} must be > 0, got {getattr(self, name)!r}."
                )
        if not isinstance(self.apply_zeropoint, bool):
            raise TypeError(
                f"PhotometryParams.apply_zeropoint must be True or False, "
                f"got {self.apply_zeropoint!r}."
            )
        object.__setattr__(self, "extinction_ratios", _check_ratios(self.extinction_ratios))


def _check_ratios(ratios: object) -> Mapping[str, float]:
    """Validate the A_band/A_V mapping and return a read-only copy in ``BANDS`` order."""
    if not isinstance(ratios, Mapping):
        raise TypeError(
            "PhotometryParams.extinction_ratios must be a mapping band -> A_band/A_V, "
            f"got {type(ratios).__name__}."
        )
    unknown = [k for k in ratios if k not in BANDS]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key).lower(), BANDS, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"PhotometryParams.extinction_ratios has unknown band(s) {', '.join(hints)}; "
            f"the bands are {list(BANDS)}."
        )
    missing = [b for b in BANDS if b not in ratios]
    if missing:
        raise ValueError(
            f"PhotometryParams.extinction_ratios is missing band(s) {missing}; give A_band/A_V "
            f"for all of {list(BANDS)}."
        )
    out = {}
    for band in BANDS:
        value = _finite(f"extinction_ratios[{band!r}]", ratios[band])
        if value <= 0:
            raise ValueError(
                f"PhotometryParams.extinction_ratios[{band!r}] must be > 0, got {value!r}."
            )
        out[band] = value
    return FrozenRatios(out)
