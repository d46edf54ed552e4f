"""Staff sign-in, the mediator's review pages and the bank's case pages, through their forms."""

import io

import httpx
import pytest
from sqlalchemy import select

from app import security
from app.cases.models import Document
from app.users.deps import SESSION_COOKIE
from app.web import ANON_CSRF_COOKIE
from tests.helpers import (
    ALICE_ID,
    Backend,
    World,
    apply,
    png_bytes,
    ready_for_decision,
    upload,
)
from tests.portals.util import (
    Browser,
    TotpClock,
    accessibility_problems,
    alert_of,
    cookie_attributes,
    csrf_of,
    event_kinds,
    load_case,
    session_cookie,
    set_cookie_header,
    sign_in_borrower,
    sign_in_staff,
)


async def apply_with_id_card(client: httpx.AsyncClient, world: World) -> dict[str, str]:
    """Alice's case at DEMO with her ID card uploaded, ready for the identity check."""
    case = await apply(client, world.alice)
    assert (await upload(client, world.alice, case["id"])).status_code == 201
    return case


# --- staff sign-in -------------------------------------------------------------------------------


async def test_staff_sign_in_page(client: httpx.AsyncClient, env: Backend) -> None:
    r = await client.get("/staff/login")
    assert r.status_code == 200
    assert "工作人员登录" in r.text
    assert csrf_of(r.text) == client.cookies.get(ANON_CSRF_COOKIE)
    assert 'type="password"' in r.text
    assert accessibility_problems(r.text) == []


@pytest.mark.parametrize(
    ("who", "home"), [("mediator", "/mediator"), ("bank_demo", "/bank")], ids=["mediator", "bank"]
)
async def test_staff_sign_in_lands_on_their_portal(
    client: httpx.AsyncClient, env: Backend, world: World, clock: TotpClock, who: str, home: str
) -> None:
    actor = getattr(world, who)
    r = await sign_in_staff(client, actor, clock)
    assert r.headers["location"] == home
    assert {"httponly", "samesite=lax", "path=/"} <= cookie_attributes(
        set_cookie_header(r, SESSION_COOKIE)
    )
    page = await client.get(home)
    assert page.status_code == 200
    assert actor.username in page.text  # who is signed in
    assert "退出登录" in page.text


async def test_staff_sign_in_follows_next(
    client: httpx.AsyncClient, env: Backend, world: World, clock: TotpClock
) -> None:
    case = await apply(client, world.alice)
    target = f"/mediator/cases/{case['id']}"
    r = await client.get(target)
    assert r.status_code == 303
    assert r.headers["location"] == f"/staff/login?next={target}"
    assert f'name="next" value="{target}"' in (await client.get(r.headers["location"])).text
    r = await sign_in_staff(client, world.mediator, clock, next_url=target)
    assert r.headers["location"] == target


async def staff_form(
    client: httpx.AsyncClient, actor_username: str, **fields: str
) -> dict[str, str]:
    page = await client.get("/staff/login")
    return {"csrf_token": csrf_of(page.text), "username": actor_username, **fields}


async def test_wrong_password_is_refused_without_echoing_it(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert world.mediator.username and world.mediator.totp_secret
    form = await staff_form(
        client,
        world.mediator.username,
        password="Wrong-Password-123",
        totp=security.current_totp(world.mediator.totp_secret),
    )
    r = await client.post("/staff/login", data=form)
    assert r.status_code == 401
    assert alert_of(r.text) == "用户名、密码或动态验证码错误"
    assert f'value="{world.mediator.username}"' in r.text
    assert "Wrong-Password-123" not in r.text
    assert session_cookie(client) is None


async def test_authenticator_code_works_once(
    client: httpx.AsyncClient, browser: Browser, env: Backend, world: World
) -> None:
    actor = world.bank_demo
    assert actor.username and actor.password and actor.totp_secret
    code = security.current_totp(actor.totp_secret)
    form = await staff_form(client, actor.username, password=actor.password, totp=code)
    assert (await client.post("/staff/login", data=form)).status_code == 303

    other = await browser()
    form = await staff_form(other, actor.username, password=actor.password, totp=code)
    r = await other.post("/staff/login", data=form)
    assert r.status_code == 401
    assert alert_of(r.text) == "该动态验证码已使用，请等待下一个验证码"
    assert session_cookie(other) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"totp": "12x456"}, "请输入身份验证器中的 6 位动态验证码"),
        ({"totp": "１２３４５６"}, "请输入身份验证器中的 6 位动态验证码"),
        ({"totp": "1234567"}, "请输入身份验证器中的 6 位动态验证码"),
        ({"password": ""}, "请输入用户名、密码和动态验证码"),
        ({"username": "x" * 65}, "用户名：内容过长"),
    ],
)
async def test_incomplete_staff_sign_in_is_refused(
    client: httpx.AsyncClient, env: Backend, world: World, fields: dict[str, str], message: str
) -> None:
    actor = world.mediator
    assert actor.username and actor.password and actor.totp_secret
    form = await staff_form(
        client,
        actor.username,
        password=actor.password,
        totp=security.current_totp(actor.totp_secret),
    )
    r = await client.post("/staff/login", data={**form, **fields})
    assert r.status_code == 422
    assert alert_of(r.text) == message
    assert session_cookie(client) is None


