"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, on a free port, in a thread of the test
process. It keeps what it receives and counts connections (EHLOs). ``refuse(address, code)``
refuses one recipient (451 or 550 at RCPT), or its message's end (554 at the final dot), or
closes the connection at the message's end without answering ("close"); ``hang_up(True)``
closes each connection right after a message's 250, as a server does at its limit of messages
a connection; ``offer_smtputf8(False)`` stops offering SMTPUTF8; ``on_message(fn)`` runs
``fn(received)`` in the server's thread before each 250. It can be switched to:

    "accept"   250 for everything (the default)
    "451"      refuse every recipient for now (451 4.7.1), as a greylisting server does
    "550"      refuse every recipient for good (550 5.1.1)
    "hang"     take the message but never answer DATA, so the client's timeout must fire
    "slow"     answer DATA only after ``delay`` seconds; a client that goes away meanwhile has
               not handed the message over (it is kept in ``abandoned``, not ``messages``)
"""

import asyncio
import email
import email.policy
import functools
import threading
from dataclasses import dataclass

from aiosmtpd.controller import UnthreadedController

MODES = ("accept", "451", "550", "hang", "slow")


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list
    raw: bytes

    @functools.cached_property
    def message(self):
        """The message parsed, on first use: parsing costs more than receiving, and the server
        shares the test's process (tests that take thousands of messages read few of them)."""
        return email.message_from_bytes(self.raw, policy=email.policy.default)


class Recorder:
    """The aiosmtpd handler. Its hooks run in the server's thread."""

    def __init__(self):
        self.mode = "accept"
        self.messages = []  # Received, for each message answered 250
        self.unanswered = []  # Received, for each message taken in "hang" mode
        self.delay = 1.0  # seconds before a "slow" answer
        self.waiting = []  # Received, for each message waiting for its "slow" answer
        self.abandoned = []  # Received, for each one whose client left before the answer
        self.connections = 0
        self.hang_up = False  # close each connection after a message's 250
        self.smtputf8 = True  # offered (aiosmtpd's default): addresses need not be ASCII
        self.refused = {}  # recipient -> "451", "550", "554" or "close"
        self.on_message = None  # called with each Received before its 250
        self.arrived = threading.Condition()  # notified as each message is accepted

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # smtplib greets once per connection (twice only after STARTTLS, not used here).
        self.connections += 1
        session.host_name = hostname
        if not self.smtputf8:
            responses = [line for line in responses if "SMTPUTF8" not in line.upper()]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refused.get(address) == "451":
            return "451 4.7.1 Greylisted, try again later"
        if self.refused.get(address) == "550":
            return "550 5.1.1 No such user here"
        if self.mode == "451":
            return "451 4.7.1 Greylisted, try again later"
        if self.mode == "550":
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        received = Received(envelope.mail_from, list(envelope.rcpt_tos), raw)
        refusal = self.refused.get(received.rcpt_tos[0])
        if refusal == "554":
            return "554 5.6.0 Message refused"
        if refusal == "close":
            server.transport.close()
            self.abandoned.append(received)
            return "421 closing"  # written to a closed connection: the client never reads it
        if self.mode == "hang":
            self.unanswered.append(received)
            await asyncio.sleep(3600)  # cancelled when the server stops
        if self.mode == "slow":
            self.waiting.append(received)
            try:
                await asyncio.sleep(self.delay)  # cancelled if the client's connection is lost
            except asyncio.CancelledError:
                self.abandoned.append(received)
                raise
            finally:
                self.waiting.remove(received)
        if self.on_message is not None:
            self.on_message(received)
        with self.arrived:
            self.messages.append(received)
            self.arrived.notify_all()
        if self.hang_up:  # once the 250 below is written
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 Message accepted for delivery"


class SMTPServer:
    """aiosmtpd's unthreaded controller, its event loop run in a thread of ours: it binds port 0
    and says which port the system chose."""

    def __init__(self):
        self.handler = Recorder()
        self.controller = UnthreadedController(self.handler, hostname="127.0.0.1", port=0,
                                               loop=asyncio.new_event_loop())
        self.host = "127.0.0.1"
        self.port = None
        self.thread = None

    def start(self):
        listening = threading.Event()
        self.thread = threading.Thread(target=self.serve, args=(listening,), daemon=True)
        self.thread.start()
        assert listening.wait(10), "the SMTP server did not start listening"
        self.port = self.controller.server.sockets[0].getsockname()[1]

    def serve(self, listening):
        loop = self.controller.loop
        self.controller.begin()
        loop.call_soon(listening.set)
        loop.run_forever()
        # Stopped (stop() cancelled every task, "hang" mode's among them): close the listener.
        loop.run_until_complete(self.controller.finalize())
        loop.close()

    def stop(self):
        self.controller.loop.call_soon_threadsafe(self.controller.cancel_tasks)
        self.thread.join(10)

    @property
    def messages(self):
        return self.handler.messages

    @property
    def unanswered(self):
        return self.handler.unanswered

    @property
    def connections(self):
        return self.handler.connections

    def refuse(self, address, how):
        """Refuse ``address`` from now on: "451", "550" (at RCPT), "554" (at the message's end)
        or "close" (the connection, at the message's end, unanswered)."""
        assert how in ("451", "550", "554", "close"), how
        self.handler.refused[address] = how

    def on_message(self, fn):
        """Run ``fn(received)`` in the server's thread as each message is accepted, before its
        250 goes back (None: no more)."""
        self.handler.on_message = fn

    def offer_smtputf8(self, offered):
        """Whether EHLO offers SMTPUTF8 to the connections made from now on."""
        self.handler.smtputf8 = offered

    def hang_up(self, after_each):
        """Whether to close each connection right after a message's 250, from now on."""
        self.handler.hang_up = after_each

    def answer(self, mode, delay=None):
        """Switch how the server answers from the next command on."""
        assert mode in MODES, mode
        self.handler.mode = mode
        if delay is not None:
            self.handler.delay = delay

    def wait_for(self, count, timeout=10):
        """Block until ``count`` messages have arrived (for work done by other threads, such as
        the real consumer); returns the messages. Fails the test after ``timeout`` seconds."""
        with self.handler.arrived:
            arrived = self.handler.arrived.wait_for(lambda: len(self.messages) >= count, timeout)
        assert arrived, f"expected {count} message(s), got {len(self.messages)}"
        return list(self.messages)

    def message_ids(self):
        return [received.message["Message-ID"] for received in self.messages]
