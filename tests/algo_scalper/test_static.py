"""The admin's static files are served by the web process in every documented way of starting
it (gunicorn, runserver, the image), with DEBUG off and whether or not collectstatic ran."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.algo_scalper.conftest import TEST_SECRET_KEY, clean_environ
from tests.algo_scalper.test_startup import free_port

ROOT = Path(__file__).resolve().parents[2]
CSS = "/static/admin/css/base.css"

# The WSGI app the web servers load, called directly, with STATIC_ROOT pointing at a folder
# that does not exist (collectstatic never ran: a laptop, a fresh clone).
THROUGH_WSGI = f"""
import io, json, sys
from django.conf import settings
settings.STATIC_ROOT = {str(ROOT / "var" / "no-collectstatic-here")!r}
from algo_scalper.wsgi import application
answer = {{}}
def start_response(status, headers, exc_info=None):
    answer["status"] = status
    answer["type"] = dict(headers).get("Content-Type", "")
environ = {{
    "REQUEST_METHOD": "GET", "PATH_INFO": "{CSS}", "QUERY_STRING": "", "SERVER_NAME": "localhost",
    "SERVER_PORT": "443", "HTTP_HOST": "localhost", "wsgi.url_scheme": "https",
    "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr, "SERVER_PROTOCOL": "HTTP/1.1",
}}
body = b"".join(application(environ, start_response))
print(json.dumps({{**answer, "debug": settings.DEBUG, "size": len(body)}}))
"""


def test_an_admin_css_file_is_served_through_the_wsgi_app_with_debug_off(run_settings_code):
    loaded = run_settings_code({"DJANGO_SECRET_KEY": TEST_SECRET_KEY}, THROUGH_WSGI)
    answer = loaded.json()
    assert answer["debug"] is False
    assert answer["status"] == "200 OK", answer
    assert answer["type"].startswith("text/css")
    assert answer["size"] > 1000


def test_gunicorn_as_the_readme_starts_it_serves_the_admin_css(tmp_path):
    port = free_port()
    env = {
        **clean_environ(),
        "DJANGO_SECRET_KEY": TEST_SECRET_KEY,
        "DJANGO_HTTPS": "false",  # plain HTTP on loopback
        "DATABASE_URL": f"sqlite:///{tmp_path / 'web.sqlite3'}",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen(
        [str(gunicorn), "algo_scalper.wsgi", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = None
        deadline = time.monotonic() + 60
        while status is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{CSS}", timeout=5) as resp:
                    status, kind = resp.status, resp.headers["Content-Type"]
            except urllib.error.HTTPError as exc:
                status, kind = exc.code, ""
            except OSError:
                time.sleep(0.2)  # not listening yet
        assert status == 200, (status, proc.poll())
        assert kind.startswith("text/css")
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr
