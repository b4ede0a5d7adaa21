"""Rendering, building and sending one email (clinic/mail.py), against a real SMTP server."""

import base64
import email
import email.errors
import email.policy
import re
import smtplib
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import jinja2
import pytest

from clinic import mail, settings
from clinic.models import Message, User
from clinic.settings import SettingsError

INJECTIONS = [
    "Hello\r\nBcc: evil@example.com",
    "Hello\nBcc: evil@example.com",
    "Hello\rBcc: evil@example.com",
    "Hello\u2028Bcc: evil@example.com",
    "Hello\x85Bcc: evil@example.com",
    "Hello\x0bBcc: evil@example.com",
    "=?utf-8?q?Hello=0D=0ABcc:_evil@example.com?=",
    "=?utf-8?b?" + base64.b64encode(b"Hello\r\nBcc: evil@example.com").decode() + "?=",
    # Long enough to be folded: the fold is where CVE-2024-6923 writes the hidden line break.
    "x" * 70 + " =?utf-8?q?Hello=0D=0ABcc:_evil@example.com?=",
    # A long name with a colon: folded without its quotes it would start a group of addresses.
    "a" * 70 + " b:evil@example.com",
    'a' * 70 + ' "; filename="evil.exe',
    # An encoded-word that decodes to another one.
    "=?utf-8?q?=3D=3Futf-8=3Fq=3FHello=3D0D=3D0ABcc:_evil@example.com=3F=3D?=",
]
HEADERS = {"subject", "from", "to", "date", "message-id", "auto-submitted", "content-type",
           "mime-version"}


def row(**fields):
    """An outbox row as enqueue() would store it (unsaved: build() needs no database row)."""
    values = dict(key="k", kind="test", recipient="alice@example.com", subject="Hello",
                  text_body="Hi Alice\n", html_body="<p>Hi Alice</p>", attachments=[],
                  message_id="<0123abcd@localhost>")
    values.update(fields)
    return Message(**values)


def parse(message):
    """What a receiving server sees: the bytes as sent over SMTP (CRLF), parsed again."""
    return read(message.as_bytes(policy=email.policy.SMTP))


def read(raw):
    return email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)


def use(**changes):
    return settings.use(settings.get().replace(**changes))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- rendering ------------------------------------------------------------------------------------


def test_render_escapes_html_but_not_text(app):
    subject, text, html = mail.render("test", name="<b>Tom & Jerry</b>")
    assert subject == "Test email from Test Clinic"
    assert "Hello <b>Tom & Jerry</b>," in text
    assert "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;" in html
    assert "<b>Tom" not in html


def test_render_gives_every_email_the_clinic_name_address_and_link(app):
    _, text, html = mail.render("test")
    for body in (text, html):
        assert "Test Clinic" in body
        assert "1 Test Street, Berlin" in body
        assert settings.get().base_url in body
    assert html.lstrip().startswith("<!doctype html>")  # the shared layout


def test_render_refuses_undefined_names_and_odd_kinds(app):
    with pytest.raises(jinja2.UndefinedError):
        mail.templates.from_string("{{ nobody_passed_this }}").render()
    with pytest.raises(ValueError):
        mail.render("../base")
    with pytest.raises(jinja2.TemplateNotFound):
        mail.render("no_such_email")


# -- building -------------------------------------------------------------------------------------


def test_build_is_text_and_html_alternatives_with_the_rows_message_id(app):
    message = parse(mail.build(row()))
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message.get_body(("plain",)).get_content() == "Hi Alice\n"
    assert message.get_body(("html",)).get_content().strip() == "<p>Hi Alice</p>"
    assert message["Message-ID"] == "<0123abcd@localhost>"
    assert message["From"] == "Test Clinic <noreply@localhost>"
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Hello"
    assert message["Date"].datetime.tzinfo is not None
    assert message["Auto-Submitted"] == "auto-generated"


