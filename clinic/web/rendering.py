"""The pages' Jinja2 environment (autoescape on, compiled once per process) and ``render()``,
which gives every template the user, the CSRF token, the clinic's name and the flash message."""

from pathlib import Path
from urllib.parse import quote, urlencode

import jinja2
from bottle import request, response

from clinic import clock, details, i18n
from clinic.mail import lookup
from clinic.web.cookies import pop_flash
from clinic.web.csrf import csrf_token
from clinic.web.sessions import current_user

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"


def _static_url(name):
    """/static/<name>?v=<mtime>, so browsers cache forever yet see changes."""
    path = STATIC / name
    version = int(path.stat().st_mtime) if path.exists() else 0
    return f"/static/{quote(name)}?v={version}"


def _query(**changes):
    """The current query string with some parameters changed (for paging and filters)."""
    params = {k: v for k, v in request.query.decode().allitems()}
    params.update({k: v for k, v in changes.items()})
    return "?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})


def make_templates():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "xml", "svg"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Compiled once per process, as the email templates are: looking at each template
        # file's time on every page cost a stat() per template and import. A changed template
        # needs a restart, as changed code does.
        auto_reload=False,
    )
    i18n.install(env)
    env.filters["phone"] = details.format_phone  # E.164 as people write it: +49 30 1234567
    env.filters["kind"] = lookup.kind_words  # an email's kind in words
    env.globals.update(static_url=_static_url, query=_query)
    return env


templates = make_templates()


def page_language():
    """The signed-in user's language, else the one Accept-Language prefers, else the first of
    CLINIC_LANGUAGES."""
    user = current_user()
    if user is not None and i18n.chosen(user.language):
        return user.language
    return i18n.negotiate(request.get_header("Accept-Language"))


def render(name, status=200, **context):
    """Render ``templates/<name>`` with the request's user, CSRF token and clinic name."""
    clinic = details.current()
    context.setdefault("errors", {})
    context.setdefault("form", {})
    context.update(
        user=current_user(),
        csrf_token=csrf_token(),
        clinic_name=clinic.name,
        clinic_phone=clinic.phone_text,
        clinic_phone_uri="tel:" + clinic.phone if clinic.phone else "",
        timezone=str(clinic.timezone),
        timezone_words=clock.zone_words(clinic.timezone),
        path=request.path,
        flash=pop_flash(),
        languages=i18n.choices(),
    )
    response.status = status
    response.content_type = "text/html; charset=utf-8"
    return templates.get_template(name).render(**context)
