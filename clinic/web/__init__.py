"""The web application: the app factory, templates, sign-in, CSRF, security headers, and the two
decorators every route uses (``page`` for HTML, ``api`` for JSON).

Routes live in clinic/web/pages/ (one module per area) and clinic/web/api_routes.py. A route
parses input, calls one domain function, and renders or redirects; domain errors (clinic.errors)
become a form error or a 4xx JSON ``{"error": ...}``.
"""

import functools
import hashlib
import hmac
import json
import logging
import secrets
from pathlib import Path
from urllib.parse import quote, unquote, urlencode

import bottle
import jinja2
from bottle import HTTPResponse, request, response

from clinic import audit, auth, clock, db, settings
from clinic.errors import ClinicError
from clinic.jobs import queue

log = logging.getLogger("clinic.web")

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"

SESSION_COOKIE = "clinic_session"
CSRF_COOKIE = "clinic_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

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


# -- templates ------------------------------------------------------------------------------------


def _local(value, fmt="%a %d %b %Y, %H:%M"):
    return clock.formatted(value, fmt)


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
    env.filters["local"] = _local
    env.filters["time"] = lambda v: _local(v, "%H:%M")
    env.filters["day"] = lambda v: _local(v, "%a %d %b %Y")
    env.filters["isodate"] = lambda v: _local(v, "%Y-%m-%d")
    env.globals.update(static_url=_static_url, query=_query)
    return env


templates = make_templates()


def render(name, status=200, **context):
    """Render ``templates/<name>`` with the request's user, CSRF token and clinic name."""
    s = settings.get()
    context.setdefault("errors", {})
    context.setdefault("form", {})
    context.update(
        user=current_user(),
        csrf_token=csrf_token(),
        clinic_name=s.name,
        timezone=str(s.timezone),
        path=request.path,
        flash=pop_flash(),
    )
    response.status = status
    response.content_type = "text/html; charset=utf-8"
    return templates.get_template(name).render(**context)


# -- sign-in --------------------------------------------------------------------------------------


def origin():
    """Where this request comes from, as the audit log records it: ``address`` and ``path``."""
    return {"address": client_ip(), "path": f"{request.method} {request.fullpath}"}


def client_ip():
    return request.environ.get("REMOTE_ADDR", "")[:64]


def _is_https():
    return request.urlparts.scheme == "https" or settings.get().base_url.startswith("https://")


def set_cookie(name, value, max_age=None):
    response.set_cookie(name, value, path="/", httponly=True, samesite="Lax",
                        secure=_is_https(), max_age=max_age)


def current_user():
    """The signed-in user of this request (cookie or bearer token), or None. Cached per
    request."""
    env = request.environ
    if "clinic.user" not in env:
        user = None
        header = env.get("HTTP_AUTHORIZATION", "")
        if header.lower().startswith("bearer "):
            user = auth.user_for_token(header[7:].strip(), "api")
            env["clinic.auth"] = "bearer"
        else:
            user = auth.user_for_token(request.get_cookie(SESSION_COOKIE), "web")
            env["clinic.auth"] = "cookie"
        env["clinic.user"] = user
    return env["clinic.user"]


def sign_in(user):
    token = auth.start_session(user, "web", ip=client_ip())
    set_cookie(SESSION_COOKIE, token, max_age=int(settings.get().session_lifetime.total_seconds()))
    # A new CSRF secret with every sign-in: a token seen before sign-in is worth nothing after.
    set_cookie(CSRF_COOKIE, secrets.token_urlsafe(32))
    request.environ["clinic.user"] = user


def sign_out():
    auth.end_session(request.get_cookie(SESSION_COOKIE))
    response.delete_cookie(SESSION_COOKIE, path="/")
    request.environ["clinic.user"] = None


def home_for(user):
    return {"patient": "/patient", "doctor": "/doctor", "admin": "/admin"}.get(
        getattr(user, "role", None), "/")


# -- CSRF -----------------------------------------------------------------------------------------


