"""Every email the clinic sends: rendered from templates/emails/, built into a MIME message whose
headers nobody can smuggle a line into, and sent over SMTP, or written to <data_dir>/outbox/ as
an .eml file while no SMTP host is set.

What is sent when, and what happened to it, is clinic/outbox.py's business; this module turns one
outbox row into one message and hands it to the server.
"""

import base64
import email.errors
import email.header
import email.policy
import functools
import logging
import os
import re
import smtplib
import ssl
import uuid
from email.headerregistry import Address
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
    if _PLAIN_ADDRESS.fullmatch(addr):  # parsing one costs more than writing a reminder's row
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
    # Parsed once per setting: parsing it cost a fifth of writing a reminder as bytes (wire()).
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


POLICY = _Policy()


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


class Wire:
    """An outbox row as the bytes that go to the SMTP server, with its envelope."""

    def __init__(self, sender, recipient, data, message_id):
        self.sender, self.recipient, self.data = sender, recipient, data
        self.message_id = message_id


_LEADING_DOT = re.compile(rb"(?m)^\.")
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_LONGEST = 998  # octets in a line, CRLF not counted (RFC 5322)


def wire(message, now=None):
    """What build() makes, as bytes, for the usual row (text and HTML, no attachment, ASCII
    addresses): the same headers, cleaned the same way, written directly. Building through
    EmailMessage and its generator costs about a millisecond a message, more than sending it;
    this costs a tenth of that. Any other row goes through build() (an EmailMessage, sent as
    smtplib sends those). Raises PermanentError as build() does."""
    s = settings.get()
    sender = from_address(s)
    if message.attachments or not (message.recipient + sender.addr_spec).isascii():
        return build(message, now)
    if not valid_address(message.recipient):
        return build(message, now)  # raises the PermanentError
    name = clean_name(message.user.name) if message.user_id is not None else ""
    lines = [
        _header("Subject", clean_header(message.subject)),
        _mailbox("From", sender.display_name, sender.addr_spec),
        _mailbox("To", name, message.recipient),
        f"Date: {format_datetime(now or clock.now())}\r\n",
        _header("Message-ID", clean_header(message.message_id)),
        "Auto-Submitted: auto-generated\r\n",
    ]
    unsubscribe = preferences.unsubscribe_url(message.user_id, message.kind)
    if unsubscribe:
        link = f"<{clean_header(unsubscribe)}>"
        if not link.isascii() or len(link) >= 900:
            return build(message, now)
        lines += [f"List-Unsubscribe: {link}\r\n",
                  "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"]
    if None in lines:  # a header this writer does not fold: let the email package do it
        return build(message, now)
    head = "".join(lines).encode("utf-8") + b"MIME-Version: 1.0\r\n"
    text = _part("plain", message.text_body)
    if not message.html_body:
        data = head + text
    else:
        html = _part("html", message.html_body)
        boundary = f"==============={uuid.uuid4().hex}=="
        if boundary.encode() in text or boundary.encode() in html:
            return build(message, now)
        mark = b"--" + boundary.encode()
        data = (head + b'Content-Type: multipart/alternative; boundary="' + boundary.encode()
                + b'"\r\n\r\n' + mark + b"\r\n" + text + b"\r\n" + mark + b"\r\n" + html
                + b"\r\n" + mark + b"--\r\n")  # the CRLF before a boundary is the boundary's
    return Wire(sender.addr_spec, message.recipient, data, message.message_id)


def _header(name, value):
    """``Name: value`` and CRLF for a cleaned value, folded at spaces, or as RFC 2047 words when
    it is not ASCII; None when a line would still be too long."""
    if not value.isascii():
        words = email.header.Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
        return _fits(f"{name}: {words}\r\n")
    line, lines = f"{name}:", []
    for word in value.split(" "):  # clean_header left single spaces
        if len(line) + 1 + len(word) > 78 and len(line) > len(name) + 1:
            lines.append(line)
            line = ""
        line += " " + word
    return _fits("\r\n".join([*lines, line]) + "\r\n")


