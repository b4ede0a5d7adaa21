"""Web processes behind a reverse proxy: with CLINIC_TRUSTED_PROXY the client's address comes from
the proxy's X-Forwarded-For (sign-in throttling counts clients, not the proxy); without it, or
from anyone else, the header is not believed."""

import threading

import pytest

from clinic import server, settings
from clinic.models import LoginAttempt
from tests.client import Client


@pytest.fixture
def serve(app):
    """Start the clinic's own web server (clinic.server.web_server) on settings changes."""
    running = []

    def start(**changes):
        srv = server.web_server(app, settings.get().replace(port=0, **changes))
        stop = threading.Event()

        def loop():
            while not stop.is_set():
                srv.asyncore.loop(timeout=0.05, map=srv._map, use_poll=True, count=1)
            srv.task_dispatcher.shutdown()
            srv.close()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        running.append((stop, thread))
        return Client(f"http://127.0.0.1:{srv.effective_port}")

    yield start
    for stop, thread in running:
        stop.set()
        thread.join(timeout=5)


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
