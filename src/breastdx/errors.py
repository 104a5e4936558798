"""The configuration error every layer raises: at the bottom of the package, so that :mod:`breastdx.runtime`
(checked by :mod:`breastdx.runs` when it records the machine) can raise it without importing :mod:`breastdx.config`,
which imports :mod:`breastdx.runs`. :mod:`breastdx.config` re-exports it; import it from there."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value or override that cannot be used."""
