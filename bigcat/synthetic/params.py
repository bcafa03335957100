"""Parameters of the synthetic Milky Way survey (the "mock").

Every injected value that a later stage is scored against lives here, and so does every
structural, population and observing property of the simulated Galaxy (disc, halo and bar
shapes, [Fe/H] distributions, bulge kinematics, the giant luminosity function, the
extinction law, the spectroscopic selections), so a run is reproduced from ``MockParams``
alone and ``truth_summary`` can report it. The defaults are the default Galaxy; named
validation Galaxies (``bigcat.synthetic.galaxies.GALAXIES``) override some of them.

Precedence for a named Galaxy: ``MockParams.for_galaxy(name, **explicit)`` and
``MockParams.from_dict({"galaxy": name, **explicit})`` start from the defaults, apply the
Galaxy's overrides, then the explicit keys: explicit keys win over the named Galaxy's
values. ``MockParams(galaxy=name)`` itself does *not* apply the overrides (construction
never rewrites fields); ``MockParams.overrides()`` shows what differs from the named Galaxy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from bigcat.synthetic.extinction import EXTINCTION_LAWS
from bigcat.synthetic.galaxies import GALAXIES

#: Population names, in the order used for the fraction fields and the truth column.
POPULATIONS: tuple[str, ...] = ("thin_disc", "thick_disc", "halo", "bulge")


def _did_you_mean(name: str, choices: list[str] | None = None) -> str:
    import difflib

    if choices is None:
        choices = [f.name for f in fields(MockParams)]
    close = difflib.get_close_matches(name, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_name(kind: str, name: object, choices: dict) -> None:
    if not isinstance(name, str) or name not in choices:
        names = list(choices)
        raise ValueError(
            f"unknown {kind} {name!r}.{_did_you_mean(str(name), names)} Known: {', '.join(names)}."
        )


#: Fields that hold names rather than numbers.
_TEXT_FIELDS = ("galaxy", "extinction_law")


@dataclass(frozen=True)
class MockParams:
    """Settings of the synthetic survey; defaults follow Fallows & Sanders and the brief.

    Flat scalar fields only (TOML ``[mock]`` keys), frozen and hashable. The defaults are
    the *default* Galaxy; ``bigcat.synthetic.galaxies.GALAXIES`` names validation Galaxies.

    Attributes
    ----------
    seed : int
        Master random seed; chunk ``k`` uses ``SeedSequence([seed, k])``.
    galaxy : str
        Name of the Galaxy these values came from (a key of ``GALAXIES``), recorded in
        truth.json. Build named Galaxies with ``for_galaxy``/``from_dict``: construction
        itself does not apply the Galaxy's overrides.
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
    bar_scale_x_kpc, bar_scale_y_kpc, bar_scale_z_kpc : float
        Exponential scale lengths of the bar along its major axis, minor axis and
        vertically (kpc).
    thin_disc_scale_length_kpc, thin_disc_scale_height_kpc : float
        Exponential scale length and height of the thin disc (kpc).
    thick_disc_scale_length_kpc, thick_disc_scale_height_kpc : float
        Exponential scale length and height of the thick disc (kpc).
    halo_core_kpc, halo_slope, halo_q : float
        Halo density (R^2 + (z/q)^2 + core^2)^(-slope/2): core radius (kpc), power-law
        slope and vertical flattening q.
    frac_thin_disc, frac_thick_disc, frac_halo, frac_bulge : float
        Target fractions of the *output* (selected) rows per population; must sum to 1.
    giant_frac_thin_disc, giant_frac_thick_disc, giant_frac_halo, giant_frac_bulge : float
        Fraction of giants (RGB + red clump) among selected rows of each population. The
        Ks limit confines dwarfs to within ~6 kpc, so bulge dwarfs are essentially
        unobservable and ``giant_frac_bulge`` should stay 1.
    bulge_eps_rich_weight, bulge_eps_rich_mean, bulge_eps_rich_sigma : float
        Weight, mean (dex) and sigma (dex) of the metal-rich Gaussian of the bimodal bulge
        [Fe/H] offset ``eps``.
    bulge_eps_poor_mean, bulge_eps_poor_sigma : float
        Mean and sigma (dex) of its metal-poor Gaussian (weight 1 - ``bulge_eps_rich_weight``).
    thin_feh_r0, thin_feh_radial_gradient, thin_feh_sigma : float
        Thin-disc [Fe/H] at the Solar radius (dex), its radial gradient (dex/kpc) and
        scatter (dex).
    thick_feh_mean, thick_feh_sigma, halo_feh_mean, halo_feh_sigma : float
        Gaussian [Fe/H] (dex) of the thick disc and of the halo.
    bar_sigma_major_kms, bar_sigma_minor_kms, bar_sigma_z_kms : float
        Target velocity dispersions of the metal-rich (bar) bulge ellipsoid: along its
        tilted major and minor axes in (vx, vy), and vertically (km/s).
    bulge_mp_sigma_x_kms, bulge_mp_sigma_y_kms, bulge_mp_sigma_z_kms : float
        Target velocity dispersions of the metal-poor bulge (untilted) (km/s).
    rgb_logg_exponent : float
        RGB luminosity function: p(log g) ~ 10^(exponent log g) on [0.5, 3.5]; smaller
        values give relatively more luminous (low log g) giants.
    red_clump_fraction : float
        Fraction of giants drawn as red-clump (red horizontal branch) stars.
    clump_logg : float
        Mean log g of the red clump (dex; sigma 0.07).
    giant_mass_thin_disc, giant_mass_thick_disc, giant_mass_halo, giant_mass_bulge : float
        Mean giant mass per population (Msun; sigmas 0.3, 0.1, 0.05, 0.15, clipped to
        [0.7, 2.5]).
    extinction_law : str
        Key of ``bigcat.synthetic.extinction.EXTINCTION_LAWS``: A_band / A_V of every band.
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
        Fraction of APOGEE-eligible giants (H < ``apogee_h_max``, |b| <=
        ``apogee_max_abs_b_deg``) that get APOGEE labels.
    label_fraction_lamost : float
        Fraction of LAMOST-eligible stars (dec > ``lamost_dec_min_deg``, |b| >=
        ``lamost_min_abs_b_deg``, G < ``lamost_g_max``) with labels.
    label_overlap_fraction : float
        Fraction of APOGEE stars also LAMOST-eligible that are forced into LAMOST too.
    apogee_h_max, lamost_g_max : float
        Spectroscopic magnitude limits (mag).
    apogee_max_abs_b_deg : float
        APOGEE field restriction: only |b| <= this (deg); 90 = all sky.
    lamost_dec_min_deg : float
        LAMOST's southern limit: only dec > this (deg).
    lamost_min_abs_b_deg : float
        LAMOST plane avoidance: only |b| >= this (deg); 0 = none.
    bad_label_fraction : float
        Fraction of label rows made bad (sigma_Teff > Teff or sigma_logg > logg, wild [Fe/H]).
    """

    seed: int = 42
    galaxy: str = "default"
    # injected science
    feh_gradient: float = -0.5
    feh_bulge_zero: float = 0.0
    vertex_deg: float = -20.0
    # structure
    bar_angle_deg: float = 27.0
    bar_half_length_kpc: float = 4.5
    bar_pattern_kms_per_kpc: float = 30.0
    bar_scale_x_kpc: float = 1.3
    bar_scale_y_kpc: float = 0.5
    bar_scale_z_kpc: float = 0.45
    thin_disc_scale_length_kpc: float = 2.6
    thin_disc_scale_height_kpc: float = 0.3
    thick_disc_scale_length_kpc: float = 2.0
    thick_disc_scale_height_kpc: float = 0.9
    halo_core_kpc: float = 1.0
    halo_slope: float = 3.5
    halo_q: float = 0.7
    # populations
    frac_thin_disc: float = 0.42
    frac_thick_disc: float = 0.18
    frac_halo: float = 0.05
    frac_bulge: float = 0.35
    giant_frac_thin_disc: float = 0.30
    giant_frac_thick_disc: float = 0.40
    giant_frac_halo: float = 0.80
    giant_frac_bulge: float = 1.0
    bulge_eps_rich_weight: float = 0.6
    bulge_eps_rich_mean: float = 0.2
    bulge_eps_rich_sigma: float = 0.12
    bulge_eps_poor_mean: float = -0.5
    bulge_eps_poor_sigma: float = 0.28
    thin_feh_r0: float = -0.1
    thin_feh_radial_gradient: float = -0.06
    thin_feh_sigma: float = 0.2
    thick_feh_mean: float = -0.5
    thick_feh_sigma: float = 0.25
    halo_feh_mean: float = -1.5
    halo_feh_sigma: float = 0.5
    bar_sigma_major_kms: float = 120.0
    bar_sigma_minor_kms: float = 85.0
    bar_sigma_z_kms: float = 80.0
    bulge_mp_sigma_x_kms: float = 110.0
    bulge_mp_sigma_y_kms: float = 100.0
    bulge_mp_sigma_z_kms: float = 85.0
    # stars: luminosity function and masses of giants
    rgb_logg_exponent: float = 0.5
    red_clump_fraction: float = 0.35
    clump_logg: float = 2.36
    giant_mass_thin_disc: float = 1.3
    giant_mass_thick_disc: float = 1.0
    giant_mass_halo: float = 0.85
    giant_mass_bulge: float = 1.0
    # dust
    extinction_law: str = "wang-chen-2019"
    dust_av_per_kpc: float = 0.65
    dust_scale_length_kpc: float = 3.0
    dust_scale_height_kpc: float = 0.1
    dust_patchiness: float = 0.2
    # photometric survey
    g_min: float = 8.0
    g_max: float = 19.5
    ks_max: float = 14.3
    j_max: float = 16.0
    h_max: float = 15.5
    w1_max: float = 17.0
    w2_max: float = 16.0
    rv_g_max: float = 15.5
    # spectroscopic label surveys
    label_fraction_apogee: float = 0.20
    label_fraction_lamost: float = 0.25
    label_overlap_fraction: float = 0.3
    apogee_h_max: float = 12.2
    apogee_max_abs_b_deg: float = 90.0
    lamost_g_max: float = 17.0
    lamost_dec_min_deg: float = -10.0
    lamost_min_abs_b_deg: float = 0.0
    bad_label_fraction: float = 0.005

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        _check_name("galaxy", self.galaxy, GALAXIES)
        _check_name("extinction_law", self.extinction_law, EXTINCTION_LAWS)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _TEXT_FIELDS or f.name == "seed":
                continue
            if isinstance(value, str):
                raise ValueError(f"{f.name} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
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
            "bulge_eps_rich_weight",
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
        positive = [
            "dust_scale_length_kpc",
            "dust_scale_height_kpc",
            "bar_half_length_kpc",
            "bar_scale_x_kpc",
            "bar_scale_y_kpc",
            "bar_scale_z_kpc",
            "thin_disc_scale_length_kpc",
            "thin_disc_scale_height_kpc",
            "thick_disc_scale_length_kpc",
            "thick_disc_scale_height_kpc",
            "halo_core_kpc",
        ]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 kpc, got {getattr(self, name)}")
        positive_other = [
            "halo_slope",
            "halo_q",
            "bulge_eps_rich_sigma",
            "bulge_eps_poor_sigma",
            "thin_feh_sigma",
            "thick_feh_sigma",
            "halo_feh_sigma",
            "bar_sigma_major_kms",
            "bar_sigma_minor_kms",
            "bar_sigma_z_kms",
            "bulge_mp_sigma_x_kms",
            "bulge_mp_sigma_y_kms",
            "bulge_mp_sigma_z_kms",
        ]
        for name in positive_other:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.rgb_logg_exponent <= 2.0:
            raise ValueError(f"rgb_logg_exponent must lie in [0, 2], got {self.rgb_logg_exponent}")
        if not 1.8 <= self.clump_logg <= 3.0:
            raise ValueError(f"clump_logg must lie in [1.8, 3.0] dex, got {self.clump_logg}")
        for p in POPULATIONS:
            mass = getattr(self, f"giant_mass_{p}")
            if not 0.7 <= mass <= 2.5:
                raise ValueError(f"giant_mass_{p} must lie in [0.7, 2.5] Msun, got {mass}")
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
        if not 0.0 < self.apogee_max_abs_b_deg <= 90.0:
            raise ValueError(
                f"apogee_max_abs_b_deg must lie in (0, 90] deg, got {self.apogee_max_abs_b_deg}"
            )
        if not 0.0 <= self.lamost_min_abs_b_deg < 90.0:
            raise ValueError(
                f"lamost_min_abs_b_deg must lie in [0, 90) deg, got {self.lamost_min_abs_b_deg}"
            )
        if not -90.0 <= self.lamost_dec_min_deg < 90.0:
            raise ValueError(
                f"lamost_dec_min_deg must lie in [-90, 90) deg, got {self.lamost_dec_min_deg}"
            )

    @property
    def population_fractions(self) -> dict[str, float]:
        """Target output fraction of each population, keyed by ``POPULATIONS``."""
        return {p: float(getattr(self, f"frac_{p}")) for p in POPULATIONS}

    @property
    def giant_fractions(self) -> dict[str, float]:
        """Giant fraction among selected rows of each population."""
        return {p: float(getattr(self, f"giant_frac_{p}")) for p in POPULATIONS}

    @property
    def giant_masses(self) -> dict[str, float]:
        """Mean giant mass (Msun) of each population."""
        return {p: float(getattr(self, f"giant_mass_{p}")) for p in POPULATIONS}

    @property
    def disc_scales(self) -> dict[str, tuple[float, float]]:
        """(scale length, scale height) in kpc of the thin and thick discs."""
        return {
            p: (getattr(self, f"{p}_scale_length_kpc"), getattr(self, f"{p}_scale_height_kpc"))
            for p in ("thin_disc", "thick_disc")
        }

    @property
    def bar_scales_kpc(self) -> tuple[float, float, float]:
        """Bar exponential scale lengths (major, minor, vertical) in kpc."""
        return (self.bar_scale_x_kpc, self.bar_scale_y_kpc, self.bar_scale_z_kpc)

    @property
    def bulge_eps_components(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """(weight, mean, sigma) of the metal-rich and metal-poor bulge [Fe/H] offsets."""
        w = self.bulge_eps_rich_weight
        return (
            (w, self.bulge_eps_rich_mean, self.bulge_eps_rich_sigma),
            (1.0 - w, self.bulge_eps_poor_mean, self.bulge_eps_poor_sigma),
        )

    @property
    def extinction_ratios(self) -> dict[str, float]:
        """A_band / A_V of every band under ``extinction_law``."""
        return dict(EXTINCTION_LAWS[self.extinction_law])

    @classmethod
    def _check_keys(cls, keys) -> None:
        known = {f.name for f in fields(cls)}
        for key in keys:
            if key not in known:
                raise ValueError(f"unknown mock parameter {key!r}.{_did_you_mean(key)}")

    @classmethod
    def for_galaxy(cls, name: str, **overrides: object) -> MockParams:
        """The named Galaxy (a key of ``GALAXIES``) with ``overrides`` on top.

        Precedence: defaults < the Galaxy's values < ``overrides``. An unknown name is a
        ValueError listing the Galaxies (with a "Did you mean" hint).
        """
        _check_name("galaxy", name, GALAXIES)
        cls._check_keys(overrides)
        overrides.pop("galaxy", None)
        return cls(**{**GALAXIES[name], **overrides, "galaxy": name})

    @classmethod
    def from_dict(cls, values: dict) -> MockParams:
        """Build from a mapping (e.g. a ``[mock]`` TOML section), rejecting unknown keys with a
        "Did you mean" hint. With a ``galaxy`` key, the named Galaxy's overrides apply first
        and the other keys on top (explicit keys win)."""
        cls._check_keys(values)
        values = dict(values)
        if "galaxy" in values:
            return cls.for_galaxy(values.pop("galaxy"), **values)
        return cls(**values)

    def overrides(self) -> dict[str, object]:
        """Fields whose values differ from the named Galaxy ``self.galaxy``'s (the explicit
        settings on top of it), e.g. ``{"seed": 3}``."""
        base = type(self).for_galaxy(self.galaxy)
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "galaxy" and getattr(self, f.name) != getattr(base, f.name)
        }
