"""The borrower portal through its forms: SMS sign-in, apply, the case page and its actions."""

import io
import re

import httpx
import pytest
from sqlalchemy import select

from app import security
from app.cases.models import Case, Document
from app.i18n import LANG_COOKIE
from app.notifications.models import OutboxMessage
from app.users.deps import SESSION_COOKIE
from app.users.models import Role, SmsCode, User
from app.users.service import phone_of
from app.web import ANON_CSRF_COOKIE
from tests.helpers import ALICE_ID, Backend, World, apply, pdf_bytes, png_bytes
from tests.portals.util import (
    Browser,
    accessibility_problems,
    alert_of,
    anon_csrf_cookie,
    cookie_attributes,
    csrf_of,
    event_kinds,
    latest_sms_code,
    load_case,
    outbox_messages,
    request_code,
    session_cookie,
    set_cookie_header,
    sign_in_borrower,
)

NEW_PHONE = "13700000099"


def phone_hash(env: Backend) -> str:
    return security.keyed_hash(env.settings.secret_key, "phone", NEW_PHONE)


async def sms_codes(env: Backend) -> list[SmsCode]:
    async with env.session() as s:
        return list(await s.scalars(select(SmsCode).order_by(SmsCode.id)))


# --- sign in -------------------------------------------------------------------------------------


async def test_sign_in_page_sets_the_csrf_cookie_it_puts_in_the_form(
    client: httpx.AsyncClient, env: Backend
) -> None:
    r = await client.get("/borrower/login")
    assert r.status_code == 200
    header = set_cookie_header(r, ANON_CSRF_COOKIE)
    assert {"httponly", "samesite=lax", "path=/"} <= cookie_attributes(header)
    assert csrf_of(r.text) == anon_csrf_cookie(client)
    assert 'name="phone"' in r.text
    assert accessibility_problems(r.text) == []
    # The same browser keeps its token on the next visit.
    again = await client.get("/borrower/login")
    assert csrf_of(again.text) == csrf_of(r.text)
    assert ANON_CSRF_COOKIE not in again.headers.get("set-cookie", "")


