"""An email as the clinic sends it: rendered from templates/emails/, built into a MIME message
whose headers nobody can smuggle a line into.

What is sent when is clinic/mail/outbox.py's business, and sending is clinic/mail/sender.py's:
this module turns one outbox row into one message.
"""

import email.errors
import email.policy
import functools
import logging
import re
import uuid
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage, Message
from email.utils import format_datetime, parseaddr
from pathlib import Path

import jinja2

from clinic import clock, details, i18n, settings
from clinic.mail import preferences
from clinic.mail.errors import PermanentError
from clinic.settings import Setting

log = logging.getLogger("clinic.mail.compose")

EMAILS = Path(__file__).resolve().parent.parent.parent / "templates" / "emails"


# -- settings -------------------------------------------------------------------------------------


def _mail_from(raw):
    value = raw.strip()
    _, addr = parseaddr(value)
    if not valid_address(addr) or _BREAKS.search(value) or "=?" in value:
        raise ValueError('expected an address such as "Clinic <noreply@clinic.example>"')
    return value


settings.register(
    Setting("mail_from", None, _mail_from,
            'Sender of the clinic\'s email, as "Name <address>". '
            "Default: <clinic name> <noreply@localhost>."),
)



# -- headers --------------------------------------------------------------------------------------

ADDRESS = re.compile(r"[^@\s<>()\[\]\\,;:\"]+@[^@\s<>()\[\]\\,;:\"]+")
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
    if not isinstance(addr, str) or not ADDRESS.fullmatch(addr) or "=?" in addr:
        return False
    if _PLAIN_ADDRESS.fullmatch(addr):  # the usual address: no need to parse it
        return True
    try:
        Address(addr_spec=addr)
    except (ValueError, IndexError, email.errors.HeaderParseError):
        return False
    return True


def from_address(s=None):
    """The sender as an Address: CLINIC_MAIL_FROM, or the clinic's name (in force, for the
    running clinic's settings) at noreply@localhost."""
    if s is None or s is settings.get():
        s = settings.get()
        return _sender(s.mail_from, details.current().name)
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
    return f"<{uuid.uuid4().hex}@{from_address(s).domain}>"


# -- rendering ------------------------------------------------------------------------------------


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
    # The web pages' gettext and date filters, in the recipient's language.
    i18n.install(env)
    return env


templates = make_templates()
_KIND = re.compile(r"[a-z][a-z0-9_]*")

# The kinds whose body holds a live secret link (clinic/accounts.py: set a new password, confirm
# a new address): the admin's Messages page never shows their body, and delivery empties it
# once the message is sent, so the link lives only in the recipient's mailbox.
SECRET_LINK_KINDS = ("password_reset", "email_change")


def render(kind, language=None, **context):
    """``(subject, text, html)`` of the email ``kind`` from templates/emails/<kind>.subject.txt,
    <kind>.txt and <kind>.html, in ``language`` (the recipient's: i18n.of(user); an unknown or
    missing one is the clinic's first). The context always has the clinic's details in force
    (clinic_name, clinic_address, clinic_phone, clinic_website: see clinic/details.py) and
    base_url, for every email's footer."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"not an email kind: {kind!r}")
    s = settings.get()
    clinic = details.current()
    context = {"clinic_name": clinic.name, "clinic_address": clinic.address,
               "clinic_phone": clinic.phone_text, "clinic_website": clinic.website,
               "base_url": s.base_url, **context}
    with i18n.using(i18n.chosen(language) or i18n.default()):
        subject, text, html = [template.render(context) for template in _templates_of(kind)]
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
