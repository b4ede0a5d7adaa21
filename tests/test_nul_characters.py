"""NUL characters: SQLite stores them, PostgreSQL refuses any text that holds one (a 500 on one
engine only). They are turned away at the door, the same on every engine: forms drop them
(web.form), a JSON body or a query string holding one is a 400, an address holding one a 404."""

from clinic.models import User
from tests.conftest import login


def test_a_json_body_with_a_nul_is_a_400(client, alice):
    client.api_login(alice.email)
    response = client.post_json("/api/login", {"email": "alice@example.com\u0000",
                                               "password": "x"})
    assert response.status == 400 and "NUL" in response.json()["error"]
    nested = client.post_json("/api/appointments", {"doctor_id": 1, "reason": ["a\u0000"]})
    assert nested.status == 400 and "NUL" in nested.json()["error"]


def test_a_query_string_with_a_nul_is_a_400(client, alice):
    login(client, alice)
    assert client.get("/patient/doctors?specialization=%00").status == 400
    response = client.get("/api/doctors?specialization=a%00b")
    assert response.status == 400 and "NUL" in response.json()["error"]


def test_an_address_with_a_nul_is_not_found(client, alice):
    client.api_login(alice.email)
    for path in ("/api/appointments/1%00", "/patient/appointments/%00"):
        response = client.get(path)
        assert response.status == 404, (path, response)
    assert client.get("/api/tasks/%00").json() == {"error": "No such page."}


def test_a_form_field_with_a_nul_is_stored_without_it(client):
    response = client.post("/register", {"email": "nul@example.com", "password": "password123",
                                          "name": "Nu\u0000l", "date_of_birth": "1990-01-02",
                                          "phone": ""})
    assert response.status == 303, response
    assert User.get(User.email == "nul@example.com").name == "Nul"
