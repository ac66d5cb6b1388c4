"""A malformed REDIS_URL stops every process at start with one line naming REDIS_URL, never a
traceback and never the password; ``manage.py check`` fails on it too.

Found by a probe: ``garbage``, ``http://...`` and a non-numeric port passed ``manage.py
check`` and gave each split worker a 35-63-line traceback.
"""

from __future__ import annotations

import pytest

from tests.algo_scalper.test_database_errors import manage, one_line
from tests.algo_scalper.test_settings import KEY, assert_fails_naming

BAD = {
    "garbage": "must start with redis://, rediss:// or unix://",
    "http://:Hunter2-Secret@127.0.0.1:6379": "must start with redis://, rediss:// or unix://",
    "redis://:Hunter2-Secret@127.0.0.1:notaport/0": "its port must be a number",
    "redis://:Hunter2-Secret@127.0.0.1:99999/0": "its port must be a number",
    "redis://:Hunter2-Secret@127.0.0.1:6379/zero": "the database after the host must be a number",
    "redis://:Hunter2-Secret@:6379/0": "it names no host",
}


@pytest.mark.parametrize("url", list(BAD))
def test_a_malformed_redis_url_fails_naming_it_without_the_password(load_settings, url):
    loaded = load_settings({**KEY, "REDIS_URL": url}, "REDIS_URL")
    assert_fails_naming(loaded, "REDIS_URL is not a usable Redis URL", BAD[url])
    assert "Hunter2-Secret" not in loaded.output


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://u:p@h:1", "unix:///tmp/r.sock"]
)
def test_a_good_redis_url_loads(load_settings, url):
    assert load_settings({**KEY, "REDIS_URL": url}, "REDIS_URL").json() == {"REDIS_URL": url}


@pytest.mark.parametrize("command", [["check"], ["run_exit_engine"], ["run_feed_hub"]])
def test_check_and_the_workers_refuse_it_in_one_line(tmp_path, command):
    proc = manage(
        f"sqlite:///{tmp_path / 'db.sqlite3'}", *command, REDIS_URL="redis://127.0.0.1:nope/0"
    )
    assert one_line(proc).startswith("algo-scalper: configuration error: REDIS_URL is not a")