def _csrf_secret():
    """This browser's random CSRF secret (a cookie), created on first need."""
    env = request.environ
    if "clinic.csrf" not in env:
        value = request.get_cookie(CSRF_COOKIE)
        if not value or len(value) < 20:
            value = secrets.token_urlsafe(32)
            set_cookie(CSRF_COOKIE, value)
        env["clinic.csrf"] = value
    return env["clinic.csrf"]


def csrf_token():
    """The token forms carry: an HMAC of the browser's CSRF cookie under the secret key, so a
    cookie planted by someone else is useless without the key."""
    key = settings.get().secret_key.encode()
    return hmac.new(key, b"csrf:" + _csrf_secret().encode(), hashlib.sha256).hexdigest()


def csrf_ok():
    sent = request.forms.get(CSRF_FIELD) or request.get_header(CSRF_HEADER) or ""
    cookie = request.get_cookie(CSRF_COOKIE)
    if not cookie:
        return False
    return hmac.compare_digest(sent, csrf_token())


def _csrf_refused():
    if request.path.startswith("/api/"):
        return json_error(403, "CSRF check failed: send the X-CSRF-Token header.")
    return HTTPResponse(
        render("error.html", status=403, title="Form expired",
               message="This form has expired or was sent from another site. Go back, reload "
                       "the page and try again."),
        status=403)


# -- flash messages (kept in a short cookie; text only, escaped on output) -------------------------


def flash(message):
    set_cookie("clinic_flash", quote(message[:300]), max_age=60)


def pop_flash():
    env = request.environ
    if "clinic.flash" not in env:
        raw = request.get_cookie("clinic_flash")
        env["clinic.flash"] = None
        if raw:
            env["clinic.flash"] = unquote(raw)
            response.delete_cookie("clinic_flash", path="/")
    return env["clinic.flash"]


# -- input ----------------------------------------------------------------------------------------


def form():
    """The submitted form as a plain dict of str (decoded as UTF-8, stripped of NULs)."""
    forms = request.forms.decode()
    return {k: forms.getunicode(k, default="").replace("\x00", "") for k in forms}


