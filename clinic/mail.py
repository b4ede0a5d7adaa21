"""Every email the clinic sends: rendered from templates/emails/, built into a MIME message whose
headers nobody can smuggle a line into, and sent over SMTP, or written to <data_dir>/outbox/ as
an .eml file while no SMTP host is set.

What is sent when, and what happened to it, is clinic/outbox.py's business; this module turns one
outbox row into one message and hands it to the server.
"""

import email.errors
import email.policy
import functools
import logging
import os
import re
import smtplib
import ssl
import uuid
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage, Message
from email.utils import format_datetime, parseaddr
from pathlib import Path

import jinja2

from clinic import clock, preferences, settings
from clinic.settings import Setting, _choice, _duration, _port, _str

log = logging.getLogger("clinic.mail")

EMAILS = Path(__file__).resolve().parent.parent / "templates" / "emails"


class TransientError(Exception):
    """Sending failed in a way that may pass (server down, timeout, SMTP 4xx): try again later."""


class Unavailable(TransientError):
    """The SMTP server could not be reached or would not let us in: no message of the batch can
    go now, so the caller should stop trying the rest."""


class PermanentError(Exception):
    """This message will never go (SMTP 5xx, no or invalid recipient): do not retry."""


# -- settings -------------------------------------------------------------------------------------


def _timeout(raw):
    value = _duration(raw)
    if not value:
        raise ValueError("must be more than 0 seconds")
    return value


def _mail_from(raw):
    value = raw.strip()
    _, addr = parseaddr(value)
    if not valid_address(addr) or _BREAKS.search(value) or "=?" in value:
        raise ValueError('expected an address such as "Clinic <noreply@clinic.example>"')
    return value


settings.register(
    Setting("smtp_host", "", _str,
            "SMTP server that sends the clinic's email. Empty: each email is written to "
            "<data_dir>/outbox/ as an .eml file instead, and nothing is sent."),
    Setting("smtp_port", "587", _port, "Port of the SMTP server: 587 for starttls, 465 for tls."),
    Setting("smtp_user", "", _str, "User name on the SMTP server. Empty: do not sign in."),
    Setting("smtp_password", "", str, "Password on the SMTP server.", secret=True),
    Setting("smtp_security", "starttls", _choice("none", "starttls", "tls"),
            "How the SMTP connection is encrypted: starttls, tls, or none (a local relay only)."),
    Setting("smtp_timeout", "10s", _timeout,
            "How long to wait for the SMTP server at each step before trying again later."),
    Setting("mail_from", None, _mail_from,
            'Sender of the clinic\'s email, as "Name <address>". '
            "Default: <clinic name> <noreply@localhost>."),
)


def _rate(raw):
    value = int(raw.strip() or "0")
    if value < 0:
        raise ValueError("expected a number of messages per minute, 0 for no limit")
    return value


settings.register(
    Setting("mail_rate", "0", _rate,
            "Most emails sent in any minute, for a mail provider with a quota (0 or empty: no "
            "limit). Confirmations, cancellations and reminders go before announcements."),
)


# -- headers --------------------------------------------------------------------------------------

_ADDRESS = re.compile(r"[^@\s<>()\[\]\\,;:\"]+@[^@\s<>()\[\]\\,;:\"]+")
# Every character some mail software takes for the end of a line: CR, LF, VT, FF, FS, GS, RS,
# NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR; with the other control characters.
_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def clean_header(value):
    """``value`` made safe for a header: one line, and no RFC 2047 encoded-word.

    Line breaks become spaces. Encoded-words (``=?utf-8?q?a=0D=0ABcc:x?=``) are defused rather
    than decoded: Python's email package decodes them when it parses a header and, before the fix
    for CVE-2024-6923, writes the CR/LF they hide as a real line break, i.e. a new header. With
    no ``=?`` left, no parser can find one."""
    text = " ".join(_BREAKS.sub(" ", str(value or "")).split())
    return text.replace("=?", "= ?")


