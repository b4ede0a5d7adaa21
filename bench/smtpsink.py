"""The SMTP server both sides send to: aiosmtpd on 127.0.0.1, in a process of its own (so its
work does not share the measured process's interpreter), accepting everything.

    python -m bench.smtpsink [--port 0] [--delay 0]

It prints ``port N`` once it listens, then one line per message it accepted:
``<unix time> <recipient> <Message-ID>``; the time is when it answered 250, the moment the
message counts as delivered. A line ``delay SECONDS`` on its standard input makes it answer
every later DATA that much later (a slow server); ``quit`` stops it. It offers PIPELINING, as
mail servers do.
"""

import argparse
import asyncio
import re
import sys
import threading
import time

from aiosmtpd.controller import UnthreadedController

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.I | re.M)


class Handler:
    def __init__(self, delay):
        self.delay = delay

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # Offered as Postfix, Exim and the big mail services offer it (RFC 2920); aiosmtpd reads
        # pipelined commands correctly but does not say so itself.
        session.host_name = hostname
        responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        match = MESSAGE_ID.search(envelope.original_content or envelope.content or b"")
        ident = match.group(1).decode("ascii", "replace") if match else "-"
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else "-"
        sys.stdout.write(f"{time.time():.6f} {rcpt} {ident}\n")
        sys.stdout.flush()
        return "250 Message accepted for delivery"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.smtpsink")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--delay", type=float, default=0.0)
    args = p.parse_args(argv)
    handler = Handler(args.delay)
    # The unthreaded controller binds in begin() and leaves the event loop to us, so the port
    # the system chose for port 0 is known before anyone connects.
    loop = asyncio.new_event_loop()
    controller = UnthreadedController(handler, hostname="127.0.0.1", port=args.port, loop=loop)
    controller.begin()
    print(f"port {controller.server.sockets[0].getsockname()[1]}", flush=True)

    def commands():
        for line in sys.stdin:
            word, _, value = line.strip().partition(" ")
            if word == "delay":
                handler.delay = float(value)
            elif word == "quit":
                break
        loop.call_soon_threadsafe(controller.cancel_tasks)

    threading.Thread(target=commands, daemon=True).start()
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    controller.end()
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
