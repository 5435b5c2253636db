"""User-facing errors.

Every error a user can cause (bad flag, malformed file, missing checkpoint) is raised as a subclass of
`HybridmemError` with a message that names the offending field or file and says how to fix it. The CLI prints
the message and exits with status 2; library callers catch the class they care about.
"""


class HybridmemError(Exception):
    """Base class of errors caused by input, configuration or files, not by a bug."""


class ConfigError(HybridmemError, ValueError):
    """A configuration value is invalid (names the field, the value and what is allowed)."""


class DataError(HybridmemError, ValueError):
    """A data file is missing or malformed (names the file, the field and what was expected)."""


class CheckpointError(HybridmemError, ValueError):
    """A checkpoint is missing, corrupt, or does not match the code or config."""


class MachineError(HybridmemError):
    """The machine lacks what the command needs (a tool such as ffmpeg, memory under a limit): not the input's
    fault; the message names what is missing and how to provide it."""
