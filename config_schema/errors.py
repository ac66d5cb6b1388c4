"""The one error class for a configuration problem (file, override, in-code table)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration file or override is invalid. The message names the source (file name or
    ``Setting algo.overrides``), every offending key path, the value found and what was
    expected, one problem a line; ``problems`` holds the same lines one by one. The caller
    refuses to start (a command exits 1 with the message), or refuses to save the override
    (the API answers 400 with the problems), and shows the message as it is: it is meant for
    the operator, never a traceback."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems else [message]

    @classmethod
    def of(cls, problems: list[str]) -> ConfigError:
        """One error for several problem lines (the message joins them, one a line)."""
        return cls("\n".join(problems), problems)
