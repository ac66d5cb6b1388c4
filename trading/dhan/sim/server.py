"""A fake Dhan on loopback: REST under ``/v2``, the market feed and the order-update WebSockets.

One threading HTTP server on one port serves everything (Dhan uses three hosts; a client only
needs the three URLs the simulator prints):

- ``{base}/v2/...``       the REST endpoints of ``rest_types.Endpoint`` with Dhan's wire formats,
  error bodies and status codes (PROTOCOL.md 1), orders through :class:`SimBroker`;
- ``{base}/feed``         the market feed; authentication in the query string
  (``?version=2&token=..&clientId=..&authType=2``) as on ``wss://api-feed.dhan.co``;
- ``{base}/orders``       the order-update feed; the client sends the ``LoginReq`` first;
- ``{base}/scrip-master.csv``  the compact scrip master of the simulated contracts.

Market time runs from ``SimConfig.start`` (default the session's open) at ``speed`` market
seconds per real second and is the LTT of every tick; the session is ``SimConfig.session``,
default the project's (``market`` in ``config/algo.yml``). Faults (:class:`Faults`) are read
on every request and frame, so a test flips them while clients are connected. Everything the
server does is logged at DEBUG on ``trading.dhan.sim`` without credentials (the feed URL's
query string is never logged).
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from instruments.synthetic import write_compact
from trading.dhan.feed_codec import (
    DisconnectRequest,
    FeedMode,
    encode_disconnect,
    encode_full,
    encode_oi,
    encode_prev_close,
    encode_quote,
    encode_ticker,
    parse_request,
    split_instrument_key,
)
from trading.dhan.order_update_codec import order_alert_message, parse_login
from trading.dhan.sim.broker import BrokerError, SimBroker
from trading.dhan.sim.market import Market, MarketClock, Session
from trading.dhan.sim.ws import (
    CLOSE_POLICY_VIOLATION,
    OP_BINARY,
    ServerWebSocket,
    frame,
    handshake_response,
    upgrade_headers_problem,
)
from trading.dhan.vocab import Instrument, KillSwitchStatus
from trading.rules.market import IST

log = logging.getLogger("trading.dhan.sim")

MAX_FEED_CONNECTIONS = 5  # per user (PROTOCOL.md 2.1): a 6th drops the oldest with 805
MAX_INSTRUMENTS_PER_CONNECTION = 5000
MAX_QUOTE_INSTRUMENTS = 1000
PING_INTERVAL = 10.0  # seconds, as Dhan's feed
LOGIN_TIMEOUT = 10.0  # seconds an order-update client has to send its LoginReq


def default_trading_date(today: date | None = None) -> date:
    """Today in IST, or the next weekday when today is a weekend (the market must be a
    trading day for its expiries and clock to make sense)."""
    day = today or datetime.now(IST).date()
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


@dataclass(slots=True)
class SimConfig:
    """How the simulator starts. Every field has a default that suits tests and the demo."""

    seed: int = 0
    speed: float = 1.0  # market seconds per real second (60 plays a session in ~6 minutes)
    trading_date: date | None = None  # default: default_trading_date()
    start: dtime | None = None  # market time when the simulator starts; None: the open
    # (open, close) of the simulated day; None: the project's (config/algo.yml's market section)
    session: Session | None = None
    regime: Literal["random", "trend", "flat"] = "random"
    client_id: str = "1000000001"
    token: str = "sim-token"  # noqa: S105 (a simulator credential, not a secret)
    ticks_per_second: float = 4.0  # packets per subscribed instrument per real second
    full_speed: bool = False  # stream pre-encoded packets as fast as the socket takes them
    # With full_speed: cap each feed connection at this many packets per second, sent in 2 ms
    # slices (benchmarks measure latency at a known rate). 0: as fast as the socket takes them.
    full_speed_rate: float = 0.0
    # Dhan's SDK reads only the first packet of a frame, so one per frame is the safe default;
    # more exercises clients that walk a frame by the length field (PROTOCOL.md 2.4).
    packets_per_frame: int = 1
    funds: Decimal = Decimal("1000000")
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    order_update_casing: Literal["pascal", "camel"] = "pascal"
    order_update_numbers_as_strings: bool = False
    strikes_each_side: int = 40
    weeklies: int = 4
    monthlies: int = 3
    match_interval: float = 0.2  # real seconds between broker matching passes


@dataclass(slots=True)
class Faults:
    """Fault injection, read live. See the module docstring of the tests for each one's use."""

    drop_after: float | None = None  # cut every WS connection N s after it opened (no close frame)
    stall: bool = False  # feed connections stay open and silent (no frames, no pings)
    handshake_status: int | None = None  # answer WS upgrades with this HTTP status (e.g. 429)
    rest_error: Literal["429", "500", "DH-901"] | None = None
    rest_error_share: float = 0.0  # share of REST calls answered with rest_error
    latency: float = 0.0  # seconds slept before handling every REST call
    place_order_delay: float = 0.0  # POST /orders answers this long AFTER accepting the order
    token_expires_at: float | None = None  # time.time() after which the token is expired


# ---------------------------------------------------------------------------------------------
# Wire helpers

_ERRORS: dict[str, tuple[int, str, str, str]] = {
    "DH-901": (
        401,
        "Invalid_Authentication",
        "DH-901",
        "Client ID or user generated access token is invalid or expired.",
    ),
    "DH-904": (
        429,
        "Rate_Limit",
        "DH-904",
        "Too many requests on server from single user breaching rate limits. "
        "Try throttling API calls.",
    ),
    "DH-905": (
        400,
        "Input_Exception",
        "DH-905",
        "Missing required fields, bad values for parameters etc.",
    ),
    "DH-908": (500, "Internal_Server_Error", "DH-908", "Internal Server Error"),
}
_FAULT_ERRORS = {"429": "DH-904", "500": "DH-908", "DH-901": "DH-901"}


