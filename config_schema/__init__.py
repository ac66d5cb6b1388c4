"""Reading and validating the project's YAML configuration files, shared by every app.

``config/algo.yml``, ``config/charges.yml``, ``config/instruments.yml`` and
``config/ratelimits.yml`` (and the operator's algo overrides) all go through one reader
(:mod:`config_schema.reading`: UTF-8, YAML without duplicate keys) and one validation layer
(:mod:`config_schema.schema`: pydantic v2, every problem named by file, key path, what was
expected and what was found), and fail with one error class, :class:`ConfigError`.

A top-level package rather than a module of ``trading``: the instrument catalog validates
``instruments.yml`` with it, and the catalog must not import ``trading`` (the catalog app stands
alone; an import contract checks it). This ``__init__`` loads nothing but the error class, so
importing ``ConfigError`` costs neither PyYAML nor pydantic.
"""

from config_schema.errors import ConfigError

__all__ = ["ConfigError"]
