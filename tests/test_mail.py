"""Rendering, building and sending one email (clinic/mail/), against a real SMTP server."""

import base64
import email
import email.errors
import email.policy
import re
import smtplib
import socket
import threading
import time
from datetime import timedelta

import jinja2
import pytest

from clinic import settings
from clinic.mail import compose, errors, sender
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
    subject, text, html = compose.render("test", name="<b>Tom & Jerry</b>")
    assert subject == "Test email from Test Clinic"
    assert "Hello <b>Tom & Jerry</b>," in text
    assert "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;" in html
    assert "<b>Tom" not in html


def test_render_gives_every_email_the_clinic_name_address_and_link(app):
    _, text, html = compose.render("test")
    for body in (text, html):
        assert "Test Clinic" in body
        assert "1 Test Street, Berlin" in body
        assert settings.get().base_url in body
    assert html.lstrip().startswith("<!doctype html>")  # the shared layout


def test_render_refuses_undefined_names_and_odd_kinds(app):
    with pytest.raises(jinja2.UndefinedError):
        compose.templates.from_string("{{ nobody_passed_this }}").render()
    with pytest.raises(ValueError):
        compose.render("../base")
    with pytest.raises(jinja2.TemplateNotFound):
        compose.render("no_such_email")


# -- building -------------------------------------------------------------------------------------


