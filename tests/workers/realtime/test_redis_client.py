"""workers.realtime.redis_client: RESP encoding, glob escaping and the EVALSHA batch writer.

Redis tests use TEST_REDIS_URL with a unique key prefix per test.
"""

from __future__ import annotations

import pytest

from scripts.services import free_port
from workers.realtime.redis_client import (
    ScriptBatchWriter,
    StoreUnavailable,
    Unavailable,
    glob_escape,
    pack_command,
)

# SET KEYS[i] ARGV[i] for each pair; an argument "boom" fails the whole call before any SET.
SCRIPT = """
for i = 1, #KEYS do
  if ARGV[i] == 'boom' then return redis.error_reply('boom at ' .. KEYS[i]) end
end
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i]) end
return #KEYS
"""


def bulk(*items: bytes) -> bytes:
    return b"".join(b"$%d\r\n%b\r\n" % (len(item), item) for item in items)


def batch(pairs: dict[bytes, bytes]) -> tuple[int, bytes]:
    return len(pairs), bulk(*pairs) + bulk(*pairs.values())


def test_a_command_is_a_resp_array_of_bulk_strings() -> None:
    assert pack_command(b"SUBSCRIBE", b"a", b"\r\n") == (
        b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$2\r\n\r\n\r\n"
    )
    assert pack_command(b"PING") == b"*1\r\n$4\r\nPING\r\n"


def test_glob_characters_are_escaped_for_scan_match() -> None:
    assert glob_escape("algo:kv:hb*[x]?\\") == "algo:kv:hb\\*\\[x\\]\\?\\\\"
    assert glob_escape("plain:name") == "plain:name"


def test_the_writer_runs_every_batch_of_a_call(redis_client: object) -> None:
    writer = ScriptBatchWriter(redis_client, SCRIPT)  # type: ignore[arg-type]
    writer.run(iter([batch({b"w:a": b"1", b"w:b": b"2"}), batch({b"w:c": b"\x00\r\n"})]))
    assert redis_client.mget(["w:a", "w:b", "w:c"]) == [b"1", b"2", b"\x00\r\n"]  # type: ignore[attr-defined]
    writer.close()


def test_a_script_error_is_raised_after_every_reply_and_the_connection_stays_in_step(
    redis_client: object,
) -> None:
    import redis

    writer = ScriptBatchWriter(redis_client, SCRIPT)  # type: ignore[arg-type]
    with pytest.raises(redis.ResponseError, match="boom at e:2"):
        writer.run([batch({b"e:1": b"1"}), batch({b"e:2": b"boom"}), batch({b"e:3": b"3"})])
    # The batches around the failed one ran; the next call reads its own reply, not a stale one.
    assert redis_client.mget(["e:1", "e:2", "e:3"]) == [b"1", None, b"3"]  # type: ignore[attr-defined]
    writer.run([batch({b"e:4": b"4"})])
    assert redis_client.get("e:4") == b"4"  # type: ignore[attr-defined]
    writer.close()


def test_the_writer_loads_its_script_again_after_a_flush(redis_client: object) -> None:
    writer = ScriptBatchWriter(redis_client, SCRIPT)  # type: ignore[arg-type]
    writer.run([batch({b"f:1": b"1"})])
    redis_client.script_flush()  # type: ignore[attr-defined]
    writer.run([batch({b"f:1": b"2"}), batch({b"f:2": b"3"})])
    assert redis_client.mget(["f:1", "f:2"]) == [b"2", b"3"]  # type: ignore[attr-defined]
    writer.close()


def test_an_unreachable_redis_is_store_unavailable_and_the_next_call_reconnects() -> None:
    import redis

    writer = ScriptBatchWriter(redis.Redis(port=free_port()), SCRIPT)
    with pytest.raises(StoreUnavailable, match=r"Redis unavailable \(writing\)"):
        with Unavailable("writing"):
            writer.run([batch({b"x": b"1"})])
    with pytest.raises(StoreUnavailable):  # a fresh attempt, not a dead connection reused
        with Unavailable("writing"):
            writer.run([batch({b"x": b"1"})])
    writer.close()
