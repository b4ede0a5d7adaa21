"""Every setting the clinic reads, declared once with its default and one line of help.

Settings come from environment variables with the ``CLINIC_`` prefix. They are read once at
start, parsed into typed values, and a bad value stops the start with a one-line message naming
the variable. ``tests/test_settings.py`` fails when a setting here is missing from the README.
"""

import importlib
import inspect
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class SettingsError(ValueError):
    """A setting has a value we refuse; the message names the variable."""


# -- parsers: each takes the raw string and returns the typed value or raises ValueError --------
# The public ones also parse settings that other modules register().


def text(raw):
    return raw.strip()


def port(raw):
    value = int(raw.strip())
    if not 0 <= value <= 65535:
        raise ValueError("a port is a number from 0 to 65535")
    return value


def _positive_int(raw):
    value = int(raw.strip())
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def _timezone(raw):
    try:
        return ZoneInfo(raw.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not a time zone name such as Europe/Berlin") from None


def duration(raw):
    """'90m', '2h', '3d', '45s' or a bare number of seconds."""
    match = re.fullmatch(r"(\d+)\s*([smhd]?)", raw.strip().lower())
    if not match:
        raise ValueError("expected a duration such as 30m, 2h or 7d")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return timedelta(seconds=int(match.group(1)) * unit)


def durations(raw):
    values = [duration(part) for part in raw.split(",") if part.strip()]
    if not values:
        raise ValueError("expected one or more durations such as 24h,2h")
    return tuple(sorted(values, reverse=True))


def choice(*options):
    def parse(raw):
        value = raw.strip().lower()
        if value not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return value

    return parse


def _url(*schemes):
    def parse(raw):
        value = raw.strip()
        if not value.startswith(tuple(s + "://" for s in schemes)):
            prefixes = " or ".join(s + "://" for s in schemes)
            raise ValueError("expected a URL starting with " + prefixes)
        return value

    return parse


def _name(raw):
    value = raw.strip()
    if not re.fullmatch(r"[a-z][a-z0-9]{0,39}", value):
        raise ValueError("expected a name of lower-case letters and digits, such as clinic2")
    return value


def _region(raw):
    value = raw.strip().upper()
    if value and not re.fullmatch(r"[A-Z]{2}", value):
        raise ValueError("expected a two-letter country code such as DE")
    return value


def _machine_timezone():
    """The machine's zone: $TZ, then /etc/localtime's target, then /etc/timezone, then UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(str(Path("/etc/localtime").resolve()).split("/zoneinfo/", 1)[1])
    except (OSError, IndexError):
        pass
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    for name in candidates:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


@dataclass(frozen=True)
class Setting:
    name: str  # the attribute; the variable is CLINIC_<NAME>
    default: object  # a raw string, or None for "derived at load time"
    parse: object
    help: str
    secret: bool = False

    @property
    def env(self):
        return "CLINIC_" + self.name.upper()


SETTINGS = [
    Setting("host", "127.0.0.1", text, "Address the web server listens on."),
    Setting("port", "8080", port, "Port the web server listens on (0 picks a free one)."),
    Setting("data_dir", "./data", text,
            "Folder for the database, the queue, the secret key, exports and the mail outbox."),
    Setting("database_url", None, _url("sqlite", "postgresql", "postgres"),
            "Where the clinic's data lives. Default: sqlite:///<data_dir>/clinic.db."),
    Setting("queue_url", None, _url("sqlite", "redis", "postgresql", "postgres"),
            "Where the job queue lives. Default: sqlite:///<data_dir>/queue.db."),
    Setting("queue_name", "clinic", _name,
            "The queue's name in CLINIC_QUEUE_URL: clinics that share one Redis or PostgreSQL "
            "database need different names."),
    Setting("timezone", None, _timezone,
            "The clinic's time zone (IANA name). When set, it wins over the admin's Clinic page. "
            "Default: the Clinic page's, else the machine's."),
    Setting("secret_key", None, text,
            "Key that signs links and CSRF tokens. Default: generated once into "
            "<data_dir>/secret_key.", secret=True),
    Setting("admin_email", "", text, "Email of the admin created on the first start."),
    Setting("admin_password", "", text,
            "Password of that admin. Default: a one-time password printed at the first start.",
            secret=True),
    Setting("name", "Clinic", text,
            "The clinic's name, shown on pages and in emails. When set, it wins over the "
            "admin's Clinic page (as do the address, phone, website and time zone)."),
    Setting("address", "", text, "The clinic's street address, shown in emails and invites."),
    Setting("phone", "", text,
            "The clinic's phone number, given wherever a patient is told to call and in every "
            "email's footer."),
    Setting("website", "", text, "The clinic's own website, shown in every email's footer."),
    Setting("phone_region", "", _region,
            "The country (ISO code such as DE) of phone numbers typed without a country code. "
            "Default: the clinic phone's country; without one, numbers need their +code."),
    Setting("base_url", None, text,
            "Public address used in links in emails. Default: http://<host>:<port>."),
    Setting("cancel_cutoff", "2h", duration,
            "How long before the start a patient may still cancel or reschedule."),
    Setting("stats_cache_ttl", "5m", duration,
            "How long the admin dashboard's figures are served from the cache."),
    Setting("session_lifetime", "14d", duration, "How long a sign-in lasts without activity."),
    Setting("web_threads", "4", _positive_int,
            "Threads serving web requests (waitress's threads): this many requests are "
            "answered at once, and the rest wait in line for a free thread. 4 is waitress's "
            "own default."),
    Setting("trusted_proxy", "", text,
            "Address of the reverse proxy in front of the web processes (e.g. 127.0.0.1): only "
            "its X-Forwarded-For and X-Forwarded-Proto are believed. Default: nobody's."),
    Setting("workers", "2", _positive_int,
            "Threads running background jobs at once (Huey's workers in this process); an "
            "idle one starts a job queued by this process at once, and finds one queued by "
            "another process within a second (at once with a Redis or PostgreSQL queue)."),
    Setting("shutdown_timeout", "30s", duration,
            "On Ctrl-C or SIGTERM, how long to wait for running jobs to finish."),
    Setting("booking_horizon", "90d", duration, "How far ahead patients may book."),
    Setting("no_show_after", "1h", duration,
            "How long after its start a visit still booked or confirmed becomes a no-show."),
]

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Typed settings. Build with ``load()``; tests may pass overrides."""

    values: dict = field(default_factory=dict)
    # The names set in the environment (or by a test's override) rather than by default: these
    # win over what the admin saves on the Clinic page (clinic/details.py).
    given: frozenset = frozenset()

    def __getattr__(self, name):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **changes):
        return Settings({**self.values, **changes}, self.given | set(changes))

    @property
    def data_path(self):
        return Path(self.values["data_dir"])


