"""The copy of a borrower's data as a readable PDF in Chinese (`GET /me/data.pdf`).

The same layout, font (ReportLab's built-in STSong-Light, nothing embedded) and page furniture
as the agreements' PDFs (`app.agreements.pdf`), drawn from the same `MyData` as the JSON copy.
Codes print as the portal's Chinese labels; times in Asia/Shanghai; money from integer fen.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from reportlab.lib.units import mm
from reportlab.platypus import Spacer

from app.agreements.pdf import (
    PLATFORM,
    Story,
    _grid,
    _label_value_table,
    _p,
    _Page,
    _render,
    _styles,
)
from app.i18n import format_fen, format_local_time, translations
from app.portals import labels
from app.rights.schemas import CaseData, MyData

_zh = translations("zh_CN").gettext

CHANNEL = {
    "joint": "共同频道",
    "caucus:borrower": "背靠背（借款人）",
    "caucus:bank": "背靠背（银行）",
}
SIDE = {"borrower": "借款人", "bank": "银行", "mediator": "调解员", "system": "系统"}
MESSAGE_STATE = {"delivered": "", "held": "（暂缓转达）", "removed": "（已被调解员撤回）"}
OFFER_STATUS = {
    "open": "待答复",
    "accepted": "已接受",
    "declined": "已拒绝",
    "superseded": "已被替代",
}
AGREEMENT_STATUS = {"signing": "签署中", "declined": "已拒签", "filed": "已备案"}
PLAN_STATUS = {"active": "履行中", "completed": "已结清", "defaulted": "已违约"}
OUTBOX_STATUS = {
    "queued": "待发送",
    "sending": "发送中",
    "sent": "已发送",
    "failed": "发送失败",
    "cancelled": "已取消",
}
REQUEST_KIND = {
    "contact_correction": "更正联系方式",
    "consent_withdrawal": "撤回同意",
    "erasure": "删除个人信息",
}
REQUEST_OUTCOME = {"done": "已办理", "refused": "未办理"}
ERASURE_SCOPE = {"kept": "已删除，备案协议相关记录保留至期满", "full": "个人信息已全部删除"}
COMPLAINT_STATUS = {"open": "待答复", "resolved": "已答复"}
APPOINTMENT_STATUS = {"active": "有效", "cancelled": "已取消", "no_show": "未到场"}
IDENTITY_METHOD = {"sms_otp": "短信验证码", "totp": "动态口令"}


def _label(table: Mapping[str, str], code: str | None) -> str:
    if code is None:
        return "—"
    return _zh(table[code]) if code in table else code


def _own(table: Mapping[str, str], code: str | None) -> str:
    if code is None:
        return "—"
    return table.get(code, code)


def _time(at: datetime | str | None) -> str:
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return format_local_time(at) if at is not None else "—"


def _text(value: object) -> str:
    return "—" if value is None or value == "" else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float]) -> Any:
    s = _styles()
    if not rows:
        return _p("（无）", s.body)
    cells = [[_p(h, s.cell) for h in header]]
    cells += [[_p(value, s.cell) for value in row] for row in rows]
    return _grid(cells, [w * mm for w in widths], header=True)


def _debt(case: CaseData) -> str:
    debt = case.debt
    if debt is None:
        return "—"
    return (
        f"本金 {format_fen(debt.principal_fen)}，利息 {format_fen(debt.interest_fen)}，"
        f"费用 {format_fen(debt.fees_fen)}，逾期 {debt.days_overdue} 天"
    )


def _identity(case: CaseData) -> str:
    check = case.identity_check
    if check is None:
        return "—"
    verdict = "已核验" if check.verified else "未通过"
    note = f"：{check.note}" if check.note else ""
    return f"{verdict}（{_time(check.checked_at)}）{note}"


def _erasure(case: CaseData) -> str:
    erased = case.erasure
    if erased is None:
        return "—"
    text = f"{ERASURE_SCOPE.get(erased.scope, erased.scope)}（{_time(erased.erased_at)}）"
    if erased.scope == "kept" and erased.retain_until:
        text += f"，保留至 {_time(erased.retain_until)}"
    return text


def _case_story(case: CaseData) -> Story:
    s = _styles()
    story: Story = [
        _p(f"案件 {case.case_no}（{_label(labels.STATUS, case.status)}）", s.heading),
        _label_value_table(
            [
                ("债权银行", case.bank_name),
                ("调解机构", case.institution_name),
                ("卡号或借款合同号", _text(case.account_ref)),
                ("姓名", case.full_name),
                ("身份证号码", f"{_text(case.id_number_masked)}（脱敏显示）"),
                ("困难原因", _label(labels.HARDSHIP, case.hardship_reason)),
                ("困难说明", _text(case.hardship_detail)),
                ("月收入", format_fen(case.monthly_income_fen)),
                ("月必要支出", format_fen(case.monthly_expenses_fen)),
                ("自报欠款", format_fen(case.claimed_debt_fen)),
                ("方便联系时间", _label(labels.CONTACT_WINDOW, case.contact_window)),
                ("银行确认的债务", _debt(case)),
                ("身份核验", _identity(case)),
                ("审核意见", _text(case.decision_reason)),
                ("申请时间", _time(case.created_at)),
                ("删除情况", _erasure(case)),
            ]
        ),
        _p("处理记录", s.heading),
        _table(
            ["时间", "事项", "操作方", "备注"],
            [
                [
                    _time(e.at),
                    _label(labels.EVENT, e.kind),
                    _label(labels.ROLE, e.actor_role),
                    _text(e.note),
                ]
                for e in case.events
            ],
            [32, 45, 25, 68],
        ),
        _p("上传的材料", s.heading),
        _table(
            ["类型", "文件名", "大小", "上传时间"],
            [
                [
                    _label(labels.DOCUMENT_KIND, d.kind),
                    d.filename,
                    f"{d.size_bytes} 字节",
                    _time(d.created_at),
                ]
                for d in case.documents
            ],
            [30, 70, 30, 40],
        ),
        _p("调解会议预约", s.heading),
        _table(
            ["开始", "结束", "状态", "说明"],
            [
                [
                    _time(a.start),
                    _time(a.end),
                    _own(APPOINTMENT_STATUS, a.status),
                    _text(a.reason),
                ]
                for a in case.appointments
            ],
            [35, 35, 30, 70],
        ),
        _p("调解会议消息（您可以看到的部分）", s.heading),
        _table(
            ["序号", "时间", "频道", "发言人", "内容"],
            [
                [
                    str(m.seq),
                    _time(m.at),
                    _own(CHANNEL, m.channel),
                    f"{_own(SIDE, m.sender_side)} {m.sender_name}",
                    _text(m.body) + MESSAGE_STATE.get(m.state, ""),
                ]
                for m in case.messages
            ],
            [12, 28, 25, 30, 75],
        ),
        _p("还款方案报价", s.heading),
        _table(
            ["提出时间", "提出方", "还款总额", "减免", "期数", "首期", "状态"],
            [
                [
                    _time(o.created_at),
                    _own(SIDE, o.proposer_side),
                    format_fen(o.total_fen),
                    format_fen(o.waiver_fen),
                    str(o.installments),
                    o.first_due.isoformat(),
                    _own(OFFER_STATUS, o.status),
                ]
                for o in case.offers
            ],
            [28, 18, 28, 26, 14, 26, 30],
        ),
        _p("调解协议", s.heading),
        _table(
            ["版本", "状态", "备案编号", "生效时间", "签署"],
            [
                [
                    f"第 {a.version} 版",
                    _own(AGREEMENT_STATUS, a.status),
                    _text(a.filing_no),
                    _time(a.effective_at),
                    "；".join(
                        f"{_own(SIDE, sig.side)} {sig.name} {_time(sig.signed_at)}"
                        f"（{_own(IDENTITY_METHOD, sig.identity_method)}"
                        + (f"，IP {sig.ip_address}" if sig.ip_address else "")
                        + "）"
                        for sig in a.signatures
                    )
                    or "—",
                ]
                for a in case.agreements
            ],
            [16, 18, 32, 30, 74],
        ),
    ]
    if case.plan is not None:
        plan = case.plan
        story += [
            _p(
                f"还款计划（{_own(PLAN_STATUS, plan.status)}）：共 {format_fen(plan.total_fen)}，"
                f"已还 {format_fen(plan.paid_fen)}，未还 {format_fen(plan.remaining_fen)}",
                s.body,
            ),
            _table(
                ["期数", "到期日", "应还", "已还"],
                [
                    [
                        str(i.number),
                        i.due_date.isoformat(),
                        format_fen(i.amount_fen),
                        format_fen(i.paid_fen),
                    ]
                    for i in plan.installments
                ],
                [20, 50, 50, 50],
            ),
        ]
    story += [
        _p("还款记录", s.heading),
        _table(
            ["日期", "金额", "银行流水号"],
            [[p.paid_on.isoformat(), format_fen(p.amount_fen), p.reference] for p in case.payments],
            [40, 50, 80],
        ),
        _p("投诉", s.heading),
        _table(
            ["时间", "内容", "状态", "答复"],
            [
                [
                    _time(c.created_at),
                    _text(c.text),
                    _own(COMPLAINT_STATUS, c.status),
                    _text(c.resolution_note),
                ]
                for c in case.complaints
            ],
            [30, 65, 20, 55],
        ),
        _p("工作人员查阅记录", s.heading),
        _table(
            ["时间", "查阅人", "所属机构", "查阅内容"],
            [
                [
                    _time(r.at),
                    f"{_label(labels.ROLE, r.actor_role)} {r.actor_name}",
                    _text(r.organisation),
                    r.what + (f"（{r.detail}）" if r.detail else ""),
                ]
                for r in case.access_log
            ],
            [32, 50, 50, 38],
        ),
    ]
    return story


def _story(data: MyData) -> Story:
    s = _styles()
    profile = data.profile
    terms = data.consent_terms
    retention = data.retention
    story: Story = [
        _p("个人信息副本", s.title),
        _p(f"生成时间：{_time(data.generated_at)}（北京时间）", s.subtitle),
        _p(
            f"本文件是{PLATFORM}保存的关于您的全部个人信息的副本。身份证号码仅以脱敏形式显示："
            "完整号码加密保存，仅向核验身份的调解员显示。上传材料的文件本身可在案件页面下载。",
            s.body,
        ),
        _p("一、账户", s.heading),
        _label_value_table(
            [
                ("账户编号", profile.id),
                ("显示名称", profile.display_name),
                ("手机号码", _text(profile.phone)),
                ("账户状态", "正常" if profile.active else "已注销"),
                ("注册时间", _time(profile.created_at)),
                ("最近登录", _time(profile.last_login_at)),
            ]
        ),
        _p("二、同意记录", s.heading),
        _p(f"个人信息处理同意（版本 {terms.version}）：{terms.personal_info.purpose_zh}", s.body),
        _p(f"敏感个人信息处理同意：{terms.sensitive_info.purpose_zh}", s.body),
        _table(
            ["案件编号", "版本", "个人信息", "敏感个人信息", "撤回"],
            [
                [
                    c.case_no,
                    c.consent.version,
                    _time(c.consent.personal_info_at),
                    _time(c.consent.sensitive_info_at),
                    _time(c.withdrawn_at),
                ]
                for c in data.consents
            ],
            [40, 20, 37, 37, 36],
        ),
        _p("三、案件", s.heading),
    ]
    if not data.cases:
        story.append(_p("（无）", s.body))
    for case in data.cases:
        story += _case_story(case)
        story.append(Spacer(1, 4 * mm))
    story += [
        _p("四、发送给您的短信", s.heading),
        _table(
            ["时间", "号码", "内容", "状态"],
            [
                [_time(n.created_at), _text(n.to), _text(n.body), _own(OUTBOX_STATUS, n.status)]
                for n in data.notifications
            ],
            [30, 28, 90, 22],
        ),
        _p("五、银行导入并与您匹配的账户", s.heading),
        _table(
            ["银行", "账户", "姓名 / 身份证号", "手机", "欠款", "退订邀请"],
            [
                [
                    a.bank_name,
                    f"{a.account_ref}（{_label(labels.PRODUCT, a.product)}）",
                    f"{a.borrower_name} / {a.id_number_masked}",
                    _text(a.phone_masked),
                    format_fen(a.principal_fen + a.interest_fen + a.fees_fen),
                    _time(a.opted_out_at),
                ]
                for a in data.loan_accounts
            ],
            [28, 34, 38, 24, 22, 24],
        ),
        _p("六、您提出的个人信息请求", s.heading),
        _table(
            ["时间", "请求", "结果"],
            [
                [
                    _time(r.created_at),
                    _own(REQUEST_KIND, r.kind),
                    _own(REQUEST_OUTCOME, r.outcome)
                    + (f"（{r.refusal_code}）" if r.refusal_code else ""),
                ]
                for r in data.requests
            ],
            [40, 60, 70],
        ),
        _p("七、保存期限", s.heading),
        _p(
            f"已备案的调解协议及其记录，在协议约定的义务履行完毕（还款计划结清或违约）后保存 "
            f"{retention.retention_years} 年；未达成协议的申请（不予受理、撤回、调解不成）在结束后 "
            f"{retention.closed_case_retention_days} 天内删除；短信的号码与内容在发送后 "
            f"{retention.message_retention_days} 天删除。期满后平台删除或匿名化处理上述信息。",
            s.body,
        ),
    ]
    return story


def my_data_pdf(data: MyData) -> bytes:
    page = _Page(
        title="个人信息副本",
        subject=f"{PLATFORM}保存的个人信息",
        header_left=f"{PLATFORM} · 个人信息副本",
        header_right=_time(data.generated_at),
        created=data.generated_at,
    )
    return _render(lambda: _story(data), page)