def test_build_attaches_text_and_files_from_the_data_folder(app):
    exports = settings.get().data_path / "exports"
    exports.mkdir(parents=True)
    (exports / "history.csv").write_bytes(b"id,name\r\n1,Zo\xc3\xab\r\n")
    message = parse(mail.build(row(attachments=[
        {"filename": "history.csv", "content_type": "text/csv", "path": "exports/history.csv"},
        {"filename": "visit.ics", "content_type": "text/calendar; method=REQUEST",
         "text": "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"},
    ])))
    assert message.get_content_type() == "multipart/mixed"
    body, csv, ics = message.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert csv.get_filename() == "history.csv"
    assert csv.get_payload(decode=True) == b"id,name\r\n1,Zo\xc3\xab\r\n"
    assert ics.get_content_type() == "text/calendar"
    assert ics.get_param("method") == "REQUEST"
    assert ics.get_payload(decode=True) == b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"


def test_build_refuses_attachments_outside_the_data_folder_or_gone(app, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for patients")
    for path in (str(secret), "../secret.txt", "exports/gone.csv"):
        attachment = {"filename": "x.txt", "content_type": "text/plain", "path": path}
        with pytest.raises(mail.PermanentError):
            mail.build(row(attachments=[attachment]))


@pytest.mark.parametrize("evil", INJECTIONS)
def test_nothing_typed_into_a_header_adds_a_header(app, evil):
    eve = User.create(email="eve@example.com", name=evil, role="patient", password_hash="-")
    attachment = {"filename": evil + ".txt", "content_type": "text/plain", "text": "hi"}
    message = parse(mail.build(row(subject=evil, user=eve, attachments=[attachment])))
    assert {name.lower() for name in message} == HEADERS
    assert not re.search(r"(?im)^bcc:", message.as_string())
    assert "\n" not in str(message["Subject"]) and "\r" not in str(message["Subject"])
    assert [a.addr_spec for a in message["To"].addresses] == ["alice@example.com"]
    assert "\n" not in message["To"].addresses[0].display_name
    attached = list(message.iter_attachments())[0]
    assert {name.lower() for name in attached} == {
        "content-type", "content-transfer-encoding", "content-disposition", "mime-version"}
    assert attached.get_filename().endswith(".txt")
    assert dict(attached["Content-Disposition"].params).keys() == {"filename"}


def wired(message):
    """What a receiving server sees of mail.wire(): its bytes, parsed."""
    built = mail.wire(message)
    assert isinstance(built, mail.Wire)
    assert built.data.count(b"\n") == built.data.count(b"\r\n")  # CRLF only
    return read(built.data)


def assert_same_email(message, now):
    """wire() and build() give a receiver the same email: headers, addresses, parts, bodies."""
    fast, slow = read(mail.wire(message, now=now).data), parse(mail.build(message, now=now))
    assert {n.lower() for n in fast} == {n.lower() for n in slow}
    for name in ("Subject", "From", "Message-ID", "Date", "Auto-Submitted", "List-Unsubscribe",
                 "List-Unsubscribe-Post"):
        # (The email package sometimes folds before the first word: a space more, unfolded.)
        assert str(fast[name] or "").strip() == str(slow[name] or "").strip(), name
    assert [(a.display_name, a.addr_spec) for a in fast["To"].addresses] == [
        (a.display_name, a.addr_spec) for a in slow["To"].addresses]
    assert [p.get_content_type() for p in fast.walk()] == [
        p.get_content_type() for p in slow.walk()]
    for kind in ("plain", "html"):
        fast_body, slow_body = fast.get_body((kind,)), slow.get_body((kind,))
        assert (fast_body and fast_body.get_content()) == (slow_body and slow_body.get_content())


@pytest.mark.parametrize("text", ["Hello", "Ça marche — Zoë Öz", "word " * 60, "Zoë " * 60,
                                  "x" * 300] + INJECTIONS)
def test_wire_writes_what_build_writes(app, text):
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    for name in (text[:200], "Dr. Zoë O'Brien-Öz", "Ann Example", "Dr. Who"):
        eve = User.create(email=f"eve{len(name)}{abs(hash(name))}@example.com", name=name,
                          role="patient", password_hash="-")
        assert_same_email(row(subject=text, user=eve), now)
        assert_same_email(row(subject=text, user=eve, kind="reminder_advance",
                              text_body=f"Dear {text}\n" + "y" * 1200 + "\n",
                              html_body=""), now)
        assert_same_email(row(subject=name, user=eve, html_body=f"<p>{text}</p>"), now)
    use(name="Praxis Zoë Müller")
    assert_same_email(row(subject=text), now)


@pytest.mark.parametrize("body, encoding", [
    ("Short lines only.\n", "7bit"),
    ("Grüße, Zoë.\nBis bald.\n", "8bit"),
    ("Grüße " * 14 + "\n", "base64"),  # non-ASCII in a line over 78 octets
    ("word " * 40 + "\n", "7bit"),  # a long ASCII line is fine up to 998
])
def test_wire_sends_8bit_only_in_short_lines(app, body, encoding):
    """A server without 8BITMIME may mangle 8-bit text, more so in long lines: those go as
    base64, as the email package sends them (as quoted-printable or base64)."""
    message = wired(row(text_body=body, html_body=""))
    part = message.get_body(("plain",))
    assert part["Content-Transfer-Encoding"] == encoding
    assert part.get_content() == body


@pytest.mark.parametrize("evil", INJECTIONS)
def test_nothing_typed_into_a_header_adds_a_header_on_the_wire(app, evil):
    eve = User.create(email="eve@example.com", name=evil, role="patient", password_hash="-")
    message = wired(row(subject=evil, user=eve))
    assert {name.lower() for name in message} == HEADERS
    assert "\n" not in str(message["Subject"]) and "\r" not in str(message["Subject"])
    assert [a.addr_spec for a in message["To"].addresses] == ["alice@example.com"]
    assert "\n" not in message["To"].addresses[0].display_name


def test_wire_leaves_attachments_to_build(app):
    attachment = {"filename": "visit.ics", "content_type": "text/calendar", "text": "X"}
    assert isinstance(mail.wire(row(attachments=[attachment])), mail.EmailMessage)
    with pytest.raises(mail.PermanentError):
        mail.wire(row(recipient="alice@example.com\r\nBcc: evil@example.com"))


@pytest.mark.parametrize("recipient", [
    "alice@example.com\r\nBcc: evil@example.com", "alice@example.com, evil@example.com",
    "Alice <alice@example.com>", "=?utf-8?q?a=0D=0A?=@example.com", "alice", ""])
def test_recipient_must_be_one_plain_address(app, recipient):
    with pytest.raises(mail.PermanentError):
        mail.build(row(recipient=recipient))


@pytest.mark.parametrize("addr", ["a@b.c", "a.b@c.example", "x+y@ex-ample.com", "a@b",
                                  "o'brien@example.com", "a..b@c", ".a@b", "a.@b", "a@b.",
                                  "a@.b", "é@b.c", "a b@c", "a@[1.2.3.4]", 'a"b@c', "a@b@c",
                                  "{}|~@x.y"])
def test_the_quick_address_check_agrees_with_the_parser(addr):
    def parsed(addr):
        try:
            mail.Address(addr_spec=addr)
        except (ValueError, IndexError, email.errors.HeaderParseError):
            return False
        return bool(mail._ADDRESS.fullmatch(addr)) and "=?" not in addr

    assert mail.valid_address(addr) == parsed(addr)


def test_cleaning_keeps_ordinary_text():
    assert mail.clean_header("Your visit with Dr Zoë Öz on Mon 2 Mar — 10:00") == (
        "Your visit with Dr Zoë Öz on Mon 2 Mar — 10:00")
    assert mail.clean_name("Dr. Zoë O'Brien-Öz") == "Dr. Zoë O'Brien-Öz"
    assert mail.clean_name('Clark, "Carol" <c@x>') == "Clark Carol c x"
    assert mail.clean_filename("history 2026-03 (Zoë).csv") == "history 2026-03 (Zoë).csv"
    assert mail.clean_header("  two\r\n  lines ") == "two lines"
    assert "=?" not in mail.clean_header("=?utf-8?q?x?= and =?=?")


# -- settings -------------------------------------------------------------------------------------


def test_mail_settings_come_from_clinic_variables(tmp_path):
    s = settings.load(environ={
        "CLINIC_DATA_DIR": str(tmp_path), "CLINIC_SMTP_HOST": "mail.example.org",
        "CLINIC_SMTP_PORT": "465", "CLINIC_SMTP_USER": "clinic", "CLINIC_SMTP_PASSWORD": " s3 ",
        "CLINIC_SMTP_SECURITY": "TLS", "CLINIC_SMTP_TIMEOUT": "30s",
        "CLINIC_MAIL_FROM": "Sunny Clinic <hello@sunny.example>",
    })
    assert (s.smtp_host, s.smtp_port, s.smtp_user, s.smtp_password, s.smtp_security) == (
        "mail.example.org", 465, "clinic", " s3 ", "tls")
    assert s.smtp_timeout == timedelta(seconds=30)
    assert str(mail.from_address(s)) == "Sunny Clinic <hello@sunny.example>"
    assert mail.new_message_id(s).endswith("@sunny.example>")
    defaults = settings.load(environ={"CLINIC_DATA_DIR": str(tmp_path)})
    assert (defaults.smtp_host, defaults.smtp_port, defaults.smtp_security) == ("", 587,
                                                                                "starttls")
    assert str(mail.from_address(defaults)) == "Clinic <noreply@localhost>"


@pytest.mark.parametrize("variable, value", [
    ("CLINIC_SMTP_SECURITY", "ssl"), ("CLINIC_SMTP_TIMEOUT", "0"), ("CLINIC_SMTP_PORT", "x"),
    ("CLINIC_MAIL_FROM", "not an address"), ("CLINIC_MAIL_FROM", "A <a@b.example>\nBcc: c@d"),
])
def test_bad_mail_settings_stop_the_start(tmp_path, variable, value):
    with pytest.raises(SettingsError, match=variable):
        settings.load(environ={"CLINIC_DATA_DIR": str(tmp_path), variable: value})


# -- sending --------------------------------------------------------------------------------------


def test_without_smtp_host_each_message_becomes_an_eml_file(app):
    with mail.Sender() as sender:
        path = sender.send(mail.build(row(subject="Ça marche")))
    outbox = settings.get().data_path / "outbox"
    assert path.parent == outbox and path.name.endswith("-0123abcd.eml")
    assert [p.name for p in outbox.iterdir()] == [path.name]  # no temporary file left
    saved = read(path.read_bytes())
    assert saved["Subject"] == "Ça marche"
    assert saved["Message-ID"] == "<0123abcd@localhost>"
    assert saved.get_body(("plain",)).get_content() == "Hi Alice\n"


def test_a_batch_goes_over_one_connection(smtp_settings, smtp):
    with mail.Sender() as sender:
        for n in range(3):
            sender.send(mail.build(row(message_id=f"<{n}@localhost>")))
    assert smtp.connections == 1
    assert smtp.message_ids() == ["<0@localhost>", "<1@localhost>", "<2@localhost>"]
    assert smtp.messages[0].rcpt_tos == ["alice@example.com"]
    assert smtp.messages[0].mail_from == "noreply@localhost"


def test_550_is_permanent_and_the_next_message_gets_a_new_connection(smtp_settings, smtp):
    smtp.answer("550")
    with mail.Sender() as sender:
        with pytest.raises(mail.PermanentError, match="550 5.1.1 No such user"):
            sender.send(mail.build(row()))
        smtp.answer("accept")
        sender.send(mail.build(row()))
    assert smtp.connections == 2
    assert len(smtp.messages) == 1


def test_451_is_transient(smtp_settings, smtp):
    smtp.answer("451")
    with mail.Sender() as sender, pytest.raises(mail.TransientError, match="451"):
        sender.send(mail.build(row()))
    assert smtp.messages == []


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
def test_wired_messages_arrive_byte_for_byte(smtp_settings, smtp, pipelining):
    """With PIPELINING offered, each message's MAIL, RCPT and DATA go in one write (RFC 2920);
    without it, one at a time. Lines that start with a dot arrive whole either way."""
    smtp.offer_pipelining(pipelining)
    wired = [mail.wire(row(message_id=f"<{n}@localhost>", text_body=".hidden\n.\n..two\nend\n"))
             for n in range(3)]
    with mail.Sender() as sender:
        for message in wired:
            sender.send(message)
    assert smtp.connections == 1
    assert smtp.pipelined == (3 if pipelining else 0)
    assert [received.raw for received in smtp.messages] == [message.data for message in wired]
    body = read(smtp.messages[0].raw).get_body(("plain",)).get_content()
    assert body == ".hidden\n.\n..two\nend\n"
    assert smtp.messages[0].rcpt_tos == ["alice@example.com"]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
@pytest.mark.parametrize("answer, error", [("451", mail.TransientError),
                                           ("550", mail.PermanentError)])
def test_a_refused_recipient_means_the_same_pipelined_or_not(smtp_settings, smtp, pipelining,
                                                              answer, error):
    smtp.offer_pipelining(pipelining)
    smtp.answer(answer)
    with mail.Sender() as sender:
        with pytest.raises(error, match=f"recipient refused: {answer}"):
            sender.send(mail.wire(row()))
        smtp.answer("accept")
        sender.send(mail.wire(row(message_id="<next@localhost>")))
    assert smtp.connections == 2  # the refused transaction's connection was dropped
    assert smtp.message_ids() == ["<next@localhost>"]


def wires(*recipients):
    return [mail.wire(row(recipient=to, message_id=f"<{n}@localhost>", text_body=f".{n}\n"))
            for n, to in enumerate(recipients)]


def outcomes(sender, messages, build=lambda message: message):
    """What send_all() said of each message, by Message-ID: "sent" or the error's words."""
    return [(message.message_id, "sent" if error is None else str(error))
            for message, error in sender.send_all(messages, build)]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
def test_a_batch_goes_in_one_round_trip_a_message_where_the_server_pipelines(
        smtp_settings, smtp, pipelining):
    """Each message's end goes in one write with the next one's MAIL, RCPT and DATA; they
    arrive whole, in order, over one connection, and each is reported as the server took it."""
    smtp.offer_pipelining(pipelining)
    wired = wires(*(f"p{n}@example.com" for n in range(5)))
    with mail.Sender() as sender:
        said = outcomes(sender, wired)
    assert said == [(message.message_id, "sent") for message in wired]
    assert [received.raw for received in smtp.messages] == [message.data for message in wired]
    assert smtp.connections == 1
    assert smtp.followed == (4 if pipelining else 0)  # the last one's end goes alone
    assert smtp.pipelined == (5 if pipelining else 0)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
@pytest.mark.parametrize("refusal, words", [("550", "recipient refused: 550"),
                                            ("451", "recipient refused: 451"),
                                            ("554", "554 5.6.0 Message refused")])
def test_a_refusal_in_a_batch_is_that_messages_alone(smtp_settings, smtp, pipelining,
                                                     refusal, words):
    """A refused recipient drops the connection (the rest go over a new one). A refused
    message's end, pipelined, leaves the connection as it is: the next one, already announced,
    goes on it."""
    smtp.offer_pipelining(pipelining)
    smtp.refuse("bad@example.com", refusal)
    wired = wires("a@example.com", "bad@example.com", "c@example.com", "d@example.com")
    with mail.Sender() as sender:
        said = outcomes(sender, wired)
    assert [message_id for message_id, _ in said] == [message.message_id for message in wired]
    assert [message_id for message_id, outcome in said if outcome != "sent"] == ["<1@localhost>"]
    assert dict(said)["<1@localhost>"].startswith(words)
    assert [received.raw for received in smtp.messages] == [wired[n].data for n in (0, 2, 3)]
    assert smtp.connections == (1 if refusal == "554" and pipelining else 2)
    kinds = {"550": mail.PermanentError, "451": mail.TransientError, "554": mail.PermanentError}
    with mail.Sender() as sender:
        (_, error), = sender.send_all(wires("bad@example.com"), lambda message: message)
    assert type(error) is kinds[refusal]


def test_a_connection_lost_mid_batch_leaves_one_message_in_doubt_and_sends_the_next_anew(
        smtp_settings, smtp):
    """The server goes away after a message's end without answering: that message may or may
    not have arrived (a transient error, tried again later), while the next one, whose MAIL
    went in the same write but whose text did not, goes at once over a new connection."""
    smtp.refuse("gone@example.com", "close")
    wired = wires("a@example.com", "gone@example.com", "c@example.com", "d@example.com")
    with mail.Sender() as sender:
        said = outcomes(sender, wired)
    assert said == [("<0@localhost>", "sent"),
                    ("<1@localhost>", "the SMTP server closed the connection"),
                    ("<2@localhost>", "sent"), ("<3@localhost>", "sent")]
    assert [received.raw for received in smtp.messages] == [wired[n].data for n in (0, 2, 3)]
    assert [received.raw for received in smtp.handler.abandoned] == [wired[1].data]
    assert smtp.connections == 2


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
def test_an_internal_error_while_sending_is_transient_and_the_batch_goes_on(
        smtp_settings, smtp, monkeypatch, pipelining):
    """A bug met while writing a message (here, a write that raises ValueError) is no crash: the
    connection is dropped, that message is tried again later, the rest go over a new one, and
    nothing is left in doubt."""
    smtp.offer_pipelining(pipelining)
    wired = wires("a@example.com", "b@example.com", "c@example.com")
    send = smtplib.SMTP.send
    broken = []

    def sending(self, data):
        raw = data if isinstance(data, bytes) else data.encode()
        if b"<1@localhost>" in raw and not broken:
            broken.append(True)
            raise ValueError("not today")
        return send(self, data)

    monkeypatch.setattr(smtplib.SMTP, "send", sending)
    with mail.Sender() as sender:
        said = outcomes(sender, wired)
        assert sender.in_doubt is None
    assert said == [("<0@localhost>", "sent"),
                    ("<1@localhost>", "internal error: ValueError: not today"),
                    ("<2@localhost>", "sent")]
    assert [received.raw for received in smtp.messages] == [wired[0].data, wired[2].data]
    assert smtp.connections == 2


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
def test_a_message_whose_envelope_cannot_be_written_is_its_own_error(smtp_settings, smtp,
                                                                     pipelining):
    """An address the server's command encoding cannot carry fails that message alone, before
    anything of it goes: the message ahead of it is sent, the connection kept."""
    smtp.offer_pipelining(pipelining)
    first, last = wires("a@example.com", "c@example.com")
    odd = mail.Wire(first.sender, "jöe@example.com", first.data, "<odd@localhost>")
    with mail.Sender() as sender:
        said = list(sender.send_all([first, odd, last], mail._same))
        assert sender.in_doubt is None
    assert sorted((message.message_id, type(error).__name__) for message, error in said) == [
        ("<0@localhost>", "NoneType"), ("<1@localhost>", "NoneType"),
        ("<odd@localhost>", "UnicodeEncodeError")]
    assert smtp.message_ids() == ["<0@localhost>", "<1@localhost>"]
    assert smtp.connections == 1


def test_a_built_message_that_cannot_be_written_is_its_own_error(smtp_settings, smtp):
    good = [mail.build(row(message_id=f"<{n}@localhost>")) for n in (0, 2)]
    broken = mail.build(row(message_id="<1@localhost>"))
    broken.get_payload().append("not a part")  # a multipart whose generator fails
    with mail.Sender() as sender:
        said = list(sender.send_all([good[0], broken, good[1]], mail._same))
    assert [error is None for _, error in said] == [True, False, True]
    assert not isinstance(said[1][1], (mail.TransientError, mail.PermanentError))
    assert smtp.message_ids() == ["<0@localhost>", "<2@localhost>"]
    assert smtp.connections == 1


def test_wires_and_built_messages_mixed_in_a_batch_arrive_in_order_on_one_connection(
        smtp_settings, smtp):
    """A built message (with attachments, say) between wired ones: the wired one ahead of it is
    finished first, then it goes alone, then pipelining resumes."""
    first, last = wires("a@example.com", "c@example.com")
    built = mail.build(row(recipient="b@example.com", message_id="<built@localhost>"))
    with mail.Sender() as sender:
        said = [error for _, error in sender.send_all([first, built, last], mail._same)]
    assert said == [None, None, None]
    assert smtp.message_ids() == ["<0@localhost>", "<built@localhost>", "<1@localhost>"]
    assert [received.rcpt_tos for received in smtp.messages] == [
        ["a@example.com"], ["b@example.com"], ["c@example.com"]]
    assert smtp.connections == 1


def test_send_keeps_the_connection_after_a_refused_end(smtp_settings, smtp):
    """send() reads its batch to the end before raising: a 554 at the final dot leaves the
    connection usable, and the next send() goes on it."""
    smtp.refuse("bad@example.com", "554")
    refused, fine = wires("bad@example.com", "a@example.com")
    with mail.Sender() as sender:
        with pytest.raises(mail.PermanentError, match="554"):
            sender.send(refused)
        assert sender.connection is not None
        sender.send(fine)
    assert smtp.message_ids() == ["<1@localhost>"]
    assert smtp.connections == 1


def test_a_message_that_cannot_be_built_is_reported_and_the_batch_goes_on(smtp_settings, smtp):
    wired = wires("a@example.com", "b@example.com", "c@example.com")

    def build(message):
        if message is wired[1]:
            raise mail.PermanentError("attachment report.pdf is gone")
        return message

    with mail.Sender() as sender:
        said = outcomes(sender, wired, build)
    # Reported as soon as known: before the message ahead of it is answered.
    assert said == [("<1@localhost>", "attachment report.pdf is gone"), ("<0@localhost>", "sent"),
                    ("<2@localhost>", "sent")]
    assert [received.raw for received in smtp.messages] == [wired[0].data, wired[2].data]


def test_a_batch_stopped_midway_leaves_no_message_half_sent(smtp_settings, smtp):
    """The caller stops after the first outcome: the second message, announced and answered 354,
    must not arrive cut short; the connection is dropped and nothing more goes."""
    wired = wires("a@example.com", "b@example.com", "c@example.com")
    with mail.Sender() as sender:
        batch = sender.send_all(wired, lambda message: message)
        assert next(batch) == (wired[0], None)
        batch.close()
        assert sender.connection is None and sender.in_doubt is None
    assert [received.raw for received in smtp.messages] == [wired[0].data]


def test_a_hanging_server_times_out_as_transient(smtp_settings, smtp):
    use(smtp_timeout=timedelta(seconds=1))
    smtp.answer("hang")
    outcome = []

    def send():
        try:
            with mail.Sender() as sender:
                sender.send(mail.build(row()))
        except mail.TransientError as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    thread.join(timeout=15)  # without a client timeout this would wait forever
    assert not thread.is_alive(), "the client has no timeout"
    assert time.monotonic() - started < 10
    assert [str(exc) for exc in outcome] == ["the SMTP server did not answer in time"]
    assert len(smtp.unanswered) == 1 and smtp.messages == []


def test_an_unreachable_server_is_unavailable(smtp_settings):
    use(smtp_port=free_port())
    with mail.Sender() as sender, pytest.raises(mail.Unavailable, match="refused"):
        sender.send(mail.build(row()))
    assert issubclass(mail.Unavailable, mail.TransientError)


def test_starttls_against_a_server_without_it_is_unavailable(smtp_settings, smtp):
    use(smtp_security="starttls")
    with mail.Sender() as sender, pytest.raises(mail.Unavailable, match="STARTTLS"):
        sender.send(mail.build(row()))
    assert smtp.messages == []
