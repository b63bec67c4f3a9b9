"""Error types shared by every stage.

A `UserError` is a problem with the user's input (a path, a config value, a file): the CLI prints
its one-line message and exits with code 2. Anything else is an internal failure (exit code 1).
"""


class UserError(Exception):
    """Bad input: the message names the cause and the fix."""


class ConfigError(UserError):
    """A config key has a wrong name, type or value; the message names the key."""


class DataError(UserError):
    """A dataset, shard or tokenizer is missing or malformed."""


class ArtifactError(UserError):
    """A file is not a valid pgolf artifact (or official export)."""


class NonFiniteLossError(UserError):
    """Training produced NaN or inf; the message names the step and the first bad tensor."""
