"""Sending SMS: the gateway named by CLINIC_SMS_URL, spoken to over Twilio's REST API, or, with no
gateway, a .txt file per SMS in <data_dir>/outbox/ (as emails are written there without SMTP).

``twilio://SID:TOKEN@api.twilio.com?from=+15550001111`` POSTs each SMS to
``/2010-04-01/Accounts/<SID>/Messages.json`` with HTTP basic auth; any host that speaks the same
API is named the same way, and ``twilio+http://`` speaks it over plain HTTP (a gateway on the
same machine, or the tests'). One keep-alive connection carries a batch. How an answer counts:

    2xx                          sent: the gateway's SID, parts and price are kept
    429, 401, 403, no answer     the gateway is away or refuses us: Unavailable, the batch stops
    5xx                          TransientError: tried again later
    other 4xx (a bad number)     PermanentError: failed at once

The webhooks the gateway calls back are signed with the auth token (``signature()``).
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import ssl
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlencode, urlsplit

from clinic import clock, settings
from clinic.mail import sms_text
from clinic.mail.errors import PermanentError, TransientError, Unavailable
from clinic.settings import Setting


@dataclass(frozen=True)
class Config:
    """CLINIC_SMS_URL taken apart."""

    secure: bool
    host: str
    port: int
    sid: str
    token: str
    sender: str  # the From number (E.164) or a messaging service's sender id

    @property
    def path(self):
        return f"/2010-04-01/Accounts/{quote(self.sid, safe='')}/Messages.json"


def parse_url(raw):
    """CLINIC_SMS_URL as a Config, or None when empty; ValueError says what is wrong."""
    raw = raw.strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("twilio", "twilio+http"):
        raise ValueError("expected twilio://SID:TOKEN@host?from=+15550001111 "
                         "(or twilio+http:// for plain HTTP)")
    if not parts.username or not parts.password or not parts.hostname:
        raise ValueError("the URL needs the account SID and auth token: "
                         "twilio://SID:TOKEN@api.twilio.com?from=...")
    # Not parse_qs: it reads the "+" of "?from=+1555..." as a space.
    query = dict(part.partition("=")[::2] for part in parts.query.split("&") if part)
    sender = unquote(query.get("from", "")).strip()
    if not sender:
        raise ValueError("the URL needs the sender: ?from=+15550001111")
    secure = parts.scheme == "twilio"
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}") from None
    return Config(secure, parts.hostname, port, unquote(parts.username),
                  unquote(parts.password), sender)


def _rate(raw):
    value = int(raw.strip() or "0")
    if value < 0:
        raise ValueError("expected a number of SMS per minute, 0 for no limit")
    return value


def _timeout(raw):
    value = settings.duration(raw)
    if not value:
        raise ValueError("must be more than 0 seconds")
    return value


settings.register(
    Setting("sms_url", "", parse_url,
            "SMS gateway: twilio://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com?from=+15550001111 "
            "(twilio+http:// for plain HTTP). Empty: each SMS is written to <data_dir>/outbox/ "
            "as a .txt file instead, and nothing is sent.", secret=True),
    Setting("sms_rate", "0", _rate,
            "Most SMS sent in any minute, for a gateway with a quota (0 or empty: no limit)."),
    Setting("sms_timeout", "10s", _timeout,
            "How long to wait for the SMS gateway before trying again later."),
)


def config(s=None):
    """The gateway's Config, or None when SMS are written to files."""
    return (s or settings.get()).values.get("sms_url")


@dataclass(frozen=True)
class Receipt:
    """What the gateway said when it took an SMS."""

    sid: str = ""
    segments: int = 0
    price: str = ""
    price_unit: str = ""
    status: str = ""