def clean_name(value):
    """A display name safe in From/To: clean_header() without the characters that give an address
    header its structure. Python quotes a name that has them, but drops the quotes when it folds
    a long one, and ``"aaa…a b:c@d.example" <alice@…>`` then reaches the server as a group
    holding c@d.example."""
    return " ".join(re.sub(r'[()<>\[\]:;@\\,"]', " ", clean_header(value)).split())


def clean_filename(value):
    """An attachment's file name: letters, digits, spaces and ._-() only."""
    return re.sub(r"[^\w .()-]", "_", clean_header(value)).strip() or "attachment"


_DOT_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_PLAIN_ADDRESS = re.compile(f"{_DOT_ATOM}@{_DOT_ATOM}")  # the usual address, surely valid


def valid_address(addr):
    """True for one plain address (local@domain), nothing around it."""
    if not isinstance(addr, str) or not _ADDRESS.fullmatch(addr) or "=?" in addr:
        return False
    if _PLAIN_ADDRESS.fullmatch(addr):  # the usual address: no need to parse it
        return True
    try:
        Address(addr_spec=addr)
    except (ValueError, IndexError, email.errors.HeaderParseError):
        return False
    return True


def from_address(s=None):
    """The sender as an Address: CLINIC_MAIL_FROM, or the clinic's name at noreply@localhost."""
    s = s or settings.get()
    return _sender(s.mail_from, s.name)


@functools.lru_cache(maxsize=8)
def _sender(mail_from, name):
    # Parsed once per setting, not once per message.
    name, addr = parseaddr(mail_from) if mail_from else (name, "noreply@localhost")
    return Address(display_name=clean_name(name), addr_spec=addr)


def new_message_id(s=None):
    """A Message-ID for a new outbox row, kept for every attempt and resend of it, so mail
    systems can recognise a message that arrives twice."""
    s = s or settings.get()
    return f"<{uuid.uuid4().hex}@{_sender(s.mail_from, s.name).domain}>"


# -- rendering ------------------------------------------------------------------------------------


def _local(fmt):
    return lambda value: clock.formatted(value, fmt)


def make_templates():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(EMAILS)),
        # .html escapes what it prints; .txt (bodies and subjects) prints text as it is.
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Compiled once per process: a reminder run renders hundreds, and checking each file's
        # time on every render cost more than rendering it. A changed template needs a restart.
        auto_reload=False,
    )
    # The web pages' filters, for instants in the clinic's time zone.
    env.filters["local"] = _local("%a %d %b %Y, %H:%M")
    env.filters["time"] = _local("%H:%M")
    env.filters["day"] = _local("%a %d %b %Y")
    env.filters["isodate"] = _local("%Y-%m-%d")
    return env


templates = make_templates()
_KIND = re.compile(r"[a-z][a-z0-9_]*")


