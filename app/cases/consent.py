"""The two separate consents a borrower gives when applying, each with its purpose (PIPL)."""

from pydantic import BaseModel

CONSENT_VERSION = "2026-11"


class ConsentTerm(BaseModel):
    purpose_zh: str
    purpose_en: str


class ConsentTerms(BaseModel):
    version: str
    personal_info: ConsentTerm
    sensitive_info: ConsentTerm


TERMS = ConsentTerms(
    version=CONSENT_VERSION,
    personal_info=ConsentTerm(
        purpose_zh=(
            "为调解您与银行之间的债务纠纷，调解中心和该银行将处理您的姓名、手机号码、收入与支出"
            "及困难情况；仅用于本次调解，并仅在法律要求的期限内保存。"
        ),
        purpose_en=(
            "To mediate the debt between you and the bank, the mediation centre and that bank "
            "process your name, mobile number, income, expenses and hardship; only for this "
            "mediation, and kept only as long as the law requires."
        ),
    ),
    sensitive_info=ConsentTerm(
        purpose_zh=(
            "为核验您的身份和债务，调解中心和该银行将处理您的身份证号码及金融账户信息（敏感个人"
            "信息）。身份证号码加密存储，除审核调解员外仅显示脱敏后的号码。"
        ),
        purpose_en=(
            "To verify your identity and the debt, the mediation centre and that bank process "
            "your ID number and financial account details (sensitive personal information). The "
            "ID number is stored encrypted and shown masked to everyone but the reviewing "
            "mediator."
        ),
    ),
)