def _mailbox(header, name, addr):
    """From or To: the display name (cleaned by clean_name) as atoms, quoted, or RFC 2047 words,
    then the address."""
    if not name:
        value = addr
    elif not name.isascii():
        words = email.header.Header(name, "utf-8", header_name=header).encode(linesep="\r\n")
        value = f"{words} <{addr}>"
    elif _ATEXT.fullmatch(name):
        value = f"{name} <{addr}>"
    else:  # clean_name left no quote or backslash to escape
        value = f'"{name}" <{addr}>'
    return _fits(f"{header}: {value}\r\n")


def _fits(line):
    return line if all(len(part) <= _LONGEST for part in line.split("\r\n")) else None


def _part(subtype, body):
    """A text part with its headers: 7bit, or 8bit for non-ASCII text in lines of at most 78
    octets, with CRLF lines as the email package writes it; base64 when a line is longer than
    that (the email package then leaves 8bit too), or holds a NUL."""
    lines = body.encode("utf-8").splitlines()
    data = b"\r\n".join(lines) + b"\r\n"
    longest = _LONGEST if data.isascii() else 78
    if max(map(len, lines), default=0) > longest or b"\x00" in data:
        # Encoded as the email package encodes it: lines end in LF inside the base64.
        cte = "base64"
        data = base64.encodebytes(b"\n".join(lines) + b"\n").replace(b"\n", b"\r\n")
    else:
        cte = "7bit" if data.isascii() else "8bit"
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode("ascii") + data


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


def _same(message):
    return message


