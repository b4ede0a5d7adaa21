"""An account's owner hears of every change to how it is signed in to: a password changed or
reset, a new email address, two-factor sign-in on or off. Each notice goes to the address the
account had until then, through the outbox and the real SMTP test server."""

import re

from clinic.models import Message
from tests.conftest import PASSWORD
from tests.test_password_reset import NEW, ask, confirm, link_in
from tests.test_profile import change, patch
from tests.test_totp import enrol, frozen  # noqa: F401 (a fixture)


def notices(smtp):
    """(recipient, plain text) of every account-changed email the SMTP server took."""
    return [(m.rcpt_tos[0], m.message.get_body(("plain",)).get_content())
            for m in smtp.messages if m.message["Subject"].startswith("Your account at")]


def test_a_password_change_is_told_to_the_account(smtp_settings, smtp, client, alice,
                                                  delivered):
    client.api_login(alice.email)
    assert change(client, PASSWORD, "a new password").status == 200
    delivered()
    ((to, text),) = notices(smtp)
    assert to == alice.email
    assert "The password of your account was changed." in text
    assert re.search(r"https?://\S+/forgot", text)


def test_a_refused_password_change_tells_nobody(smtp_settings, smtp, client, alice, delivered):
    client.api_login(alice.email)
    assert change(client, "not it", "a new password").status == 400
    delivered()
    assert notices(smtp) == []
    assert not Message.select().where(Message.kind == "account_changed").exists()


def test_a_reset_by_link_is_told_to_the_account(smtp_settings, smtp, client, alice, delivered):
    ask(client, alice.email)
    (received,) = delivered()
    assert confirm(client, link_in(received)).status == 200
    delivered()
    ((to, text),) = notices(smtp)
    assert to == alice.email and "was reset with an emailed link" in text
    assert NEW not in text


def test_a_new_email_address_is_told_to_the_old_one(smtp_settings, smtp, client, new_client,
                                                    alice, delivered):
    client.api_login(alice.email)
    patch(client, {"email": "alice.new@example.com"})
    (received,) = delivered()
    token = re.search(r"/account/email/(\S+)",
                      received.message.get_body(("plain",)).get_content()).group(1)
    assert notices(smtp) == []  # asking alone changes nothing yet
    assert new_client().post_json("/api/me/email/confirm", {"token": token}).status == 200
    delivered()
    ((to, text),) = notices(smtp)
    assert to == alice.email
    assert "changed to alice.new@example.com" in text


def test_two_factor_on_and_off_are_told(frozen, smtp_settings, smtp, client, new_client,  # noqa: F811
                                        carol, erin, delivered):
    enrol(client, carol)
    admin = new_client()
    admin.api_login(erin.email)
    assert admin.post_json(f"/api/admin/users/{carol.id}/totp-reset").status == 200
    delivered()
    texts = [text for to, text in notices(smtp) if to == carol.email]
    assert len(texts) == 2
    # Each notice is its own send task: the SMTP server may take them in either order.
    (on,) = [text for text in texts if "turned on" in text]
    (off,) = [text for text in texts if "turned off for your account by the clinic" in text]
    assert on != off
