"""The calendar's JSON API: time off and clinic closures, doctors' requests for time off, visit
types, and deactivating a doctor with their bookings cancelled. create_app() merges these routes
with the others, so /api/openapi.json describes them too."""

import bottle
from bottle import response

from clinic import cancellations, people, time_off, visit_types
from clinic.errors import Invalid, check
from clinic.i18n import _
from clinic.web import api_input
from clinic.web.decorators import api
from clinic.web.inputs import json_body
from clinic.web.openapi import doc
from clinic.web.sessions import current_user

routes = bottle.Bottle()


def _flag(data, name, errors):
    value = data.get(name, False)
    if not isinstance(value, bool):
        errors[name] = _("Expected true or false.")
    return value is True


def _time_off_fields(data, errors):
    texts = api_input.texts(data, ("start", "end", "reason"), errors)
    return texts["start"], texts["end"], texts["reason"]


# -- time off -------------------------------------------------------------------------------------


@routes.post("/api/admin/time-off")
@api("admin")
@doc("Enter time off, or close the whole clinic", body="NewTimeOff", returns="TimeOff", ok=201,
     errors={400: "A field is wrong (see `fields`): a time that is not one, an end before the "
                  "start, an unknown doctor_id.",
             409: "It overlaps time off already entered for the same doctor (or closure)."},
     description="Clinic-local times; a date alone is the whole day. `doctor_id` null closes "
                 "the clinic (a holiday). Its slots are no longer offered and booking into it is "
                 "refused. `affected` lists the visits still booked inside; with "
                 "`cancel_affected` they are cancelled in the background and each patient is "
                 "emailed once, with the reason and a link to pick a new time: follow "
                 "GET /api/tasks/{task_id} of `cancellation`.")
def add_time_off():
    data = json_body()
    errors = {}
    start, end, reason = _time_off_fields(data, errors)
    cancel = _flag(data, "cancel_affected", errors)
    check(errors)
    entry = time_off.add(data.get("doctor_id"), start, end, reason, user=current_user(),
                         cancel_affected=cancel)
    response.status = 201
    return _shown(entry)


def _shown(entry):
    data = time_off.as_dict(entry)
    batch = entry.cancellation_id and cancellations.get(entry.cancellation_id)
    data["cancellation"] = cancellations.as_dict(batch) if batch else None
    return data


@routes.get("/api/admin/time-off")
@api("admin")
@doc("Time off and closures, earliest first", returns="TimeOffList",
     description="Every entry: approved, requested by a doctor and waiting, or declined.")
def list_time_off():
    return {"time_off": [_shown(t) for t in time_off.listing()]}


@routes.delete("/api/admin/time-off/<time_off_id>")
@api("admin")
@doc("Remove time off: its slots are offered again", returns="TimeOffRemoved", errors=(404,))
def remove_time_off(time_off_id):
    entry = time_off.remove(api_input.path_id(time_off_id, "time off"))
    return {"id": entry.id, "removed": True}


def _decide(time_off_id, approve):
    data = json_body()
    errors = {}
    cancel = _flag(data, "cancel_affected", errors)
    check(errors)
    entry = time_off.decide(api_input.path_id(time_off_id, "time off"), approve,
                            user=current_user(), cancel_affected=cancel)
    return _shown(entry)


_DECIDED = {404: None, 409: "It was decided already, or (approving) it overlaps time off "
                            "entered since."}


@routes.post("/api/admin/time-off/<time_off_id>/approve")
@api("admin")
@doc("Approve a doctor's request for time off", body="TimeOffDecision", returns="TimeOff",
     errors=_DECIDED,
     description="It then blocks the doctor's slots; with `cancel_affected` the visits inside "
                 "are cancelled and their patients told, as for new time off.")
def approve_time_off(time_off_id):
    return _decide(time_off_id, True)


@routes.post("/api/admin/time-off/<time_off_id>/decline")
@api("admin")
@doc("Decline a doctor's request for time off", body="TimeOffDecision", returns="TimeOff",
     errors=_DECIDED)
