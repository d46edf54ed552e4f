"""What every portal page needs: the signed-in user by cookie, CSRF on forms, case page data."""

import re
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from app.agreements import service as agreements
from app.agreements import text as agreement_text
from app.audit.schemas import Read
from app.audit.service import record_read
from app.cases import documents
from app.cases import service as cases
from app.cases.models import Case
from app.cases.schemas import DocumentKind
from app.cases.states import Status
from app.cases.timeline import list_events
from app.config import Settings
from app.db import SessionDep, utcnow
from app.deps import SettingsDep
from app.errors import AppError, Forbidden, Invalid, NotFound, Unauthenticated
from app.portals import labels
from app.repayment import ledger
from app.repayment.schemas import PlanRead
from app.scheduling import service as scheduling
from app.users.deps import authenticate
from app.users.models import Role, User
from app.web import form_csrf_ok, redirect, render


class CsrfFailed(Forbidden):
    code = "csrf_failed"


def portal_user(*roles: Role) -> Callable[..., Awaitable[User]]:
    """Cookie sign-in for a portal; unsafe methods also need the form's CSRF token."""
    allowed = frozenset(roles)

    async def dependency(request: Request, session: SessionDep, settings: SettingsDep) -> User:
        auth = await authenticate(request, session, settings)
        if auth is None:
            raise Unauthenticated("Please sign in", code="not_authenticated")
        if allowed and auth.user.role not in allowed:
            raise Forbidden("This page is for another kind of account", code="role_forbidden")
        if request.method not in ("GET", "HEAD"):
            await require_form_csrf(request)
        return auth.user

    return dependency


BorrowerPortalUser = Annotated[User, Depends(portal_user(Role.BORROWER))]
MediatorPortalUser = Annotated[User, Depends(portal_user(Role.MEDIATOR))]
BankPortalUser = Annotated[User, Depends(portal_user(Role.BANK_STAFF))]
PartyPortalUser = Annotated[
    User, Depends(portal_user(Role.BORROWER, Role.MEDIATOR, Role.BANK_STAFF))
]
# Each kind of account's portal.
HOME = {Role.BORROWER: "/borrower", Role.MEDIATOR: "/mediator", Role.BANK_STAFF: "/bank"}


def require_portal(user: User, portal: str) -> None:
    """A page shared by the three portals answers, at each portal's address, its own accounts."""
    if HOME.get(Role(user.role)) != f"/{portal}":
        raise Forbidden("This page is for another kind of account", code="role_forbidden")


async def require_form_csrf(request: Request) -> dict[str, Any]:
    form = await request.form()
    token = form.get("csrf_token")
    if not form_csrf_ok(request, token if isinstance(token, str) else None):
        raise CsrfFailed("The form expired; reload the page and try again")
    return dict(form)


_AMOUNT = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,2})?", re.ASCII)


def yuan_to_fen(value: str) -> int | str | None:
    """Parse a yuan amount typed by a person ("1,234.5") into fen; leave junk for the validator.

    Only plain decimal notation with at most two decimals is read: an exponent such as "1e9999"
    would make the conversion itself the cost.
    """
    # NFKC folds what a Chinese keyboard types (full-width digits, "．", "，", "￥") to ASCII.
    cleaned = "".join(unicodedata.normalize("NFKC", value).replace(",", "").split())
    cleaned = cleaned.removeprefix("¥").removesuffix("元")
    if not cleaned:
        return None
    if not _AMOUNT.fullmatch(cleaned):
        return value
    return int(Decimal(cleaned) * 100)


def on_this_machine(request: Request) -> bool:
    """Whether the request comes from the server's own machine (development hints only).

    A dev server reachable from elsewhere (or a deployment that forgot HEJIE_ENV=prod) must not
    hand out every borrower's codes.
    """
    return request.client is not None and request.client.host in ("127.0.0.1", "::1")


async def load_case(session: AsyncSession, user: User, case_id: str) -> Case:
    case = await cases.get_visible(session, user=user, case_id=case_id)
    if case is None:
        raise NotFound("No such case", code="case_not_found")
    return case


async def case_context(session: AsyncSession, case: Case, user: User) -> dict[str, Any]:
    # Every portal's case page is drawn from here: staff opening one is in the access log.
    await record_read(session, actor=user, case_id=case.id, what=Read.CASE, detail="page")
    return {
        "case": cases.to_read(case, user),
        "events": await list_events(session, case=case),
        "documents": await documents.list_for_case(session, case=case),
        "labels": labels.ALL,
        "judicial_deadline": await _judicial_deadline(session, case),
        "plan": await _repayment_plan(session, case),
        **await schedule_context(session, case),
    }


