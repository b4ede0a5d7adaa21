"""Languages: the gettext catalogs in clinic/locale/, which language this request or email is
in, and dates and times as that language writes them (Babel, in the clinic's time zone).

Every text for people is written in English and marked: ``_("...")`` in Python, ``{{ _("...") }}``
or ``{% trans %}`` in templates. It is translated when it is made, into the language in force:
a page's (set per request by the web layer), an email's (set by clinic.mail.compose for its
recipient), else the first of CLINIC_LANGUAGES. The catalogs are the .po files; they are compiled
in memory the first time a language is used, so there are no .mo files to build or forget.
See "How to add a language" in the README.
"""

import contextlib
import contextvars
import functools
import gettext as _gettext
import io
import threading
from datetime import date, datetime, timedelta
from pathlib import Path

from babel.core import negotiate_locale
from babel.dates import format_date, format_datetime, format_skeleton, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from clinic import settings
from clinic.settings import Setting

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"

# What each language is called in its own words, for the language choice on forms.
NAMES = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español"}


def shipped():
    """The languages with a catalog in clinic/locale/."""
    return sorted(p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def _languages(raw):
    codes = [part.strip().lower() for part in raw.split(",") if part.strip()]
    if not codes:
        raise ValueError("expected one or more language codes such as en,de")
    unknown = [code for code in codes if code not in shipped()]
    if unknown:
        raise ValueError(f"no catalog for {', '.join(unknown)}; shipped: {', '.join(shipped())}")
    return tuple(dict.fromkeys(codes))


settings.register(
    Setting("languages", "en", _languages,
            "Languages the clinic offers (codes with a catalog in clinic/locale/, such as "
            "en,de,fr); the first is used when nothing else decides."),
)


def offered():
    return settings.get().languages


def default():
    return offered()[0]


def choices():
    """``[(code, name)]`` of the offered languages, for a form's choice."""
    return [(code, NAMES.get(code, code)) for code in offered()]


# -- catalogs -------------------------------------------------------------------------------------

_lock = threading.Lock()
_catalogs = {}


def translations(language):
    """The compiled catalog of ``language`` (fuzzy entries left out, as pybabel compile does)."""
    found = _catalogs.get(language)
    if found is None:
        with _lock:
            found = _catalogs.get(language)
            if found is None:
                found = _catalogs[language] = _compile(language)
    return found


def _compile(language):
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not path.exists():
        return _gettext.NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return _gettext.GNUTranslations(buffer)


# -- the language in force ------------------------------------------------------------------------

# A language code, or a function that decides it the first time it is asked (a page's language
# needs the signed-in user, which most answers never look up).
_current = contextvars.ContextVar("clinic_language", default=None)


def language():
    """The language texts are made in now."""
    value = _current.get()
    if callable(value):
        value = value()
        _current.set(value)
    return value or default()


def use(value):
    """Make ``value`` (a code, or a function returning one) the language in force; returns the
    token for reset()."""
    return _current.set(value)


def reset(token):
    _current.reset(token)


@contextlib.contextmanager
def using(value):
    token = use(value)
    try:
        yield
    finally:
        reset(token)


def chosen(code):
    """``code`` if it is an offered language, else None."""
    return code if code in offered() else None


def negotiate(accept_language):
    """The offered language an Accept-Language header prefers most, else the first offered."""
    wanted = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and tag != "*" and quality > 0:
            wanted.append((-quality, i, tag))
    preferred = [tag for _, _, tag in sorted(wanted)]
    return negotiate_locale(preferred, offered(), sep="-") or default()


def _in_force():
    """language(), or English (the texts as written) where no settings are loaded: a module
    used on its own, as in some unit tests."""
    try:
        return language()
    except RuntimeError:  # settings.get() before settings.use()
        return "en"


def gettext(message):
    return translations(_in_force()).gettext(message)


def ngettext(singular, plural, n):
    return translations(_in_force()).ngettext(singular, plural, n)


_ = gettext


def N_(message):
    """Marks a text for the catalog without translating it (it is translated where it is
    shown)."""
    return message


# -- dates and times ------------------------------------------------------------------------------

# English keeps the clinic's own way ("Mon 07 Dec 2026, 09:30"); other languages use their own
# pattern for the same fields from the CLDR data ("Mo., 7. Dez. 2026").
_ENGLISH = {"day": "EEE dd MMM y", "short_day": "EEE dd MMM", "day_month": "d MMM",
            "day_month_padded": "dd MMM"}
_SKELETONS = {"day": "yMMMEd", "short_day": "MMMEd", "day_month": "MMMd",
              "day_month_padded": "MMMd"}
STYLES = {  # style -> (date part or None, time pattern or None)
    "long": ("day", "HH:mm"), "seconds": ("day", "HH:mm:ss"),
    "short": ("short_day", "HH:mm"), "short_seconds": ("short_day", "HH:mm:ss"),
    "day": ("day", None), "day_month": ("day_month", None),
    "day_month_padded": ("day_month_padded", None),  # "06 Mar", the booking strip's
    "time": (None, "HH:mm"), "time_seconds": (None, "HH:mm:ss"),
    "month": (None, None), "iso": (None, None), "long_zone": (None, None),
    "weekday": (None, None),
}


def formatted(value, style="long"):
    """``value`` as text for people in the language in force: an instant in the clinic's time
    zone, a date as it is; None as nothing, anything else as str(). ``style`` is one of
    STYLES."""
    if isinstance(value, (datetime, date)):
        return _formatted(value, style, language(), settings.get().timezone)
    return "" if value is None else str(value)


@functools.lru_cache(maxsize=8192)
def _formatted(value, style, lang, tz):
    # Remembered: pages and emails show the same few instants again and again.
    if isinstance(value, datetime):
        value = value.astimezone(tz)
    elif style not in ("day", "day_month", "day_month_padded", "month", "iso", "weekday"):
        style = "day"
    if style == "long_zone":  # with the zone's abbreviation (CET, CEST), as the tz data has it
        return f"{_formatted(value, 'long', lang, tz)} {value.strftime('%Z')}"
    if style == "iso":  # YYYY-MM-DD, for forms and links: the same in every language
        return value.strftime("%Y-%m-%d")
    if style == "weekday":  # "Mon", "Mo."
        return format_date(value, "EEE", locale=lang)
    if style == "month":
        return format_date(value, "LLLL y", locale=lang)
    day_part, time_part = STYLES[style]
    parts = []
    if day_part:
        if lang == "en":
            parts.append(format_date(value, _ENGLISH[day_part], locale=lang))
        else:
            parts.append(format_skeleton(_SKELETONS[day_part], value, locale=lang))
    if time_part:
        parts.append(format_datetime(value, time_part, locale=lang))
    return ", ".join(parts)



def duration(delta):
    """A length of time (a timedelta, or seconds) in words in the language in force: "24
    hours", "2 Tage"; anything else as str()."""
    if isinstance(delta, (int, float)) and not isinstance(delta, bool):
        delta = timedelta(seconds=delta)
    if not isinstance(delta, timedelta):
        return str(delta)
    return format_timedelta(delta, threshold=2, locale=language())


# -- templates ------------------------------------------------------------------------------------


def install(env):
    """Give the Jinja2 ``env`` gettext (``_()``, ``{% trans %}``) in the language in force,
    ``language()``, and the date filters ``local`` (a style of STYLES, default "long"),
    ``day``, ``time`` and ``isodate``."""
    env.add_extension("jinja2.ext.i18n")
    # Whitespace inside {% trans %} collapses, as babel.cfg extracts it (trimmed = true).
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(gettext, ngettext, newstyle=True)
    env.filters["local"] = formatted
    env.filters["time"] = lambda value: formatted(value, "time")
    env.filters["day"] = lambda value: formatted(value, "day")
    env.filters["isodate"] = lambda value: formatted(value, "iso")
    env.filters["duration"] = duration
    # A text marked with N_ elsewhere (or typed by a person: left as it is), in the language.
    env.filters["translated"] = gettext
    env.globals["language"] = language
