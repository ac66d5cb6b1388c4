# One image for every process (web, celery worker/beat, feed hub, engines): only the command
# differs, see docker-compose.yml and railway.toml. Build: docker build -t algo-scalper .
FROM python:3.11-slim

# PYTHONPATH: settings.py finds config/ and manage.py next to the algo_scalper package
# (BASE_DIR comes from __file__), so the source tree in /app must be what Python imports,
# never the copy `pip install .` puts in site-packages.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

WORKDIR /app

# Non-root. The code stays root-owned (read-only to the app); the home directory is writable
# for tools that keep state there (gunicorn's control socket).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them all.
COPY pyproject.toml ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', *deps])"

COPY . .
# The project itself (dependencies are already in). var/ is the only place the app writes:
# the scrip-master cache, celery beat's schedule file.
RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info \
    && mkdir -p var/cache \
    && chown -R app:app var

USER app

# No build-time collection of static files: the web process serves the admin's CSS and JS from
# the installed apps (WHITENOISE_USE_FINDERS in settings.py), as on a laptop, so the build runs
# no Django command and needs no secret key.

EXPOSE 8000

# Liveness for `docker run` and compose (Railway uses healthcheckPath in railway.toml instead).
# slim has no curl. The Host header must be in ALLOWED_HOSTS: keep `localhost` there.
# Services that serve no HTTP (celery, the workers) switch this off in docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), headers={'Host': 'localhost'}), timeout=4)"]

# The web process. gunicorn must be a dependency in pyproject.toml for this to run. `exec` makes
# gunicorn PID 1, so `docker stop` (SIGTERM) reaches it and it shuts down gracefully; a shell is
# needed only to expand $PORT (Railway sets it; 8000 otherwise). Workers: WEB_CONCURRENCY.
CMD ["sh", "-c", "exec gunicorn algo_scalper.wsgi --bind 0.0.0.0:${PORT}"]