async def _repayment_plan(session: AsyncSession, case: Case) -> PlanRead | None:
    """For a filed case: its repayment plan as it stands today (Asia/Shanghai)."""
    plan = await ledger.get_plan(session, case=case)
    if plan is None:
        return None
    return await ledger.plan_summary(session, plan=plan, today=ledger.local_today(utcnow()))


async def _judicial_deadline(session: AsyncSession, case: Case) -> date | None:
    """For a filed case: the last day to apply for judicial confirmation."""
    if case.status != Status.FILED:
        return None
    agreement = await agreements.live(session, case_id=case.id)
    if agreement is None or agreement.effective_at is None:
        return None
    return agreement_text.judicial_deadline(agreement.effective_at)


async def schedule_context(session: AsyncSession, case: Case) -> dict[str, Any]:
    """Step 3 on a case page: the booked session, the open slots, the reschedules left."""
    return {
        "appointment": await scheduling.active_appointment(session, case=case),
        "open_slots": await scheduling.open_slots(session, case=case),
        "allowance": await scheduling.reschedule_allowance(session, case=case),
        "free_reschedules": scheduling.FREE_RESCHEDULES,
    }


async def add_document_from_form(
    request: Request, session: AsyncSession, settings: Settings, *, case: Case, user: User
) -> None:
    """The upload form of a case page: a kind of document and one file."""
    form = await request.form()
    kind = str(form.get("kind", ""))
    upload = form.get("file")
    if kind not in set(DocumentKind):
        raise Invalid("Choose the kind of document and a file", code="invalid_upload")
    # With no file chosen, a browser still sends the part: empty, with an empty file name.
    if not isinstance(upload, UploadFile) or (not upload.filename and not upload.size):
        raise Invalid("Choose a file to upload", code="invalid_upload")
    data = await documents.read_upload(upload, settings.max_upload_bytes)
    await documents.add(
        session,
        settings,
        case=case,
        actor=user,
        kind=DocumentKind(kind),
        data=data,
        filename=upload.filename,
    )


# A refusal shown above a form: the label of the field it is about (or None), and the message.
Problem = tuple[str | None, str]
ShowRefusal = Callable[[list[Problem], int], Awaitable[Response]]


def validation_messages(exc: ValidationError) -> dict[str, str]:
    """Field name → message, for showing next to form inputs."""
    messages: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = loc[0] if loc else "form"
        message = labels.VALIDATION_BY_TYPE.get(err["type"]) or str(err["msg"])
        messages.setdefault(field, message.removeprefix("Value error, "))
    return messages


def refusal_message(exc: AppError) -> str:
    """What to tell a person about a refusal; a few domain messages carry values, so not these."""
    return labels.REFUSAL.get(exc.code, exc.message)


async def act_or_show(
    request: Request,
    session: AsyncSession,
    *,
    user: User,
    action: Callable[[], Awaitable[Any]],
    on_error: ShowRefusal,
    success_url: str,
    field_labels: Mapping[str, str] | None = None,
) -> Response:
    """Run a form's action; on a refusal roll back and show the page again with the reason."""
    try:
        await action()
    except ValidationError as exc:
        await undo(session, user)
        names = field_labels or {}
        problems = [(names.get(f), m) for f, m in validation_messages(exc).items()]
        return await on_error(problems, 422)
    except AppError as exc:
        if isinstance(exc, CsrfFailed):
            raise
        await undo(session, user, keep_changes=exc.keep_changes)
        return await on_error([(None, refusal_message(exc))], exc.status)
    return redirect(success_url)


async def undo(session: AsyncSession, user: User | None, *, keep_changes: bool = False) -> None:
    """End a refused form's transaction, and load the signed-in user again for the page."""
    # A refusal that must still be recorded (a wrong login code counts as an attempt) commits.
    await (session.commit() if keep_changes else session.rollback())
    if user is not None:
        await session.refresh(user)


def page(request: Request, template: str, *, here: str | None = None, **context: Any) -> Response:
    """Render a portal page; `here` is where the language switch returns to.

    A page shown in answer to a form post must name a page that can be fetched again: the form's
    own address only accepts posts.
    """
    status = context.pop("status", 200)
    if here is None:
        query = request.url.query if request.method == "GET" else ""
        here = request.url.path + (f"?{query}" if query else "")
    return render(request, template, {"labels": labels.ALL, **context, "path": here}, status=status)
