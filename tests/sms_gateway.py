"""A Twilio-style SMS gateway for tests: http.server on 127.0.0.1, on a free port, in a thread of
the test process. It answers POST /2010-04-01/Accounts/<sid>/Messages.json as Twilio does
(201 and the message's JSON, keep-alive HTTP/1.1), keeps every request it got (``requests``)
and counts connections. ``answer(mode)`` switches how it answers:

    "accept"   201 with a sid, num_segments and price (the default)
    "429"      429 Too Many Requests (Twilio's code 20429)
    "500"      500 Internal Server Error
    "400"      400 with Twilio's 21211 "invalid 'To' phone number"
    "hang"     read the request and never answer, so the client's timeout must fire

``refuse(number)`` answers 400 (21211) for that number whatever the mode. ``sign(path, form)``
makes the X-Twilio-Signature the gateway would send with a webhook to the clinic.
"""

import base64
import hashlib
import hmac
import itertools
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "test-auth-token"
FROM = "+15550001111"
MODES = ("accept", "429", "500", "400", "hang")


@dataclass
class Request:
    path: str
    authorization: str
    form: dict
    connection: int  # which connection carried it (1, 2, ...)


class Gateway:
    def __init__(self):
        self.requests = []
        self.connections = 0
        self.mode = "accept"
        self.refused = set()
        self.lock = threading.Lock()
        self.released = threading.Event()  # ends every hanging answer
        self.sids = itertools.count(1)
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Twilio's API
            # Headers and body are two writes: with Nagle's algorithm the body would wait for
            # the client's delayed ACK (40 ms).
            disable_nagle_algorithm = True

            def setup(self):
                super().setup()
                with gateway.lock:
                    gateway.connections += 1
                    self.number = gateway.connections

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                with gateway.lock:
                    gateway.requests.append(Request(self.path, self.headers.get(
                        "Authorization", ""), form, self.number))
                    mode = gateway.mode
                if form.get("To") in gateway.refused:
                    mode = "400"
                if mode == "hang":
                    gateway.released.wait(30)
                    self.close_connection = True
                    return
                status, body = gateway.answer_for(mode, self.path, form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host, self.port = self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"twilio+http://{SID}:{TOKEN}@{self.host}:{self.port}?from={FROM}"

    def start(self):
        self.thread.start()

    def stop(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, mode):
        assert mode in MODES, mode
        self.mode = mode

    def refuse(self, number):
        self.refused.add(number)

    def answer_for(self, mode, path, form):
        if path != f"/2010-04-01/Accounts/{SID}/Messages.json":
            return 404, {"code": 20404, "message": "The requested resource was not found"}
        if mode == "429":
            return 429, {"code": 20429, "message": "Too Many Requests", "status": 429}
        if mode == "500":
            return 500, {"code": 20500, "message": "Internal Server Error", "status": 500}
        if mode == "400":
            return 400, {"code": 21211, "status": 400,
                         "message": f"The 'To' number {form.get('To')} is not a valid phone "
                                    "number."}
        body = form.get("Body", "")
        return 201, {"sid": f"SM{next(self.sids):032x}", "status": "queued",
                     "to": form.get("To"), "from": form.get("From"), "body": body,
                     "num_segments": str(max(1, -(-len(body) // 153))), "price": "-0.00750",
                     "price_unit": "USD"}

    @property
    def sent(self):
        """The forms of the SMS it accepted (every request while accepting)."""
        return [r.form for r in self.requests]


def credentials():
    return "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()


def sign(url, form, token=TOKEN):
    """X-Twilio-Signature of a webhook POST to ``url`` with ``form``, as Twilio computes it."""
    data = url + "".join(key + value for key, value in sorted(form.items()))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
                            ).decode()
