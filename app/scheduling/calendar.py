"""The appointment as an iCalendar file: one event per case, replaced in place on reschedule."""

from datetime import datetime

from icalendar import Calendar, Event

from app.cases.models import Case
from app.notifications.contact_rules import SHANGHAI
from app.scheduling.models import Appointment


def appointment_ics(
    case: Case, appointment: Appointment, *, sequence: int, case_url: str, now: datetime
) -> bytes:
    """Carries the case number and link only: a calendar is often shared or synced."""
    calendar = Calendar()
    calendar.add("prodid", "-//Hejie//Mediation//ZH")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    event = Event()
    # Stable per case, so a calendar replaces the old event when the session moves.
    event.add("uid", f"{case.id}@hejie")
    event.add("sequence", sequence)
    event.add("dtstamp", now)
    event.add("dtstart", appointment.start.astimezone(SHANGHAI))
    event.add("dtend", appointment.end.astimezone(SHANGHAI))
    event.add("summary", f"和解在线调解 {case.case_no}")
    event.add("description", f"在线调解（案件编号 {case.case_no}）。进入调解室：{case_url}")
    event.add("url", case_url)
    calendar.add_component(event)
    calendar.add_missing_timezones()
    return bytes(calendar.to_ical())
