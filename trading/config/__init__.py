"""The algo configuration, in three modules by what they may import:

* ``trading.config.types``: the frozen dataclasses and their pure queries (standard library
  only); the only one the pure rules in ``trading/rules`` import.
* ``trading.config.load``: ``config/algo.yml`` (+ an overrides mapping) read and validated into
  those types (PyYAML, pydantic through ``config_schema``; no Django but the default file's
  setting).
* ``trading.config.store``: the operator's overrides kept in the ``Setting`` table, and this
  process's cached effective config (Django).

This ``__init__`` re-exports nothing, so importing the types loads neither YAML, pydantic nor
Django: import from the module that holds the name.
"""