def render(kind, **context):
    """``(subject, text, html)`` of the email ``kind`` from templates/emails/<kind>.subject.txt,
    <kind>.txt and <kind>.html. The context always has clinic_name, clinic_address and
    base_url."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"not an email kind: {kind!r}")
    s = settings.get()
    context = {"clinic_name": s.name, "clinic_address": s.address, "base_url": s.base_url,
               **context}
    subject, text, html = (template.render(context) for template in _templates_of(kind))
    return " ".join(subject.split()), text.strip() + "\n", html


@functools.lru_cache(maxsize=64)
def _templates_of(kind):
    return [templates.get_template(f"{kind}{suffix}")
            for suffix in (".subject.txt", ".txt", ".html")]


# -- building -------------------------------------------------------------------------------------


class _Policy(email.policy.EmailPolicy):
    """The default policy, except that a List-Unsubscribe header is written on one line: folded
    the default way, a long URL with no space in it becomes RFC 2047 encoded-words, which mail
    clients do not decode there, and the one-click link is lost. Well under 998 octets."""

    def fold(self, name, value):
        text = str(value)
        if name.lower() == "list-unsubscribe" and text.isascii() and len(text) < 900:
            return f"{name}: {text}{self.linesep}"
        return super().fold(name, value)

    def fold_binary(self, name, value):
        if name.lower() == "list-unsubscribe" and str(value).isascii():
            return self.fold(name, value).encode("ascii")
        return super().fold_binary(name, value)


class _Headers(HeaderRegistry):
    """The default header classes, each made once: HeaderRegistry makes a new class every time
    it is asked for one, which was most of the cost of building a message."""

    def __init__(self):
        super().__init__()
        self.made = {}

    def __getitem__(self, name):
        key = name.lower()
        made = self.made.get(key)
        if made is None:
            made = self.made[key] = super().__getitem__(name)
        return made


POLICY = _Policy(header_factory=_Headers())


def build(message, now=None):
    """The EmailMessage for an outbox row (clinic.models.Message): text and HTML alternatives,
    then the attachments, with the row's Message-ID. Raises PermanentError when the row can never
    make a message (no valid recipient, an attachment that is gone)."""
    s = settings.get()
    if not valid_address(message.recipient):
        raise PermanentError(f"invalid address: {clean_header(message.recipient)!r}"
                             if message.recipient else "no address")
    name = message.user.name if message.user_id is not None else ""
    msg = EmailMessage(policy=POLICY)
    msg["Subject"] = clean_header(message.subject)
    msg["From"] = from_address(s)
    msg["To"] = Address(display_name=clean_name(name), addr_spec=message.recipient)
    msg["Date"] = format_datetime(now or clock.now())
    msg["Message-ID"] = clean_header(message.message_id)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies, please
    unsubscribe = preferences.unsubscribe_url(message.user_id, message.kind)
    if unsubscribe:  # an optional email: one click stops this kind (RFC 2369, RFC 8058)
        msg["List-Unsubscribe"] = f"<{clean_header(unsubscribe)}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(message.text_body)
    if message.html_body:
        msg.add_alternative(message.html_body, subtype="html")
    for attachment in message.attachments or ():
        _attach(msg, attachment, s)
    return msg



def _attach(msg, attachment, s):
    """Attach ``{"filename", "content_type", "path" | "text"}``; a path is a file under the data
    folder (absolute, or relative to it)."""
    filename = clean_filename(attachment["filename"])
    header = Message()
    header["Content-Type"] = clean_header(attachment.get("content_type")
                                          or "application/octet-stream")
    maintype, subtype = header.get_content_maintype(), header.get_content_subtype()
    params = dict(header.get_params()[1:])
    if "text" in attachment:
        data = attachment["text"].encode("utf-8")
        if maintype == "text":
            params.setdefault("charset", "utf-8")
    else:
        root = s.data_path.resolve()
        path = (root / attachment["path"]).resolve()
        if not path.is_relative_to(root):
            raise PermanentError(f"attachment {filename} is outside the data folder")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PermanentError(f"attachment {filename} is gone") from None
    msg.add_attachment(data, maintype, subtype, filename=filename, params=params)


# -- sending --------------------------------------------------------------------------------------


_SERVER_ERRORS = (smtplib.SMTPException, OSError)  # what the server or the network can raise


def classify(exc):
    """The TransientError or PermanentError that an exception raised while sending means."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refusals = list(exc.recipients.values())
        reason = "; ".join(f"{code} {_text(text)}" for code, text in refusals) or "refused"
        permanent = bool(refusals) and all(code >= 500 for code, _ in refusals)
        return (PermanentError if permanent else TransientError)(f"recipient refused: {reason}")
    if isinstance(exc, smtplib.SMTPResponseException):
        reason = f"{exc.smtp_code} {_text(exc.smtp_error)}"
        return (PermanentError if 500 <= exc.smtp_code < 600 else TransientError)(reason)
    # smtplib reports a timeout while reading a reply as SMTPServerDisconnected.
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return TransientError("the SMTP server did not answer in time")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientError("the SMTP server closed the connection")
    if isinstance(exc, _SERVER_ERRORS):
        return TransientError(str(exc) or type(exc).__name__)
    # Not the server's doing but ours (a bug): tried again later, like a lost connection.
    return TransientError(f"internal error: {type(exc).__name__}: {exc}")


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _classified(exc):
    """classify(exc), raised from ``exc`` when raised."""
    if not isinstance(exc, _SERVER_ERRORS):
        log.error("sending a message failed on an internal error", exc_info=exc)
    error = classify(exc)
    error.__cause__ = exc
    return error



