"""Dockerfile, docker-compose.yml, railway.toml: every command they run exists (or is planned and
switched off), the health probes hit a real URL, and secrets stay out of the image.

There is no Docker engine in CI, so these check the files against the code, not a running stack.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.core.management import get_commands
from django.urls import resolve

from algo_scalper import views
from algo_scalper.env import envbool

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
RAILWAY = ROOT / "railway.toml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# ARCHITECTURE.md "Processes": the worker commands (all exist now; a new one may be listed here
# before it does, and then must sit under the workers profile).
PLANNED_COMMANDS = {"run_feed_hub", "run_signal_engine", "run_exit_engine", "run_order_updates"}
WORKERS_PROFILE = "workers"
MANAGE_PY = re.compile(r"manage\.py\s+([A-Za-z0-9_]+)")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def app_services() -> dict[str, dict]:
    """Services built from this repository's image (the `x-app` anchor)."""
    return {name: svc for name, svc in compose()["services"].items() if "build" in svc}


def command_text(service: dict) -> str:
    command = service.get("command", "")
    return command if isinstance(command, str) else shlex.join(command)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${NAME:-default} / ${NAME-default} / ${NAME}, enough for these files."""

    def sub(match: re.Match) -> str:
        name, colon, default = match.group(1), match.group(2), match.group(3) or ""
        if name in env and (env[name] or not colon):
            return env[name]
        return default

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:?)-([^}]*))?\}", sub, value)


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_defines_the_processes_of_the_architecture():
    services = compose()["services"]
    assert {
        "postgres",
        "redis",
        "migrate",
        "web",
        "celery-worker",
        "celery-beat",
        "feed-hub",
        "signal-engine",
        "exit-engine",
        "order-updates",
    } <= services.keys()


def test_every_app_service_uses_one_image_and_has_a_command():
    services = app_services()
    assert len(services) >= 8
    assert len({svc["image"] for svc in services.values()}) == 1
    assert len({str(svc["build"]) for svc in services.values()}) == 1
    for name, svc in services.items():
        assert command_text(svc).strip(), f"{name} has no command"


def test_every_manage_py_command_exists_or_is_planned_and_off_by_default():
    existing = set(get_commands())
    seen = set()
    for name, svc in app_services().items():
        for command in MANAGE_PY.findall(command_text(svc)):
            seen.add(command)
            if command in existing:
                continue
            assert command in PLANNED_COMMANDS, f"{name} runs unknown command {command!r}"
            assert WORKERS_PROFILE in svc.get("profiles", []), (
                f"{name} runs {command!r}, which does not exist yet: it must sit under the "
                f"{WORKERS_PROFILE!r} profile so `docker compose up` does not start it"
            )
    assert "migrate" in seen
    assert seen >= PLANNED_COMMANDS


def test_a_plain_compose_up_starts_only_commands_that_exist_today():
    existing = set(get_commands())
    default_services = {
        name: svc for name, svc in compose()["services"].items() if not svc.get("profiles")
    }
    assert {"postgres", "redis", "migrate", "web", "celery-worker", "celery-beat"} <= (
        default_services.keys()
    )
    for name, svc in default_services.items():
        for command in MANAGE_PY.findall(command_text(svc)):
            assert command in existing, f"{name}: manage.py {command} does not exist"


def test_the_worker_profile_holds_only_the_planned_workers():
    in_profile = {
        name
        for name, svc in compose()["services"].items()
        if WORKERS_PROFILE in svc.get("profiles", [])
    }
    assert in_profile == {"feed-hub", "signal-engine", "exit-engine", "order-updates"}


def test_the_web_service_serves_the_wsgi_app_with_gunicorn():
    web = command_text(compose()["services"]["web"])
    assert web.startswith("gunicorn algo_scalper.wsgi")
    assert "0.0.0.0:8000" in web


def test_the_celery_services_run_the_project_app():
    services = compose()["services"]
    assert command_text(services["celery-worker"]).startswith("celery -A algo_scalper worker")
    beat = command_text(services["celery-beat"])
    assert beat.startswith("celery -A algo_scalper beat")
    # The image's user can write only var/: beat's default schedule file (cwd) would fail.
    assert "--schedule /app/var/" in beat


def test_app_services_reach_the_compose_postgres_and_redis():
    services = compose()["services"]
    for name, svc in app_services().items():
        env = svc["environment"]
        db = urlsplit(interpolate(env["DATABASE_URL"], {}))
        assert db.scheme == "postgres" and db.hostname == "postgres", name
        db_env = services["postgres"]["environment"]
        assert db.path == "/" + db_env["POSTGRES_DB"]
        assert db.username == db_env["POSTGRES_USER"]
        assert db.password == interpolate(db_env["POSTGRES_PASSWORD"], {})
        assert urlsplit(env["REDIS_URL"]).hostname == "redis", name


def test_the_stack_trades_on_paper_unless_the_env_file_says_otherwise():
    for name, svc in app_services().items():
        raw = str(svc["environment"]["PAPER_MODE"])
        assert envbool("PAPER_MODE", False, env={"PAPER_MODE": interpolate(raw, {})}) is True, name
        overridden = interpolate(raw, {"PAPER_MODE": "false"})
        assert envbool("PAPER_MODE", True, env={"PAPER_MODE": overridden}) is False, name


def test_the_env_file_is_optional():
    for name, svc in app_services().items():
        assert svc["env_file"] == [{"path": ".env", "required": False}], name


def test_every_dependency_exists_and_health_conditions_have_a_healthcheck():
    services = compose()["services"]
    for name, svc in services.items():
        for dep, spec in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert dep != name
            condition = spec["condition"]
            if condition == "service_healthy":
                check = services[dep].get("healthcheck", {})
                assert check.get("test") and not check.get("disable"), (
                    f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                )
            if condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} must be one-shot"


def test_app_services_start_after_migrations_and_healthy_backing_services():
    for name, svc in app_services().items():
        if name == "migrate":
            assert svc["depends_on"] == {"postgres": {"condition": "service_healthy"}}
            continue
        assert svc["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name


def test_only_the_web_service_keeps_an_http_healthcheck_and_it_probes_healthz():
    for name, svc in app_services().items():
        check = svc.get("healthcheck", {})
        if name == "web":
            probe = " ".join(check["test"])
            path = urlsplit(re.search(r"http://[^'\"\s]+", probe).group(0)).path
            assert resolve(path).func is views.healthz
            assert not check.get("disable")
        else:
            assert check == {"disable": True}, f"{name} would inherit the image's HTTP probe"


# --- railway.toml -------------------------------------------------------------------------------


def railway() -> dict:
    with RAILWAY.open("rb") as fh:
        return tomllib.load(fh)


def test_railway_builds_with_the_dockerfile():
    build = railway()["build"]
    assert build["builder"] == "DOCKERFILE"
    assert (ROOT / build.get("dockerfilePath", "Dockerfile")).is_file()


def test_railways_healthcheck_path_resolves_to_the_healthz_view():
    path = railway()["deploy"]["healthcheckPath"]
    assert resolve(path).func is views.healthz


def test_railway_starts_gunicorn_on_its_port_through_a_shell():
    start = railway()["deploy"]["startCommand"]
    argv = shlex.split(start)
    # Railway runs a Dockerfile service's start command in exec form: no $PORT expansion
    # unless a shell runs it.
    assert argv[0] in {"sh", "/bin/sh"} and argv[1] == "-c"
    inner = argv[2]
    assert inner.startswith("exec gunicorn algo_scalper.wsgi")
    assert "0.0.0.0:$PORT" in inner


def test_railway_restarts_on_failure_and_migrates_before_each_deploy():
    deploy = railway()["deploy"]
    assert deploy["restartPolicyType"] == "ON_FAILURE"
    assert deploy["preDeployCommand"] == ["python manage.py migrate --noinput"]
    assert MANAGE_PY.findall(deploy["preDeployCommand"][0])[0] in get_commands()


def test_railways_comments_list_every_worker_command():
    text = RAILWAY.read_text(encoding="utf-8")
    for command in PLANNED_COMMANDS:
        assert f"manage.py {command}" in text
    assert "celery -A algo_scalper worker" in text
    assert "celery -A algo_scalper beat" in text


# --- Dockerfile and .dockerignore ---------------------------------------------------------------


def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def test_the_image_is_python_311_slim_and_runs_as_a_non_root_user():
    text = dockerfile()
    assert re.search(r"^FROM python:3\.11-slim\s*$", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}


def test_the_image_installs_the_project_from_pyproject():
    text = dockerfile()
    assert "tomllib.load(open('pyproject.toml'" in text
    assert re.search(r"pip install (--no-deps )?\.", text)


def test_the_image_holds_no_secret_key_and_needs_no_collectstatic(settings):
    # Static files come from the installed apps at run time (settings.WHITENOISE_USE_FINDERS),
    # so the build runs no Django command and needs no key (tests/algo_scalper/test_static.py).
    text = dockerfile()
    assert settings.WHITENOISE_USE_FINDERS is True
    assert "RUN DJANGO_" not in text and not re.search(r"^RUN .*manage\.py", text, re.M)
    assert "SECRET" not in text


def test_the_image_healthcheck_probes_healthz_with_a_host_settings_allow(settings):
    text = dockerfile()
    healthcheck = re.search(r"^HEALTHCHECK .*?(?<!\\)$", text, re.M | re.S).group(0)
    path = re.search(r"http://[^/]+(/[a-z]*)", healthcheck).group(1)
    assert resolve(path).func is views.healthz
    host = re.search(r"'Host': '([^']+)'", healthcheck).group(1)
    assert host in settings.ALLOWED_HOSTS


def test_the_default_command_is_gunicorn_serving_the_wsgi_app():
    cmd = re.search(r"^CMD (.*)$", dockerfile(), re.M).group(1)
    assert "exec gunicorn algo_scalper.wsgi" in cmd


@pytest.mark.parametrize("path", [".env", "db.sqlite3", ".venv", ".git", "var"])
def test_local_secrets_and_state_never_enter_the_image(path):
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert path in ignored


# --- what the files run must be installed by pyproject.toml -------------------------------------


def project_dependencies() -> set[str]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    return {re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0].lower() for dep in deps}


@pytest.mark.parametrize(
    "program",
    [
        "gunicorn",
        "celery",
    ],
)
def test_every_program_the_deploy_files_run_is_a_project_dependency(program):
    # The image installs only pyproject.toml's dependencies: a program missing there is
    # missing in production.
    assert program in project_dependencies()