def test_build_is_text_and_html_alternatives_with_the_rows_message_id(app):
    message = parse(compose.build(row()))
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
    message = parse(compose.build(row(attachments=[
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
        with pytest.raises(errors.PermanentError):
            compose.build(row(attachments=[attachment]))


@pytest.mark.parametrize("evil", INJECTIONS)
def test_nothing_typed_into_a_header_adds_a_header(app, evil):
    eve = User.create(email="eve@example.com", name=evil, role="patient", password_hash="-")
    attachment = {"filename": evil + ".txt", "content_type": "text/plain", "text": "hi"}
    message = parse(compose.build(row(subject=evil, user=eve, attachments=[attachment])))
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


@pytest.mark.parametrize("recipient", [
    "alice@example.com\r\nBcc: evil@example.com", "alice@example.com, evil@example.com",
    "Alice <alice@example.com>", "=?utf-8?q?a=0D=0A?=@example.com", "alice", ""])
def test_recipient_must_be_one_plain_address(app, recipient):
    with pytest.raises(errors.PermanentError):
        compose.build(row(recipient=recipient))


@pytest.mark.parametrize("addr", ["a@b.c", "a.b@c.example", "x+y@ex-ample.com", "a@b",
                                  "o'brien@example.com", "a..b@c", ".a@b", "a.@b", "a@b.",
                                  "a@.b", "é@b.c", "a b@c", "a@[1.2.3.4]", 'a"b@c', "a@b@c",
                                  "{}|~@x.y"])
def test_the_quick_address_check_agrees_with_the_parser(addr):
    def parsed(addr):
        try:
            compose.Address(addr_spec=addr)
        except (ValueError, IndexError, email.errors.HeaderParseError):
            return False
        return bool(compose.ADDRESS.fullmatch(addr)) and "=?" not in addr

    assert compose.valid_address(addr) == parsed(addr)


def test_cleaning_keeps_ordinary_text():
    assert compose.clean_header("Your visit with Dr Zoë Öz on Mon 2 Mar — 10:00") == (
        "Your visit with Dr Zoë Öz on Mon 2 Mar — 10:00")
    assert compose.clean_name("Dr. Zoë O'Brien-Öz") == "Dr. Zoë O'Brien-Öz"
    assert compose.clean_name('Clark, "Carol" <c@x>') == "Clark Carol c x"
    assert compose.clean_filename("history 2026-03 (Zoë).csv") == "history 2026-03 (Zoë).csv"
    assert compose.clean_header("  two\r\n  lines ") == "two lines"
    assert "=?" not in compose.clean_header("=?utf-8?q?x?= and =?=?")


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
    assert str(compose.from_address(s)) == "Sunny Clinic <hello@sunny.example>"
    assert compose.new_message_id(s).endswith("@sunny.example>")
    defaults = settings.load(environ={"CLINIC_DATA_DIR": str(tmp_path)})
    assert (defaults.smtp_host, defaults.smtp_port, defaults.smtp_security) == ("", 587,
                                                                                "starttls")
    assert str(compose.from_address(defaults)) == "Clinic <noreply@localhost>"


@pytest.mark.parametrize("variable, value", [
    ("CLINIC_SMTP_SECURITY", "ssl"), ("CLINIC_SMTP_TIMEOUT", "0"), ("CLINIC_SMTP_PORT", "x"),
    ("CLINIC_MAIL_FROM", "not an address"), ("CLINIC_MAIL_FROM", "A <a@b.example>\nBcc: c@d"),
])
def test_bad_mail_settings_stop_the_start(tmp_path, variable, value):
    with pytest.raises(SettingsError, match=variable):
        settings.load(environ={"CLINIC_DATA_DIR": str(tmp_path), variable: value})


# -- sending --------------------------------------------------------------------------------------


def test_without_smtp_host_each_message_becomes_an_eml_file(app):
    with sender.Sender() as mailer:
        path = mailer.send(compose.build(row(subject="Ça marche")))
    outbox = settings.get().data_path / "outbox"
    assert path.parent == outbox and path.name.endswith("-0123abcd.eml")
    assert [p.name for p in outbox.iterdir()] == [path.name]  # no temporary file left
    saved = read(path.read_bytes())
    assert saved["Subject"] == "Ça marche"
    assert saved["Message-ID"] == "<0123abcd@localhost>"
    assert saved.get_body(("plain",)).get_content() == "Hi Alice\n"


def test_a_batch_goes_over_one_connection(smtp_settings, smtp):
    with sender.Sender() as mailer:
        for n in range(3):
            mailer.send(compose.build(row(message_id=f"<{n}@localhost>")))
    assert smtp.connections == 1
    assert smtp.message_ids() == ["<0@localhost>", "<1@localhost>", "<2@localhost>"]
    assert smtp.messages[0].rcpt_tos == ["alice@example.com"]
    assert smtp.messages[0].mail_from == "noreply@localhost"


def test_550_is_permanent_and_the_next_message_gets_a_new_connection(smtp_settings, smtp):
    smtp.answer("550")
    with sender.Sender() as mailer:
        with pytest.raises(errors.PermanentError, match="550 5.1.1 No such user"):
            mailer.send(compose.build(row()))
        smtp.answer("accept")
        mailer.send(compose.build(row()))
    assert smtp.connections == 2
    assert len(smtp.messages) == 1


def test_451_is_transient(smtp_settings, smtp):
    smtp.answer("451")
    with sender.Sender() as mailer, pytest.raises(errors.TransientError, match="451"):
        mailer.send(compose.build(row()))
    assert smtp.messages == []


def test_lines_that_start_with_a_dot_arrive_whole(smtp_settings, smtp):
    with sender.Sender() as mailer:
        for n in range(3):
            mailer.send(compose.build(row(message_id=f"<{n}@localhost>",
                                       text_body=".hidden\n.\n..two\nend\n")))
    assert smtp.connections == 1
    assert [read(received.raw).get_body(("plain",)).get_content()
            for received in smtp.messages] == [".hidden\n.\n..two\nend\n"] * 3


def built(*recipients):
    return [compose.build(row(recipient=to, message_id=f"<{n}@localhost>", text_body=f".{n}\n"))
            for n, to in enumerate(recipients)]


def outcomes(mailer, messages):
    """What send() said of each message, by Message-ID: "sent" or the error's words."""
    said = []
    for message in messages:
        try:
            mailer.send(message)
        except (errors.TransientError, errors.PermanentError) as error:
            said.append((message["Message-ID"], str(error)))
        else:
            said.append((message["Message-ID"], "sent"))
    return said


@pytest.mark.parametrize("refusal, words, error", [
    ("550", "recipient refused: 550", errors.PermanentError),
    ("451", "recipient refused: 451", errors.TransientError),
    ("554", "554 5.6.0 Message refused", errors.PermanentError)])
def test_a_refusal_in_a_batch_is_that_messages_alone(smtp_settings, smtp, refusal, words, error):
    """A refused recipient or message is that message's error; the connection is dropped, and the
    rest go over a new one."""
    smtp.refuse("bad@example.com", refusal)
    messages = built("a@example.com", "bad@example.com", "c@example.com", "d@example.com")
    with sender.Sender() as mailer:
        said = outcomes(mailer, messages)
    assert [outcome for _, outcome in said if outcome != "sent"] == [
        outcome for message_id, outcome in said if message_id == "<1@localhost>"]
    assert dict(said)["<1@localhost>"].startswith(words)
    assert smtp.message_ids() == ["<0@localhost>", "<2@localhost>", "<3@localhost>"]
    assert smtp.connections == 2
    with sender.Sender() as mailer, pytest.raises(error):
        mailer.send(built("bad@example.com")[0])


def test_a_connection_the_server_closed_is_opened_again_once(smtp_settings, smtp):
    """A server at its limit of messages a connection (here, one) closes it: the next message,
    finding it closed, goes over a new one."""
    smtp.hang_up(True)
    messages = built("a@example.com", "b@example.com", "c@example.com")
    with sender.Sender() as mailer:
        said = outcomes(mailer, messages)
    assert said == [(f"<{n}@localhost>", "sent") for n in range(3)]
    assert smtp.connections == 3


def test_a_connection_lost_at_a_messages_end_is_transient(smtp_settings, smtp):
    """The server goes away after a message's end without answering: it may or may not have the
    message (a transient error, tried again later by the outbox). Over a kept connection that
    looks like a server that closed it meanwhile, so it goes once more over a new one; the
    next message goes over a new one too."""
    smtp.refuse("gone@example.com", "close")
    messages = built("a@example.com", "gone@example.com", "c@example.com")
    with sender.Sender() as mailer:
        said = outcomes(mailer, messages)
    with sender.Sender() as mailer:  # over a new connection: tried once
        assert outcomes(mailer, built("gone@example.com")) == [
            ("<0@localhost>", "the SMTP server closed the connection")]
    assert said == [("<0@localhost>", "sent"),
                    ("<1@localhost>", "the SMTP server closed the connection"),
                    ("<2@localhost>", "sent")]
    assert smtp.message_ids() == ["<0@localhost>", "<2@localhost>"]
    assert [read(received.raw)["Message-ID"] for received in smtp.handler.abandoned] == [
        "<1@localhost>", "<1@localhost>", "<0@localhost>"]
    assert smtp.connections == 4


def test_an_internal_error_while_sending_is_transient_and_the_batch_goes_on(
        smtp_settings, smtp, monkeypatch):
    """A bug met while sending a message (here, a send_message that raises ValueError) is no
    crash: the connection is dropped, that message is tried again later, the rest go over a
    new one."""
    messages = built("a@example.com", "b@example.com", "c@example.com")
    send_message = smtplib.SMTP.send_message

    def sending(self, message, *args, **kwargs):
        if message["Message-ID"] == "<1@localhost>":
            raise ValueError("not today")
        return send_message(self, message, *args, **kwargs)

    monkeypatch.setattr(smtplib.SMTP, "send_message", sending)
    with sender.Sender() as mailer:
        said = outcomes(mailer, messages)
    assert said == [("<0@localhost>", "sent"),
                    ("<1@localhost>", "internal error: ValueError: not today"),
                    ("<2@localhost>", "sent")]
    assert smtp.message_ids() == ["<0@localhost>", "<2@localhost>"]
    assert smtp.connections == 2


def test_a_message_whose_envelope_cannot_be_written_is_its_own_error(smtp_settings, smtp):
    """An address the server cannot take (not ASCII, and no SMTPUTF8 offered) fails that
    message alone, before anything of it goes; the rest are sent. Offered, it goes."""
    smtp.offer_smtputf8(False)
    first, last = built("a@example.com", "c@example.com")
    odd = compose.build(row(recipient="joe@exämple.com", message_id="<odd@localhost>"))
    with sender.Sender() as mailer:
        said = outcomes(mailer, [first, odd, last])
    assert [outcome for _, outcome in said] == ["sent", said[1][1], "sent"]
    assert "SMTPUTF8" in said[1][1]
    assert smtp.message_ids() == ["<0@localhost>", "<1@localhost>"]
    smtp.offer_smtputf8(True)
    with sender.Sender() as mailer:
        mailer.send(odd)
    assert smtp.messages[-1].rcpt_tos == ["joe@exämple.com"]


def test_a_built_message_that_cannot_be_written_is_its_own_error(smtp_settings, smtp):
    good = [compose.build(row(message_id=f"<{n}@localhost>")) for n in (0, 2)]
    broken = compose.build(row(message_id="<1@localhost>"))
    broken.get_payload().append("not a part")  # a multipart whose generator fails
    with sender.Sender() as mailer:
        said = outcomes(mailer, [good[0], broken, good[1]])
    assert [outcome == "sent" for _, outcome in said] == [True, False, True]
    assert said[1][1].startswith("internal error: ")
    assert smtp.message_ids() == ["<0@localhost>", "<2@localhost>"]


def test_a_hanging_server_times_out_as_transient(smtp_settings, smtp):
    use(smtp_timeout=timedelta(seconds=1))
    smtp.answer("hang")
    outcome = []

    def send():
        try:
            with sender.Sender() as mailer:
                mailer.send(compose.build(row()))
        except errors.TransientError as exc:
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
    with sender.Sender() as mailer, pytest.raises(errors.Unavailable, match="refused"):
        mailer.send(compose.build(row()))
    assert issubclass(errors.Unavailable, errors.TransientError)


def test_starttls_against_a_server_without_it_is_unavailable(smtp_settings, smtp):
    use(smtp_security="starttls")
    with sender.Sender() as mailer, pytest.raises(errors.Unavailable, match="STARTTLS"):
        mailer.send(compose.build(row()))
    assert smtp.messages == []


def test_check_connects_says_noop_and_closes(smtp_settings, smtp):
    mailer = sender.Sender()
    mailer.check()  # the server answered (an unreachable one raises: the next test)
    assert smtp.messages == []
    assert mailer.connection is None  # closed: a health check keeps nothing open


def test_check_of_an_unreachable_server_is_unavailable(smtp_settings):
    use(smtp_port=free_port())
    with pytest.raises(errors.Unavailable, match="cannot use the SMTP server .*refused"):
        sender.Sender().check()