class Sender:
    """Sends messages over one SMTP connection, opened at the first send and kept for the batch;
    with no CLINIC_SMTP_HOST, writes each to <data_dir>/outbox/ instead. Use as a context manager
    so the connection is closed.

    ``send()`` sends one message and raises TransientError (Unavailable when the server cannot
    be reached at all) or PermanentError; ``send_all()`` sends a batch and says how each went.
    After a refusal the connection is dropped; the next message opens a new one."""

    def __init__(self, s=None):
        self.settings = s or settings.get()
        self.connection = None
        # The item whose message's end went to the server and whose reply is not read yet: if
        # the process stops now (KeyboardInterrupt, SystemExit), the server may have it or not.
        self.in_doubt = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def send(self, message):
        """Send ``message``; returns the .eml file's path when there is no SMTP host."""
        if not self.settings.smtp_host:
            return self._write(message)
        # Read to the end, so the batch finishes (and keeps its connection) before raising.
        (_, error), = list(self.send_all([message], _same))
        if error is not None:
            raise error

    def send_all(self, items, build):
        """Send the message ``build(item)`` makes (a Wire or an EmailMessage) for each of
        ``items``, each built just before its turn. Yields ``(item, None)`` once the server has
        taken its message, or ``(item, error)``: the TransientError or PermanentError it met, or
        whatever ``build`` raised, in the order they are known (a message that could not be
        built is reported before the one ahead of it is answered). Stops after an Unavailable
        (the server cannot be reached).

        Where the server offers PIPELINING (RFC 2920), one round trip a message: a message's
        text and final dot go in one write with the next one's MAIL, RCPT and DATA, and the
        replies to both are read together (against a server on the same machine, the waiting,
        not the sending, was most of a message's time). A message's text still goes only once
        its DATA has had its 354, so one message at most is in doubt at any moment (its dot
        sent, its reply not read), as when sending one at a time. A refused MAIL, RCPT or DATA
        drops the connection (a transaction cut short is the server's to forget); a message
        whose connection is lost before its text went is tried once more on a new one."""
        ahead = None  # (item, Wire): its DATA was answered 354; its text goes with the next MAIL
        finished = False
        try:
            for item in items:
                try:
                    message = build(item)
                except Exception as exc:  # the caller's to judge; the connection is not at fault
                    yield item, exc
                    continue
                if ahead is not None and not isinstance(message, Wire):
                    yield self._finish(*ahead)
                    ahead = None
                for fresh in (False, True):
                    if self.settings.smtp_host and self.connection is None:
                        try:
                            self.connection = self._connect()
                        except Unavailable as exc:
                            yield item, exc
                            return
                    if not (isinstance(message, Wire) and self.settings.smtp_host
                            and self.connection.has_extn("pipelining")):
                        yield item, self._send_one(item, message)
                        break
                    try:
                        envelope = self._envelope(message)
                    except Exception as exc:  # this message's own: the one ahead goes on
                        yield item, exc
                        break
                    lost = None
                    self.in_doubt = ahead[0] if ahead else None
                    try:
                        self.connection.send(
                            (self._text(ahead[1]) if ahead else b"") + envelope)
                        if ahead is not None:
                            code, reply = self.connection.getreply()
                    except Exception as exc:  # a bug counts as a lost connection, not a crash
                        lost = exc
                    self.in_doubt = None
                    if ahead is not None:
                        yield ahead[0], (_classified(lost) if lost else None if code == 250
                                         else _classified(smtplib.SMTPDataError(code, reply)))
                        ahead = None
                    if lost is None:
                        try:
                            error = self._accepted(message)
                        except Exception as exc:
                            lost = exc
                        else:
                            if error is None:
                                ahead = item, message
                            else:
                                self._drop()
                                yield item, error
                            break
                    # The connection went before this message's text did: once more on a new one.
                    self._drop()
                    if fresh:
                        yield item, _classified(lost)
            if ahead is not None:
                yield self._finish(*ahead)
                ahead = None
            finished = True
        finally:
            if not finished:  # the caller stopped early: leave no transaction half done
                self._drop()

    def _send_one(self, item, message):
        """Send ``message`` alone (no pipelining); returns None once the server has it, or the
        error."""
        if not self.settings.smtp_host:
            try:
                self._write(message)
            except Exception as exc:  # TransientError, or a message that cannot be written
                return exc
            return None
        try:  # as sendmail() and send_message() will: what cannot be written is its own fault
            if isinstance(message, Wire):
                self._envelope(message)
            else:
                message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        except Exception as exc:
            return exc
        self.in_doubt = item
        try:
            if isinstance(message, Wire):
                self.connection.sendmail(message.sender, [message.recipient], message.data)
            else:
                self.connection.send_message(message)
        except Exception as exc:
            self.in_doubt = None
            self._drop()
            return _classified(exc)
        self.in_doubt = None
        return None

    def _envelope(self, message):
        connection = self.connection
        size = f" SIZE={len(message.data)}" if connection.has_extn("size") else ""
        return (f"MAIL FROM:<{message.sender}>{size}\r\nRCPT TO:<{message.recipient}>\r\n"
                f"DATA\r\n").encode(connection.command_encoding)

    @staticmethod
    def _text(message):
        data = _LEADING_DOT.sub(b"..", message.data)  # as smtplib's data() quotes it
        return data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n"

    def _accepted(self, message):
        """Read the replies to ``message``'s MAIL, RCPT and DATA: None if the server waits for
        its text, else the error, as sendmail() would have raised it."""
        connection = self.connection
        (mail_code, mail_reply), (rcpt_code, rcpt_reply), (data_code, data_reply) = (
            connection.getreply(), connection.getreply(), connection.getreply())
        if mail_code != 250:
            return _classified(smtplib.SMTPSenderRefused(mail_code, mail_reply, message.sender))
        if rcpt_code not in (250, 251):
            return _classified(
                smtplib.SMTPRecipientsRefused({message.recipient: (rcpt_code, rcpt_reply)}))
        if data_code != 354:
            return _classified(smtplib.SMTPDataError(data_code, data_reply))
        return None

    def _finish(self, item, message):
        """Send the text of ``message``, whose DATA has had its 354, and read its reply;
        returns ``(item, error)``."""
        self.in_doubt = item
        try:
            self.connection.send(self._text(message))
            code, reply = self.connection.getreply()
        except Exception as exc:
            self.in_doubt = None
            self._drop()
            return item, _classified(exc)
        self.in_doubt = None
        return item, (None if code == 250 else _classified(smtplib.SMTPDataError(code, reply)))

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
            connection.ehlo_or_helo_if_needed()  # learn now whether it offers PIPELINING
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
        wired = isinstance(message, Wire)
        ident = re.sub(r"[^A-Za-z0-9]", "", str(message.message_id if wired
                                                else message["Message-ID"]).split("@")[0])
        path = folder / f"{clock.now().strftime('%Y%m%dT%H%M%S%fZ')}-{ident or 'message'}.eml"
        tmp = folder / f".{path.name}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(message.data if wired
                     else message.as_bytes(policy=message.policy.clone(linesep="\r\n")))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path
