"""What an agreement says: the frozen `content` every rendering (HTML, PDF, package) is made from.

The wording is the institution's standard form in Chinese, the language the agreement is signed
in; the portals show it as is in either UI language. Amounts are integer fen; dates are the
Asia/Shanghai calendar.
"""

from datetime import date, datetime, timedelta
from typing import Any

from app.cases.models import Case
from app.i18n import SHANGHAI, format_fen
from app.repayment import plans
from app.sessions.models import Offer

# Installments overdue and unpaid at once that make the remaining balance due.
DEFAULT_AFTER_MISSED = 2
# Days from the effective date within which the parties apply for judicial confirmation.
JUDICIAL_DAYS = 30


def cn_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def judicial_deadline(effective_at: datetime) -> date:
    """The last day to apply jointly for judicial confirmation (司法确认)."""
    return effective_at.astimezone(SHANGHAI).date() + timedelta(days=JUDICIAL_DAYS)


def build(
    *,
    case: Case,
    offer: Offer,
    mediator_name: str,
    version: int,
    drafted_at: datetime,
) -> dict[str, Any]:
    """The agreement's content, from the case's confirmed debt and its accepted offer."""
    principal = case.principal_fen or 0
    interest = case.interest_fen or 0
    fees = case.fees_fen or 0
    debt_total = principal + interest + fees
    terms = plans.PlanTerms(
        total_fen=offer.total_fen,
        waiver_fen=offer.waiver_fen,
        installments=offer.installments,
        first_due=offer.first_due,
        deferral_months=offer.deferral_months,
    )
    schedule = plans.schedule(terms)
    borrower = case.full_name
    bank = case.bank.name
    drafted_day = drafted_at.astimezone(SHANGHAI).date()
    plan_text = [
        f"借款人同意按以下计划向{bank}偿还{format_fen(offer.total_fen)}："
        f"分{offer.installments}期按月还款，首期还款日为{cn_date(schedule[0].due)}，"
        f"末期还款日为{cn_date(schedule[-1].due)}。各期还款日期及金额以本协议所附还款计划表为准。",
    ]
    if offer.deferral_months:
        plan_text.append(f"经协商，首期还款日较原定日期延后{offer.deferral_months}个月。")
    plan_text.append("借款人应于每期还款日（含当日）前将当期款项足额存入其在债权银行的还款账户。")
    clauses = [
        {
            "heading": "第一条　债务确认",
            "text": [
                f"截至{cn_date(drafted_day)}，借款人{borrower}尚欠{bank}本金"
                f"{format_fen(principal)}、利息{format_fen(interest)}、费用{format_fen(fees)}，"
                f"合计{format_fen(debt_total)}。各方对上述债务数额无异议。"
            ],
        },
        {
            "heading": "第二条　减免",
            "text": [
                f"{bank}同意减免利息及费用共计{format_fen(offer.waiver_fen)}，借款人实际应还"
                f"{format_fen(offer.total_fen)}。借款人按本协议履行完毕后，{bank}不再就上述债务"
                "向借款人主张任何权利。"
            ],
        },
        {"heading": "第三条　还款计划", "text": plan_text},
        {
            "heading": "第四条　违约责任",
            "text": [
                f"借款人有{DEFAULT_AFTER_MISSED}期（含）以上到期款项未足额偿还的，剩余未还款项"
                f"全部视为到期，{bank}有权要求借款人一次性清偿，并可依法申请强制执行。"
            ],
        },
        {
            "heading": "第五条　生效与司法确认",
            "text": [
                f"本协议经借款人、{bank}签署，并由调解员代表{case.institution.name}见证签署之日起生效。",
                f"各方同意自本协议生效之日起{JUDICIAL_DAYS}日内共同向有管辖权的人民法院申请司法确认。",
            ],
        },
        {
            "heading": "第六条　自愿声明",
            "text": [
                "各方确认：本协议系在平等、自愿的基础上经调解达成，各方已完整阅读并理解本协议全部内容，"
                "签署出于真实意思表示，不存在欺诈、胁迫或乘人之危的情形。"
            ],
        },
        {
            "heading": "第七条　电子签署与备案",
            "text": [
                "本协议以电子方式签署。各方签署时均再次核验身份，签署时间、核验方式及所签文件的"
                "SHA-256 摘要记载于签名页，与书面签字具有同等效力。",
                "本协议签署完毕后由平台封存并备案，持有本协议者可凭备案编号在平台的公开核验页面核验其真实性。",
            ],
        },
    ]
    return {
        "case_no": case.case_no,
        "version": version,
        "drafted_at": drafted_at.isoformat().replace("+00:00", "Z"),
        "parties": {
            "borrower": {"name": borrower, "id_number_masked": case.id_number_masked},
            "bank": {"name": bank},
            "institution": {"name": case.institution.name},
            "mediator": {"name": mediator_name},
        },
        "debt": {
            "principal_fen": principal,
            "interest_fen": interest,
            "fees_fen": fees,
            "total_fen": debt_total,
        },
        "plan": {
            "total_fen": offer.total_fen,
            "waiver_fen": offer.waiver_fen,
            "installments": offer.installments,
            "first_due": offer.first_due.isoformat(),
            "deferral_months": offer.deferral_months,
            "schedule": [
                {
                    "number": item.number,
                    "due_date": item.due.isoformat(),
                    "amount_fen": item.amount_fen,
                }
                for item in schedule
            ],
        },
        "default_after_missed": DEFAULT_AFTER_MISSED,
        "judicial_days": JUDICIAL_DAYS,
        "clauses": clauses,
    }