def json_body():
    """The request's JSON object, or a 400 JSON error."""
    raw = request.body.read(bottle.BaseRequest.MEMFILE_MAX + 1)
    if len(raw) > bottle.BaseRequest.MEMFILE_MAX:
        raise json_error(413, "Request body too large.")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        raise json_error(400, "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise json_error(400, "The body must be a JSON object.")
    if _has_nul(data):
        raise json_error(400, "The body must not contain NUL characters (\\u0000).")
    return data


def _has_nul(value):
    """Whether a NUL is in ``value`` (a string, or JSON's lists and dicts, keys included)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def json_error(status, message, **extra):
    body = json.dumps({"error": message, **extra})
    return HTTPResponse(body, status=status, **{"Content-Type": "application/json"})


def redirect(url, status=303):
    """303 See Other: after a POST the browser GETs the next page. Keeps the cookies set so
    far (a bare HTTPResponse would drop them)."""
    res = response.copy(cls=HTTPResponse)
    res.status = status
    res.body = ""
    res.set_header("Location", url)
    raise res


def safe_next(url, default="/"):
    """Only same-site paths may follow a sign-in."""
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return default


# -- list pages ------------------------------------------------------------------------------------

PAGE_SIZE = 25  # rows on one page of an admin list


def paging():
    """The page number a list page is asked for, and the ``limit`` and ``offset`` that fetch its
    rows plus one: that one only tells whether a next page exists."""
    try:
        number = max(1, int(request.query.get("page", "1")))
    except ValueError:
        number = 1
    return number, {"limit": PAGE_SIZE + 1, "offset": (number - 1) * PAGE_SIZE}


def one_page(rows):
    """The rows ``paging()`` fetched, as (this page's rows, whether there is a next page)."""
    rows = list(rows)
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


# -- decorators -----------------------------------------------------------------------------------


def page(*roles):
    """An HTML route. With roles, the user must be signed in with one of them (else a redirect
    to sign in, or 403). Every POST must carry the CSRF token. Domain errors not handled by the
    route render the error page with their status."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if request.method == "POST" and not csrf_ok():
                return _csrf_refused()
            user = current_user()
            if roles:
                if user is None:
                    redirect("/login?" + urlencode({"next": request.fullpath}))
                if user.role not in roles:
                    audit.refusal(user, kwargs, **origin())
                    return render("error.html", status=403, title="Not allowed",
                                  message="Your account does not have access to this page.")
            try:
                return fn(*args, **kwargs)
            except ClinicError as exc:
                audit.refusal(user, kwargs, exc, **origin())
                return render("error.html", status=exc.status, title="Cannot do that",
                              message=exc.message)

        return wrapper

    return decorate


def api(*roles):
    """A JSON route. The caller signs in with a bearer token (or a session cookie, in which case a
    POST must carry the X-CSRF-Token header). Domain errors become ``{"error": ...}`` with their
    status; a dict returned is sent as JSON."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            user = current_user()
            if roles:
                if user is None:
                    return json_error(401, "Sign in first: send Authorization: Bearer <token>.")
                if user.role not in roles:
                    audit.refusal(user, kwargs, **origin())
                    return json_error(403, "Your account does not have access to this.")
            if (request.method == "POST" and request.environ.get("clinic.auth") == "cookie"
                    and user is not None and not csrf_ok()):
                return _csrf_refused()
            try:
                result = fn(*args, **kwargs)
            except ClinicError as exc:
                audit.refusal(user, kwargs, exc, **origin())
                extra = {"fields": exc.fields} if exc.fields else {}
                return json_error(exc.status, exc.message, **extra)
            response.content_type = "application/json"
            return json.dumps(result, default=str) if isinstance(result, dict | list) else result

        wrapper.api_roles = roles
        return wrapper

    return decorate


# -- the application ------------------------------------------------------------------------------


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
            if environ.get("PATH_INFO", "").startswith(("/api/", "/patient", "/doctor",
                                                        "/admin", "/account")):
                headers.append(("Cache-Control", "no-store"))
            return start_response(status, headers, exc_info)

        # No address of ours holds a NUL, and PostgreSQL refuses one in any text it is sent.
        if _has_nul(environ.get("PATH_INFO", "")):
            return _refuse(environ, start, "404 Not Found", "No such page.")
        if "%00" in environ.get("QUERY_STRING", ""):
            return _refuse(environ, start, "400 Bad Request", "The address holds a NUL character.")
        mine = db.acquire()
        try:
            return self.bottle(environ, start)
        finally:
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
    titles = {404: "Not found", 405: "Not allowed", 413: "Too large", 500: "Something went wrong"}
    messages = {
        404: "There is nothing at this address.",
        500: "Something went wrong on our side. It has been logged; please try again.",
    }
    try:
        return render("error.html", status=error.status_code,
                      title=titles.get(error.status_code, "Error"),
                      message=messages.get(error.status_code, error.status_line))
    except Exception:  # the error page itself must never fail
        return f"<!doctype html><title>Error</title><p>{error.status_code}</p>"


def create_app(s=None):
    """Build the web app on settings ``s`` (default: from the environment). Configures the
    database; does not migrate (run.py and the tests do that)."""
    from clinic.web import api_routes
    from clinic.web.pages import account, admin, doctor, jobs, link, messages, patient, review
    from clinic.web.pages import account_settings as account_pages
    from clinic.web.pages import announcements as announcement_pages
    from clinic.web.pages import audit as audit_pages
    from clinic.web.pages import preferences as preference_pages
    from clinic.web.pages import reports as report_pages

    s = settings.use(settings.ensure_secret_key(s or settings.load()))
    db.init(s.database_url)
    queue.configure(s.queue_url, s.queue_name)

    app = bottle.Bottle(catchall=True)
    app.config["clinic.settings"] = s
    for module in (account, patient, doctor, admin, jobs, messages, review, link, audit_pages,
                   api_routes):
        app.merge(module.routes)
    for module in (announcement_pages, preference_pages, report_pages):
        app.merge(module.routes)
    app.merge(account_pages.routes)  # forgot/reset password, profile, two-factor sign-in

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
