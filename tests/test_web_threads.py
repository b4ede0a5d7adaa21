"""The clinic's web server (clinic.server.web_server) answers CLINIC_WEB_THREADS requests at once,
with waitress's own thread pool; the rest wait in line and are answered in turn. Real servers on
free ports, real HTTP."""

import http.client
import threading

import pytest

from clinic.server import web_server


def _app(meet):
    """A WSGI app: /meet waits at the barrier ``meet`` (all its parties in the app at once) and
    answers "met", or "apart" when they never all got there; anything else answers at once."""

    def app(environ, start_response):
        body = environ["PATH_INFO"]
        if body == "/meet":
            try:
                meet.wait()
                body = "met"
            except threading.BrokenBarrierError:
                body = "apart"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]

    return app


@pytest.fixture
def serve(serving, clinic_settings):
    """``serve(threads, meet)``: the test app through web_server with CLINIC_WEB_THREADS
    ``threads``, on a free port; returns the port."""

    def start(threads, meet=None):
        s = clinic_settings.replace(host="127.0.0.1", port=0, web_threads=threads)
        return serving(lambda channels: web_server(_app(meet), s, map=channels)).effective_port

    return start


def _get(port, path, timeout=20):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _at_once(port, n, path):
    """``n`` clients requesting ``path`` side by side; returns their answers."""
    answers = []
    clients = [threading.Thread(target=lambda: answers.append(_get(port, path)))
               for _ in range(n)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=30)
    return answers


def test_as_many_requests_as_the_setting_are_answered_at_once(serve):
    meet = threading.Barrier(3, timeout=20)
    port = serve(3, meet)
    assert _at_once(port, 3, "/meet") == [(200, "met")] * 3


def test_a_request_beyond_the_setting_waits_for_a_free_thread(serve):
    # Three requests, two threads: the third reaches the app only once the two have given up.
    meet = threading.Barrier(3, timeout=0.5)
    port = serve(2, meet)
    assert _at_once(port, 3, "/meet") == [(200, "apart")] * 3


def test_one_thread_serves_many_clients_in_turn(serve):
    port = serve(1)
    answers = []

    def client(n):
        for i in range(10):
            answers.append(_get(port, f"/page/{n}/{i}"))

    clients = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=30)
    assert sorted(answers) == sorted((200, f"/page/{n}/{i}") for n in range(8) for i in range(10))
