"""bigcat: photometric metallicities and distances of red giants, and the Galactic bar/bulge."""

from __future__ import annotations

__version__ = "0.1.0"