def _closed_by_server(exc):
    """True when ``exc`` says the server closed the connection (without a word, or with a 421),
    rather than that it did not answer in time or refused the message."""
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return not isinstance(exc.__context__, TimeoutError)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(code == 421 for code in codes)
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code == 421


class Sender:
    """Sends messages over one SMTP connection, opened at the first send and kept for the batch;
    with no CLINIC_SMTP_HOST, writes each to <data_dir>/outbox/ instead. Use as a context manager
    so the connection is closed.

    After a failure the connection is dropped; the next message opens a new one. A kept
    connection that the server closed meanwhile (idle for too long, or at its limit of messages
    a connection) is opened again, once, for the message that found it closed."""

    def __init__(self, s=None):
        self.settings = s or settings.get()
        self.connection = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc_info):
        if exc_type is None:
            self.close()
        else:  # stopped mid-message, maybe: no QUIT that could land inside its text
            self._drop()

    def send(self, message):
        """Send the EmailMessage ``message`` with smtplib's send_message; raises TransientError
        (Unavailable when the server cannot be reached at all) or PermanentError. Without an
        SMTP host, returns the .eml file's path."""
        if not self.settings.smtp_host:
            return self._write(message)
        while True:
            kept = self.connection is not None
            if not kept:
                self.connection = self._connect()
            try:
                self.connection.send_message(message)
                return None
            except Exception as exc:  # a bug too: this message is tried again later, not a crash
                self._drop()
                if not (kept and _closed_by_server(exc)):
                    raise _classified(exc) from exc

    def close(self):
        if self.connection is not None:
            try:
                self.connection.quit()
            except _SERVER_ERRORS:
                pass  # the messages are sent; a rude goodbye changes nothing
            self._drop()

    def _connect(self):
        s = self.settings
        timeout = s.smtp_timeout.total_seconds()
        connection = None
        try:
            if s.smtp_security == "tls":
                connection = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=timeout,
                                              context=ssl.create_default_context())
            else:
                connection = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=timeout)
            if s.smtp_security == "starttls":
                connection.starttls(context=ssl.create_default_context())
            if s.smtp_user:
                connection.login(s.smtp_user, s.smtp_password)
        except _SERVER_ERRORS as exc:
            if connection is not None:
                connection.close()
            # Whatever the code (a 535 for a wrong password is a 5xx), this is not the message's
            # fault: it will be tried again, and the batch stops here.
            raise Unavailable(f"cannot use the SMTP server {s.smtp_host}:{s.smtp_port}: "
                              f"{classify(exc)}") from exc
        return connection

    def _drop(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _write(self, message):
        """Write <data_dir>/outbox/<timestamp>-<id>.eml whole or not at all; returns its path."""
        try:
            return self._written(message)
        except OSError as exc:
            raise TransientError(f"cannot write to the outbox folder: {exc}") from exc

    def _written(self, message):
        folder = self.settings.data_path / "outbox"
        folder.mkdir(parents=True, exist_ok=True)
        ident = re.sub(r"[^A-Za-z0-9]", "", str(message["Message-ID"]).split("@")[0])
        path = folder / f"{clock.now().strftime('%Y%m%dT%H%M%S%fZ')}-{ident or 'message'}.eml"
        tmp = folder / f".{path.name}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(message.as_bytes(policy=message.policy.clone(linesep="\r\n")))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path
