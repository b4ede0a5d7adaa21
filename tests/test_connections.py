"""Each request's database connection: SQLite's stays open with its thread from one request to the
next, PostgreSQL's goes back to the pool, and no request leaves a transaction open for the next.

The server here has one thread, so consecutive requests are served by the same thread. A few test
routes are added to the real app; a TEMP table lives as long as the connection that made it, so
its row count tells how many requests one connection served.
"""

import threading

import pytest

from clinic import db
from tests.client import Client


@pytest.fixture
def one_thread(app, new_server):
    db.database.execute_sql("CREATE TABLE scratch (n INTEGER)")

    @app.bottle.get("/t/count")
    def count():
        db.database.execute_sql("CREATE TEMP TABLE IF NOT EXISTS seen (n INTEGER)")
        db.database.execute_sql("INSERT INTO seen VALUES (1)")
        return str(db.database.execute_sql("SELECT COUNT(n) FROM seen").fetchone()[0])

    @app.bottle.get("/t/leave-open")
    def leave_open():
        db.database.execute_sql("BEGIN")
        db.database.execute_sql("INSERT INTO scratch VALUES (1)")
        return "left open"

    @app.bottle.get("/t/fail")
    def fail():
        db.database.execute_sql("BEGIN")
        db.database.execute_sql("INSERT INTO scratch VALUES (2)")
        raise RuntimeError("failed half-way")

    @app.bottle.get("/t/in-transaction")
    def in_transaction():
        conn = db.database.connection()
        open_ = db.database.in_transaction() or (
            conn.in_transaction if hasattr(conn, "in_transaction") else
            conn.info.transaction_status != 0)  # psycopg: 0 is IDLE
        return "yes" if open_ else "no"

    return Client(new_server(app, threads=1))


def scratch_rows():
    with db.connection():
        return db.database.execute_sql("SELECT COUNT(n) FROM scratch").fetchone()[0]


@pytest.mark.sqlite_only("PostgreSQL's connections go back to the pool (the next test)")
def test_sqlite_connection_stays_open_from_one_request_to_the_next(one_thread):
    assert one_thread.get("/t/count").text == "1"
    assert one_thread.get("/t/count").text == "2"


def test_postgres_connection_goes_back_to_the_pool_after_each_request(one_thread):
    if not db.is_postgres():
        pytest.skip("SQLite keeps the thread's connection (the test above)")
    assert one_thread.get("/t/count").text == "1"
    # Closing the pool's idle connections reaches the request's only if it was given back.
    db.database.obj.close_idle()
    assert one_thread.get("/t/count").text == "1"


def test_a_transaction_left_open_is_rolled_back_after_the_request(one_thread):
    assert one_thread.get("/t/leave-open").status == 200
    assert one_thread.get("/t/in-transaction").text == "no"
    assert scratch_rows() == 0
    # Nothing holds the write lock either: another connection writes at once.
    with db.connection():
        db.database.execute_sql("INSERT INTO scratch VALUES (3)")
    assert scratch_rows() == 1


def test_a_failing_request_leaves_no_transaction_for_the_next(one_thread):
    assert one_thread.get("/t/fail").status == 500
    assert one_thread.get("/t/in-transaction").text == "no"
    assert scratch_rows() == 0
    assert one_thread.get("/t/count").status == 200


def test_a_caller_s_own_connection_and_transaction_are_left_alone(app):
    """Huey's immediate mode runs a task inline, in the caller's thread and transaction."""
    results = {}

    def caller():
        with db.database.atomic():
            results["mine"] = db.acquire()
            results["still_open"] = db.database.in_transaction()

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join()
    assert results == {"mine": False, "still_open": True}