class Gateway:
    """Sends SMS (outbox rows) over one keep-alive HTTP connection, opened at the first send and
    kept for the batch. Use as a context manager so the connection is closed. A kept connection
    the gateway closed meanwhile is opened again, once, for the SMS that found it closed."""

    def __init__(self, s=None):
        self.settings = s or settings.get()
        self.config = config(self.settings)
        self.connection = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def send(self, message):
        """Send the outbox row ``message`` (an SMS); returns a Receipt. Raises PermanentError,
        TransientError, or Unavailable when no SMS can go now."""
        if not re.fullmatch(r"\+[1-9]\d{6,14}", message.recipient or ""):
            raise PermanentError(f"invalid phone number: {message.recipient!r}"
                                 if message.recipient else "no phone number")
        if self.config is None:
            return self._write(message)
        form = {"To": message.recipient, "From": self.config.sender, "Body": message.text_body,
                "StatusCallback": f"{self.settings.base_url}/sms/status"}
        status, reason, body = self._post(urlencode(form).encode())
        return self._receipt(status, reason, body, message)

    def _post(self, body):
        c = self.config
        credentials = base64.b64encode(f"{c.sid}:{c.token}".encode()).decode()
        headers = {"Authorization": f"Basic {credentials}", "Accept": "application/json",
                   "Content-Type": "application/x-www-form-urlencoded"}
        while True:
            kept = self.connection is not None
            if not kept:
                self.connection = self._connect()
            try:
                self.connection.request("POST", c.path, body, headers)
                response = self.connection.getresponse()
                data = response.read()
            except TimeoutError as exc:
                self.close()
                raise Unavailable("the SMS gateway did not answer in time") from exc
            except (http.client.HTTPException, OSError) as exc:
                self.close()
                # A kept connection the gateway closed while idle: once more on a new one.
                if kept and isinstance(exc, (http.client.RemoteDisconnected,
                                             ConnectionResetError, BrokenPipeError)):
                    continue
                raise Unavailable(f"cannot reach the SMS gateway {c.host}:{c.port}: "
                                  f"{exc or type(exc).__name__}") from exc
            if response.will_close:
                self.close()
            return response.status, response.reason, data

    def _connect(self):
        c = self.config
        timeout = self.settings.sms_timeout.total_seconds()
        if c.secure:
            return http.client.HTTPSConnection(c.host, c.port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(c.host, c.port, timeout=timeout)

    def _receipt(self, status, reason, body, message):
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        if 200 <= status < 300:
            return Receipt(sid=str(data.get("sid") or "")[:64],
                           segments=_int(data.get("num_segments"))
                           or sms_text.segments(message.text_body),
                           price=str(data.get("price") or "")[:20],
                           price_unit=str(data.get("price_unit") or "")[:3],
                           status=str(data.get("status") or ""))
        said = f"{status} {reason}".strip()
        if data.get("code") or data.get("message"):
            said += f": error {data.get('code')}: {data.get('message') or ''}".rstrip(": ")
        if status in (401, 403):
            raise Unavailable(f"the SMS gateway refused the account: {said}")
        if status == 429:
            raise Unavailable(f"the SMS gateway asks us to slow down: {said}")
        if status >= 500:
            raise TransientError(f"the SMS gateway failed: {said}")
        raise PermanentError(f"the SMS gateway refused the SMS: {said}")

    def _write(self, message):
        """Write <data_dir>/outbox/<timestamp>-sms-<id>.txt whole or not at all."""
        try:
            folder = self.settings.data_path / "outbox"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{clock.now().strftime('%Y%m%dT%H%M%S%fZ')}-sms-{message.id}.txt"
            tmp = folder / f".{path.name}.tmp"
            parts = sms_text.segments(message.text_body)
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(f"To: {message.recipient}\nSegments: {parts}\n\n{message.text_body}\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise TransientError(f"cannot write to the outbox folder: {exc}") from exc
        return Receipt(segments=parts, status="written", sid="")


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# -- webhooks -------------------------------------------------------------------------------------


def signature(url, params, token):
    """Twilio's X-Twilio-Signature of a POST to ``url`` with the form ``params`` (pairs): the
    base64 HMAC-SHA1, keyed by the auth token, of the URL followed by each name and value,
    sorted by name."""
    data = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
                            ).decode()


def signed(url, params, given, s=None):
    """True when ``given`` is the gateway's signature of this request (no gateway: never)."""
    c = config(s)
    if c is None or not given:
        return False
    return hmac.compare_digest(signature(url, params, c.token).encode(), given.encode())