async def test_staff_sign_in_needs_the_csrf_token(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    actor = world.mediator
    assert actor.username and actor.password and actor.totp_secret
    await client.get("/staff/login")
    r = await client.post(
        "/staff/login",
        data={
            "username": actor.username,
            "password": actor.password,
            "totp": security.current_totp(actor.totp_secret),
            "csrf_token": "forged",
        },
    )
    assert r.status_code == 403
    assert session_cookie(client) is None


# --- who may open what ---------------------------------------------------------------------------


async def test_borrower_cannot_open_staff_portals(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    assert world.alice.phone
    await sign_in_borrower(client, env, world.alice.phone)
    for path in ("/mediator", "/bank"):
        r = await client.get(path)
        assert r.status_code == 403, path
        assert r.headers["content-type"].startswith("text/html")
        assert "无权访问" in r.text
        assert "此页面属于其他类型的账户" in r.text
        # Still signed in: the page keeps the way home and out.
        assert 'href="/borrower"' in r.text
        assert "退出登录" in r.text
    # Signing out from that page works: its form carries the session's token.
    r = await client.post("/logout", data={"csrf_token": csrf_of(r.text)})
    assert r.status_code == 303
    assert session_cookie(client) is None


async def test_staff_cannot_use_each_others_portals(
    mediator: httpx.AsyncClient, bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(mediator, world.alice)
    assert (await mediator.get("/bank")).status_code == 403
    assert (await mediator.get("/borrower")).status_code == 403
    assert (await bank.get("/mediator")).status_code == 403
    assert (await bank.get(f"/mediator/cases/{case['id']}")).status_code == 403
    # A form post from the wrong portal changes nothing, even with a valid token.
    token = csrf_of((await bank.get("/bank")).text)
    r = await bank.post(
        f"/mediator/cases/{case['id']}/identity-check",
        data={"csrf_token": token, "verified": "yes", "note": "冒充调解员"},
    )
    assert r.status_code == 403
    assert (await load_case(env, case["id"])).identity_checked_at is None


# --- mediator ------------------------------------------------------------------------------------


async def test_queue_lists_the_institutions_cases(
    mediator: httpx.AsyncClient,
    browser: Browser,
    env: Backend,
    world: World,
    clock: TotpClock,
) -> None:
    case = await apply(mediator, world.alice)
    r = await mediator.get("/mediator")
    assert r.status_code == 200
    assert f'href="/mediator/cases/{case["id"]}"' in r.text
    assert case["case_no"] in r.text
    assert "张伟" in r.text
    assert "等待银行确认" in r.text
    assert ALICE_ID not in r.text
    assert accessibility_problems(r.text) == []

    # A mediator of another institution neither lists nor opens it.
    other = await browser()
    await sign_in_staff(other, world.mediator_other, clock)
    r = await other.get("/mediator")
    assert case["case_no"] not in r.text
    r = await other.get(f"/mediator/cases/{case['id']}")
    assert r.status_code == 404
    assert "案件不存在" in r.text
    assert "张伟" not in r.text


async def test_review_page_shows_the_full_id_number_to_the_mediator_only(
    mediator: httpx.AsyncClient, bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(mediator, world.alice)
    page = await mediator.get(f"/mediator/cases/{case['id']}")
    assert page.status_code == 200
    assert ALICE_ID in page.text
    assert accessibility_problems(page.text) == []
    bank_page = await bank.get(f"/bank/cases/{case['id']}")
    assert ALICE_ID not in bank_page.text
    assert case["id_number_masked"] in bank_page.text


async def test_identity_check_through_the_form(
    mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply_with_id_card(mediator, world)
    url = f"/mediator/cases/{case['id']}"
    page = await mediator.get(url)
    assert f'action="{url}/identity-check"' in page.text
    r = await mediator.post(
        f"{url}/identity-check",
        data={"csrf_token": csrf_of(page.text), "verified": "yes", "note": "与身份证照片一致"},
    )
    assert r.status_code == 303
    assert r.headers["location"] == url
    stored = await load_case(env, case["id"])
    assert stored.identity_verified is True
    assert stored.identity_note == "与身份证照片一致"
    assert stored.identity_checked_by == world.mediator.user_id
    page = await mediator.get(url)
    assert "身份核验通过" in page.text
    assert "与身份证照片一致" in page.text


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"note": "看过了"}, "请选择身份核验结果"),
        ({"verified": "maybe", "note": "看过了"}, "请选择身份核验结果"),
        ({"verified": "yes", "note": " "}, "请说明核验了哪些内容（至少 2 个字）"),
    ],
)
async def test_incomplete_identity_check_is_refused(
    mediator: httpx.AsyncClient, env: Backend, world: World, form: dict[str, str], message: str
) -> None:
    case = await apply(mediator, world.alice)
    url = f"/mediator/cases/{case['id']}"
    token = csrf_of((await mediator.get(url)).text)
    r = await mediator.post(f"{url}/identity-check", data={"csrf_token": token, **form})
    assert r.status_code == 422
    assert alert_of(r.text) == message
    assert (await load_case(env, case["id"])).identity_checked_at is None


async def test_identity_cannot_be_verified_before_an_id_card_is_uploaded(
    mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(mediator, world.alice)
    url = f"/mediator/cases/{case['id']}"
    token = csrf_of((await mediator.get(url)).text)
    r = await mediator.post(
        f"{url}/identity-check", data={"csrf_token": token, "verified": "yes", "note": "一致"}
    )
    assert r.status_code == 409
    assert alert_of(r.text) == "借款人上传身份证材料后才能核验身份"
    assert (await load_case(env, case["id"])).identity_checked_at is None
    # Recording that it could not be verified needs no document.
    r = await mediator.post(
        f"{url}/identity-check",
        data={"csrf_token": token, "verified": "no", "note": "尚未上传身份证"},
    )
    assert r.status_code == 303
    stored = await load_case(env, case["id"])
    assert (stored.identity_verified, stored.identity_note) == (False, "尚未上传身份证")
    page = await mediator.get(url)
    assert "身份核验未通过" in page.text


async def test_accept_is_refused_before_the_bank_confirmed_the_debt(
    mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply_with_id_card(mediator, world)
    url = f"/mediator/cases/{case['id']}"
    page = await mediator.get(url)
    token = csrf_of(page.text)
    r = await mediator.post(
        f"{url}/identity-check", data={"csrf_token": token, "verified": "yes", "note": "一致"}
    )
    assert r.status_code == 303
    page = await mediator.get(url)
    # The page does not offer to accept yet, and says why.
    assert 'value="accept"' not in page.text
    assert "银行确认债务" in page.text

    # Posting it anyway (a stale or hand-made form) is refused readably; nothing changes.
    r = await mediator.post(
        f"{url}/review", data={"csrf_token": token, "decision": "accept", "reason": ""}
    )
    assert r.status_code == 409
    assert alert_of(r.text) == "银行尚未确认债务"
    stored = await load_case(env, case["id"])
    assert stored.status == "submitted"
    assert stored.mediator_id is None
    assert await event_kinds(env, case["id"]) == [
        "submitted",
        "document_uploaded",
        "identity_verified",
    ]


async def test_bank_confirms_then_mediator_accepts_through_the_forms(
    mediator: httpx.AsyncClient,
    bank: httpx.AsyncClient,
    client: httpx.AsyncClient,
    env: Backend,
    world: World,
) -> None:
    case = await apply_with_id_card(bank, world)
    bank_url = f"/bank/cases/{case['id']}"
    page = await bank.get(bank_url)
    assert f'action="{bank_url}/debt-confirmation"' in page.text
    assert accessibility_problems(page.text) == []
    r = await bank.post(
        f"{bank_url}/debt-confirmation",
        data={
            "csrf_token": csrf_of(page.text),
            "principal_yuan": "20,000.00",
            "interest_yuan": "3000",
            "fees_yuan": "500.5",
            "days_overdue": "45",
        },
    )
    assert r.status_code == 303
    assert r.headers["location"] == bank_url
    stored = await load_case(env, case["id"])
    assert (stored.principal_fen, stored.interest_fen, stored.fees_fen) == (
        2_000_000,
        300_000,
        50_050,
    )
    assert (stored.days_overdue, stored.overdue_tier) == (45, "M2")
    assert stored.debt_confirmed_by == world.bank_demo.user_id
    page = await bank.get(bank_url)
    # One Chinese phrase, Chinese punctuation, and "overdue 45 days" in Chinese word order.
    assert (
        "¥23,500.50 — 本金 ¥20,000.00，利息 ¥3,000.00，费用 ¥500.50；逾期 45 天（M2）" in page.text
    )
    # The form stays for a correction, filled with what was confirmed.
    assert 'value="20000.00"' in page.text

    url = f"/mediator/cases/{case['id']}"
    token = csrf_of((await mediator.get(url)).text)
    r = await mediator.post(
        f"{url}/identity-check", data={"csrf_token": token, "verified": "yes", "note": "一致"}
    )
    assert r.status_code == 303
    page = await mediator.get(url)
    assert 'value="accept"' in page.text
    assert "本金 ¥20,000.00，利息 ¥3,000.00，费用 ¥500.50；逾期 45 天（M2）" in page.text
    r = await mediator.post(
        f"{url}/review", data={"csrf_token": token, "decision": "accept", "reason": "材料齐全"}
    )
    assert r.status_code == 303
    stored = await load_case(env, case["id"])
    assert stored.status == "accepted"
    assert stored.mediator_id == world.mediator.user_id
    page = await mediator.get(url)
    assert "申请已受理" in page.text
    assert f'action="{url}/review"' not in page.text
    # The queue now lists it under accepted.
    queue = await mediator.get("/mediator")
    accepted = queue.text.split("已受理", 1)[1]
    assert case["case_no"] in accepted

    # The borrower sees the outcome.
    assert world.alice.phone
    await sign_in_borrower(client, env, world.alice.phone)
    borrower_page = await client.get(f"/borrower/cases/{case['id']}")
    assert "已受理" in borrower_page.text
    assert "¥23,500.50" in borrower_page.text


async def test_reject_needs_a_reason(
    mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(mediator, world.alice)
    url = f"/mediator/cases/{case['id']}"
    token = csrf_of((await mediator.get(url)).text)
    r = await mediator.post(
        f"{url}/review", data={"csrf_token": token, "decision": "reject", "reason": " "}
    )
    assert r.status_code == 422
    assert "不予受理或要求补充材料时须填写原因" in alert_of(r.text)
    assert (await load_case(env, case["id"])).status == "submitted"

    r = await mediator.post(
        f"{url}/review",
        data={"csrf_token": token, "decision": "reject", "reason": "该债务不属于本中心受理范围"},
    )
    assert r.status_code == 303
    stored = await load_case(env, case["id"])
    assert stored.status == "rejected"
    assert stored.decision_reason == "该债务不属于本中心受理范围"


async def test_unknown_decision_is_refused(
    mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await ready_for_decision(mediator, world)
    url = f"/mediator/cases/{case_id}"
    token = csrf_of((await mediator.get(url)).text)
    r = await mediator.post(f"{url}/review", data={"csrf_token": token, "decision": "approve"})
    assert r.status_code == 422
    assert alert_of(r.text)
    assert (await load_case(env, case_id)).status == "submitted"


async def test_review_needs_the_csrf_token(
    mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case_id = await ready_for_decision(mediator, world)
    r = await mediator.post(
        f"/mediator/cases/{case_id}/review",
        data={"csrf_token": "forged", "decision": "accept"},
    )
    assert r.status_code == 403
    assert (await load_case(env, case_id)).status == "submitted"


async def test_mediator_uploads_a_document(
    mediator: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(mediator, world.alice)
    url = f"/mediator/cases/{case['id']}"
    token = csrf_of((await mediator.get(url)).text)
    r = await mediator.post(
        f"{url}/documents",
        data={"csrf_token": token, "kind": "other"},
        files={"file": ("通话记录.png", io.BytesIO(png_bytes()), "image/png")},
    )
    assert r.status_code == 303
    async with env.session() as s:
        docs = list(await s.scalars(select(Document).where(Document.case_id == case["id"])))
    assert [(d.kind, d.uploader_role) for d in docs] == [("other", "mediator")]
    r = await mediator.post(
        f"{url}/documents",
        data={"csrf_token": token, "kind": "other"},
        files={"file": ("x.png", io.BytesIO(b"GIF89a not a png"), "image/png")},
    )
    assert r.status_code == 422
    assert alert_of(r.text) == "仅支持 JPEG、PNG 和 PDF 文件"
    assert await env.count(Document) == 1


# --- bank ----------------------------------------------------------------------------------------


async def test_bank_list_filters_by_status(
    bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    open_case = await apply(bank, world.alice)
    closed = await apply(bank, world.bob, full_name="李娜", account_ref="B-2")
    r = await bank.post(
        f"/api/v1/cases/{closed['id']}/withdraw", json={}, headers=world.bob.headers
    )
    assert r.status_code == 200
    elsewhere = await apply(bank, world.alice, bank_code="EAST")

    r = await bank.get("/bank")
    assert r.status_code == 200
    assert open_case["case_no"] in r.text and closed["case_no"] in r.text
    assert elsewhere["case_no"] not in r.text
    assert accessibility_problems(r.text) == []

    r = await bank.get("/bank", params={"status": "withdrawn"})
    assert closed["case_no"] in r.text
    assert open_case["case_no"] not in r.text
    assert '<option value="withdrawn" selected>' in r.text

    r = await bank.get("/bank", params={"status": "accepted"})
    assert open_case["case_no"] not in r.text and closed["case_no"] not in r.text
    assert "本行没有符合条件的案件。" in r.text

    # An unknown status is ignored rather than an error.
    r = await bank.get("/bank", params={"status": "bogus"})
    assert r.status_code == 200
    assert open_case["case_no"] in r.text and closed["case_no"] in r.text


async def test_other_bank_gets_a_404_page(
    browser: Browser, env: Backend, world: World, clock: TotpClock
) -> None:
    east = await browser()
    await sign_in_staff(east, world.bank_east, clock)
    case = await apply(east, world.alice)  # at DEMO
    r = await east.get(f"/bank/cases/{case['id']}")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "页面不存在" in r.text
    assert "张伟" not in r.text
    assert case["case_no"] not in (await east.get("/bank")).text

    token = csrf_of((await east.get("/bank")).text)
    r = await east.post(
        f"/bank/cases/{case['id']}/debt-confirmation",
        data={
            "csrf_token": token,
            "principal_yuan": "1",
            "interest_yuan": "0",
            "fees_yuan": "0",
            "days_overdue": "1",
        },
    )
    assert r.status_code == 404
    assert (await load_case(env, case["id"])).debt_confirmed_at is None


async def test_second_officer_of_the_same_bank_sees_the_case(
    browser: Browser, env: Backend, world: World, clock: TotpClock
) -> None:
    c = await browser()
    await sign_in_staff(c, world.bank_demo2, clock)
    case = await apply(c, world.alice)
    assert (await c.get(f"/bank/cases/{case['id']}")).status_code == 200


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"principal_yuan": "0", "interest_yuan": "0", "fees_yuan": "0"}, "确认的债务金额不能为零"),
        ({"days_overdue": "many"}, "逾期天数：请输入有效的金额或整数"),
        ({"days_overdue": "²"}, "逾期天数：请输入有效的金额或整数"),
        ({"days_overdue": "40000"}, "逾期天数：不能超过 36500"),
        ({"principal_yuan": "1.234"}, "本金：请输入有效的金额或整数"),
        ({"interest_yuan": "-1"}, "利息：不能为负数"),
        (
            {"principal_yuan": "", "fees_yuan": ""},
            "本金：请输入有效的金额或整数；费用及罚息：请输入有效的金额或整数",
        ),
    ],
)
async def test_bad_debt_confirmation_is_refused(
    bank: httpx.AsyncClient, env: Backend, world: World, fields: dict[str, str], message: str
) -> None:
    case = await apply(bank, world.alice)
    url = f"/bank/cases/{case['id']}"
    form = {
        "csrf_token": csrf_of((await bank.get(url)).text),
        "principal_yuan": "100",
        "interest_yuan": "0",
        "fees_yuan": "0",
        "days_overdue": "10",
        **fields,
    }
    r = await bank.post(f"{url}/debt-confirmation", data=form)
    assert r.status_code == 422
    assert alert_of(r.text) == message
    assert accessibility_problems(r.text) == []
    assert (await load_case(env, case["id"])).debt_confirmed_at is None


async def test_debt_typed_on_a_chinese_keyboard(
    bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    """Full-width digits and punctuation, as a Chinese input method types them."""
    case = await apply(bank, world.alice)
    url = f"/bank/cases/{case['id']}"
    form = {
        "csrf_token": csrf_of((await bank.get(url)).text),
        "principal_yuan": "￥１２，０００．５０",
        "interest_yuan": "３００元",
        "fees_yuan": "０",
        "days_overdue": "１２",
    }
    r = await bank.post(f"{url}/debt-confirmation", data=form)
    assert r.status_code == 303
    stored = await load_case(env, case["id"])
    assert (stored.principal_fen, stored.interest_fen, stored.fees_fen) == (1_200_050, 30_000, 0)
    assert (stored.days_overdue, stored.overdue_tier) == (12, "M1")


async def test_refusals_in_english_name_the_field(
    bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await bank.get("/lang/en")
    case = await apply(bank, world.alice)
    url = f"/bank/cases/{case['id']}"
    form = {
        "csrf_token": csrf_of((await bank.get(url)).text),
        "principal_yuan": "",
        "interest_yuan": "0",
        "fees_yuan": "0",
        "days_overdue": "-3",
    }
    r = await bank.post(f"{url}/debt-confirmation", data=form)
    assert r.status_code == 422
    assert alert_of(r.text) == (
        "Principal: Input should be a valid integer; "
        "Days overdue: Input should be greater than or equal to 0"
    )


async def test_list_filter_survives_the_language_switch(
    bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    r = await bank.get("/bank", params={"status": "withdrawn"})
    assert 'href="/lang/en?next=/bank%3Fstatus%3Dwithdrawn"' in r.text
    r = await bank.get("/lang/en", params={"next": "/bank?status=withdrawn"})
    assert r.headers["location"] == "/bank?status=withdrawn"


async def test_debt_confirmation_after_withdrawal_is_refused(
    bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(bank, world.alice)
    url = f"/bank/cases/{case['id']}"
    token = csrf_of((await bank.get(url)).text)
    r = await bank.post(
        f"/api/v1/cases/{case['id']}/withdraw", json={}, headers=world.alice.headers
    )
    assert r.status_code == 200
    page = await bank.get(url)
    assert f'action="{url}/debt-confirmation"' not in page.text
    r = await bank.post(
        f"{url}/debt-confirmation",
        data={
            "csrf_token": token,
            "principal_yuan": "100",
            "interest_yuan": "0",
            "fees_yuan": "0",
            "days_overdue": "10",
        },
    )
    assert r.status_code == 409
    assert alert_of(r.text) == "仅在申请审核期间可以进行此操作。"
    assert (await load_case(env, case["id"])).debt_confirmed_at is None


async def test_debt_confirmation_needs_the_csrf_token(
    bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    case = await apply(bank, world.alice)
    r = await bank.post(
        f"/bank/cases/{case['id']}/debt-confirmation",
        data={"principal_yuan": "100", "interest_yuan": "0", "fees_yuan": "0", "days_overdue": "1"},
    )
    assert r.status_code == 403
    assert (await load_case(env, case["id"])).debt_confirmed_at is None


# --- the footer ----------------------------------------------------------------------------------


async def test_the_footer_speaks_to_its_reader(
    alice: httpx.AsyncClient, bank: httpx.AsyncClient, browser: Browser
) -> None:
    """A borrower (or anyone not signed in) is told they may withdraw; staff are told that the
    borrower may."""
    yours, theirs = "协议备案前您可随时撤回申请", "协议备案前借款人可随时撤回申请"
    for page in (
        (await alice.get("/borrower")).text,
        (await (await browser()).get("/verify")).text,
    ):
        assert yours in page and theirs not in page
    for page in ((await bank.get("/bank")).text, (await bank.get("/verify")).text):
        assert theirs in page and yours not in page
