"""Parameters of the synthetic Milky Way survey (the "mock").

Every injected value that a later stage is scored against lives here, so a run is
reproduced from ``MockParams`` alone and ``truth_summary`` can report it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

#: Population names, in the order used for the fraction fields and the truth column.
POPULATIONS: tuple[str, ...] = ("thin_disc", "thick_disc", "halo", "bulge")


def _did_you_mean(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, [f.name for f in fields(MockParams)], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class MockParams:
    """Settings of the synthetic survey; defaults follow Fallows & Sanders and the brief.

    Attributes
    ----------
    seed : int
        Master random seed; chunk ``k`` uses ``SeedSequence([seed, k])``.
    feh_gradient : float
        Injected vertical [Fe/H] gradient of bulge stars, d[Fe/H]/d|Z| (dex/kpc).
    feh_bulge_zero : float
        [Fe/H] offset of the bulge at Z = 0 before the bimodal term (dex).
    vertex_deg : float
        Injected vertex deviation of the metal-rich (bar) bulge velocity ellipsoid in
        Galactocentric (vx, vy) (deg); l_v = 0.5 arctan(2 s_xy / (s_xx - s_yy)).
    bar_angle_deg : float
        Angle between the bar major axis and the Sun-GC line, near end at positive l (deg).
    bar_half_length_kpc : float
        Truncation half-length of the bar along its major axis (kpc).
    bar_pattern_kms_per_kpc : float
        Solid-body streaming rate of bulge stars (km/s/kpc), capped at R = 2 kpc.
    frac_thin_disc, frac_thick_disc, frac_halo, frac_bulge : float
        Target fractions of the *output* (selected) rows per population; must sum to 1.
    giant_frac_thin_disc, giant_frac_thick_disc, giant_frac_halo, giant_frac_bulge : float
        Fraction of giants (RGB + red clump) among selected rows of each population. The
        Ks limit confines dwarfs to within ~6 kpc, so bulge dwarfs are essentially
        unobservable and ``giant_frac_bulge`` should stay 1.
    red_clump_fraction : float
        Fraction of giants drawn as red-clump (red horizontal branch) stars.
    dust_av_per_kpc : float
        In-plane dust extinction A_V per kpc at the Solar radius (mag/kpc).
    dust_scale_length_kpc, dust_scale_height_kpc : float
        Exponential scale length and height of the dust disc (kpc).
    dust_patchiness : float
        Lognormal sigma of the angular dust patchiness (natural-log units).
    g_min, g_max : float
        Gaia G selection limits (mag).
    ks_max, j_max, h_max, w1_max, w2_max : float
        2MASS / unWISE detection limits (Vega mag).
    rv_g_max : float
        Faintest G with a Gaia radial velocity (mag).
    label_fraction_apogee : float
        Fraction of APOGEE-eligible giants (H < ``apogee_h_max``) that get APOGEE labels.
    label_fraction_lamost : float
        Fraction of LAMOST-eligible stars (dec > -10 deg, G < ``lamost_g_max``) with labels.
    label_overlap_fraction : float
        Fraction of APOGEE stars also LAMOST-eligible that are forced into LAMOST too.
    apogee_h_max, lamost_g_max : float
        Spectroscopic magnitude limits (mag).
    bad_label_fraction : float
        Fraction of label rows made bad (sigma_Teff > Teff or sigma_logg > logg, wild [Fe/H]).
    """

    seed: int = 42
    feh_gradient: float = -0.5
    feh_bulge_zero: float = 0.0
    vertex_deg: float = -20.0
    bar_angle_deg: float = 27.0
    bar_half_length_kpc: float = 4.5
    bar_pattern_kms_per_kpc: float = 30.0
    frac_thin_disc: float = 0.42
    frac_thick_disc: float = 0.18
    frac_halo: float = 0.05
    frac_bulge: float = 0.35
    giant_frac_thin_disc: float = 0.30
    giant_frac_thick_disc: float = 0.40
    giant_frac_halo: float = 0.80
    giant_frac_bulge: float = 1.0
    red_clump_fraction: float = 0.35
    dust_av_per_kpc: float = 0.65
    dust_scale_length_kpc: float = 3.0
    dust_scale_height_kpc: float = 0.1
    dust_patchiness: float = 0.2
    g_min: float = 8.0
    g_max: float = 19.5
    ks_max: float = 14.3
    j_max: float = 16.0
    h_max: float = 15.5
    w1_max: float = 17.0
    w2_max: float = 16.0
    rv_g_max: float = 15.5
    label_fraction_apogee: float = 0.20
    label_fraction_lamost: float = 0.25
    label_overlap_fraction: float = 0.3
    apogee_h_max: float = 12.2
    lamost_g_max: float = 17.0
    bad_label_fraction: float = 0.005

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "seed" and not math.isfinite(float(value)):
                raise ValueError(f"{f.name} must be finite, got {value!r}")
        fracs = self.population_fractions
        if any(v < 0 for v in fracs.values()) or abs(sum(fracs.values()) - 1.0) > 1e-6:
            raise ValueError(
                f"population fractions must be >= 0 and sum to 1, got {fracs} "
                f"(sum {sum(fracs.values()):.6f}); rescale frac_thin_disc..frac_bulge"
            )
        unit = [
            "giant_frac_thin_disc",
            "giant_frac_thick_disc",
            "giant_frac_halo",
            "giant_frac_bulge",
            "red_clump_fraction",
            "label_fraction_apogee",
            "label_fraction_lamost",
            "label_overlap_fraction",
            "bad_label_fraction",
        ]
        for name in unit:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if not -45.0 < self.vertex_deg < 45.0:
            raise ValueError(f"vertex_deg must lie in (-45, 45) deg, got {self.vertex_deg}")
        for name in ("dust_scale_length_kpc", "dust_scale_height_kpc", "bar_half_length_kpc"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 kpc, got {getattr(self, name)}")
        if self.dust_av_per_kpc < 0 or self.dust_patchiness < 0:
            raise ValueError(
                f"dust_av_per_kpc ({self.dust_av_per_kpc}) and dust_patchiness "
                f"({self.dust_patchiness}) must be >= 0"
            )
        if not 6.0 <= self.g_min < self.g_max <= 21.0:
            raise ValueError(
                f"need 6 <= g_min < g_max <= 21 (zero-point validity), got "
                f"g_min={self.g_min}, g_max={self.g_max}"
            )

    @property
    def population_fractions(self) -> dict[str, float]:
        """Target output fraction of each population, keyed by ``POPULATIONS``."""
        return {p: float(getattr(self, f"frac_{p}")) for p in POPULATIONS}

    @property
    def giant_fractions(self) -> dict[str, float]:
        """Giant fraction among selected rows of each population."""
        return {p: float(getattr(self, f"giant_frac_{p}")) for p in POPULATIONS}

    @classmethod
    def from_dict(cls, values: dict) -> MockParams:
        """Build from a mapping, rejecting unknown keys with a "Did you mean" hint."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ValueError(f"unknown mock parameter {key!r}.{_did_you_mean(key)}")
        return cls(**values)
