"""Load a case for the caller, or 404 if they may not see it; then 403 if their role may not act."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends

from app.cases import service
from app.cases.models import Case
from app.db import SessionDep
from app.errors import Forbidden
from app.users.deps import CurrentUser
from app.users.models import Role


def case_for(*roles: Role) -> Callable[..., Awaitable[Case]]:
    allowed = frozenset(roles)

    async def dependency(case_id: str, user: CurrentUser, session: SessionDep) -> Case:
        case = await service.get_or_404(session, user=user, case_id=case_id)
        if allowed and user.role not in allowed:
            raise Forbidden("Your role may not do this to the case", code="role_forbidden")
        return case

    return dependency


PartyCase = Annotated[Case, Depends(case_for())]
OwnedCase = Annotated[Case, Depends(case_for(Role.BORROWER))]
BankCase = Annotated[Case, Depends(case_for(Role.BANK_STAFF))]
AssignedCase = Annotated[Case, Depends(case_for(Role.MEDIATOR))]
UploaderCase = Annotated[Case, Depends(case_for(Role.BORROWER, Role.MEDIATOR))]