async def test_sign_in_happy_path_creates_the_borrower(
    client: httpx.AsyncClient, env: Backend
) -> None:
    code_page = await request_code(client, NEW_PHONE)
    assert code_page.status_code == 200
    # One Chinese sentence, its punctuation Chinese, the number masked and set apart.
    assert (
        '6 位验证码已发送至 <strong class="mono">137****0099</strong>，10 分钟内有效。'
        in code_page.text
    )
    assert NEW_PHONE not in code_page.text.replace(f'value="{NEW_PHONE}"', "")
    assert accessibility_problems(code_page.text) == []
    messages = await outbox_messages(env, NEW_PHONE)
    assert [(m.channel, m.kind) for m in messages] == [("sms", "login_code")]
    code = await latest_sms_code(env, NEW_PHONE)
    # Development mode shows the code that went to the outbox, so the demo can be tried.
    assert f'<strong class="mono">{code}</strong>' in code_page.text

    r = await client.post(
        "/borrower/login",
        data={"csrf_token": csrf_of(code_page.text), "phone": NEW_PHONE, "code": code},
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/borrower"
    attributes = cookie_attributes(set_cookie_header(r, SESSION_COOKIE))
    assert {"httponly", "samesite=lax", "path=/"} <= attributes
    assert "secure" not in attributes  # development over plain http
    assert session_cookie(client)

    home = await client.get("/borrower")
    assert home.status_code == 200
    assert "我的案件" in home.text
    assert "137****0099" in home.text  # who is signed in, masked
    assert "申请调解" in home.text
    assert 'href="/borrower/apply"' in home.text
    assert "您还没有案件" in home.text
    async with env.session() as s:
        users = list(await s.scalars(select(User).where(User.phone_hash == phone_hash(env))))
    assert [u.role for u in users] == [Role.BORROWER]
    assert users[0].last_login_at is not None
    # The phone is kept encrypted; only the service that sends SMS reads it back.
    assert NEW_PHONE not in (users[0].phone_encrypted or "")
    assert phone_of(env.settings, users[0]) == NEW_PHONE
    # The code was used up.
    assert all(c.used_at is not None for c in await sms_codes(env))


async def test_the_code_step_reads_as_an_english_sentence_when_english_is_chosen(
    client: httpx.AsyncClient, env: Backend
) -> None:
    client.cookies.set(LANG_COOKIE, "en")
    code_page = await request_code(client, NEW_PHONE)
    assert (
        'We sent a 6-digit code to <strong class="mono">137****0099</strong>. '
        "It is valid for 10 minutes." in code_page.text
    )


async def test_phone_may_be_typed_with_spaces_and_country_code(
    client: httpx.AsyncClient, env: Backend
) -> None:
    code_page = await request_code(client, "+86 137-0000 0099")
    assert code_page.status_code == 200
    assert f'name="phone" value="{NEW_PHONE}"' in code_page.text
    assert len(await outbox_messages(env, NEW_PHONE)) == 1


async def test_wrong_code_is_refused_counted_and_the_right_one_still_works(
    client: httpx.AsyncClient, env: Backend
) -> None:
    code_page = await request_code(client, NEW_PHONE)
    code = await latest_sms_code(env, NEW_PHONE)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    form = {"csrf_token": csrf_of(code_page.text), "phone": NEW_PHONE, "code": wrong}

    r = await client.post("/borrower/login", data=form)
    assert r.status_code == 401
    assert alert_of(r.text) == "验证码错误或已过期"
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert session_cookie(client) is None
    # Still on the code step, with the phone kept, so the borrower can try again.
    assert 'name="code"' in r.text
    assert f'name="phone" value="{NEW_PHONE}"' in r.text
    assert [c.attempts for c in await sms_codes(env)] == [1]
    async with env.session() as s:
        assert await s.scalar(select(User).where(User.phone_hash == phone_hash(env))) is None

    r = await client.post("/borrower/login", data={**form, "code": code})
    assert r.status_code == 303
    assert session_cookie(client)


async def test_code_locks_after_too_many_wrong_tries(
    client: httpx.AsyncClient, env: Backend
) -> None:
    code_page = await request_code(client, NEW_PHONE)
    code = await latest_sms_code(env, NEW_PHONE)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    form = {"csrf_token": csrf_of(code_page.text), "phone": NEW_PHONE}
    for _ in range(env.settings.otp_max_attempts):
        r = await client.post("/borrower/login", data={**form, "code": wrong})
        assert r.status_code == 401
    assert [c.attempts for c in await sms_codes(env)] == [env.settings.otp_max_attempts]
    r = await client.post("/borrower/login", data={**form, "code": code})
    assert r.status_code == 401
    assert session_cookie(client) is None


async def test_malformed_code_is_refused_without_spending_an_attempt(
    client: httpx.AsyncClient, env: Backend
) -> None:
    code_page = await request_code(client, NEW_PHONE)
    r = await client.post(
        "/borrower/login",
        data={"csrf_token": csrf_of(code_page.text), "phone": NEW_PHONE, "code": "12ab"},
    )
    assert r.status_code == 422
    assert alert_of(r.text) == "请输入短信中的 6 位验证码"
    assert [c.attempts for c in await sms_codes(env)] == [0]


async def test_invalid_phone_is_refused_and_no_sms_sent(
    client: httpx.AsyncClient, env: Backend
) -> None:
    r = await request_code(client, "12345")
    assert r.status_code == 422
    assert alert_of(r.text) == "请输入 11 位中国大陆手机号码"
    assert 'name="phone"' in r.text and 'name="code"' not in r.text
    async with env.session() as s:
        assert await s.scalar(select(OutboxMessage.id)) is None


@pytest.mark.parametrize("token", [None, "", "forged-token"])
async def test_requesting_a_code_needs_the_csrf_token(
    client: httpx.AsyncClient, env: Backend, token: str | None
) -> None:
    await client.get("/borrower/login")  # the browser has its cookie
    data = {"phone": NEW_PHONE} if token is None else {"phone": NEW_PHONE, "csrf_token": token}
    r = await client.post("/borrower/login/code", data=data)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    assert "表单已过期" in r.text
    assert await outbox_messages(env, NEW_PHONE) == []


async def test_csrf_token_without_its_cookie_is_refused(
    client: httpx.AsyncClient, env: Backend, browser: Browser
) -> None:
    """A token lifted from one browser does not work from another (no cookie to match)."""
    token = csrf_of((await client.get("/borrower/login")).text)
    other = await browser()
    r = await other.post("/borrower/login/code", data={"phone": NEW_PHONE, "csrf_token": token})
    assert r.status_code == 403
    assert await outbox_messages(env, NEW_PHONE) == []


async def test_signing_in_needs_the_csrf_token(client: httpx.AsyncClient, env: Backend) -> None:
    await request_code(client, NEW_PHONE)
    code = await latest_sms_code(env, NEW_PHONE)
    r = await client.post(
        "/borrower/login", data={"phone": NEW_PHONE, "code": code, "csrf_token": "nope"}
    )
    assert r.status_code == 403
    assert session_cookie(client) is None
    codes = await sms_codes(env)
    assert [(c.attempts, c.used_at) for c in codes] == [(0, None)]


async def test_anonymous_portal_page_redirects_to_sign_in_and_back(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    target = f"/borrower/cases/{case['id']}"
    for path in ("/borrower", "/borrower/apply", target):
        r = await client.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"] == f"/borrower/login?next={path}"

    page = await client.get("/borrower/login", params={"next": target})
    assert f'name="next" value="{target}"' in page.text
    assert world.alice.phone
    r = await sign_in_borrower(client, env, world.alice.phone, next_url=target)
    assert r.headers["location"] == target
    assert (await client.get(target)).status_code == 200


async def test_sign_in_never_redirects_off_site(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert world.alice.phone
    r = await sign_in_borrower(client, env, world.alice.phone, next_url="//evil.example/x")
    assert r.headers["location"] == "/borrower"


async def test_anonymous_form_post_is_refused(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(client, world.alice)
    r = await client.post(f"/borrower/cases/{case['id']}/withdraw", data={"csrf_token": "x"})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("text/html")
    assert (await load_case(env, case["id"])).status == "submitted"


# --- apply ---------------------------------------------------------------------------------------


def application_form(csrf_token: str, **overrides: str | None) -> dict[str, str]:
    form: dict[str, str | None] = {
        "csrf_token": csrf_token,
        "bank_code": "DEMO",
        "account_ref": "6222-0001",
        "full_name": "张伟",
        "id_number": ALICE_ID,
        "hardship_reason": "illness",
        "hardship_detail": "住院三个月，收入中断。",
        "monthly_income_yuan": "6,000.50",
        "monthly_expenses_yuan": "4200",
        "claimed_debt_yuan": "¥25,000",
        "contact_window": "evening",
        "consent_personal_info": "yes",
        "consent_sensitive_info": "yes",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


async def open_apply_form(alice: httpx.AsyncClient) -> str:
    r = await alice.get("/borrower/apply")
    assert r.status_code == 200
    return csrf_of(r.text)


async def case_count(env: Backend) -> int:
    return await env.count(Case)


async def test_apply_form_is_labelled_and_lists_banks(
    alice: httpx.AsyncClient, env: Backend
) -> None:
    r = await alice.get("/borrower/apply")
    assert accessibility_problems(r.text) == []
    assert '<option value="DEMO"' in r.text and "示范银行" in r.text
    assert '<option value="EAST"' in r.text
    assert "我同意调解中心和银行为本次调解处理我的个人信息" in r.text


async def test_apply_through_the_form(alice: httpx.AsyncClient, env: Backend) -> None:
    token = await open_apply_form(alice)
    r = await alice.post("/borrower/apply", data=application_form(token))
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith("/borrower/cases/")
    case = await load_case(env, location.rsplit("/", 1)[1])
    assert case.status == "submitted"
    # Yuan typed by a person become integer fen.
    assert case.monthly_income_fen == 600_050
    assert case.monthly_expenses_fen == 420_000
    assert case.claimed_debt_fen == 2_500_000
    assert (case.full_name, case.hardship_reason, case.contact_window) == (
        "张伟",
        "illness",
        "evening",
    )
    assert case.account_ref == "6222-0001"
    assert case.id_number_masked == ALICE_ID[:6] + "********" + ALICE_ID[-4:]

    page = await alice.get(location)
    assert page.status_code == 200
    assert case.case_no in page.text
    assert "已提交" in page.text
    assert "¥6,000.50" in page.text
    assert case.id_number_masked in page.text
    assert ALICE_ID not in page.text
    # The timeline shows the submission.
    assert "提交调解申请" in page.text
    assert accessibility_problems(page.text) == []

    home = await alice.get("/borrower")
    assert f'href="{location}"' in home.text
    assert case.case_no in home.text


async def test_invalid_id_number_redisplays_the_form_without_echoing_it(
    alice: httpx.AsyncClient, env: Backend
) -> None:
    token = await open_apply_form(alice)
    bad_id = ALICE_ID[:17] + ("0" if ALICE_ID[17] != "0" else "1")
    r = await alice.post("/borrower/apply", data=application_form(token, id_number=bad_id))
    assert r.status_code == 422
    assert "身份证号码校验位错误" in r.text
    assert 'id="id_number-error"' in r.text
    assert 'aria-invalid="true" aria-describedby="id_number-help id_number-error"' in r.text
    # Consent given once stays given while the borrower corrects the form.
    assert 'name="consent_sensitive_info" value="yes" required checked' in r.text
    assert bad_id not in r.text
    assert ALICE_ID[:17] not in r.text
    # Everything else the borrower typed is kept.
    assert 'value="张伟"' in r.text
    assert 'value="6,000.50"' in r.text
    assert '<option value="illness" selected>' in r.text
    assert accessibility_problems(r.text) == []
    assert await case_count(env) == 0


async def test_missing_consent_is_refused(alice: httpx.AsyncClient, env: Backend) -> None:
    token = await open_apply_form(alice)
    r = await alice.post(
        "/borrower/apply", data=application_form(token, consent_sensitive_info=None)
    )
    assert r.status_code == 422
    assert "须同意后方可处理您的申请" in r.text
    assert await case_count(env) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("monthly_income_yuan", "1.005"),
        ("monthly_income_yuan", "lots"),
        ("monthly_expenses_yuan", "-5"),
        ("monthly_expenses_yuan", ""),
        ("full_name", "X"),
    ],
)
async def test_bad_field_is_marked_next_to_its_input(
    alice: httpx.AsyncClient, env: Backend, field: str, value: str
) -> None:
    token = await open_apply_form(alice)
    r = await alice.post("/borrower/apply", data=application_form(token, **{field: value}))
    assert r.status_code == 422
    assert f'id="{field}-error"' in r.text
    assert "请修改标出的内容" in r.text
    assert await case_count(env) == 0


async def test_empty_form_is_refused_field_by_field_in_chinese(
    alice: httpx.AsyncClient, env: Backend
) -> None:
    token = await open_apply_form(alice)
    r = await alice.post("/borrower/apply", data={"csrf_token": token})
    assert r.status_code == 422
    errors = dict(re.findall(r'<p class="field-error" id="([a-z_]+)-error">([^<]*)</p>', r.text))
    assert errors == {
        "bank_code": "请选择银行",
        "full_name": "姓名至少 2 个字",
        "id_number": "身份证号码须为 18 位：17 位数字加 1 位数字或 X",
        "hardship_reason": "请从选项中选择",
        "monthly_income_yuan": "此项必填",
        "monthly_expenses_yuan": "此项必填",
        "consent": "须同意后方可处理您的申请",
    }
    assert accessibility_problems(r.text) == []
    assert await case_count(env) == 0


async def test_unknown_bank_is_invalid_input(alice: httpx.AsyncClient, env: Backend) -> None:
    token = await open_apply_form(alice)
    r = await alice.post("/borrower/apply", data=application_form(token, bank_code="NOPE"))
    assert r.status_code == 422
    assert alert_of(r.text) == "请从列表中选择银行。"
    assert await case_count(env) == 0


async def test_card_number_typed_in_groups_is_accepted(
    alice: httpx.AsyncClient, env: Backend
) -> None:
    token = await open_apply_form(alice)
    form = application_form(token, account_ref="6222 0000 1111 2222")
    r = await alice.post("/borrower/apply", data=form)
    assert r.status_code == 303
    case = await load_case(env, r.headers["location"].rsplit("/", 1)[1])
    assert case.account_ref == "6222000011112222"


async def test_odd_characters_in_the_card_number_are_explained(
    alice: httpx.AsyncClient, env: Backend
) -> None:
    token = await open_apply_form(alice)
    r = await alice.post("/borrower/apply", data=application_form(token, account_ref="6222/01"))
    assert r.status_code == 422
    error = r.text.split('id="account_ref-error">', 1)[1].split("</p>", 1)[0]
    assert error == "含有不允许的字符"
    assert await case_count(env) == 0


async def test_second_open_application_for_the_account_is_refused(
    alice: httpx.AsyncClient, env: Backend
) -> None:
    token = await open_apply_form(alice)
    assert (await alice.post("/borrower/apply", data=application_form(token))).status_code == 303
    r = await alice.post("/borrower/apply", data=application_form(token))
    assert r.status_code == 409
    assert alert_of(r.text) == "您在该银行的此账户已有进行中的调解申请"
    assert ALICE_ID not in r.text
    assert 'value="张伟"' in r.text
    assert await case_count(env) == 1


@pytest.mark.parametrize("token", [None, "forged"])
async def test_apply_needs_the_csrf_token(
    alice: httpx.AsyncClient, env: Backend, token: str | None
) -> None:
    await open_apply_form(alice)
    form = application_form("x")
    if token is None:
        del form["csrf_token"]
    else:
        form["csrf_token"] = token
    r = await alice.post("/borrower/apply", data=form)
    assert r.status_code == 403
    assert await case_count(env) == 0


async def test_anonymous_double_submit_token_does_not_work_once_signed_in(
    alice: httpx.AsyncClient, env: Backend
) -> None:
    """After sign-in the token is bound to the session, not to the pre-sign-in cookie."""
    cookie_token = anon_csrf_cookie(alice)
    assert cookie_token
    session_token = await open_apply_form(alice)
    assert session_token != cookie_token
    r = await alice.post("/borrower/apply", data=application_form(cookie_token))
    assert r.status_code == 403
    assert await case_count(env) == 0


# --- the case page -------------------------------------------------------------------------------


async def test_home_lists_only_my_cases(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    mine = await apply(alice, world.alice)
    theirs = await apply(alice, world.bob, full_name="李娜")
    home = await alice.get("/borrower")
    assert mine["case_no"] in home.text
    assert theirs["case_no"] not in home.text
    assert "正在审核" in home.text

    r = await alice.get(f"/borrower/cases/{theirs['id']}")
    assert r.status_code == 404
    assert "案件不存在" in r.text
    assert "李娜" not in r.text


async def test_case_page_shows_the_timeline(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    r = await alice.post(
        f"/api/v1/cases/{case['id']}/debt-confirmation",
        json={"principal_fen": 1_000_000, "interest_fen": 0, "fees_fen": 0, "days_overdue": 10},
        headers=world.bank_demo.headers,
    )
    assert r.status_code == 200
    page = await alice.get(f"/borrower/cases/{case['id']}")
    timeline = page.text.split('<ol class="timeline">', 1)[1].split("</ol>", 1)[0]
    assert timeline.index("提交调解申请") < timeline.index("银行确认债务")
    assert timeline.count("<li>") == 2
    assert "银行工作人员" in timeline
    assert "¥10,000.00" in page.text


async def test_withdraw_through_the_form(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}"
    page = await alice.get(url)
    assert f'action="{url}/withdraw"' in page.text

    r = await alice.post(
        f"{url}/withdraw",
        data={"csrf_token": csrf_of(page.text), "reason": "已与银行自行协商", "confirm": "yes"},
    )
    assert r.status_code == 303
    assert r.headers["location"] == url
    assert (await load_case(env, case["id"])).status == "withdrawn"
    assert await event_kinds(env, case["id"]) == ["submitted", "withdrawn"]

    page = await alice.get(url)
    assert "已撤回" in page.text
    assert "已与银行自行协商" in page.text
    assert f'action="{url}/withdraw"' not in page.text
    assert f'action="{url}/documents"' not in page.text

    # A second withdrawal (a stale page) is refused with a message; nothing changes.
    r = await alice.post(
        f"{url}/withdraw", data={"csrf_token": csrf_of(page.text), "confirm": "yes"}
    )
    assert r.status_code == 409
    assert alert_of(r.text) == "案件当前所处阶段不能进行此操作，页面已显示案件的最新状态。"
    assert await event_kinds(env, case["id"]) == ["submitted", "withdrawn"]


async def test_withdraw_needs_the_box_ticked(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}"
    page = await alice.get(url)
    r = await alice.post(f"{url}/withdraw", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 422
    assert alert_of(r.text) == "请勾选确认框，确认您要撤回申请"
    assert (await load_case(env, case["id"])).status == "submitted"
    assert await event_kinds(env, case["id"]) == ["submitted"]


async def test_withdraw_needs_the_csrf_token(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    r = await alice.post(f"/borrower/cases/{case['id']}/withdraw", data={"csrf_token": "forged"})
    assert r.status_code == 403
    assert (await load_case(env, case["id"])).status == "submitted"


async def test_cannot_withdraw_someone_elses_case(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    theirs = await apply(alice, world.bob)
    token = await open_apply_form(alice)
    r = await alice.post(f"/borrower/cases/{theirs['id']}/withdraw", data={"csrf_token": token})
    assert r.status_code == 404
    assert (await load_case(env, theirs["id"])).status == "submitted"


def upload_form(token: str, kind: str = "id_card") -> dict[str, str]:
    return {"csrf_token": token, "kind": kind}


async def test_upload_a_png_through_the_form(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}"
    page = await alice.get(url)
    assert f'action="{url}/documents"' in page.text
    assert 'enctype="multipart/form-data"' in page.text
    r = await alice.post(
        f"{url}/documents",
        data=upload_form(csrf_of(page.text)),
        files={"file": ("身份证 正面.png", io.BytesIO(png_bytes()), "image/png")},
    )
    assert r.status_code == 303
    assert r.headers["location"] == url
    async with env.session() as s:
        docs = list(await s.scalars(select(Document).where(Document.case_id == case["id"])))
    assert [(d.kind, d.content_type, d.uploader_role) for d in docs] == [
        ("id_card", "image/png", "borrower")
    ]
    page = await alice.get(url)
    link = f"/api/v1/cases/{case['id']}/documents/{docs[0].id}"
    assert f'href="{link}"' in page.text
    assert docs[0].filename in page.text
    assert f"{len(png_bytes())} B · " in page.text
    assert "上传材料" in page.text  # on the timeline
    # The link works with the portal's cookie and gives back the same bytes.
    download = await alice.get(link)
    assert download.status_code == 200
    assert download.content == png_bytes()


async def test_fake_pdf_is_refused_with_a_message(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}"
    page = await alice.get(url)
    fake = b"%PDF-1.4\n<script>alert(1)</script>"  # starts like a PDF, is not one
    r = await alice.post(
        f"{url}/documents",
        data=upload_form(csrf_of(page.text), "income_proof"),
        files={"file": ("salary.pdf", io.BytesIO(fake), "application/pdf")},
    )
    assert r.status_code == 422
    assert alert_of(r.text) == "仅支持 JPEG、PNG 和 PDF 文件"
    # The case page is shown again, with the form to try another file.
    assert f'action="{url}/documents"' in r.text
    assert await env.count(Document) == 0
    assert await event_kinds(env, case["id"]) == ["submitted"]


def multipart(fields: dict[str, str], file_part: bytes) -> tuple[bytes, dict[str, str]]:
    """A form body written out by hand, to send the file part exactly as browsers do."""
    boundary = "----hejie-test-boundary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    body += f"--{boundary}\r\n".encode() + file_part + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


NO_FILE_CHOSEN = (
    b'Content-Disposition: form-data; name="file"; filename=""\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n"
)
PNG_PART = (
    b'Content-Disposition: form-data; name="file"; filename="id.png"\r\n'
    b"Content-Type: image/png\r\n\r\n" + png_bytes()
)
TEXT_FIELD = b'Content-Disposition: form-data; name="file"\r\n\r\nnot a file'


@pytest.mark.parametrize(
    ("kind", "file_part", "message"),
    [
        ("id_card", NO_FILE_CHOSEN, "请选择要上传的文件"),
        ("id_card", TEXT_FIELD, "请选择要上传的文件"),
        ("passport", PNG_PART, "请选择材料类型和文件"),
        ("", PNG_PART, "请选择材料类型和文件"),
    ],
)
async def test_upload_without_file_or_kind_is_refused(
    alice: httpx.AsyncClient,
    env: Backend,
    world: World,
    kind: str,
    file_part: bytes,
    message: str,
) -> None:
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}"
    token = csrf_of((await alice.get(url)).text)
    body, headers = multipart({"csrf_token": token, "kind": kind}, file_part)
    r = await alice.post(f"{url}/documents", content=body, headers=headers)
    assert r.status_code == 422
    assert alert_of(r.text) == message
    assert await env.count(Document) == 0


async def test_upload_of_an_empty_named_file_is_refused(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}"
    token = csrf_of((await alice.get(url)).text)
    r = await alice.post(
        f"{url}/documents",
        data={"csrf_token": token, "kind": "other"},
        files={"file": ("empty.pdf", io.BytesIO(b""), "application/pdf")},
    )
    assert r.status_code == 422
    assert alert_of(r.text) == "文件为空"
    assert await env.count(Document) == 0


async def test_too_large_file_is_refused_with_a_message(
    alice: httpx.AsyncClient, env: Backend, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}"
    token = csrf_of((await alice.get(url)).text)
    monkeypatch.setattr(env.settings, "max_upload_bytes", 1024)
    big = png_bytes()[:-12] + b"\x00" * 2048 + png_bytes()[-12:]
    r = await alice.post(
        f"{url}/documents",
        data={"csrf_token": token, "kind": "other"},
        files={"file": ("big.png", io.BytesIO(big), "image/png")},
    )
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("text/html")
    assert alert_of(r.text) == "文件过大。"
    assert await env.count(Document) == 0


async def test_language_switch_after_a_refused_form_returns_to_a_real_page(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """The refused form's own address only takes posts; the switch must not lead there."""
    case = await apply(alice, world.alice)
    url = f"/borrower/cases/{case['id']}"
    token = csrf_of((await alice.get(url)).text)
    r = await alice.post(
        f"{url}/documents",
        data={"csrf_token": token, "kind": "other"},
        files={"file": ("x.pdf", io.BytesIO(b"%PDF-"), "application/pdf")},
    )
    assert r.status_code == 422
    link = f'href="/lang/en?next={url}"'
    assert link in r.text
    r = await alice.get("/lang/en", params={"next": url})
    page = await alice.get(r.headers["location"])
    assert page.status_code == 200
    assert "Withdraw this application" in page.text


async def test_language_switch_on_the_code_step_returns_to_sign_in(
    client: httpx.AsyncClient, env: Backend
) -> None:
    code_page = await request_code(client, NEW_PHONE)
    assert 'href="/lang/en?next=/borrower/login"' in code_page.text


async def test_too_many_codes_are_refused(client: httpx.AsyncClient, env: Backend) -> None:
    for _ in range(env.settings.otp_max_per_hour):
        assert (await request_code(client, NEW_PHONE)).status_code == 200
    r = await request_code(client, NEW_PHONE)
    assert r.status_code == 429
    assert alert_of(r.text) == "该号码获取验证码次数过多，请一小时后再试"
    assert len(await outbox_messages(env, NEW_PHONE)) == env.settings.otp_max_per_hour


async def test_what_the_borrower_typed_is_escaped(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    token = await open_apply_form(alice)
    form = application_form(token, hardship_detail='<script>alert("x")</script>')
    r = await alice.post("/borrower/apply", data=form)
    assert r.status_code == 303
    page = await alice.get(r.headers["location"])
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text


async def test_upload_needs_the_csrf_token(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    r = await alice.post(
        f"/borrower/cases/{case['id']}/documents",
        data={"kind": "id_card"},
        files={"file": ("id.pdf", io.BytesIO(pdf_bytes()), "application/pdf")},
    )
    assert r.status_code == 403
    assert await env.count(Document) == 0


async def test_resubmit_after_more_information_was_requested(
    alice: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(alice, world.alice)
    r = await alice.post(
        f"/api/v1/cases/{case['id']}/review",
        json={"decision": "request_info", "reason": "请补充近三个月的收入证明"},
        headers=world.mediator.headers,
    )
    assert r.status_code == 200
    url = f"/borrower/cases/{case['id']}"
    home = await alice.get("/borrower")
    assert "需补充材料" in home.text
    page = await alice.get(url)
    assert "请补充近三个月的收入证明" in page.text
    assert f'action="{url}/resubmit"' in page.text
    assert accessibility_problems(page.text) == []

    r = await alice.post(
        f"{url}/resubmit", data={"csrf_token": csrf_of(page.text), "note": "已上传收入证明"}
    )
    assert r.status_code == 303
    assert (await load_case(env, case["id"])).status == "submitted"
    assert await event_kinds(env, case["id"]) == ["submitted", "request_info", "resubmitted"]
    page = await alice.get(url)
    assert f'action="{url}/resubmit"' not in page.text
    assert "已上传收入证明" in page.text

    # Resubmitting again (a stale page) is refused, readably.
    r = await alice.post(f"{url}/resubmit", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 409
    assert alert_of(r.text) == "案件当前所处阶段不能进行此操作，页面已显示案件的最新状态。"
    assert await event_kinds(env, case["id"]) == ["submitted", "request_info", "resubmitted"]


async def test_english_borrower_portal(alice: httpx.AsyncClient, env: Backend) -> None:
    home = await alice.get("/borrower")
    assert "申请调解" in home.text
    assert "Apply for mediation" not in home.text
    r = await alice.get("/lang/en", params={"next": "/borrower"})
    assert r.headers["location"] == "/borrower"
    assert alice.cookies.get(LANG_COOKIE) == "en"
    home = await alice.get("/borrower")
    assert "Apply for mediation" in home.text
    assert "申请调解" not in home.text
    form = await alice.get("/borrower/apply")
    assert "Full name as on your ID card" in form.text


async def test_dev_code_is_shown_only_to_a_browser_on_this_machine(env: Backend) -> None:
    for client_addr, shown in ((("127.0.0.1", 5000), True), (("203.0.113.9", 5000), False)):
        transport = httpx.ASGITransport(app=env.app, client=client_addr)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            page = await request_code(c, "13700000042")
            assert page.status_code == 200
            assert ('class="devnote"' in page.text) is shown, client_addr


async def test_apply_form_states_each_consent_purpose_and_version(
    alice: httpx.AsyncClient,
) -> None:
    from app.cases.consent import TERMS

    page = await alice.get("/borrower/apply")
    assert TERMS.personal_info.purpose_zh in page.text
    assert TERMS.sensitive_info.purpose_zh in page.text
    assert TERMS.version in page.text
