"""Local Dhan simulator: a seedable synthetic market (``market``) behind fake REST and feed servers.

``market`` is pure (no Django, Redis, sockets or wall clock; market time is an argument), so the
simulator's servers, the tests and replays all see the same deterministic day for a given seed.
"""
