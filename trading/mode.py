"""Paper or live: the one place that decides (ARCHITECTURE.md, "Modes and safety gates")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TradingMode:
    live: bool
    reason: str  # why: logged at start so an operator never has to guess

    @property
    def name(self) -> str:
        return "live" if self.live else "paper"


def trading_mode(settings: Any = None) -> TradingMode:
    """Live only with PAPER_MODE=false AND ENABLE_ORDER=true AND Dhan credentials; anything
    less is paper, with the reason."""
    if settings is None:
        from django.conf import settings
    if settings.PAPER_MODE:
        return TradingMode(False, "PAPER_MODE is true (the default)")
    if not settings.ENABLE_ORDER:
        return TradingMode(False, "PAPER_MODE is false but ENABLE_ORDER is not true")
    missing = [
        name for name in ("DHANHQ_CLIENT_ID", "DHANHQ_ACCESS_TOKEN") if not getattr(settings, name)
    ]
    if missing:
        return TradingMode(False, f"live mode asked for but {' and '.join(missing)} not set")
    return TradingMode(True, "PAPER_MODE=false, ENABLE_ORDER=true and credentials are set")