def decline_time_off(time_off_id):
    return _decide(time_off_id, False)


@routes.post("/api/doctor/time-off")
@api("doctor")
@doc("A doctor asks for time off", body="TimeOffRequest", returns="TimeOff", ok=201,
     errors={400: "A field is wrong (see `fields`).",
             409: "It overlaps the doctor's approved time off."},
     description="It blocks nothing until an admin approves it; admins see it at once on the "
                 "time-off page and in GET /api/admin/time-off (status `requested`).")
def request_time_off():
    data = json_body()
    errors = {}
    start, end, reason = _time_off_fields(data, errors)
    check(errors)
    entry = time_off.request(current_user(), start, end, reason)
    response.status = 201
    return _shown(entry)


# -- visit types ----------------------------------------------------------------------------------


@routes.post("/api/admin/visit-types")
@api("admin")
@doc("Add a visit type with its own length", body="NewVisitType", returns="VisitType", ok=201,
     errors={400: "A field is wrong (see `fields`): among others a visit longer than a "
                  "doctor's working day, or an unknown doctor id."})
def add_visit_type():
    data = json_body()
    errors = {}
    name = api_input.texts(data, ("name",), errors)["name"]
    check(errors)
    visit_type = visit_types.create(name, data.get("minutes"), data.get("doctor_ids"))
    response.status = 201
    return visit_types.as_dict(visit_type)


@routes.get("/api/admin/visit-types")
@api("admin")
@doc("Every visit type", returns="VisitTypeList")
def list_visit_types():
    return {"visit_types": [visit_types.as_dict(v) for v in visit_types.listing()]}


@routes.get("/api/doctors/<doctor_id>/visit-types")
@api()
@doc("The visit types a doctor offers, shortest first", returns="VisitTypeList",
     errors=(404,),
     description="Pass an `id` as `visit_type` to the slots and as `visit_type_id` to the "
                 "booking. Without one, a visit is one of the doctor's slots long.")
def doctor_visit_types(doctor_id):
    doctor = people.get_doctor(api_input.path_id(doctor_id, "doctor"))
    if not doctor.user.active:
        raise Invalid(_("This doctor is not taking bookings."))
    return {"visit_types": [visit_types.as_dict(v)
                            for v in visit_types.for_doctor(doctor.user_id)]}


# -- a doctor who leaves --------------------------------------------------------------------------


@routes.post("/api/admin/doctors/<doctor_id>/deactivate")
@api("admin")
@doc("Deactivate a doctor, and cancel their future bookings", body="Deactivation",
     returns="Deactivated", errors={400: "cancel_upcoming without a reason.", 404: None},
     description="The doctor takes no new bookings and is signed out. With `cancel_upcoming`, "
                 "every booked visit from now on is cancelled in the background and each "
                 "patient is emailed once, with the reason and a link to pick a new time "
                 "(GET /api/tasks/{task_id} of `cancellation`). Without it they stay booked.")
def deactivate_doctor(doctor_id):
    data = json_body()
    errors = {}
    cancel = _flag(data, "cancel_upcoming", errors)
    reason = api_input.texts(data, ("reason",), errors)["reason"]
    check(errors)
    doctor = people.get_doctor(api_input.path_id(doctor_id, "doctor"))
    upcoming, batch = cancellations.deactivate_doctor(doctor.user_id, cancel, reason,
                                                      user=current_user())
    return {"id": doctor.user_id, "active": False, "upcoming": upcoming,
            "cancellation": cancellations.as_dict(batch) if batch else None}


@routes.post("/api/admin/cancellations/<batch_id>/resume")
@api("admin")
@doc("Run a stopped cancellation batch again", returns="Cancellation", ok=202,
     errors={404: None, 409: "It finished: every patient was told."},
     description="Appointments it cancelled already are skipped: nobody is emailed twice.")
def resume_cancellation(batch_id):
    batch = cancellations.resume(api_input.path_id(batch_id, "cancellation"),
                                 user=current_user())
    response.status = 202
    return cancellations.as_dict(batch)
