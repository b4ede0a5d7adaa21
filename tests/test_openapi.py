"""/api/openapi.json stays true: every /api/ route of the app is described and every description
has a route, the document is well-formed OpenAPI 3.0, and real responses of every operation
match the schema documented for their status."""

import json
import re
from datetime import date, datetime, timedelta

import pyotp
import pytest

from clinic import appointments, settings
from clinic.models import Message
from tests.conftest import PASSWORD, TZ, slot

ROUTE_PARAM = re.compile(r"<(\w+)[^>]*>")
TEMPLATE_PARAM = re.compile(r"{(\w+)}")


@pytest.fixture
def spec(client):
    response = client.get("/api/openapi.json")  # public: no token
    assert response.status == 200, response
    return response.json()


def resolve(document, pointer):
    assert pointer.startswith("#/"), pointer
    node = document
    for part in pointer[2:].split("/"):
        node = node[part]
    return node


def conforms(value, schema, document, where="$"):
    """What is wrong with ``value`` against an OpenAPI 3.0 schema (the parts this API uses).
    Objects with declared properties may not carry undeclared ones: every field the API sends
    must be documented."""
    if "$ref" in schema:
        return conforms(value, resolve(document, schema["$ref"]), document, where)
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null is not allowed"]
    problems = []
    for part in schema.get("allOf", []):
        problems += conforms(value, part, document, where)
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int,
             "number": (int, float)}
    if kind and (not isinstance(value, types[kind])
                 or (kind in ("integer", "number") and isinstance(value, bool))):
        return problems + [f"{where}: expected {kind}, got {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} not in {schema['enum']}")
    if kind == "integer" and not schema.get("minimum", value) <= value <= schema.get("maximum",
                                                                                       value):
        problems.append(f"{where}: {value} out of range")
    if kind == "string":
        try:
            if schema.get("format") == "date-time":
                assert datetime.fromisoformat(value).utcoffset() is not None
            elif schema.get("format") == "date":
                date.fromisoformat(value)
        except (ValueError, AssertionError):
            problems.append(f"{where}: {value!r} is not a {schema['format']} with offset")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if kind == "array":
        for i, item in enumerate(value):
            problems += conforms(item, schema.get("items", {}), document, f"{where}[{i}]")
    if kind == "object":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        problems += [f"{where}: missing {name}" for name in schema.get("required", [])
                     if name not in value]
        for name, item in value.items():
            if properties and name in properties:
                problems += conforms(item, properties[name], document, f"{where}.{name}")
            elif isinstance(extra, dict):
                problems += conforms(item, extra, document, f"{where}.{name}")
            elif properties is not None or extra is False:
                problems.append(f"{where}: undocumented field {name}")
    return problems


def operations(document):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


# -- the document matches the app's routes --------------------------------------------------------


def test_every_api_route_is_documented_and_every_documented_path_exists(app, spec):
    routes = {(route.method.lower(), ROUTE_PARAM.sub(r"{\1}", route.rule))
              for route in app.bottle.routes if route.rule.startswith("/api/")}
    documented = {(method, path) for path, method, _ in operations(spec)}
    assert routes - documented == set(), "routes missing from /api/openapi.json"
    assert documented - routes == set(), "documented paths with no route"
    assert len(routes) >= 16


def test_signed_in_routes_require_the_bearer_scheme_and_public_ones_do_not(app, spec):
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http",
                                                                   "scheme": "bearer"}
    for route in app.bottle.routes:
        if not route.rule.startswith("/api/"):
            continue
        operation = spec["paths"][ROUTE_PARAM.sub(r"{\1}", route.rule)][route.method.lower()]
        if route.callback.api_roles:
            assert operation["security"] == [{"bearerAuth": []}], route.rule
            assert {"401", "403"} <= set(operation["responses"]), route.rule
        else:
            assert operation["security"] == [], route.rule