class _Answer(Exception):
    """Raised by a route to answer with ``status`` and ``body`` (errors, mostly)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _dh_error(code: str, message: str | None = None) -> _Answer:
    status, error_type, error_code, default = _ERRORS[code]
    return _Answer(
        status,
        {"errorType": error_type, "errorCode": error_code, "errorMessage": message or default},
    )


def _data_error(code: int, message: str) -> _Answer:
    """The data-API error shape (marketfeed, optionchain): HTTP 400 per PROTOCOL.md 1.1."""
    return _Answer(400, {"data": {str(code): message}, "status": "failed"})


def java_double(value: float) -> str:
    """Render a float as Java's ``Double.toString`` does (Dhan's chart arrays are serialised
    that way: ``4428248.0``, ``1.0542765E7``, ``1.641753E9``): clients must cope with both."""
    value = float(value)
    if value == 0:
        return "0.0"
    if 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        return text if ("." in text or "e" in text) else text + ".0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    mantissa = "".join(map(str, digits))
    exp10 = exponent + len(mantissa) - 1
    body = mantissa[0] + "." + (mantissa[1:] or "0")
    return f"{'-' if sign else ''}{body}E{exp10}"


class _RawJson(bytes):
    """A route's answer that is already JSON text (chart arrays in Java number style)."""


def _chart_answer(candles: Iterable[Any], *, with_oi: bool) -> _RawJson:
    """Dhan's chart body: parallel arrays (``open_interest`` only when asked for), epoch-second
    candle starts, numbers written Java-style."""
    candles = list(candles)
    arrays: dict[str, list[float]] = {
        "open": [c.open for c in candles],
        "high": [c.high for c in candles],
        "low": [c.low for c in candles],
        "close": [c.close for c in candles],
        "volume": [float(c.volume) for c in candles],
        "timestamp": [float(int(c.start.timestamp())) for c in candles],
    }
    if with_oi:
        arrays["open_interest"] = [float(c.oi) for c in candles]
    return _RawJson(_chart_json(arrays))


def _chart_json(arrays: dict[str, list[float]]) -> bytes:
    parts = [
        f'"{k}":[' + ",".join(java_double(v) for v in vals) + "]" for k, vals in arrays.items()
    ]
    return ("{" + ",".join(parts) + "}").encode()


def _money(value: float) -> float:
    return round(float(value), 2)


# ---------------------------------------------------------------------------------------------
# Connections


@dataclass(eq=False)
class _FeedConnection:
    ws: ServerWebSocket
    number: int
    opened: float = field(default_factory=time.monotonic)
    subs: dict[str, FeedMode] = field(default_factory=dict)
    fresh: deque[str] = field(default_factory=deque)  # just subscribed: owe a prev-close packet
    injections: deque[tuple[str, int]] = field(default_factory=deque)
    version: int = 0  # bumped on every subscription change (full-speed batches are rebuilt)
    changed_at: float = 0.0  # monotonic time of the last change
    lock: threading.Lock = field(default_factory=threading.Lock)
    wake: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)
