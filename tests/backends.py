"""The engines the tests run on, and a clean database and queue for each test on each engine.

    sqlite           SQLite data and an SQLite queue in the test's temporary folder (the default)
    postgres-redis   PostgreSQL data and a Redis queue (PriorityRedisHuey)
    postgres         PostgreSQL data and a PostgreSQL queue (PostgresHuey)

``CLINIC_TEST_BACKENDS`` chooses: "sqlite" (the default), "all", or a comma list. When ``CI`` is
set the default is "all", and a server that cannot be reached fails the run instead of skipping.
``CLINIC_TEST_POSTGRES_URL`` and ``CLINIC_TEST_REDIS_URL`` say where the servers are.

Each test gets its own PostgreSQL schema (``search_path`` in the URL's connection options, so
the app, Huey's PostgreSQL queue and any subprocess all land in it), dropped afterwards. Its
connections carry the schema's name as their application_name, so teardown can end any a test
left open: they would hold locks on the schema, and they count against max_connections. Each
test's queue has its own name (CLINIC_QUEUE_NAME, the prefix of its Redis keys), so nothing a
test leaves behind, such as a consumer thread still reading, can take another test's tasks, and
concurrent runs can share the Redis database; its keys are deleted afterwards.
"""

import contextlib
import functools
import os
import secrets
from urllib.parse import quote

import pytest

SQLITE, POSTGRES_REDIS, POSTGRES = "sqlite", "postgres-redis", "postgres"
ALL = (SQLITE, POSTGRES_REDIS, POSTGRES)

POSTGRES_URL = os.environ.get("CLINIC_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CLINIC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def in_ci():
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chosen():
    """The backends this run tests, in a fixed order."""
    raw = os.environ.get("CLINIC_TEST_BACKENDS", "").strip().lower()
    if not raw:
        raw = "all" if in_ci() else SQLITE
    if raw == "all":
        return list(ALL)
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        raise pytest.UsageError(f"CLINIC_TEST_BACKENDS: unknown backend(s) {', '.join(unknown)}; "
                                f"choose from {', '.join(ALL)} or all")
    return [name for name in ALL if name in names]


def _where(url):
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or ''}".rstrip(":")


@functools.cache
def postgres_absent():
    """Why PostgreSQL cannot be used (one line), or "" when it can."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL not reachable at {_where(POSTGRES_URL)} ({first})"
    return ""


@functools.cache
def redis_absent():
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        return f"Redis not reachable at {_where(REDIS_URL)} ({exc})"
    return ""


def absent(backend):
    """Why ``backend`` cannot run here, or ""."""
    if backend == SQLITE:
        return ""
    reasons = [postgres_absent()] + ([redis_absent()] if backend == POSTGRES_REDIS else [])
    return "; ".join(reason for reason in reasons if reason)


def require(*backends):
    """Skip the test unless every one of ``backends`` is chosen and can run here (in CI, fail
    it when a server cannot be reached)."""
    unchosen = [backend for backend in backends if backend not in chosen()]
    if unchosen:
        pytest.skip(f"needs the {', '.join(unchosen)} backend: not in CLINIC_TEST_BACKENDS "
                    "(set it to all)")
    reasons = [absent(backend) for backend in backends]
    reason = "; ".join(r for r in dict.fromkeys(reasons) if r)
    if reason:
        if in_ci():
            pytest.fail(f"{reason} (CI needs it: .ci/run starts it)", pytrace=False)
        pytest.skip(reason)


# -- a clean database and queue for one test ------------------------------------------------------


def _admin():
    import psycopg

    return psycopg.connect(POSTGRES_URL, autocommit=True)


def schema_url(schema):
    """POSTGRES_URL with ``schema`` first on the search path and named as the application."""
    options = quote(f"-csearch_path={schema}", safe="")
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options={options}&application_name={schema}"


def end_connections(schema):
    with _admin() as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = %s AND pid <> pg_backend_pid()", (schema,))


@contextlib.contextmanager
def postgres_schema():
    """A new, empty schema; yields the URL that works in it. Dropped afterwards, with any
    connection still open in it."""
    schema = "t_" + secrets.token_hex(6)
    with _admin() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema_url(schema)
    finally:
        end_connections(schema)
        with _admin() as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def delete_redis_keys(queue_name):
    """Delete every key of the queue ``queue_name`` (Huey's keys end with, or hold, the name)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"huey.*{queue_name}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def queue_name():
    return "t" + secrets.token_hex(6)


@contextlib.contextmanager
def urls(backend, data_dir):
    """The settings ``database_url``, ``queue_url`` and ``queue_name`` for one test on
    ``backend``, cleaned up afterwards."""
    if backend == SQLITE:
        yield {"database_url": f"sqlite:///{data_dir}/clinic.db",
               "queue_url": f"sqlite:///{data_dir}/queue.db", "queue_name": "clinic"}
        return
    name = queue_name()
    with postgres_schema() as url:
        if backend == POSTGRES:
            yield {"database_url": url, "queue_url": url, "queue_name": name}
            return
        try:
            yield {"database_url": url, "queue_url": REDIS_URL, "queue_name": name}
        finally:
            delete_redis_keys(name)


def environ(s):
    """The CLINIC_* variables that point a subprocess at the same clinic as settings ``s``."""
    return {"CLINIC_DATA_DIR": s.data_dir, "CLINIC_DATABASE_URL": s.database_url,
            "CLINIC_QUEUE_URL": s.queue_url, "CLINIC_QUEUE_NAME": s.queue_name,
            "CLINIC_SECRET_KEY": s.secret_key, "CLINIC_TIMEZONE": str(s.timezone)}
