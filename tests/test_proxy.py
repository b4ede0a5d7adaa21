"""Web processes behind a reverse proxy: with CLINIC_TRUSTED_PROXY the client's address comes from
the proxy's X-Forwarded-For (sign-in throttling counts clients, not the proxy); without it, or
from anyone else, the header is not believed."""

import pytest

from clinic import server, settings
from clinic.models import LoginAttempt
from tests.client import Client


@pytest.fixture
def serve(app, serving):
    """Start the clinic's own web server (clinic.server.web_server) on settings changes."""

    def start(**changes):
        srv = serving(lambda channels: server.web_server(
            app, settings.get().replace(port=0, **changes), map=channels))
        return Client(f"http://127.0.0.1:{srv.effective_port}")

    return start


def failed_sign_in(client):
    client.post_json("/api/login", {"email": "nobody@example.com", "password": "wrong-password"},
                     headers={"X-Forwarded-For": "203.0.113.9"})
    return LoginAttempt.select().order_by(LoginAttempt.id.desc()).first().ip


def test_behind_the_trusted_proxy_the_client_address_is_the_forwarded_one(serve):
    assert failed_sign_in(serve(trusted_proxy="127.0.0.1")) == "203.0.113.9"


def test_without_a_trusted_proxy_a_forwarded_address_is_not_believed(serve):
    assert failed_sign_in(serve()) == "127.0.0.1"


def test_a_proxy_other_than_the_trusted_one_is_not_believed(serve):
    assert failed_sign_in(serve(trusted_proxy="192.0.2.1")) == "127.0.0.1"
