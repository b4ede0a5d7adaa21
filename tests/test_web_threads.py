"""waitress's request threads (clinic.server.Dispatcher): one serves the requests in turn, and more
join, up to CLINIC_WEB_THREADS, only while a request holds the line up; they go again once it
moves. Real servers on free ports, real HTTP; a held request waits on an event, not a clock."""

import http.client
import threading
import time

import pytest
from waitress.server import create_server

from clinic.server import Dispatcher, web_server


def _app(held):
    """A WSGI app: /hold waits until ``held`` is set; anything else answers at once."""

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/hold":
            held.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    return app


@pytest.fixture
def serve(serving):
    """``serve(dispatcher=None, settings=None)``: the test app on a free port, through a
    Dispatcher of our own or through clinic.server.web_server; returns (port, dispatcher).
    ``serve.held`` holds /hold until set (it is set when the test ends)."""
    held = threading.Event()

    def start(dispatcher=None, settings=None):
        if settings is not None:
            srv = web_server(_app(held), settings)
        else:
            srv = create_server(_app(held), host="127.0.0.1", port=0, _dispatcher=dispatcher)
        serving(srv)
        return srv.effective_port, srv.task_dispatcher

    start.held = held
    yield start
    held.set()


def _get(port, path, timeout=20):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _holding(port):
    """A request to /hold in a thread of its own; returns the thread and its answer list."""
    answers = []
    thread = threading.Thread(target=lambda: answers.append(_get(port, "/hold")), daemon=True)
    thread.start()
    return thread, answers


def _until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_one_thread_serves_many_clients_in_turn(serve):
    # A long stall keeps the watch from adding threads: what is checked is that queueing many
    # clients' requests (add_task) answers them all and starts no thread by itself.
    port, dispatcher = serve(Dispatcher(4, stall=30.0))
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
    assert dispatcher.running() == 1
    assert dispatcher.added >= 80


def _looks(dispatcher, n):
    """Until the watch has looked at the line ``n`` more times."""
    target = dispatcher.looks + n
    assert _until(lambda: dispatcher.looks >= target)


def test_a_held_request_lets_another_thread_join_and_it_goes_once_the_line_moves(serve):
    port, dispatcher = serve(Dispatcher(3, stall=0.02, calm=0.05))
    assert dispatcher.running() == 1
    holder, held_answer = _holding(port)
    assert _until(lambda: dispatcher.added == 1)
    # The one thread is held: this request waits in line until a second thread joins.
    assert _get(port, "/other") == (200, "/other")
    assert dispatcher.running() == 2
    # The line moves, but one request is still stuck: the second thread stays (calm is long
    # past), or the next request would wait again.
    _looks(dispatcher, 10)
    assert dispatcher.running() == 2
    assert held_answer == []  # still held
    serve.held.set()
    holder.join(timeout=20)
    assert held_answer == [(200, "/hold")]
    # Quiet again: back to one thread.
    assert _until(lambda: dispatcher.running() == 1)
    assert dispatcher.watch.is_alive()


def test_no_more_threads_than_the_setting_allows(serve):
    port, dispatcher = serve(Dispatcher(2, stall=0.02, calm=60.0))
    holders = [_holding(port) for _ in range(2)]
    assert _until(lambda: dispatcher.active_count == 2)  # both threads held
    waiting, answers = _holding(port)  # a third: nobody left to take it
    assert _until(lambda: dispatcher.added == 3)
    _looks(dispatcher, 5)  # five looks at a line that does not move
    assert (dispatcher.running(), len(dispatcher.threads)) == (2, 2)
    assert answers == []
    serve.held.set()
    for thread, _ in [*holders, (waiting, answers)]:
        thread.join(timeout=20)
    assert answers == [(200, "/hold")]


def test_a_thread_told_to_go_while_busy_stays_instead_of_a_new_one_starting(serve):
    port, dispatcher = serve(Dispatcher(2, stall=0.02, calm=60.0))
    holders = [_holding(port) for _ in range(2)]
    assert _until(lambda: dispatcher.active_count == 2)
    dispatcher.set_thread_count(1)  # one is to go when it is done: both are still held
    assert dispatcher.stop_count == 1
    waiting, answers = _holding(port)
    assert _until(lambda: dispatcher.added == 3)
    assert _until(lambda: dispatcher.stop_count == 0)  # the watch took the stop back
    _looks(dispatcher, 5)
    assert (len(dispatcher.threads), dispatcher.started) == (2, 2)  # no third thread started
    serve.held.set()
    for thread, _ in [*holders, (waiting, answers)]:
        thread.join(timeout=20)
    assert answers == [(200, "/hold")]


def test_the_clinic_web_server_starts_with_one_thread_and_grows_to_the_setting(
        serve, clinic_settings):
    port, dispatcher = serve(settings=clinic_settings.replace(port=0, web_threads=3))
    assert isinstance(dispatcher, Dispatcher)
    assert (dispatcher.most, dispatcher.running()) == (3, 1)
    holder, _ = _holding(port)
    assert _until(lambda: dispatcher.added == 1)
    assert _get(port, "/other") == (200, "/other")
    assert dispatcher.running() == 2
    serve.held.set()
    holder.join(timeout=20)


def test_shutting_down_stops_the_watch_and_every_thread(serve):
    dispatcher = Dispatcher(3, stall=0.02, calm=0.05)
    srv = create_server(_app(serve.held), host="127.0.0.1", port=0, _dispatcher=dispatcher)
    srv.close()
    dispatcher.shutdown()
    assert not dispatcher.watch.is_alive()
    assert dispatcher.threads == set()


def test_a_server_that_cannot_listen_leaves_no_threads_behind(serve, clinic_settings):
    port, _ = serve(Dispatcher(2))  # the port is taken
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(OSError):
        web_server(_app(serve.held), clinic_settings.replace(host="127.0.0.1", port=port))
    assert _until(lambda: not ({t.ident for t in threading.enumerate()} - before))