class _OrderConnection:
    ws: ServerWebSocket
    opened: float = field(default_factory=time.monotonic)
    outbox: deque[str] = field(default_factory=deque)
    wake: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's pooled session is exercised
    server_version = "DhanSim/1"
    server: _HttpServer

    def log_message(self, format: str, *args: object) -> None:
        # The default logs the request line, whose query string carries the feed token.
        log.debug("%s %s", self.command, urlsplit(self.path).path)

    def do_GET(self) -> None:
        self.server.sim._dispatch(self, "GET")

    def do_POST(self) -> None:
        self.server.sim._dispatch(self, "POST")

    def do_PUT(self) -> None:
        self.server.sim._dispatch(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.sim._dispatch(self, "DELETE")


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    sim: Simulator


Route = Callable[[re.Match[str], Any, dict[str, list[str]], Any], Any]


class Simulator:
    """The fake Dhan. ``start()`` binds and serves in background threads; ``stop()`` ends it."""

    def __init__(self, config: SimConfig | None = None, *, market: Market | None = None) -> None:
        self.config = config = config or SimConfig()
        trading_date = config.trading_date or default_trading_date()
        self.market = market or Market(
            trading_date,
            seed=config.seed,
            speed=config.speed,
            regime=config.regime,
            strikes_each_side=config.strikes_each_side,
            weeklies=config.weeklies,
            monthlies=config.monthlies,
            session=config.session,
        )
        session = self.market.clock.session
        if config.session is not None and tuple(config.session) != session:
            # Two sessions would have the feed and the broker disagree about the close.
            raise ValueError(
                f"SimConfig.session {config.session[0]}-{config.session[1]} differs from the "
                f"given market's {session[0]}-{session[1]}"
            )
        self.clock = MarketClock(
            self.market.trading_date, config.speed, config.start, session=session
        )
        self.client_id = config.client_id
        self._tokens = {config.token}
        self._retired: set[str] = set()  # replaced tokens: the feed answers 807 (expired)
        self.token = config.token
        self.faults = Faults()
        self.stats: Counter[str] = Counter()
        self.rest_calls: Counter[str] = Counter()
        # Market and broker are not thread-safe: every use holds this lock (broker after it).
        self._lock = threading.RLock()
        self.broker = SimBroker(self.market, client_id=config.client_id, funds=config.funds)
        self.broker.add_listener(self._on_order_update)
        self._rng = random.Random(f"{config.seed}:faults")
        self._feeds: list[_FeedConnection] = []
        self._order_conns: list[_OrderConnection] = []
        self._conns_lock = threading.Lock()
        self._feed_numbers = 0
        self._stop = threading.Event()
        self._started_at = time.monotonic()
        self._server: _HttpServer | None = None
        self._threads: list[threading.Thread] = []
        self._routes = self._build_routes()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Simulator:
        server = _HttpServer((self.config.host, self.config.port), _Handler)
        server.sim = self
        self._server = server
        self._started_at = time.monotonic()
        for name, target in (("sim-http", server.serve_forever), ("sim-match", self._match_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.debug("Dhan simulator on %s (market %s)", self.origin, self.market.trading_date)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._conns_lock:
            conns = [c.ws for c in self._feeds] + [c.ws for c in self._order_conns]
        for ws in conns:
            ws.abort()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the simulator first"
        return self._server.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v2"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/feed"

    @property
    def order_ws_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/orders"

    @property
    def scrip_master_url(self) -> str:
        return f"{self.origin}/scrip-master.csv"

    def settings_lines(self) -> list[str]:
        """What a client needs, one ``NAME=value`` per line (a shell can ``eval`` them)."""
        return [
            f"DHANHQ_BASE_URL={self.base_url}",
            f"DHANHQ_WS_URL={self.ws_url}",
            f"DHANHQ_ORDER_WS_URL={self.order_ws_url}",
            f"DHANHQ_CLIENT_ID={self.client_id}",
            f"DHANHQ_ACCESS_TOKEN={self.token}",
            f"INSTRUMENTS_SCRIP_MASTER_URL={self.scrip_master_url}",
        ]

    # -- time and tokens -----------------------------------------------------------------------

    def now(self) -> datetime:
        """Current market time."""
        return self.clock.market_time(time.monotonic() - self._started_at)

    def set_token(self, token: str) -> None:
        """Make ``token`` the only valid token (a new one generated on Dhan's web site)."""
        self._retired |= self._tokens
        self._tokens = {token}
        self.token = token
        self.faults.token_expires_at = None

    def _expired(self) -> bool:
        expires = self.faults.token_expires_at
        return expires is not None and time.time() >= expires

    def _token_ok(self, token: str | None) -> bool:
        return token is not None and token in self._tokens and not self._expired()

    # -- faults --------------------------------------------------------------------------------

    def inject_garbage(self) -> None:
        """Every open feed connection sends one frame that is not a valid packet."""
        self._inject(("garbage", 0))

    def inject_disconnect(self, code: int) -> None:
        """Every open feed connection sends a disconnect packet (code 50) with ``code``, closes."""
        self._inject(("disconnect", code))

    def _inject(self, item: tuple[str, int]) -> None:
        with self._conns_lock:
            feeds = list(self._feeds)
        for conn in feeds:
            conn.injections.append(item)
            conn.wake.set()

    def drop_connections(self) -> None:
        """Cut every WebSocket connection now (TCP closed, no close frame)."""
        with self._conns_lock:
            conns = [c.ws for c in self._feeds] + [c.ws for c in self._order_conns]
        for ws in conns:
            ws.abort()

    def feed_subscriptions(self) -> list[dict[str, FeedMode]]:
        """Per open feed connection (oldest first): instrument key -> mode."""
        with self._conns_lock:
            feeds = list(self._feeds)
        result = []
        for conn in feeds:
            with conn.lock:
                result.append(dict(conn.subs))
        return result

    def order_connections(self) -> int:
        with self._conns_lock:
            return len(self._order_conns)

    # -- HTTP dispatch -------------------------------------------------------------------------

    def _dispatch(self, h: _Handler, method: str) -> None:
        url = urlsplit(h.path)
        path = url.path.rstrip("/") or "/"
        try:
            if method == "GET" and path == "/feed":
                self._serve_feed(h, parse_qs(url.query))
            elif method == "GET" and path == "/orders":
                self._serve_order_updates(h)
            elif method == "GET" and path == "/scrip-master.csv":
                self._send(h, 200, self.scrip_master_csv().encode(), "text/csv")
            elif path.startswith("/v2/"):
                self._serve_rest(h, method, path[3:], parse_qs(url.query))
            else:
                self._read_body(h)
                self._send_json(h, 404, self._not_found(url.path))
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _not_found(self, path: str) -> dict[str, Any]:
        return {
            "timestamp": datetime.now(IST).isoformat(timespec="milliseconds"),
            "status": 404,
            "error": "Not Found",
            "path": path,
        }

    @staticmethod
    def _read_body(h: _Handler) -> bytes:
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _send(h: _Handler, status: int, body: bytes, content_type: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _send_json(self, h: _Handler, status: int, obj: Any) -> None:
        body = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
        self._send(h, status, body, "application/json")

    def scrip_master_csv(self) -> str:
        out = io.StringIO()
        write_compact(out, iter(self.market.scrip_master_rows()))
        return out.getvalue()

    # -- REST ----------------------------------------------------------------------------------

    def _serve_rest(self, h: _Handler, method: str, path: str, query: dict[str, list[str]]) -> None:
        raw = self._read_body(h)
        self.stats["rest_calls"] += 1
        latency = self.faults.latency
        if latency > 0:
            time.sleep(latency)
        try:
            route, match = self._route(method, path)
            self.rest_calls[f"{method} {route.__name__.lstrip('_')}"] += 1
            self._check_auth(h, path)
            self._maybe_fault()
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError):
                    raise _dh_error("DH-905", "Request body is not valid JSON") from None
            with self._lock:
                status, answer = 200, route(match, body, query, h.headers)
        except _Answer as exc:
            status, answer = exc.status, exc.body
        except BrokerError as exc:
            status, answer = exc.status, exc.body()
        self._send_json(h, status, answer)

    def _route(self, method: str, path: str) -> tuple[Route, re.Match[str]]:
        for route_method, pattern, route in self._routes:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                return route, match
        raise _Answer(404, self._not_found("/v2" + path))

    def _check_auth(self, h: _Handler, path: str) -> None:
        data_api = path.startswith(("/marketfeed", "/optionchain"))
        if not self._token_ok(h.headers.get("access-token")):
            if data_api:
                code, text = (
                    (807, "Access token expired")
                    if self._expired()
                    else (
                        808,
                        "Authentication Failed - Client ID or Token invalid",
                    )
                )
                raise _data_error(code, text)
            raise _dh_error("DH-901")
        client = h.headers.get("client-id") or h.headers.get("dhanClientId")
        if data_api and client != self.client_id:
            # client-id is mandatory on the data APIs (PROTOCOL.md 0).
            raise _data_error(810, "Client ID invalid")
        if client is not None and client != self.client_id:
            raise _dh_error("DH-901")

    def _maybe_fault(self) -> None:
        kind = self.faults.rest_error
        if kind and self._rng.random() < self.faults.rest_error_share:
            self.stats["rest_faults"] += 1
            raise _dh_error(_FAULT_ERRORS[kind])

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], Route]]:
        table = [
            ("POST", r"/orders", self._place),
            ("PUT", r"/orders/(?P<order_id>[^/]+)", self._modify),
            ("DELETE", r"/orders/(?P<order_id>[^/]+)", self._cancel),
            ("GET", r"/orders", self._order_book),
            ("GET", r"/orders/external/(?P<cid>[^/]+)", self._order_by_correlation),
            ("GET", r"/orders/(?P<order_id>[^/]+)", self._order_by_id),
            ("GET", r"/trades", self._trades),
            ("GET", r"/positions", self._positions),
            ("GET", r"/holdings", self._holdings),
            ("GET", r"/fundlimit", self._fund_limit),
            ("GET", r"/profile", self._profile),
            ("POST", r"/killswitch", self._kill_switch),
            ("GET", r"/killswitch", self._kill_switch_status),
            ("GET", r"/RenewToken", self._renew_token),
            ("POST", r"/marketfeed/(?P<kind>ltp|ohlc|quote)", self._market_quote),
            ("POST", r"/charts/intraday", self._intraday),
            ("POST", r"/charts/historical", self._historical),
            ("POST", r"/optionchain/expirylist", self._expiry_list),
            ("POST", r"/optionchain", self._option_chain),
        ]
        return [(m, re.compile(p), fn) for m, p, fn in table]

    # Orders and portfolio: the broker answers in wire shapes.

    def _place(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        self.stats["place_order_calls"] += 1
        answer = self.broker.place(self._object(body), self.now())
        delay = self.faults.place_order_delay
        if delay > 0:
            # The order exists now; only the answer is late (a timeout's unknown outcome).
            self._lock.release()
            try:
                time.sleep(delay)
            finally:
                self._lock.acquire()
        return answer

    def _modify(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        return self.broker.modify(unquote(match["order_id"]), self._object(body), self.now())

    def _cancel(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        return self.broker.cancel(unquote(match["order_id"]), self.now())

    def _order_book(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        return self.broker.orders()

    def _order_by_id(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        return self.broker.order(unquote(match["order_id"]))

    def _order_by_correlation(
        self, match: re.Match[str], body: Any, query: Any, headers: Any
    ) -> Any:
        return self.broker.order_by_correlation_id(unquote(match["cid"]))

    def _trades(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        return self.broker.trades()

    def _positions(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        return self.broker.positions(self.now())

    def _holdings(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        return self.broker.holdings()

    def _fund_limit(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        return self.broker.fund_limit()

    def _profile(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        expires = self.faults.token_expires_at
        valid = (
            datetime.fromtimestamp(expires, IST)
            if expires is not None
            else datetime.now(IST) + timedelta(hours=24)
        )
        return {
            "dhanClientId": self.client_id,
            "tokenValidity": valid.strftime("%d/%m/%Y %H:%M"),
            "activeSegment": "Equity, Derivative",
            "ddpi": "Active",
            "mtf": "Active",
            "dataPlan": "Active",
            "dataValidity": (datetime.now(IST) + timedelta(days=30)).strftime(
                "%Y-%m-%d %H:%M:%S.0"
            ),
        }

    def _kill_switch(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        state = (query.get("killSwitchStatus") or [""])[0]
        if state not in set(KillSwitchStatus):
            raise _dh_error("DH-905", "killSwitchStatus must be ACTIVATE or DEACTIVATE")
        return self.broker.kill_switch(state == KillSwitchStatus.ACTIVATE)

    def _kill_switch_status(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        return self.broker.kill_switch_status()

    def _renew_token(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        """A new token valid for 24 h; the old one keeps working until it expires, so other
        processes holding it are not cut off mid-session."""
        self.stats["renewals"] += 1
        new = f"{self.token.split('~')[0]}~{self.stats['renewals']}"
        self._tokens.add(new)
        self.token = new
        self.faults.token_expires_at = None
        expiry = datetime.now(IST) + timedelta(hours=24)
        return {
            "accessToken": new,
            "dhanClientId": self.client_id,
            "expiryTime": expiry.replace(tzinfo=None).isoformat(timespec="seconds"),
        }

    @staticmethod
    def _object(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _dh_error("DH-905", "Request body must be a JSON object")
        return body

    # Market data.

    def _instruments(self, body: Any) -> list[tuple[str, int]]:
        if not isinstance(body, dict):
            raise _data_error(814, "Invalid Request")
        pairs = []
        for segment, ids in body.items():
            if segment == "dhanClientId":
                continue  # the SDK injects it into every body (PROTOCOL.md 0)
            if not isinstance(ids, list):
                raise _data_error(814, "Invalid Request")
            for sid in ids:
                if isinstance(sid, bool) or not isinstance(sid, int | str):
                    raise _data_error(813, "Invalid SecurityId")
                try:
                    pairs.append((segment, int(sid)))
                except ValueError:
                    raise _data_error(813, "Invalid SecurityId") from None
        if len(pairs) > MAX_QUOTE_INSTRUMENTS:
            raise _data_error(804, "Requested number of instruments exceeds limit")
        return pairs

    def _market_quote(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        kind = match["kind"]
        now = self.now()
        data: dict[str, dict[str, Any]] = {}
        for segment, sid in self._instruments(body):
            bucket = data.setdefault(segment, {})
            try:
                q = self.market.quote(segment, sid, now)
            except KeyError:
                continue  # Dhan drops unknown ids silently
            entry: dict[str, Any] = {"last_price": q.ltp}
            ohlc = {"open": q.open, "close": q.prev_close, "high": q.high, "low": q.low}
            if kind == "ohlc":
                entry["ohlc"] = ohlc
            elif kind == "quote":
                entry.update(
                    average_price=q.atp,
                    buy_quantity=q.total_buy_qty,
                    sell_quantity=q.total_sell_qty,
                    depth={
                        "buy": [self._level(d.bid_qty, d.bid_orders, d.bid_price) for d in q.depth]
                        or [self._level(0, 0, 0.0)] * 5,
                        "sell": [self._level(d.ask_qty, d.ask_orders, d.ask_price) for d in q.depth]
                        or [self._level(0, 0, 0.0)] * 5,
                    },
                    last_quantity=q.ltq,
                    last_trade_time=q.ltt.astimezone(IST).strftime("%d/%m/%Y %H:%M:%S"),
                    lower_circuit_limit=_money(q.prev_close * 0.8) if q.depth else 0.0,
                    upper_circuit_limit=_money(q.prev_close * 1.2) if q.depth else 0.0,
                    net_change=_money(q.ltp - q.prev_close),
                    ohlc=ohlc,
                    oi=q.oi,
                    oi_day_high=q.oi_day_high,
                    oi_day_low=q.oi_day_low,
                    volume=q.volume,
                )
            bucket[str(sid)] = entry
        return {"data": data, "status": "success"}

    @staticmethod
    def _level(quantity: int, orders: int, price: float) -> dict[str, Any]:
        return {"quantity": quantity, "orders": orders, "price": price}

    def _chart_security(self, body: Any) -> tuple[int, dict[str, Any]]:
        body = self._object(body)
        for key in ("securityId", "exchangeSegment", "instrument", "fromDate", "toDate"):
            if body.get(key) in (None, ""):
                raise _dh_error("DH-905", f"Missing required field {key}")
        try:
            return int(body["securityId"]), body
        except (TypeError, ValueError):
            raise _dh_error("DH-905", "securityId must be numeric") from None

    @staticmethod
    def _parse_date(value: Any, field_name: str) -> datetime:
        text = str(value).strip()
        for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
            try:
                return datetime.strptime(text, fmt).replace(tzinfo=IST)
            except ValueError:
                continue
        raise _dh_error("DH-905", f"{field_name} must be YYYY-MM-DD or YYYY-MM-DD HH:MM:SS")

    def _intraday(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        sid, body = self._chart_security(body)
        interval = body.get("interval", 1)
        try:
            interval = int(interval)
        except (TypeError, ValueError):
            interval = -1
        if interval not in (1, 5, 15, 25, 60):
            raise _dh_error("DH-905", "interval must be one of 1, 5, 15, 25, 60")
        start = self._parse_date(body["fromDate"], "fromDate")
        end = self._parse_date(body["toDate"], "toDate")
        if end - start > timedelta(days=90):
            raise _dh_error(
                "DH-905", "Data for Intraday Charts can be fetched for 90 days at a time"
            )
        candles = []
        day = self.market.trading_date
        if sid in self.market.contracts:
            # Earlier trading days: the candles starting in the range. A plain toDate names a
            # whole day (asking for a day's own date gets that day, as for the current day);
            # a date-time toDate is exclusive.
            until = end if ":" in str(body["toDate"]) else end + timedelta(days=1)
            candles = self.market.earlier_intraday_candles(sid, interval, start, until)
            if start.date() <= day <= end.date():
                # The current day: every candle up to now, whatever toDate says (issue #80).
                now = self.now()
                candles += [
                    c for c in self.market.intraday_candles(sid, interval, now) if c.start <= now
                ]
        return _chart_answer(candles, with_oi=bool(body.get("oi")))

    def _historical(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        sid, body = self._chart_security(body)
        start = self._parse_date(body["fromDate"], "fromDate").date()
        end = self._parse_date(body["toDate"], "toDate").date()
        candles = []
        if sid in self.market.contracts:
            candles = self.market.daily_candles(sid, start, end, self.now())
        return _chart_answer(candles, with_oi=bool(body.get("oi")))

    def _underlying(self, body: Any) -> tuple[int, str]:
        if not isinstance(body, dict):
            raise _data_error(814, "Invalid Request")
        scrip, seg = body.get("UnderlyingScrip"), body.get("UnderlyingSeg")
        try:
            sid = int(scrip)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _data_error(813, "Invalid SecurityId") from None
        spec = self.market.contracts.get(sid)
        if spec is None or spec.instrument != Instrument.INDEX or seg != spec.exchange_segment:
            raise _data_error(813, "Invalid SecurityId")
        return sid, spec.underlying

    def _option_specs(self, symbol: str) -> Iterable[Any]:
        return (
            s
            for s in self.market.contracts.values()
            if s.instrument == Instrument.OPTIDX and s.underlying == symbol and s.expiry is not None
        )

    def _expiry_list(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        _, symbol = self._underlying(body)
        today = self.market.trading_date
        expiries = sorted(
            {s.expiry.date() for s in self._option_specs(symbol) if s.expiry.date() >= today}
        )
        return {"data": [d.isoformat() for d in expiries], "status": "success"}

    def _option_chain(self, match: re.Match[str], body: Any, query: Any, headers: Any) -> Any:
        sid, symbol = self._underlying(body)
        try:
            expiry = date.fromisoformat(str(body.get("Expiry")))
        except ValueError:
            raise _data_error(811, "Invalid Expiry Date") from None
        legs = [s for s in self._option_specs(symbol) if s.expiry.date() == expiry]
        if not legs:
            raise _data_error(811, "Invalid Expiry Date")
        now = self.now()
        chain: dict[float, dict[str, Any]] = {}
        for spec in legs:
            q = self.market.quote(spec.exchange_segment, spec.security_id, now)
            g = self.market.greeks(spec.security_id, now)
            chain.setdefault(spec.strike, {})[spec.option_type.lower()] = {
                "average_price": q.atp,
                "greeks": {
                    "delta": round(g.delta, 5),
                    "theta": round(g.theta, 5),
                    "gamma": round(g.gamma, 5),
                    "vega": round(g.vega, 5),
                },
                "implied_volatility": round(q.iv * 100, 2),
                "last_price": q.ltp,
                "oi": q.oi,
                "previous_close_price": q.prev_close,
                "previous_oi": 0,
                "previous_volume": 0,
                "security_id": spec.security_id,
                "top_ask_price": q.best_ask,
                "top_ask_quantity": q.depth[0].ask_qty if q.depth else 0,
                "top_bid_price": q.best_bid,
                "top_bid_quantity": q.depth[0].bid_qty if q.depth else 0,
                "volume": q.volume,
            }
        level = self.market.index_level(sid, now)
        # The underlying's last_price is float32-looking on the wire (23092.19921875).
        last_price = struct.unpack("<f", struct.pack("<f", level))[0]
        oc = {f"{strike:.6f}": chain[strike] for strike in sorted(chain)}
        return {"data": {"last_price": last_price, "oc": oc}, "status": "success"}

    # -- market feed ---------------------------------------------------------------------------

    def _reject_handshake(self, h: _Handler, status: int, message: str) -> None:
        self._send_json(h, status, {"error": message})
        h.close_connection = True

    def _accept(
        self, h: _Handler, on_open: Callable[[ServerWebSocket], None] | None = None
    ) -> ServerWebSocket | None:
        """Upgrade to a WebSocket, or answer the HTTP error a fault or a bad request calls for.
        ``on_open`` runs before the 101 is written, so whatever it registers is in place by the
        time the client's connect call returns (a test may inject a fault right after it)."""
        status = self.faults.handshake_status
        if status is not None:
            self.stats["handshakes_refused"] += 1
            self._reject_handshake(h, status, "handshake refused (simulated)")
            return None
        problem = upgrade_headers_problem(h.headers)
        if problem:
            self._reject_handshake(h, 400, problem)
            return None
        ws = ServerWebSocket(h.connection, h.rfile)
        if on_open is not None:
            on_open(ws)
        h.wfile.write(handshake_response(h.headers["Sec-WebSocket-Key"]))
        h.close_connection = True  # the socket belongs to the WebSocket from here on
        h.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ws

    def _serve_feed(self, h: _Handler, params: dict[str, list[str]]) -> None:
        def param(name: str) -> str | None:
            values = params.get(name)
            return values[0] if values else None

        if param("version") != "2" or param("authType") != "2":
            self._reject_handshake(h, 400, "version=2 and authType=2 are required")
            return
        token, client = param("token"), param("clientId")
        # Dhan accepts the upgrade, then sends the reason as a disconnect packet:
        # 810 client id invalid, 807 token expired (or replaced), 809 token invalid.
        auth_code = None
        if client != self.client_id:
            auth_code = 810
        elif not self._token_ok(token):
            auth_code = 807 if token in self._tokens or token in self._retired else 809
        registered: list[_FeedConnection] = []

        def register(ws: ServerWebSocket) -> None:
            if auth_code is not None:
                return
            with self._conns_lock:
                self._feed_numbers += 1
                conn = _FeedConnection(ws, self._feed_numbers)
                self._feeds.append(conn)
                oldest = self._feeds[0] if len(self._feeds) > MAX_FEED_CONNECTIONS else None
            registered.append(conn)
            if oldest is not None:
                oldest.injections.append(("disconnect", 805))
                oldest.wake.set()

        try:
            ws = self._accept(h, register)
        except OSError:  # the client left during the upgrade: forget its connection
            with self._conns_lock:
                for conn in registered:
                    self._feeds.remove(conn)
            raise
        if ws is None:
            return
        self.stats["feed_connections_opened"] += 1
        if auth_code is not None:
            self.stats["feed_auth_failures"] += 1
            ws.send_binary(encode_disconnect(auth_code))
            ws.close(CLOSE_POLICY_VIOLATION, "authentication failed")
            return
        conn = registered[0]
        sender = threading.Thread(
            target=self._feed_sender, args=(conn,), name=f"sim-feed-{conn.number}", daemon=True
        )
        sender.start()
        try:
            self._feed_reader(conn)
        finally:
            ws.abort()
            conn.wake.set()
            sender.join(timeout=5)
            with self._conns_lock:
                if conn in self._feeds:
                    self._feeds.remove(conn)

    def _feed_reader(self, conn: _FeedConnection) -> None:
        while not self._stop.is_set():
            message = conn.ws.recv()
            if message is None:
                return
            if message.opcode == OP_BINARY:
                # The SDK sends a legacy 83-byte binary header after {"RequestCode":12}.
                log.debug("feed %d: ignored a %d-byte binary frame", conn.number, len(message.data))
                continue
            try:
                request = parse_request(message.data)
            except ValueError as exc:
                log.info("feed %d: bad request (%s): disconnecting with 814", conn.number, exc)
                conn.injections.append(("disconnect", 814))
                conn.wake.set()
                continue
            if isinstance(request, DisconnectRequest):
                conn.ws.close()
                return
            self.stats["subscribe_messages"] += 1
            with conn.lock:
                if request.subscribe:
                    added = [k for k in request.instruments if k not in conn.subs]
                    if len(conn.subs) + len(added) > MAX_INSTRUMENTS_PER_CONNECTION:
                        conn.injections.append(("disconnect", 804))
                    else:
                        for key in request.instruments:
                            conn.subs[key] = request.mode
                        conn.fresh.extend(added)
                else:
                    for key in request.instruments:
                        conn.subs.pop(key, None)
                conn.version += 1
                conn.changed_at = time.monotonic()
            conn.wake.set()

    def _feed_sender(self, conn: _FeedConnection) -> None:
        ws, faults = conn.ws, self.faults
        interval = 1.0 / self.config.ticks_per_second
        next_tick = time.monotonic()
        last_ping = time.monotonic()
        batch_version, batch, batch_frames = -1, b"", 0
        chunks: list[bytes] = []
        chunk_index, paced_sent, paced_start = 0, 0, 0.0
        rate = self.config.full_speed_rate
        while not ws.closed.is_set() and not self._stop.is_set():
            now = time.monotonic()
            if faults.drop_after is not None and now - conn.opened >= faults.drop_after:
                self.stats["connections_dropped"] += 1
                ws.abort()
                return
            if self._expired():
                ws.send_binary(encode_disconnect(807))
                ws.close(CLOSE_POLICY_VIOLATION, "token expired")
                return
            while conn.injections:
                kind, code = conn.injections.popleft()
                if kind == "garbage":
                    self.stats["garbage_frames"] += 1
                    # A ticker header claiming 200 bytes on an 11-byte frame: truncated.
                    ws.send_binary(b"\x02\xc8\x00\x02\x39\x30\x00\x00\xff\xfe\xfd")
                else:
                    ws.send_binary(encode_disconnect(code))
                    ws.close(CLOSE_POLICY_VIOLATION, f"disconnect {code}")
                    return
            if faults.stall:
                conn.wake.wait(0.05)
                conn.wake.clear()
                continue
            if now - last_ping >= PING_INTERVAL:
                ws.ping()
                last_ping = now
            if self.config.full_speed:
                if conn.version != batch_version:
                    if time.monotonic() - conn.changed_at < 0.2:
                        # Subscriptions arrive 100 per message: build once the burst is over,
                        # not 50 times for 5,000 instruments.
                        conn.wake.wait(0.05)
                        conn.wake.clear()
                        continue
                    with conn.lock:
                        batch_version = conn.version
                        subs = dict(conn.subs)
                    packets = self._full_speed_packets(subs)
                    batch, batch_frames = self._frames(packets), len(packets)
                    if rate:
                        chunks = self._paced_chunks(packets, rate)
                        chunk_index, paced_sent, paced_start = 0, 0, time.monotonic()
                if not batch:
                    conn.wake.wait(0.05)
                    conn.wake.clear()
                    continue
                if rate:
                    # Send one 2 ms slice, then sleep until the rate says the next one is due.
                    chunk = chunks[chunk_index]
                    chunk_index = (chunk_index + 1) % len(chunks)
                    if not ws.send_raw(chunk):
                        return
                    per_chunk = max(1, round(rate * 0.002))
                    paced_sent += per_chunk
                    self.stats["feed_packets_sent"] += per_chunk
                    pause = paced_start + paced_sent / rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    continue
                if not ws.send_raw(batch):
                    return
                self.stats["feed_packets_sent"] += batch_frames
                continue
            if now >= next_tick or conn.fresh:
                frames = self._tick_frames(conn, periodic=now >= next_tick)
                if frames and not ws.send_raw(frames):
                    return
                if now >= next_tick:
                    next_tick = max(next_tick + interval, now)
            conn.wake.wait(max(0.0, min(next_tick - time.monotonic(), 0.25)))
            conn.wake.clear()

    def _packets(self, key: str, mode: FeedMode, t: datetime) -> list[bytes]:
        segment, sid = split_instrument_key(key)
        market = self.market
        try:
            if mode == FeedMode.TICKER:
                ltp, ltt = market.last_trade(segment, sid, t)
                return [encode_ticker(segment, sid, ltp, ltt)]
            q = market.quote(segment, sid, t)
        except KeyError:
            return []  # Dhan sends nothing for an instrument it does not know
        common = {
            "ltp": q.ltp,
            "ltt": q.ltt,
            "ltq": min(q.ltq, 65535),
            "atp": q.atp,
            "volume": q.volume,
            "total_sell_qty": q.total_sell_qty,
            "total_buy_qty": q.total_buy_qty,
            "open": q.open,
            "close": q.close,
            "high": q.high,
            "low": q.low,
        }
        if mode == FeedMode.QUOTE:
            packets = [encode_quote(segment, sid, **common)]
            if q.depth:  # derivatives have OI; Dhan sends it as its own packet in quote mode
                packets.append(encode_oi(segment, sid, q.oi))
            return packets
        return [
            encode_full(
                segment,
                sid,
                oi=q.oi,
                oi_day_high=q.oi_day_high,
                oi_day_low=q.oi_day_low,
                depth=q.depth,
                **common,
            )
        ]

    def _prev_close(self, key: str) -> bytes | None:
        segment, sid = split_instrument_key(key)
        try:
            q = self.market.quote(segment, sid, self.clock.open_at)
        except KeyError:
            return None
        return encode_prev_close(segment, sid, q.prev_close, 0)

    def _tick_frames(self, conn: _FeedConnection, *, periodic: bool) -> bytes:
        """One frame per packet: prev-close and a first tick for fresh subscriptions, then (when
        ``periodic``) a packet per subscribed instrument while the market is open."""
        with conn.lock:
            fresh = list(conn.fresh)
            conn.fresh.clear()
            subs = list(conn.subs.items())
        t = self.now()
        packets: list[bytes] = []
        with self._lock:
            for key in fresh:
                mode = conn.subs.get(key)
                prev = self._prev_close(key)
                if prev is not None:
                    packets.append(prev)
                if mode is not None:
                    packets.extend(self._packets(key, mode, t))
            # After the close Dhan sends one packet per instrument, then silence (issue #74).
            if periodic and self.clock.is_open(t):
                fresh_keys = set(fresh)
                for key, mode in subs:
                    if key not in fresh_keys:
                        packets.extend(self._packets(key, mode, t))
        self.stats["feed_packets_sent"] += len(packets)
        return self._frames(packets)

    def _frames(self, packets: list[bytes]) -> bytes:
        n = self.config.packets_per_frame
        if n <= 1:
            return b"".join(frame(OP_BINARY, p) for p in packets)
        groups = (b"".join(packets[i : i + n]) for i in range(0, len(packets), n))
        return b"".join(frame(OP_BINARY, g) for g in groups)

    _FULL_SPEED_ROUNDS = 16  # distinct market seconds cycled through per instrument

    def _full_speed_packets(self, subs: dict[str, FeedMode]) -> list[bytes]:
        """Packets for ``subs`` over a few market seconds: full speed sends them again and again."""
        start = self.now()
        packets: list[bytes] = []
        with self._lock:
            for i in range(self._FULL_SPEED_ROUNDS):
                t = min(start + timedelta(seconds=i), self.clock.close_at - timedelta(seconds=1))
                for key, mode in subs.items():
                    packets.extend(self._packets(key, mode, t))
        return packets

    def _paced_chunks(self, packets: list[bytes], rate: float) -> list[bytes]:
        """``packets`` as frames grouped into 2 ms slices at ``rate`` packets/s (the last
        slice is padded from the start so every slice has the same count)."""
        if not packets:
            return [b""]
        per_chunk = max(1, round(rate * 0.002))
        frames = [frame(OP_BINARY, p) for p in packets]
        while len(frames) % per_chunk:
            frames.extend(frames[: per_chunk - len(frames) % per_chunk])
        return [b"".join(frames[i : i + per_chunk]) for i in range(0, len(frames), per_chunk)]

    # -- order updates -------------------------------------------------------------------------

    def _serve_order_updates(self, h: _Handler) -> None:
        ws = self._accept(h)
        if ws is None:
            return
        self.stats["order_ws_connections_opened"] += 1
        h.connection.settimeout(LOGIN_TIMEOUT)
        message = ws.recv()
        h.connection.settimeout(None)
        if message is None:
            return
        try:
            login = parse_login(message.data)
        except ValueError as exc:
            log.info("order updates: bad login (%s)", exc)
            ws.close(CLOSE_POLICY_VIOLATION, "invalid login")
            return
        if login.client_id != self.client_id or not self._token_ok(login.token):
            self.stats["order_ws_auth_failures"] += 1
            ws.close(CLOSE_POLICY_VIOLATION, "authentication failed")
            return
        conn = _OrderConnection(ws)
        with self._conns_lock:
            self._order_conns.append(conn)
        sender = threading.Thread(
            target=self._order_sender, args=(conn,), name="sim-order-updates", daemon=True
        )
        sender.start()
        try:
            while not self._stop.is_set() and ws.recv() is not None:
                pass  # nothing to read after the login; recv answers pings and sees the close
        finally:
            ws.abort()
            conn.wake.set()
            sender.join(timeout=5)
            with self._conns_lock:
                if conn in self._order_conns:
                    self._order_conns.remove(conn)

    def _order_sender(self, conn: _OrderConnection) -> None:
        ws, faults = conn.ws, self.faults
        last_ping = time.monotonic()
        while not ws.closed.is_set() and not self._stop.is_set():
            now = time.monotonic()
            if faults.drop_after is not None and now - conn.opened >= faults.drop_after:
                self.stats["connections_dropped"] += 1
                ws.abort()
                return
            if self._expired():
                ws.close(CLOSE_POLICY_VIOLATION, "token expired")
                return
            if now - last_ping >= PING_INTERVAL:
                ws.ping()
                last_ping = now
            while conn.outbox:
                if not ws.send_text(conn.outbox.popleft()):
                    return
                self.stats["order_alerts_sent"] += 1
            conn.wake.wait(0.1)
            conn.wake.clear()

    def _on_order_update(self, update: Any) -> None:
        text = order_alert_message(
            update,
            casing=self.config.order_update_casing,
            numbers_as_strings=self.config.order_update_numbers_as_strings,
        )
        with self._conns_lock:
            conns = list(self._order_conns)
        for conn in conns:
            conn.outbox.append(text)
            conn.wake.set()

    # -- matching ------------------------------------------------------------------------------

    def _match_loop(self) -> None:
        while not self._stop.wait(self.config.match_interval):
            try:
                with self._lock:
                    self.broker.on_tick(self.now())
            except Exception:  # a bug in one pass must not stop the fills (logged loudly)
                log.exception("simulator matching pass failed")