_ORIGIN = {}  # setting name -> the module that registered it


def register(*settings):
    """Add settings declared by another module (mail, jobs). Names must be new."""
    module = inspect.currentframe().f_back.f_globals.get("__name__", "")
    for setting in settings:
        if setting.name in _BY_NAME:
            raise ValueError(f"setting {setting.name} declared twice")
        SETTINGS.append(setting)
        _BY_NAME[setting.name] = setting
        _ORIGIN[setting.name] = module


# Modules that declare settings of their own with register(); imported before settings are read
# so that every setting is known (and documented) whichever module was imported first.
SETTING_MODULES = ("clinic.i18n", "clinic.mail.compose", "clinic.mail.sender",
                   "clinic.mail.ratelimit", "clinic.jobs.scheduler", "clinic.exports",
                   "clinic.reminders", "clinic.accounts", "clinic.waitlist")


def _import_setting_modules():
    for name in SETTING_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a module that is not written yet is fine; a broken one is not
                raise


def load(environ=None, **overrides):
    """Read every setting from ``environ`` (default os.environ), apply ``overrides`` (already
    typed, for tests), fill in derived defaults, and return Settings. Raises SettingsError."""
    _import_setting_modules()
    environ = os.environ if environ is None else environ
    values = {}
    given = set()
    for setting in SETTINGS:
        if setting.name in overrides:
            values[setting.name] = overrides.pop(setting.name)
            given.add(setting.name)
            continue
        raw = environ.get(setting.env)
        if raw is not None and raw.strip():
            given.add(setting.name)
        if raw is None or (raw.strip() == "" and setting.default is None):
            raw = setting.default
        if raw is None:
            values[setting.name] = None
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{setting.env}={raw!r} is invalid: {exc}") from None
    if overrides:
        raise SettingsError("unknown settings: " + ", ".join(sorted(overrides)))
    return Settings(_derive(values), frozenset(given))


def _derive(values):
    data = Path(values["data_dir"]).expanduser()
    values["data_dir"] = str(data.resolve())
    if values["database_url"] is None:
        values["database_url"] = f"sqlite:///{data.resolve() / 'clinic.db'}"
    if values["queue_url"] is None:
        values["queue_url"] = f"sqlite:///{data.resolve() / 'queue.db'}"
    if values["timezone"] is None:
        values["timezone"] = _machine_timezone()
    if values["base_url"] is None:
        host = values["host"] if values["host"] not in ("0.0.0.0", "::") else "localhost"  # noqa: S104
        values["base_url"] = f"http://{host}:{values['port']}"
    values["base_url"] = values["base_url"].rstrip("/")
    return values


def ensure_secret_key(settings):
    """Return settings with a secret key: the configured one, or one kept in the data folder
    (created on first use with mode 0600, so restarts keep sessions and links valid)."""
    if settings.secret_key:
        return settings
    data = settings.data_path
    data.mkdir(parents=True, exist_ok=True)
    path = data / "secret_key"
    if not path.exists():
        tmp = data / f".secret_key.{os.getpid()}.{time.monotonic_ns()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)  # atomic: a racing second process keeps the first key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return settings.replace(secret_key=path.read_text().strip())


def describe():
    """(variable, default, help) for every setting: the README table and `--help` use it."""
    _import_setting_modules()
    # A fixed order whichever module was imported first: this module's own settings, then each
    # module's in SETTING_MODULES order, each in the order declared.
    rank = {name: i for i, name in enumerate(SETTING_MODULES, start=1)}
    ordered = sorted(enumerate(SETTINGS),
                     key=lambda pair: (rank.get(_ORIGIN.get(pair[1].name), 0), pair[0]))
    for _, setting in ordered:
        yield setting.env, setting.default, setting.help


def secrets_named():
    """The variables whose values are secrets (keys, passwords): shown as "(set)", never printed."""
    _import_setting_modules()
    return {setting.env for setting in SETTINGS if setting.secret}


# The settings of the running process, set once by create_app() / the CLI.
_current = None


def use(settings):
    global _current
    _current = settings
    return settings


def get():
    if _current is None:
        raise RuntimeError("settings not configured: call clinic.settings.use(load()) first")
    return _current
