"""The audit events this application records, and where each is recorded.

Every row names its actor by id and role and its subject by type and id; `detail` holds codes
and counts only. Never a phone number, a name, an ID number, a username typed at sign-in, a
code, a token, a password or an IP address.

Each event, its outcome, where it is recorded, and what its detail holds:

- `auth.login` (ok): `users.service.sign_in_staff` and `sign_in_borrower`, API and portals;
  `method` (`password_totp`, `sms_code`), `new_account` for a borrower's first sign-in.
- `auth.login_failed` (failed): the same, in a transaction that commits although the request
  fails; `method`, `reason` (`unknown_account`, `no_password`, `wrong_password`, `inactive`,
  `totp_invalid`, `totp_reused`, `locked`, `otp_invalid`), `unrecorded` (see `throttle`).
  The subject is the account when one was named; never what was typed.
- `auth.lockout` (ok): `sign_in_staff`, when failures lock the account; `failures`, `minutes`.
- `auth.logout` (ok): `users.service.sign_out`, API and portal logout.
- `user.created` (ok): `hejie users create`; `role`, `via`.
- `user.activated`, `user.deactivated` (ok): `hejie users activate|deactivate`
  (`users.service.set_active`); `role`, `via`.
- `access.refused` (refused): `app.audit.refusals`, for signed-in callers only: a 403, a 404
  for a case that exists but is not theirs, a refused room websocket; `status`, `code`,
  `method` and `route` (the template, not the address) or `channel`, `unrecorded`.
- `export.import_problems` (ok): `GET /api/v1/imports/{id}/problems.csv`; `rows`.
- `export.judicial_package` (ok): `GET /api/v1/cases/{id}/agreement/package.zip`.
- `export.outbox` (ok): `hejie outbox`, which prints phone numbers and message texts; `rows`.
- `campaign.round_started` (ok): `POST /api/v1/campaigns/{id}/send` and the bank portal's send
  button (`batch.rounds.start_in_background`), a new round or one continued; the subject is the
  campaign; `round_id`, `attempt`, `accounts` (selected when the round began). Also when the
  application continues a round a restart interrupted (`batch.rounds.continue_interrupted`):
  actor role `system`, `round_id`, `attempt`, `via` `auto`.
- `admin.bank_created`, `admin.institution_created` (ok): `hejie banks|institutions create`;
  `code`.
- `admin.documents_swept` (ok): `hejie documents sweep`; `removed`.
- `admin.accounts_imported` (ok or failed): `hejie import accounts`; `import_id`, row counts.
- `admin.payments_imported` (ok): `hejie repayment import`; row counts.

What an operator does with the `hejie` command has no signed-in actor: `actor_role` is
`operator` and `via` is `cli`. `hejie demo` records nothing: it is for development only, and
running it again must change nothing.

The personal-information rights (`app.rights`) record their own `pii.*` events.
"""

from enum import StrEnum


class Event(StrEnum):
    LOGIN = "auth.login"
    LOGIN_FAILED = "auth.login_failed"
    LOCKOUT = "auth.lockout"
    LOGOUT = "auth.logout"
    USER_CREATED = "user.created"
    USER_ACTIVATED = "user.activated"
    USER_DEACTIVATED = "user.deactivated"
    ACCESS_REFUSED = "access.refused"
    EXPORT_IMPORT_PROBLEMS = "export.import_problems"
    EXPORT_JUDICIAL_PACKAGE = "export.judicial_package"
    EXPORT_OUTBOX = "export.outbox"
    ROUND_STARTED = "campaign.round_started"
    BANK_CREATED = "admin.bank_created"
    INSTITUTION_CREATED = "admin.institution_created"
    DOCUMENTS_SWEPT = "admin.documents_swept"
    ACCOUNTS_IMPORTED = "admin.accounts_imported"
    PAYMENTS_IMPORTED = "admin.payments_imported"


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    REFUSED = "refused"


# The actor of what an operator does with the `hejie` command (there is no signed-in user).
OPERATOR = "operator"
# The actor of what the application does on its own (a campaign round it continues).
SYSTEM = "system"
