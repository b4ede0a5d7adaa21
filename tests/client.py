"""A small HTTP client for tests: real requests over a socket to the app served by waitress,
with a cookie jar, the page's CSRF token picked up from the last HTML seen, and JSON helpers."""

import http.client
import json as jsonlib
import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict, lower-case names; Set-Cookie kept as a list
        self.body = body
        self.text = body.decode("utf-8", "replace")

    def json(self):
        return jsonlib.loads(self.text)

    @property
    def location(self):
        return self.headers.get("location", "")

    def __repr__(self):
        return f"<Response {self.status} {self.text[:200]!r}>"


class Client:
    def __init__(self, base_url):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.cookies = {}
        self.csrf = None
        self.token = None  # bearer token for the API

    def request(self, method, path, body=None, headers=None, follow=False):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.token and path.startswith("/api/"):
            headers.setdefault("Authorization", f"Bearer {self.token}")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            raw = conn.getresponse()
            data = raw.read()
            result = {}
            for name, value in raw.getheaders():
                if name.lower() == "set-cookie":
                    result.setdefault("set-cookie", []).append(value)
                    self.keep_cookie(value)
                else:
                    result[name.lower()] = value
            response = Response(raw.status, result, data)
        finally:
            conn.close()
        if "text/html" in response.headers.get("content-type", ""):
            match = CSRF_RE.search(response.text)
            if match:
                self.csrf = match.group(1)
        if follow and response.status in (301, 302, 303, 307) and response.location:
            location = urlsplit(response.location)
            target = location.path + (f"?{location.query}" if location.query else "")
            return self.get(target, follow=True)
        return response

    def keep_cookie(self, header):
        cookie = SimpleCookie()
        cookie.load(header)
        for name, morsel in cookie.items():
            if morsel["max-age"] == "0" or "1970" in morsel["expires"] or morsel.value == "":
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value

    def get(self, path, follow=False, headers=None):
        return self.request("GET", path, headers=headers, follow=follow)

    def post(self, path, data=None, csrf=True, follow=False, headers=None):
        """POST a form; adds the CSRF token from the last page unless ``csrf`` is False."""
        data = dict(data or {})
        if csrf:
            if self.csrf is None:
                self.get("/login")  # any page gives this browser its CSRF token
            data.setdefault("csrf_token", self.csrf)
        body = urlencode(data, doseq=True).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return self.request("POST", path, body=body, headers=headers, follow=follow)

    def post_json(self, path, payload=None, headers=None):
        body = jsonlib.dumps(payload if payload is not None else {}).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
        return self.request("POST", path, body=body, headers=headers)

    def get_json(self, path):
        return self.get(path)

    def login(self, email, password="password123"):
        response = self.post("/login", {"email": email, "password": password})
        assert response.status == 303, response
        return response

    def api_login(self, email, password="password123"):
        response = self.post_json("/api/login", {"email": email, "password": password})
        assert response.status == 200, response
        self.token = response.json()["token"]
        return self.token
