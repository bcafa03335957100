"""Named Galaxies of the synthetic survey: the default one and validation Galaxies.

``GALAXIES[name]`` maps ``MockParams`` field names to the values that differ from the
defaults; ``MockParams.for_galaxy(name, **explicit)`` (and ``[mock] galaxy = "name"``,
``bigcat mock --galaxy name``) builds one, explicit keys winning over the Galaxy's values.

The validation Galaxies exist only to test the pipeline on Galaxies it never assumed:
nothing in bigcat's production code (distance priors, defaults, tuned constants) is fitted
to them. See docs/galaxies.md for what each is meant to stress.

``longbar``
    A long, thin bar at 20 deg with a faster pattern speed, a longer thin disc and a
    thicker thick disc; a weaker bulge gradient (-0.35 dex/kpc) and a larger vertex
    (-30 deg); a more metal-poor bulge, fewer red-clump giants, lighter bulge giants; a steep
    near-infrared extinction law (Nishiyama et al. 2009) in a dustier, patchier ISM;
    APOGEE confined to the plane and bulge fields (|b| <= 15 deg) with a brighter H limit,
    LAMOST brighter and avoiding the plane (|b| >= 10 deg).
``boxybulge``
    A short, fat, boxy bar at 35 deg, shorter discs, a larger bulge share and different
    giant fractions; a steeper gradient (-0.6 dex/kpc) and a small vertex (-12 deg); a
    more metal-rich bulge and a steeper thin-disc [Fe/H] gradient, more red-clump giants,
    a shallower RGB log g law (more luminous giants), heavier giants; a flatter
    Fitzpatrick-like extinction law (Gordon et al. 2023, R_V = 3.1) with a shorter,
    thicker dust disc; APOGEE fainter and with a larger fraction, LAMOST with a larger
    fraction and a more southern limit.
"""

from __future__ import annotations

GALAXIES: dict[str, dict] = {
    "default": {},
    "longbar": {
        # structure
        "bar_angle_deg": 20.0,
        "bar_half_length_kpc": 5.0,
        "bar_scale_x_kpc": 1.8,
        "bar_scale_y_kpc": 0.35,
        "bar_scale_z_kpc": 0.4,
        "bar_pattern_kms_per_kpc": 40.0,
        "thin_disc_scale_length_kpc": 3.2,
        "thick_disc_scale_height_kpc": 1.2,
        # injected science
        "feh_gradient": -0.35,
        "vertex_deg": -30.0,
        # populations
        "bulge_eps_rich_mean": 0.15,
        "bulge_eps_rich_sigma": 0.15,
        "bulge_eps_poor_mean": -0.7,
        "bulge_eps_poor_sigma": 0.3,
        "thin_feh_radial_gradient": -0.05,
        "bar_sigma_major_kms": 130.0,
        "bar_sigma_minor_kms": 80.0,
        # stars
        "red_clump_fraction": 0.25,
        "giant_mass_bulge": 0.9,
        # dust
        "extinction_law": "nishiyama-2009",
        "dust_av_per_kpc": 0.8,
        "dust_patchiness": 0.35,
        # label surveys
        "apogee_max_abs_b_deg": 15.0,
        "apogee_h_max": 11.5,
        "label_fraction_apogee": 0.35,
        "lamost_g_max": 16.5,
        "lamost_min_abs_b_deg": 10.0,
    },
    "boxybulge": {
        # structure
        "bar_angle_deg": 35.0,
        "bar_half_length_kpc": 3.2,
        "bar_scale_x_kpc": 0.9,
        "bar_scale_y_kpc": 0.7,
        "bar_scale_z_kpc": 0.6,
        "bar_pattern_kms_per_kpc": 25.0,
        "thin_disc_scale_length_kpc": 2.2,
        "thick_disc_scale_length_kpc": 1.8,
        "thick_disc_scale_height_kpc": 0.75,
        "halo_slope": 3.0,
        "halo_q": 0.8,
        # injected science
        "feh_gradient": -0.6,
        "vertex_deg": -12.0,
        # populations
        "frac_thin_disc": 0.36,
        "frac_thick_disc": 0.2,
        "frac_halo": 0.04,
        "frac_bulge": 0.4,
        "giant_frac_thin_disc": 0.35,
        "giant_frac_thick_disc": 0.45,
        "bulge_eps_rich_weight": 0.7,
        "bulge_eps_rich_mean": 0.25,
        "thin_feh_radial_gradient": -0.08,
        "thick_feh_mean": -0.6,
        "bar_sigma_major_kms": 115.0,
        "bar_sigma_minor_kms": 95.0,
        # stars
        "rgb_logg_exponent": 0.35,
        "red_clump_fraction": 0.45,
        "giant_mass_thin_disc": 1.5,
        "giant_mass_bulge": 1.1,
        # dust
        "extinction_law": "gordon-2023-rv3.1",
        "dust_scale_length_kpc": 2.5,
        "dust_scale_height_kpc": 0.14,
        # label surveys
        "apogee_h_max": 12.8,
        "label_fraction_apogee": 0.3,
        "label_fraction_lamost": 0.35,
        "lamost_dec_min_deg": -20.0,
    },
}

#: One line per Galaxy, for ``bigcat mock --help``.
DESCRIPTIONS: dict[str, str] = {
    "default": "the Milky Way model bigcat's defaults assume",
    "longbar": "long thin 20-deg bar, -0.35 dex/kpc, vertex -30, Nishiyama dust, APOGEE plane-only",
    "boxybulge": "short boxy 35-deg bar, -0.6 dex/kpc, vertex -12, Gordon R_V=3.1 dust, "
    "more red clump",
}
