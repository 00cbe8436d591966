"""The errors a command reports as a message and exit code 2, in a module light enough for the CLI to import
before it parses its arguments. Files already written are left intact when any of them is raised."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration the sweep cannot run with; the message names the key and the valid choices."""


class DataError(ValueError):
    """The SimpleQA file is missing, unreadable or not in SimpleQA's format."""


class ModelError(ValueError):
    """A model that cannot be found, converted or steered."""


class SweepError(RuntimeError):
    """A stage cannot go on; the message says why."""


EXPECTED_ERRORS = (ConfigError, DataError, ModelError, SweepError)
