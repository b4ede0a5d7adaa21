"""The web application: ``create_app()`` builds it from the routes and wraps it for waitress.

The package, by what each module does: the pages by area (pages/), the JSON API (api_routes,
api_admin, api_accounts, api_input) and its OpenAPI document (openapi); the ``page`` and ``api``
decorators every route uses (decorators); templates (rendering); who is signed in (sessions),
CSRF (csrf), cookies and flash messages (cookies); reading forms, JSON and paging (inputs). A
route parses input, calls one domain function, and renders or redirects; domain errors
(clinic.errors) become a form error or a 4xx JSON ``{"error": ...}``.
"""

import json
import logging

import bottle
from bottle import request, response

from clinic import db, i18n, settings
from clinic.i18n import _
from clinic.jobs import queue
from clinic.web import api_accounts, api_admin, api_calendar, api_desk, api_routes, api_waitlist
from clinic.web.inputs import has_nul
from clinic.web.pages import (
    account,
    account_settings,
    admin,
    announcements,
    audit,
    calendar,
    clinic,
    desk,
    doctor,
    jobs,
    link,
    messages,
    patient,
    preferences,
    reports,
    review,
    sms,
    staff,
    waitlist,
)
from clinic.web.rendering import STATIC, page_language, render

log = logging.getLogger("clinic.web")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

# Largest request body we read (forms and JSON); bigger ones get 413.
bottle.BaseRequest.MEMFILE_MAX = 1024 * 1024

# The order routes are tried in; account_settings holds forgot/reset password, the profile and
# the two-factor sign-in.
ROUTE_MODULES = (account, patient, doctor, admin, clinic, calendar, jobs, messages, review, link,
                 audit, api_accounts, api_routes, api_admin, api_calendar, api_desk, announcements,
                 preferences, reports, account_settings, api_waitlist, waitlist, desk, staff, sms)


# Pages and answers no browser or proxy may keep: personal data, the pages that an emailed link
# opens (a visit, an unsubscribe, a review: each names the patient), and the pages of a sign-in
# link or a half-done sign-in.
PRIVATE_PATHS = ("/api/", "/patient", "/doctor", "/admin", "/desk", "/account", "/visit/",
                 "/unsubscribe/", "/review/", "/reset/", "/login/code", "/waitlist/", "/s/",
                 "/sms/")


class ClinicApp:
    """WSGI wrapper around the Bottle app: the thread's database connection for each request
    (db.acquire/release), security headers on every response (errors included), no traceback
    ever shown."""

    def __init__(self, bottle_app):
        self.bottle = bottle_app

    def __call__(self, environ, start_response):
        def start(status, headers, exc_info=None):
            present = {name.lower() for name, _ in headers}
            headers = list(headers) + [(k, v) for k, v in SECURITY_HEADERS.items()
                                       if k.lower() not in present]
            if environ.get("PATH_INFO", "").startswith(PRIVATE_PATHS):
                headers.append(("Cache-Control", "no-store"))
            return start_response(status, headers, exc_info)

        # No address of ours holds a NUL, and PostgreSQL refuses one in any text it is sent.
        if has_nul(environ.get("PATH_INFO", "")):
            return _refuse(environ, start, "404 Not Found", "No such page.")
        if "%00" in environ.get("QUERY_STRING", ""):
            return _refuse(environ, start, "400 Bad Request", "The address holds a NUL character.")
        mine = db.acquire()
        language = i18n.use(page_language)  # decided when a text first needs it
        try:
            return self.bottle(environ, start)
        finally:
            i18n.reset(language)
            if mine:
                db.release()


def _refuse(environ, start, status, message):
    """An answer given before the app sees the request: JSON under /api/, else plain text."""
    if environ.get("PATH_INFO", "").startswith("/api/"):
        start(status, [("Content-Type", "application/json")])
        return [json.dumps({"error": message}).encode()]
    start(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [message.encode()]


def _error_page(error):
    if request.path.startswith("/api/"):
        response.content_type = "application/json"
        message = error.body if isinstance(error.body, str) and error.body else error.status_line
        if error.status_code >= 500:
            message = "Internal error; it has been logged."
        return json.dumps({"error": message})
    titles = {404: _("Not found"), 405: _("Not allowed"), 413: _("Too large"),
              500: _("Something went wrong")}
    messages = {
        404: _("There is nothing at this address."),
        500: _("Something went wrong on our side. It has been logged; please try again."),
    }
    try:
        return render("error.html", status=error.status_code,
                      title=titles.get(error.status_code, _("Error")),
                      message=messages.get(error.status_code, error.status_line))
    except Exception:  # the error page itself must never fail
        return f"<!doctype html><title>Error</title><p>{error.status_code}</p>"


def create_app(s=None):
    """Build the web app on settings ``s`` (default: from the environment). Configures the
    database; does not migrate (run.py and the tests do that)."""
    s = settings.use(settings.ensure_secret_key(s or settings.load()))
    db.init(s.database_url)
    queue.configure(s.queue_url, s.queue_name)

    app = bottle.Bottle(catchall=True)
    app.config["clinic.settings"] = s
    for module in ROUTE_MODULES:
        app.merge(module.routes)

    @app.route("/static/<name:path>")
    def static(name):
        resp = bottle.static_file(name, root=str(STATIC))
        if request.query.get("v"):
            resp.set_header("Cache-Control", "public, max-age=31536000, immutable")
        return resp

    @app.route("/healthz")
    def healthz():
        response.content_type = "text/plain"
        return "ok"

    for code in (400, 403, 404, 405, 413, 500):
        app.error(code)(_error_page)

    wsgi = ClinicApp(app)
    wsgi.settings = s
    return wsgi
