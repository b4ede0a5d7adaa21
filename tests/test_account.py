"""Registration, sign-in, sign-out, throttling, CSRF and security headers, through HTTP."""

from clinic.models import LoginAttempt, Session, User
from tests.conftest import PASSWORD, login


def test_register_creates_patient_and_signs_in(client, app):
    client.get("/register")
    response = client.post("/register", {"name": "Zoë Zimmer", "email": "ZOE@example.com",
                                          "password": "long enough", "date_of_birth": "1990-01-02",
                                          "phone": "+49 30 7654321"})
    assert response.status == 303
    assert response.location.endswith("/patient/doctors")
    user = User.get(User.email == "zoe@example.com")
    assert user.name == "Zoë Zimmer" and user.role == "patient"
    assert user.password_hash.startswith("$argon2id$")


def test_register_keeps_input_and_explains_errors(client, alice):
    client.get("/register")
    response = client.post("/register", {"name": "Al <b>", "email": "alice@example.com",
                                          "password": "short", "date_of_birth": "tomorrow"})
    assert response.status == 400
    assert "An account with this email already exists." in response.text
    assert "Use at least 8 characters." in response.text
    assert "Enter the date as YYYY-MM-DD." in response.text
    assert 'value="Al &lt;b&gt;"' in response.text  # kept, and escaped
    assert User.select().count() == 1


def test_login_and_logout(client, alice):
    response = login(client, alice)
    assert response.location.endswith("/patient")
    assert Session.select().count() == 1
    cookies = response.headers["set-cookie"]
    cookie_header = [c for c in cookies if c.startswith("clinic_session=")][0]
    assert "HttpOnly" in cookie_header and "samesite=lax" in cookie_header.lower()
    token = client.cookies["clinic_session"]
    assert Session.get().token_hash != token  # only a hash is stored
    client.get("/", follow=True)
    assert client.post("/logout").status == 303
    assert Session.select().count() == 0


def test_wrong_password_is_refused(client, alice):
    client.get("/login")
    response = client.post("/login", {"email": alice.email, "password": "wrong password"})
    assert response.status == 400
    assert "That email and password do not match an account." in response.text
    assert "clinic_session" not in client.cookies


def test_failed_logins_are_throttled_per_account(client, alice):
    client.get("/login")
    for _ in range(5):
        assert client.post("/login", {"email": alice.email, "password": "nope nope"}).status == 400
    response = client.post("/login", {"email": alice.email, "password": PASSWORD})
    assert response.status == 429
    assert "Too many failed sign-ins" in response.text
    assert LoginAttempt.select().where(LoginAttempt.success).count() == 0


def test_failed_logins_are_throttled_per_address(client, alice):
    client.get("/login")
    for i in range(20):
        client.post("/login", {"email": f"nobody{i}@example.com", "password": "x" * 8})
    response = client.post("/login", {"email": alice.email, "password": PASSWORD})
    assert response.status == 429


def test_post_without_csrf_token_is_refused(client, alice):
    client.get("/login")
    response = client.post("/login", {"email": alice.email, "password": PASSWORD}, csrf=False)
    assert response.status == 403
    assert "Form expired" in response.text
    response = client.post("/login", {"email": alice.email, "password": PASSWORD,
                                      "csrf_token": "0" * 64}, csrf=False)
    assert response.status == 403


def test_csrf_token_is_bound_to_the_browser(new_client, alice):
    mallory, victim = new_client(), new_client()
    mallory.get("/login")
    victim.get("/login")
    response = victim.post("/login", {"email": alice.email, "password": PASSWORD,
                                      "csrf_token": mallory.csrf}, csrf=False)
    assert response.status == 403


def test_security_headers_on_every_response(client):
    for path in ("/", "/login", "/no-such-page", "/static/clinic.css"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"


def test_unknown_page_is_a_friendly_404(client):
    response = client.get("/nope")
    assert response.status == 404
    assert "There is nothing at this address." in response.text
    assert "Traceback" not in response.text


def test_next_only_follows_local_paths(client, alice):
    client.get("/login")
    response = client.post("/login", {"email": alice.email, "password": PASSWORD,
                                      "next": "//evil.example/"})
    assert response.location.endswith("/patient")
