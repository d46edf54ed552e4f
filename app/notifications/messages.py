"""The texts sent to borrowers, all in one place.

Every text names who sends it, is polite, and never threatens: no talk of lawsuits, visits,
exposure, credit blacklists or detention. A test holds each one to that. A text carries no
amounts or ID numbers: an SMS can be read by whoever holds the phone.
"""

from datetime import date, datetime

from app.notifications.contact_rules import SHANGHAI

SENDER = "【和解调解平台】"
SIGN_IN_HINT = "详情请登录和解调解平台查看。"


def _when(at: datetime) -> str:
    local = at.astimezone(SHANGHAI)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def login_code(code: str, *, valid_minutes: int) -> str:
    return (
        f"{SENDER}您的登录验证码为 {code}，{valid_minutes} 分钟内有效。"
        "请勿将验证码告诉任何人。如非本人操作，请忽略本短信。"
    )


def signing_code(code: str, *, valid_minutes: int) -> str:
    return (
        f"{SENDER}您正在签署调解协议，验证码为 {code}，{valid_minutes} 分钟内有效。"
        "输入验证码即表示您同意签署。请勿将验证码告诉任何人。"
    )


def contact_code(code: str, *, valid_minutes: int) -> str:
    return (
        f"{SENDER}您正在将本号码设为和解调解平台账户的联系手机，验证码为 {code}，"
        f"{valid_minutes} 分钟内有效。请勿将验证码告诉任何人。如非本人操作，请忽略本短信。"
    )


def agreement_filed(case_no: str, *, filing_no: str) -> str:
    return (
        f"{SENDER}您好，您的调解协议（案件编号 {case_no}）已由各方签署生效并备案，"
        f"备案编号 {filing_no}。协议及还款计划可登录下载查看。"
    )


def application_received(case_no: str) -> str:
    return (
        f"{SENDER}您好，您的调解申请（编号 {case_no}）已收到，调解员将尽快审核，"
        f"审核结果会及时通知您。{SIGN_IN_HINT}"
    )


def information_requested(case_no: str) -> str:
    return (
        f"{SENDER}您好，调解员审核您的申请（编号 {case_no}）时需要您补充一些信息，"
        f"方便时请登录平台查看说明并补充。感谢您的配合。"
    )


def accepted(case_no: str) -> str:
    return (
        f"{SENDER}您好，您的调解申请（编号 {case_no}）已受理。"
        f"调解员将与您商定调解时间，请留意后续通知。{SIGN_IN_HINT}"
    )


def rejected(case_no: str) -> str:
    return (
        f"{SENDER}您好，很遗憾，您的调解申请（编号 {case_no}）暂未能受理，原因已在平台说明。"
        f"如有疑问，欢迎登录平台咨询。"
    )


def slot_booked(case_no: str, *, start: datetime) -> str:
    return (
        f"{SENDER}您好，您的调解（编号 {case_no}）已预约在 {_when(start)}（北京时间）在线进行。"
        f"如需改期，请登录平台操作。"
    )


def rescheduled(case_no: str, *, start: datetime) -> str:
    return (
        f"{SENDER}您好，您的调解（编号 {case_no}）时间已调整为 {_when(start)}（北京时间）。"
        f"{SIGN_IN_HINT}"
    )


def reminder_24h(case_no: str, *, start: datetime) -> str:
    return (
        f"{SENDER}温馨提醒：您的在线调解（编号 {case_no}）将于明天 {_when(start)}（北京时间）开始，"
        f"届时请登录平台进入调解室。"
    )


def reminder_1h(case_no: str, *, start: datetime) -> str:
    return (
        f"{SENDER}温馨提醒：您的在线调解（编号 {case_no}）将于一小时后 {_when(start)}（北京时间）"
        f"开始，请提前登录平台。"
    )


def cancelled_by_mediator(case_no: str, *, start: datetime) -> str:
    return (
        f"{SENDER}您好，很抱歉，您原定于 {_when(start)}（北京时间）的调解（编号 {case_no}）"
        f"因调解员安排调整需要改期，调解员将重新提供时间供您选择。{SIGN_IN_HINT}"
    )


def no_show(case_no: str) -> str:
    return (
        f"{SENDER}您好，您预约的调解（编号 {case_no}）未能如期进行。"
        f"如您仍希望调解，可登录平台重新预约时间。"
    )


def installment_due_soon(case_no: str, *, number: int, due_date: date) -> str:
    # No amount, as everywhere here: the borrower sees what is owed after signing in.
    return (
        f"{SENDER}温馨提醒：您调解协议（编号 {case_no}）约定的第{number}期还款"
        f"将于{due_date.month}月{due_date.day}日到期，请按时还款。应还金额请登录和解调解平台查看。"
    )


def repayment_completed(case_no: str) -> str:
    return (
        f"{SENDER}您好，您调解协议（编号 {case_no}）约定的款项已全部还清，感谢您按约还款。"
        f"结清证明可登录和解调解平台下载。"
    )


def repayment_defaulted(case_no: str) -> str:
    return (
        f"{SENDER}您好，您调解协议（编号 {case_no}）的还款计划有多期未按时还款，"
        f"按协议约定剩余款项现已到期。如有困难，欢迎登录平台与调解员沟通。"
    )


def invitation(bank_name: str, *, link: str) -> str:
    # Sent to the phone the bank imported, before the borrower has ever signed in: no name, no
    # amount, and the way to stop is in the same text (the link's page offers it).
    return (
        f"{SENDER}您好，{bank_name}邀请您通过本平台在线调解、协商还款，详情：{link} 。"
        "如不想再收到邀请，可打开链接退订。"
    )