def test_document_is_well_formed_openapi_3(spec):
    assert spec["openapi"].startswith("3.0.")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["servers"][0]["url"].startswith("http://")

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for pointer in refs(spec):
        resolve(spec, pointer)  # raises KeyError when it points nowhere

    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for path, method, operation in operations(spec):
        where = f"{method.upper()} {path}"
        assert operation["summary"], where
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(TEMPLATE_PARAM.findall(path)), where
        for param in operation.get("parameters", []):
            assert param["in"] in ("path", "query") and "schema" in param, where
            if param["in"] == "path":
                assert param["required"] is True, where
        if method == "post" and "requestBody" in operation:
            assert "application/json" in operation["requestBody"]["content"], where
        statuses = set(operation["responses"])
        assert any(s.startswith("2") for s in statuses), where
        for status, response in operation["responses"].items():
            assert response["description"], where
            if status.startswith("4"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, where
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and "fields" in error["properties"]


def test_the_schema_check_finds_mistakes(spec):
    error = {"$ref": "#/components/schemas/Error"}
    assert conforms({"error": "x", "fields": {"a": "b"}}, error, spec) == []
    assert conforms({"error": 1}, error, spec)
    assert conforms({}, error, spec)
    assert conforms({"error": "x", "trace": "..."}, error, spec)
    slots = {"$ref": "#/components/schemas/Slots"}
    assert conforms({"date": "2030-01-01", "slot_minutes": 30,
                     "slots": ["2030-01-01T09:00:00"]}, slots, spec)


# -- real responses match what is documented ------------------------------------------------------


class Recorder:
    """Calls the API and checks each response against the documented operation."""

    def __init__(self, spec):
        self.spec = spec
        self.seen = set()

    def __call__(self, client, method, template, status, body=None, query="", **params):
        path = template.format(**params) + query
        if method == "get":
            response = client.get(path)
        elif method == "delete":
            response = client.request("DELETE", path)
        elif method == "patch":
            response = client.request("PATCH", path, body=json.dumps(body).encode(),
                                      headers={"Content-Type": "application/json"})
        else:
            response = client.post_json(path, body)
        assert response.status == status, (method, path, response)
        operation = self.spec["paths"][template][method]
        documented = operation["responses"].get(str(response.status))
        assert documented is not None, f"{method} {template} answered undocumented {status}"
        schema = documented.get("content", {}).get("application/json", {}).get("schema")
        assert schema is not None, f"{method} {template} {status} has no documented body"
        problems = conforms(response.json(), schema, self.spec)
        assert problems == [], (method, template, status, problems)
        if status == 429:
            assert "retry-after" in response.headers
        self.seen.add((method, template, status))
        return response.json()


def test_every_operation_answers_as_documented(spec, new_client, everyone):
    check = Recorder(spec)
    alice, bob, carol, dave, erin = (everyone[n] for n in ("alice", "bob", "carol", "dave",
                                                           "erin"))
    anon = new_client()

    def signed_in(user):
        client = new_client()
        client.api_login(user.email)
        return client

    # Public: sign-up, sign-in, the catalogue, this document.
    check(anon, "post", "/api/register", 201, {"email": "zoe@example.com",
                                                "password": "long enough", "name": "Zoë"})
    check(anon, "post", "/api/register", 400, {"email": "zoe@example.com"})
    check(anon, "post", "/api/login", 200, {"email": "zoe@example.com",
                                            "password": "long enough"})
    check(anon, "post", "/api/login", 401, {"email": "zoe@example.com", "password": "nope"})
    for _ in range(4):
        anon.post_json("/api/login", {"email": "zoe@example.com", "password": "nope"})
    check(anon, "post", "/api/login", 429, {"email": "zoe@example.com", "password": "nope"})
    check(anon, "get", "/api/doctors", 200, query="?specialization=Cardiology")
    day = slot(1).astimezone(TZ).date().isoformat()
    check(anon, "get", "/api/doctors/{doctor_id}/slots", 200, query=f"?date={day}",
          doctor_id=carol.id)
    check(anon, "get", "/api/doctors/{doctor_id}/slots", 400, query="?date=soon",
          doctor_id=carol.id)
    check(anon, "get", "/api/doctors/{doctor_id}/slots", 404, query=f"?date={day}",
          doctor_id=alice.id)
    check(anon, "get", "/api/openapi.json", 200)
    check(anon, "get", "/api/appointments", 401)

    # Booking and changing appointments.
    a, b, c, d, e = (signed_in(u) for u in (alice, bob, carol, dave, erin))
    start = slot(1, "10:00").astimezone(TZ).isoformat()
    booked = check(a, "post", "/api/appointments", 201, {"doctor_id": carol.id, "start": start})
    check(b, "post", "/api/appointments", 409, {"doctor_id": carol.id, "start": start})
    check(b, "post", "/api/appointments", 400, {"doctor_id": carol.id, "start": "soon"})
    check(c, "post", "/api/appointments", 403, {"doctor_id": carol.id, "start": start})
    check(e, "post", "/api/appointments", 404, {"doctor_id": carol.id, "start": start,
                                                "patient_id": dave.id})
    check(a, "get", "/api/appointments", 200, query="?status=booked&limit=10")
    check(a, "get", "/api/appointments", 400, query="?limit=0")
    check(a, "get", "/api/appointments/{appointment_id}", 200, appointment_id=booked["id"])
    check(b, "get", "/api/appointments/{appointment_id}", 404, appointment_id=booked["id"])
    later = slot(1, "11:00").astimezone(TZ).isoformat()
    check(a, "post", "/api/appointments/{appointment_id}/reschedule", 200, {"start": later},
          appointment_id=booked["id"])
    check(a, "post", "/api/appointments/{appointment_id}/reschedule", 400, {"start": 1},
          appointment_id=booked["id"])
    check(a, "post", "/api/appointments/{appointment_id}/cancel", 200,
          appointment_id=booked["id"])
    check(a, "post", "/api/appointments/{appointment_id}/cancel", 409,
          appointment_id=booked["id"])
    check(a, "post", "/api/appointments/{appointment_id}/reschedule", 409, {"start": later},
          appointment_id=booked["id"])
    check(d, "post", "/api/appointments/{appointment_id}/cancel", 404,
          appointment_id=booked["id"])

    # Visits that happened: completing, no-shows, the record.
    yesterday = slot(-1, "10:00")
    seen = appointments.book(alice.id, carol.id, yesterday, now=yesterday - timedelta(hours=1))
    missed = appointments.book(bob.id, carol.id, yesterday + timedelta(hours=1),
                               now=yesterday - timedelta(hours=1))
    upcoming = check(a, "post", "/api/appointments", 201, {"doctor_id": carol.id,
                                                           "start": start})
    treatment = {"visit_type": "Check-up", "diagnosis": "Healthy"}
    check(c, "post", "/api/appointments/{appointment_id}/complete", 400, {"visit_type": ""},
          appointment_id=seen.id)
    check(c, "post", "/api/appointments/{appointment_id}/complete", 200, treatment,
          appointment_id=seen.id)
    check(c, "post", "/api/appointments/{appointment_id}/complete", 409, treatment,
          appointment_id=upcoming["id"])
    check(a, "post", "/api/appointments/{appointment_id}/complete", 403, treatment,
          appointment_id=seen.id)
    check(d, "post", "/api/appointments/{appointment_id}/complete", 404, treatment,
          appointment_id=seen.id)
    check(c, "post", "/api/appointments/{appointment_id}/amend", 200,
          {"diagnosis": "Healthy, mild anaemia", "reason": "Blood test came back"},
          appointment_id=seen.id)
    check(c, "post", "/api/appointments/{appointment_id}/amend", 400,
          {"diagnosis": "Healthy, mild anaemia"}, appointment_id=seen.id)  # nothing changes
    check(c, "post", "/api/appointments/{appointment_id}/amend", 409, treatment,
          appointment_id=upcoming["id"])
    check(a, "post", "/api/appointments/{appointment_id}/amend", 403, treatment,
          appointment_id=seen.id)
    check(d, "post", "/api/appointments/{appointment_id}/amend", 404, treatment,
          appointment_id=seen.id)
    check(a, "get", "/api/appointments/{appointment_id}", 200, appointment_id=seen.id)
    check(c, "post", "/api/appointments/{appointment_id}/no-show", 200,
          appointment_id=missed.id)
    check(c, "post", "/api/appointments/{appointment_id}/no-show", 409,
          appointment_id=upcoming["id"])
    check(d, "post", "/api/appointments/{appointment_id}/no-show", 404,
          appointment_id=missed.id)
    check(a, "post", "/api/appointments/{appointment_id}/no-show", 403,
          appointment_id=missed.id)
    check(c, "post", "/api/appointments/{appointment_id}/undo-no-show", 409,  # not its day
          appointment_id=missed.id)
    check(d, "post", "/api/appointments/{appointment_id}/undo-no-show", 404,
          appointment_id=missed.id)
    check(a, "post", "/api/appointments/{appointment_id}/undo-no-show", 403,
          appointment_id=missed.id)
    for who in (a, c, e):
        history = check(who, "get", "/api/patients/{patient_id}/history", 200,
                        patient_id=alice.id)
        assert len(history["visits"]) == 1
    check(d, "get", "/api/patients/{patient_id}/history", 404, patient_id=alice.id)

    # Admin.
    doctor = {"name": "Dr Frank Fox", "email": "frank@example.com", "password": PASSWORD,
              "specialization": "Neurology", "slot_minutes": 20,
              "working_hours": {"mon": [["09:00", "13:00"]]}}
    check(e, "post", "/api/admin/doctors", 201, doctor)
    check(e, "post", "/api/admin/doctors", 400, {**doctor, "email": "other@example.com",
                                                 "working_hours": {"mon": [["13:00", "09:00"]]}})
    check(a, "post", "/api/admin/doctors", 403, doctor)
    check(e, "get", "/api/admin/dashboard-stats", 200)
    check(e, "get", "/api/admin/dashboard-stats", 200)
    check(c, "get", "/api/admin/dashboard-stats", 403)

    # The history export.
    check(a, "post", "/api/patient/export-history", 202)
    check(c, "post", "/api/patient/export-history", 403)

    # Reports on demand and task status.
    started = check(e, "post", "/api/admin/reports/monthly", 202, {"month_year": "2020-01"})
    check(e, "post", "/api/admin/reports/monthly", 400, {"month_year": "2020-13"})
    check(e, "post", "/api/admin/reports/monthly", 404, {"month_year": "2020-01",
                                                         "doctor_id": alice.id})
    check(c, "post", "/api/admin/reports/monthly", 403, {"month_year": "2020-01"})
    check(e, "get", "/api/tasks/{task_id}", 200, task_id=started["task_id"])
    check(a, "get", "/api/tasks/{task_id}", 404, task_id=started["task_id"])

    # Announcements and the reports summary.
    check(e, "post", "/api/admin/announcements", 202, {"subject": "Closed on Friday",
                                                       "text": "We are closed on Friday.",
                                                       "audience": {"type": "all"}})
    check(e, "post", "/api/admin/announcements", 400, {"subject": "Closed",
                                                       "text": "We are closed.",
                                                       "audience": {"type": "doctor"}})
    check(a, "post", "/api/admin/announcements", 403, {"subject": "x", "text": "y",
                                                       "audience": {"type": "all"}})
    summary = check(e, "get", "/api/admin/reports/summary", 200, query="?month_year=2020-01")
    assert {row["state"] for row in summary["doctors"]} == {"missing"}
    check(e, "get", "/api/admin/reports/summary", 400, query="?month_year=2020-13")
    check(c, "get", "/api/admin/reports/summary", 403, query="?month_year=2020-01")

    check(e, "get", "/api/admin/clinic", 200)
    check(a, "get", "/api/admin/clinic", 403)
    check(e, "patch", "/api/admin/clinic", 200, {"phone": "+49 30 1234567"})
    check(e, "patch", "/api/admin/clinic", 400, {"phone": "call me maybe"})
    check(e, "patch", "/api/admin/clinic", 409, {"timezone": "Asia/Tokyo"})  # set by the tests
    check(anon, "patch", "/api/admin/clinic", 401, {"name": "x"})
    exercise_waitlist(check, a, b, c, e, alice, bob, carol)
    exercise_accounts(check, anon, a, c, e, bob, carol, dave)
    exercise_calendar(check, anon, a, c, e, alice, carol, dave)
    exercise_desk(check, new_client, a, e, alice, carol)

    check(a, "post", "/api/logout", 200)
    check(a, "post", "/api/logout", 401)

    exercised = {(method, template) for method, template, _ in check.seen}
    assert exercised == {(method, path) for path, method, _ in operations(spec)}


def exercise_calendar(check, anon, a, c, e, alice, carol, dave):
    """The calendar's routes (clinic/web/api_calendar.py): time off, visit types, deactivating
    a doctor."""
    def at(days, hhmm):
        return slot(days, hhmm).astimezone(TZ).strftime("%Y-%m-%dT%H:%M")

    visit = appointments.book(alice.id, carol.id, slot(4, "10:00"))
    entered = check(e, "post", "/api/admin/time-off", 201, {
        "doctor_id": carol.id, "start": at(4, "09:00"), "end": at(4, "12:00"),
        "reason": "Conference", "cancel_affected": True})
    assert entered["affected"] == [visit.id]
    check(e, "post", "/api/admin/time-off", 400, {"doctor_id": carol.id, "start": at(4, "12:00"),
                                                  "end": at(4, "11:00")})
    check(e, "post", "/api/admin/time-off", 409, {"doctor_id": carol.id, "start": at(4, "10:00"),
                                                  "end": at(4, "11:00")})
    check(a, "post", "/api/admin/time-off", 403, {"start": at(4, "10:00"),
                                                  "end": at(4, "11:00")})
    check(e, "get", "/api/admin/time-off", 200)
    check(c, "get", "/api/admin/time-off", 403)
    asked = check(c, "post", "/api/doctor/time-off", 201, {"start": at(5, "09:00"),
                                                           "end": at(5, "10:00"),
                                                           "reason": "Dentist"})
    check(c, "post", "/api/doctor/time-off", 400, {"start": "soon", "end": at(5, "10:00")})
    check(c, "post", "/api/doctor/time-off", 409, {"start": at(4, "09:00"),
                                                   "end": at(4, "10:00")})
    check(a, "post", "/api/doctor/time-off", 403, {"start": at(5, "09:00"),
                                                   "end": at(5, "10:00")})
    check(e, "post", "/api/admin/time-off/{time_off_id}/approve", 200, {},
          time_off_id=asked["id"])
    check(e, "post", "/api/admin/time-off/{time_off_id}/decline", 409, {},
          time_off_id=asked["id"])
    check(e, "post", "/api/admin/time-off/{time_off_id}/approve", 400,
          {"cancel_affected": "yes"}, time_off_id=asked["id"])
    check(e, "post", "/api/admin/time-off/{time_off_id}/decline", 404, {}, time_off_id=999_999)
    check(c, "post", "/api/admin/time-off/{time_off_id}/approve", 403, {},
          time_off_id=asked["id"])
    check(e, "delete", "/api/admin/time-off/{time_off_id}", 200, time_off_id=asked["id"])
    check(e, "delete", "/api/admin/time-off/{time_off_id}", 404, time_off_id=asked["id"])
    check(c, "delete", "/api/admin/time-off/{time_off_id}", 403, time_off_id=entered["id"])

    kind = check(e, "post", "/api/admin/visit-types", 201, {"name": "First consultation",
                                                            "minutes": 60,
                                                            "doctor_ids": [carol.id]})
    check(e, "post", "/api/admin/visit-types", 400, {"name": "Day", "minutes": 600,
                                                     "doctor_ids": [carol.id]})
    check(a, "post", "/api/admin/visit-types", 403, {"name": "x", "minutes": 10,
                                                     "doctor_ids": [carol.id]})
    check(e, "get", "/api/admin/visit-types", 200)
    check(c, "get", "/api/admin/visit-types", 403)
    check(anon, "get", "/api/doctors/{doctor_id}/visit-types", 200, doctor_id=carol.id)
    check(anon, "get", "/api/doctors/{doctor_id}/visit-types", 404, doctor_id=alice.id)
    day = slot(1).astimezone(TZ).date().isoformat()
    check(anon, "get", "/api/doctors/{doctor_id}/slots", 200,
          query=f"?date={day}&visit_type={kind['id']}", doctor_id=carol.id)
    check(a, "post", "/api/appointments", 201, {
        "doctor_id": carol.id, "start": slot(6, "14:00").astimezone(TZ).isoformat(),
        "visit_type_id": kind["id"]})

    check(e, "post", "/api/admin/doctors/{doctor_id}/deactivate", 400,
          {"cancel_upcoming": True}, doctor_id=dave.id)
    check(e, "post", "/api/admin/doctors/{doctor_id}/deactivate", 404, {},
          doctor_id=alice.id)
    check(c, "post", "/api/admin/doctors/{doctor_id}/deactivate", 403, {},
          doctor_id=dave.id)
    left = check(e, "post", "/api/admin/doctors/{doctor_id}/deactivate", 200,
                 {"cancel_upcoming": True, "reason": "Dr Davis has left the clinic"},
                 doctor_id=dave.id)
    check(e, "post", "/api/admin/cancellations/{batch_id}/resume", 202,
          batch_id=left["cancellation"]["id"])
    check(e, "post", "/api/admin/cancellations/{batch_id}/resume", 404, batch_id=999_999)
    check(c, "post", "/api/admin/cancellations/{batch_id}/resume", 403,
          batch_id=left["cancellation"]["id"])
def exercise_desk(check, new_client, a, e, alice, carol):
    """The front desk's routes (clinic/web/api_desk.py)."""
    staff = {"name": "Dana Desk", "email": "dana@example.com", "password": PASSWORD,
             "role": "desk"}
    check(e, "post", "/api/admin/staff", 201, staff)
    check(e, "post", "/api/admin/staff", 400, staff)  # the email is taken
    check(a, "post", "/api/admin/staff", 403, {**staff, "email": "x@example.com"})
    desk = new_client()
    desk.api_login("dana@example.com")
    check(desk, "get", "/api/patients", 200, query="?q=alice")
    check(a, "get", "/api/patients", 403, query="?q=alice")
    new = check(desk, "post", "/api/patients", 201, {"name": "Walk In"})
    assert new["email"] is None
    check(desk, "post", "/api/patients", 400, {"name": ""})
    check(desk, "get", "/api/patients/{patient_id}", 200, patient_id=new["id"])
    check(desk, "get", "/api/patients/{patient_id}", 404, patient_id=carol.id)
    check(a, "get", "/api/patients/{patient_id}", 403, patient_id=new["id"])
    check(desk, "patch", "/api/patients/{patient_id}", 200,
          {"phone": "+49 170 1234567", "channel": "both"}, patient_id=new["id"])
    check(desk, "patch", "/api/patients/{patient_id}", 400, {"channel": "fax"},
          patient_id=new["id"])
    check(desk, "patch", "/api/patients/{patient_id}", 404, {"name": "X"}, patient_id=carol.id)
    check(a, "patch", "/api/patients/{patient_id}", 403, {"name": "X"}, patient_id=new["id"])
    today = datetime.now(TZ).replace(hour=9, minute=0, second=0, microsecond=0)
    visit = appointments.book(new["id"], carol.id, today, now=today - timedelta(hours=1))
    check(desk, "post", "/api/appointments/{appointment_id}/check-in", 200,
          appointment_id=visit.id)
    later = appointments.book(alice.id, carol.id, slot(3, "09:00"))
    check(desk, "post", "/api/appointments/{appointment_id}/check-in", 409,
          appointment_id=later.id)
    check(a, "post", "/api/appointments/{appointment_id}/check-in", 403,
          appointment_id=later.id)


def exercise_accounts(check, anon, a, c, e, bob, carol, dave):
    """The account routes (clinic/api_accounts.py): reset, profile, two-factor sign-in."""
    check(anon, "post", "/api/password-reset", 202, {"email": bob.email})
    check(anon, "post", "/api/password-reset", 400, {"email": 5})
    for _ in range(5):
        anon.post_json("/api/password-reset", {"email": "nobody@example.com"})
    check(anon, "post", "/api/password-reset", 429, {"email": "nobody@example.com"})
    token = link_token(Message.get(Message.kind == "password_reset").text_body, "/reset/")
    check(anon, "post", "/api/password-reset/confirm", 400, {"token": token, "password": "short"})
    check(anon, "post", "/api/password-reset/confirm", 200, {"token": token,
                                                             "password": "a new password"})
    check(a, "get", "/api/me", 200)
    check(anon, "get", "/api/me", 401)
    check(a, "patch", "/api/me", 200, {"phone": "+49 30 999 000"})
    check(a, "patch", "/api/me", 400, {"phone": "call me"})
    check(a, "patch", "/api/me", 200, {"email": "alice.new@example.com"})
    token = link_token(Message.get(Message.kind == "email_change").text_body, "/account/email/")
    check(anon, "post", "/api/me/email/confirm", 200, {"token": token})
    check(anon, "post", "/api/me/email/confirm", 400, {"token": token})
    check(a, "post", "/api/me/password", 400, {"current_password": "wrong",
                                               "new_password": "long enough 2"})
    check(a, "post", "/api/me/password", 200, {"current_password": PASSWORD,
                                               "new_password": PASSWORD})
    check(c, "post", "/api/me/totp/confirm", 409, {"code": "123456"})
    enrolment = check(c, "post", "/api/me/totp", 200)
    check(c, "post", "/api/me/totp/confirm", 400, {"code": "12345x"})
    codes = check(c, "post", "/api/me/totp/confirm", 200,
                  {"code": pyotp.TOTP(enrolment["secret"]).now()})["recovery_codes"]
    check(c, "post", "/api/me/totp", 409)
    check(anon, "post", "/api/login", 401, {"email": carol.email, "password": PASSWORD})
    check(anon, "post", "/api/login", 200, {"email": carol.email, "password": PASSWORD,
                                            "totp": codes[0]})
    check(c, "post", "/api/me/totp/recovery-codes", 400, {"code": "000000"})
    codes = check(c, "post", "/api/me/totp/recovery-codes", 200,
                  {"code": codes[1]})["recovery_codes"]
    check(c, "post", "/api/me/totp/disable", 400, {"code": "000000"})
    check(c, "post", "/api/me/totp/disable", 200, {"code": codes[0]})
    check(c, "post", "/api/me/totp/disable", 409, {"code": codes[1]})
    check(c, "post", "/api/admin/users/{user_id}/totp-reset", 403, user_id=carol.id)
    check(e, "post", "/api/admin/users/{user_id}/totp-reset", 200, user_id=carol.id)
    check(e, "post", "/api/admin/users/{user_id}/totp-reset", 404, user_id=10**12)
    current = settings.get()
    settings.use(current.replace(require_2fa=("doctor",)))
    try:
        check(anon, "post", "/api/login", 403, {"email": dave.email, "password": PASSWORD})
    finally:
        settings.use(current)


def exercise_waitlist(check, a, b, c, e, alice, bob, carol):
    """The waitlist's routes (clinic/web/api_waitlist.py): join, list, claim, leave."""
    day = slot(3).astimezone(TZ).date().isoformat()
    start = slot(3, "12:00").astimezone(TZ).isoformat()
    taken = check(a, "post", "/api/appointments", 201, {"doctor_id": carol.id, "start": start})
    waiting = check(b, "post", "/api/waitlist", 201, {"doctor_id": carol.id, "from": day,
                                                      "to": day})
    check(b, "post", "/api/waitlist", 400, {"doctor_id": carol.id, "from": day,
                                            "to": "2020-01-01"})
    check(b, "post", "/api/waitlist", 409, {"doctor_id": carol.id, "from": day, "to": day})
    check(b, "post", "/api/waitlist", 404, {"doctor_id": alice.id, "from": day, "to": day})
    check(c, "post", "/api/waitlist", 403, {"doctor_id": carol.id, "from": day, "to": day})
    check(e, "post", "/api/waitlist", 201, {"doctor_id": carol.id, "from": day, "to": day,
                                            "patient_id": alice.id})
    check(b, "post", "/api/waitlist/{entry_id}/claim", 409, entry_id=waiting["id"])
    a.post_json(f"/api/appointments/{taken['id']}/cancel")
    check(b, "get", "/api/waitlist", 200)
    check(e, "get", "/api/waitlist", 200, query=f"?patient_id={bob.id}&status=waiting")
    check(e, "get", "/api/waitlist", 400, query="?status=gone")
    held = check(b, "get", "/api/waitlist/{entry_id}", 200, entry_id=waiting["id"])
    assert held["offer"]["status"] == "held"
    check(a, "get", "/api/waitlist/{entry_id}", 404, entry_id=waiting["id"])
    check(a, "post", "/api/waitlist/{entry_id}/claim", 404, entry_id=waiting["id"])
    check(b, "post", "/api/waitlist/{entry_id}/claim", 201, entry_id=waiting["id"])
    again = check(b, "post", "/api/waitlist", 201, {"doctor_id": carol.id, "from": day,
                                                    "to": day})
    check(b, "delete", "/api/waitlist/{entry_id}", 200, entry_id=again["id"])
    check(b, "delete", "/api/waitlist/{entry_id}", 409, entry_id=again["id"])


def link_token(text, prefix):
    return re.search(re.escape(prefix) + r"(\S+)", text).group(1)


def test_documented_query_parameters_are_read(spec, new_client, alice, carol, erin):
    """A query parameter in the document that the route ignored would be a lie: each changes
    the answer or is refused when wrong."""
    admin = new_client()
    admin.api_login(erin.email)
    for path, _method, operation in operations(spec):
        for param in operation.get("parameters", []):
            if param["in"] != "query":
                continue
            url = path.replace("{doctor_id}", str(carol.id))
            if param["name"] != "date" and "slots" in url:
                continue
            bad = "not-a-" + param["name"]
            if param["name"] == "specialization":
                assert admin.get(f"{url}?{param['name']}={bad}").json() == {"doctors": []}
            elif param["name"] == "q":  # a search: nothing matches, where everyone would
                assert admin.get(f"{url}?q={bad}").json() == {"patients": []}
            else:
                response = admin.get(f"{url}?{param['name']}={bad}")
                assert response.status == 400, (path, param["name"], response)
