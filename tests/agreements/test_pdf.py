"""The step 5 PDFs, rendered from plain data and read back with pypdf: no database."""

import hashlib
import io
import re
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pypdf import PdfReader
from pypdf.generic import ArrayObject, StreamObject

from app.agreements import pdf
from app.agreements.pdf import (
    SignatureLine,
    agreement_pdf,
    judicial_application_pdf,
    mask_ip,
    seal,
    settlement_certificate_pdf,
    shorten_user_agent,
)
from app.repayment.plans import PlanTerms, schedule

CASE_NO = "HJ20261123-0007"
FILING_NO = "HJ-2026-000123"
FILED_AT = datetime(2026, 11, 23, 8, 10, tzinfo=UTC)  # 16:10 in Shanghai
VERIFY_URL = f"https://hejie.example.cn/verify/{FILING_NO}"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
CLAUSES: list[dict[str, Any]] = [
    {
        "heading": "第一条　债务确认",
        "text": [
            "借款人确认截至本协议拟定之日，尚欠债权银行本金、利息及费用共计人民币贰万叁仟伍佰元整。",
            "债权银行确认上述金额为其全部债权。",
        ],
    },
    {
        "heading": "第二条　还款安排",
        "text": ["借款人按本协议所附还款计划表分期还款，债权银行减免其余利息及费用。"],
    },
    {
        "heading": "第三条　违约责任",
        "text": ["借款人连续两期未按时足额还款的，债权银行有权要求借款人一次性清偿剩余款项。"],
    },
]


def make_content(installments: int = 12, **changes: Any) -> dict[str, Any]:
    """Agreement content in the exact shape the agreements service freezes."""
    terms = PlanTerms(
        total_fen=2_000_000,
        waiver_fen=350_000,
        installments=installments,
        first_due=date(2026, 12, 20),
    )
    content: dict[str, Any] = {
        "case_no": CASE_NO,
        "version": 1,
        "drafted_at": "2026-11-23T08:00:00Z",
        "parties": {
            "borrower": {"name": "王芳", "id_number_masked": "110105********1234"},
            "bank": {"name": "东方银行"},
            "institution": {"name": "和解调解中心"},
            "mediator": {"name": "李调解"},
        },
        "debt": {
            "principal_fen": 2_000_000,
            "interest_fen": 300_000,
            "fees_fen": 50_000,
            "total_fen": 2_350_000,
        },
        "plan": {
            "total_fen": terms.total_fen,
            "waiver_fen": terms.waiver_fen,
            "installments": installments,
            "first_due": "2026-12-20",
            "deferral_months": 0,
            "schedule": [
                {"number": i.number, "due_date": i.due.isoformat(), "amount_fen": i.amount_fen}
                for i in schedule(terms)
            ],
        },
        "default_after_missed": 2,
        "judicial_days": 30,
        "clauses": CLAUSES,
    }
    content.update(changes)
    return content


def signatures_for(document: bytes, **changes: Any) -> list[SignatureLine]:
    sha = hashlib.sha256(document).hexdigest()
    # Deliberately out of order: the page lists borrower, bank, mediator whatever the input.
    lines = [
        SignatureLine(
            side="mediator",
            name="李调解",
            signed_at=datetime(2026, 11, 23, 8, 9, 59, tzinfo=UTC),
            identity_method="totp",
            ip_address="2001:db8:85a3::8a2e:370:7334",
            user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0",
            document_sha256=sha,
        ),
        SignatureLine(
            side="borrower",
            name="王芳",
            signed_at=datetime(2026, 11, 23, 8, 5, 7, tzinfo=UTC),
            identity_method="sms_otp",
            ip_address="203.0.113.45",
            user_agent=IPHONE,
            document_sha256=sha,
        ),
        SignatureLine(
            side="bank",
            name="张经理",
            signed_at=datetime(2026, 11, 23, 8, 7, 30, tzinfo=UTC),
            identity_method="totp",
            ip_address="198.51.100.7",
            user_agent="Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Safari/605.1.15",
            document_sha256=sha,
        ),
    ]
    return [SignatureLine(**{**line.__dict__, **changes}) for line in lines]


def sealed_for(document: bytes, **changes: Any) -> bytes:
    arguments: dict[str, Any] = {
        "content": make_content(),
        "filing_no": FILING_NO,
        "filed_at": FILED_AT,
        "verify_url": VERIFY_URL,
        "signatures": signatures_for(document),
    }
    arguments.update(changes)
    return seal(document, **arguments)


def read(document: bytes) -> PdfReader:
    assert document.startswith(b"%PDF-")
    return PdfReader(io.BytesIO(document))


def page_lines(reader: PdfReader) -> list[list[str]]:
    """Each page's extracted text as stripped, non-empty lines (a table cell is a line)."""
    return [
        [line.strip() for line in page.extract_text().splitlines() if line.strip()]
        for page in reader.pages
    ]


def all_lines(reader: PdfReader) -> list[str]:
    return [line for lines in page_lines(reader) for line in lines]


def squeezed(reader: PdfReader, pages: slice = slice(None)) -> str:
    """All text without whitespace: wrapped lines join up, and U+3000 extracts as a space."""
    return re.sub(r"\s+", "", "".join(p.extract_text() for p in reader.pages[pages]))


def assert_in_order(lines: list[str], expected: list[str]) -> None:
    """Every expected line occurs, each after the previous one."""
    remaining = iter(lines)
    for wanted in expected:
        assert any(line == wanted for line in remaining), f"{wanted!r} missing or out of order"


def assert_page_numbers(reader: PdfReader) -> None:
    total = len(reader.pages)
    for number, lines in enumerate(page_lines(reader), start=1):
        assert f"第 {number} 页 / 共 {total} 页" in lines


def raw_content(page: Any) -> bytes:
    """A page's content stream(s) exactly as encoded in the file (pypdf's `_data`)."""
    contents = page["/Contents"].get_object()
    streams = contents if isinstance(contents, ArrayObject) else [contents]
    raw = b""
    for stream in streams:
        stream = stream.get_object()
        assert isinstance(stream, StreamObject)
        raw += stream._data
    return raw


# ---------------------------------------------------------------------------------------------
# The agreement


def test_agreement_is_a_chinese_pdf_with_parties_clauses_and_signature_block() -> None:
    reader = read(agreement_pdf(make_content()))

    assert len(reader.pages) >= 1
    assert_page_numbers(reader)
    lines = all_lines(reader)
    text = squeezed(reader)
    assert lines[lines.index("调解协议书") + 1] == f"案件编号：{CASE_NO} 第 1 版"
    assert_in_order(
        lines,
        [
            "借款人",
            "王芳（身份证号：110105********1234）",
            "债权银行",
            "东方银行",
            "调解机构",
            "和解调解中心",
            "调解员",
            "李调解",
        ],
    )
    # Clauses in the given order, every paragraph in full (wrapped lines rejoined).
    positions = [text.index(re.sub(r"\s+", "", clause["heading"])) for clause in CLAUSES]
    assert positions == sorted(positions)
    for clause in CLAUSES:
        for paragraph in clause["text"]:
            assert paragraph in text
    assert_in_order(
        lines,
        [
            "借款人",
            "王芳",
            "电子签名，签署记录见签名页",
            "债权银行",
            "东方银行",
            "电子签名，签署记录见签名页",
            "调解员（见证，代表调解机构）",
            "李调解",
            "电子签名，签署记录见签名页",
        ],
    )
    # The signature block comes after the schedule.
    assert text.index("签署记录见签名页") > text.index("还款计划表")


def test_agreement_metadata() -> None:
    meta = read(agreement_pdf(make_content())).metadata
    assert meta is not None
    assert meta.title == f"调解协议书 {CASE_NO}"
    assert meta.author == "和解调解平台"
    # drafted_at 08:00 UTC is 16:00 in Shanghai.
    assert meta.creation_date_raw == "D:20261123160000+08'00'"


def test_schedule_lists_every_installment_and_the_plan_total() -> None:
    content = make_content()
    lines = all_lines(read(agreement_pdf(content)))

    rows = content["plan"]["schedule"]
    assert rows[-1]["amount_fen"] == 166_674  # the last installment takes the remainder
    expected = ["期数", "到期日", "金额"]
    for row in rows:
        due = date.fromisoformat(row["due_date"])
        expected += [
            str(row["number"]),
            f"{due.year}年{due.month:02d}月{due.day:02d}日",
            f"¥{row['amount_fen'] // 100:,}.{row['amount_fen'] % 100:02d}",
        ]
    expected += ["合计", "¥20,000.00"]
    assert_in_order(lines, expected)
    assert lines.count("¥1,666.66") == 11
    assert lines.count("¥1,666.74") == 1
    assert "2027年11月20日" in lines


def test_sixty_installments_paginate_with_correct_page_numbers() -> None:
    short = read(agreement_pdf(make_content(12)))
    content = make_content(60)
    reader = read(agreement_pdf(content))

    assert len(reader.pages) > len(short.pages)
    assert_page_numbers(reader)
    lines = all_lines(reader)
    expected: list[str] = []
    for row in content["plan"]["schedule"]:
        expected += [str(row["number"]), f"¥{row['amount_fen'] / 100:,.2f}"]
    assert_in_order(lines, [*expected, "合计", "¥20,000.00"])
    assert lines.count("¥333.33") == 59
    assert "¥333.53" in lines
    assert "2031年11月20日" in lines
    # The header row repeats on every page the table continues onto.
    table_pages = [page for page in page_lines(reader) if "¥333.33" in page]
    assert len(table_pages) >= 2
    assert all("期数" in page for page in table_pages)


def test_agreement_is_deterministic() -> None:
    first = agreement_pdf(make_content())
    assert agreement_pdf(make_content()) == first
    other = make_content()
    other["parties"]["bank"]["name"] = "西方银行"
    assert agreement_pdf(other) != first


def test_agreement_refuses_inconsistent_or_float_money() -> None:
    content = make_content()
    content["plan"]["schedule"][0]["amount_fen"] += 1
    with pytest.raises(ValueError, match="add up"):
        agreement_pdf(content)

    content = make_content()
    content["plan"]["schedule"] = content["plan"]["schedule"][:-1]
    content["plan"]["schedule"][-1]["amount_fen"] += 166_674
    with pytest.raises(ValueError, match="number of installments"):
        agreement_pdf(content)

    content = make_content()
    content["plan"]["schedule"][0]["amount_fen"] = 1666.66
    with pytest.raises(ValueError, match="integer fen"):
        agreement_pdf(content)


def test_long_names_and_markup_wrap_and_print_literally() -> None:
    long_name = "欧阳" * 40 + "<b>&amp;"
    content = make_content()
    content["parties"]["borrower"]["name"] = long_name
    content["parties"]["bank"]["name"] = "东方银行股份有限公司" * 8
    reader = read(agreement_pdf(content))

    assert_page_numbers(reader)
    text = squeezed(reader)
    assert text.count(long_name) >= 2  # the parties table and the signature block
    assert "东方银行股份有限公司" * 8 in text


# ---------------------------------------------------------------------------------------------
# The sealed document


def test_seal_keeps_the_signed_pages_byte_for_byte_and_adds_one_page() -> None:
    document = agreement_pdf(make_content(60))
    sealed = sealed_for(document)
    original, result = read(document), read(sealed)

    assert len(result.pages) == len(original.pages) + 1
    for before, after in zip(original.pages, result.pages, strict=False):
        raw = raw_content(before)
        assert raw_content(after) == raw
        # Written out as it was encoded, not decoded and compressed again.
        assert raw in sealed
        assert after.extract_text() == before.extract_text()
        assert after.mediabox == before.mediabox
    assert "签名页" in page_lines(result)[-1]


def test_seal_writes_the_filing_number_as_a_plain_keyword() -> None:
    sealed = sealed_for(agreement_pdf(make_content()))

    assert b"hejie-filing:" + FILING_NO.encode() in sealed
    assert re.search(rb"/Keywords \(hejie-filing:HJ-2026-000123\)", sealed)
    meta = read(sealed).metadata
    assert meta is not None
    assert str(meta["/Keywords"]) == f"hejie-filing:{FILING_NO}"
    assert meta.title == f"调解协议书 {CASE_NO}（备案编号 {FILING_NO}）"
    assert meta.author == "和解调解平台"
    assert meta.creation_date_raw == "D:20261123161000+08'00'"


def test_seal_is_deterministic_with_an_id_derived_from_its_inputs() -> None:
    document = agreement_pdf(make_content())
    first = sealed_for(document)

    assert sealed_for(document) == first
    other = sealed_for(document, filing_no="HJ-2026-000124")
    assert other != first
    file_id = re.compile(rb"/ID \[ <([0-9a-f]{32})> <([0-9a-f]{32})> \]")
    ids = [file_id.findall(sealed) for sealed in (first, other)]
    assert len(ids[0]) == 1 and ids[0][0][0] == ids[0][0][1]
    assert ids[0] != ids[1]


def test_signature_page_records_filing_and_every_signature() -> None:
    document = agreement_pdf(make_content())
    sha = hashlib.sha256(document).hexdigest()
    reader = read(sealed_for(document))
    page = page_lines(reader)[-1]
    text = squeezed(reader, slice(-1, None))

    assert_in_order(page, ["签名页", "备案信息", "备案编号", FILING_NO, "备案时间"])
    assert "2026年11月23日 16:10:00（北京时间）" in page
    assert text.count(sha) == 4  # once at the top, once per signature
    assert_in_order(page, ["签名页", f"所签署文件（调解协议书）SHA-256：{sha}", "备案信息"])
    assert_in_order(
        page,
        [
            "签署方",
            "借款人",
            "签署人",
            "王芳",
            "签署时间",
            "2026年11月23日 16:05:07（北京时间）",
            "身份确认方式",
            "短信验证码",
            "IP 地址",
            "203.0.113.*",
            "签署方",
            "债权银行",
            "张经理",
            "2026年11月23日 16:07:30（北京时间）",
            "动态口令",
            "198.51.100.*",
            "签署方",
            "调解员",
            "李调解",
            "2026年11月23日 16:09:59（北京时间）",
            "动态口令",
            "2001:db8:85a3::8a2e:370:*",
        ],
    )
    for address in ("203.0.113.45", "198.51.100.7", "7334"):
        assert address not in text
    assert IPHONE[:59].replace(" ", "") + "…" in text
    assert "Safari/604.1" not in text
    assert VERIFY_URL in page
    assert "持有本文件的任何人均可扫描二维码或访问上述网址，核验本文件的真实性与备案状态。" in text


def test_signature_page_qr_code_encodes_the_verify_url() -> None:
    drawing = pdf._qr(VERIFY_URL)
    (widget,) = drawing.contents
    assert widget.value == VERIFY_URL


def test_long_names_and_user_agents_still_fit_one_signature_page() -> None:
    document = agreement_pdf(make_content())
    long_name = "阿卜杜热合曼·买买提" * 10
    user_agent = "Mozilla/5.0 " + "X" * 400
    signatures = signatures_for(document, name=long_name, user_agent=user_agent)
    sealed = sealed_for(document, signatures=signatures)
    reader = read(sealed)

    assert len(reader.pages) == len(read(document).pages) + 1
    text = squeezed(reader, slice(-1, None))
    assert text.count(long_name) == 3
    assert "Mozilla/5.0" + "X" * 47 + "…" in text
    assert "X" * 49 not in text


def test_seal_refuses_mismatched_or_unknown_signatures() -> None:
    document = agreement_pdf(make_content())
    with pytest.raises(ValueError, match="different document"):
        sealed_for(document, signatures=signatures_for(document, document_sha256="0" * 64))
    with pytest.raises(ValueError, match="Unknown"):
        sealed_for(document, signatures=signatures_for(document, identity_method="password"))
    with pytest.raises(ValueError, match="filing number"):
        sealed_for(document, filing_no="HJ-2026) /Keywords (x")
    naive = datetime(2026, 11, 23, 8, 10)
    with pytest.raises(ValueError, match="timezone-aware"):
        sealed_for(document, filed_at=naive)


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("203.0.113.45", "203.0.113.*"),
        ("10.0.0.0", "10.0.0.*"),
        ("2001:db8:85a3::8a2e:370:7334", "2001:db8:85a3::8a2e:370:*"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::*"),
        ("::1", "::*"),
        ("::ffff:198.51.100.7", "::ffff:198.51.100.*"),
        ("not an address", "—"),
        ("", "—"),
    ],
)
def test_mask_ip(address: str, masked: str) -> None:
    assert mask_ip(address) == masked


def test_shorten_user_agent() -> None:
    assert shorten_user_agent("curl/8.5") == "curl/8.5"
    assert shorten_user_agent("a" * 60) == "a" * 60
    shortened = shorten_user_agent("a\n b" + "c" * 100)
    assert shortened == "a b" + "c" * 56 + "…"
    assert len(shortened) == 60


# ---------------------------------------------------------------------------------------------
# The judicial confirmation application


def test_judicial_application_is_filled_from_the_case() -> None:
    # 17:30 UTC is already the next day in Shanghai.
    effective_at = datetime(2026, 11, 23, 17, 30, tzinfo=UTC)
    document = judicial_application_pdf(
        make_content(), filing_no=FILING_NO, effective_at=effective_at, deadline=date(2026, 12, 24)
    )
    reader = read(document)
    lines = all_lines(reader)
    text = squeezed(reader)

    assert_page_numbers(reader)
    assert lines[0:1] == ["和解调解平台 · 司法确认申请书"]
    assert "司法确认申请书" in lines
    for expected in [
        "申请人一（借款人）：王芳，公民身份号码：110105********1234（身份证明文件见附件）。",
        "申请人二（债权银行）：东方银行",
        "调解机构：和解调解中心；调解员：李调解。",
        "请求依法确认申请人王芳与东方银行于2026年11月24日经和解调解中心调解达成的调解协议有效。",
        "债务共计¥23,500.00（其中本金¥20,000.00、利息¥3,000.00、费用¥500.00）",
        "王芳分12期向东方银行偿还共计¥20,000.00，首期还款日为2026年12月20日",
        "东方银行减免¥3,500.00。",
        "自愿达成调解协议",
        "不损害国家利益、社会公共利益、集体利益或者第三人的合法权益",
        "提交的证明材料真实、合法",
        f"备案编号：{FILING_NO}",
        "请于2026年12月24日前共同向有管辖权的人民法院提出申请",
        "1.调解协议书",
        "2.各方身份证明文件（借款人居民身份证复印件、银行营业执照复印件及负责人身份证明、授权委托书）",
        "3.签署记录",
    ]:
        assert re.sub(r"\s+", "", expected) in text, expected
    assert "延期" not in text
    assert_in_order(lines, ["申请人签名", "申请人（借款人）", "王芳", "签名：", "日期："])
    assert_in_order(lines, ["申请人（债权银行）", "东方银行", "盖章，负责人或委托代理人签名："])
    meta = reader.metadata
    assert meta is not None
    assert meta.title == f"司法确认申请书 {CASE_NO}"


def test_judicial_application_mentions_a_deferral_and_is_deterministic() -> None:
    content = make_content()
    content["plan"]["deferral_months"] = 3
    arguments: dict[str, Any] = {
        "filing_no": FILING_NO,
        "effective_at": FILED_AT,
        "deadline": date(2026, 12, 23),
    }
    document = judicial_application_pdf(content, **arguments)

    assert "并同意延期还款3个月" in squeezed(read(document))
    assert judicial_application_pdf(content, **arguments) == document


# ---------------------------------------------------------------------------------------------
# The settlement certificate


def certificate(**changes: Any) -> bytes:
    arguments: dict[str, Any] = {
        "certificate_no": "JQ-2027-000045",
        "case_no": CASE_NO,
        "filing_no": FILING_NO,
        "borrower_name": "王芳",
        "id_number_masked": "110105********1234",
        "bank_name": "东方银行",
        "institution_name": "和解调解中心",
        "total_paid_fen": 2_000_000,
        "agreed_total_fen": 2_000_000,
        "completed_on": date(2027, 11, 20),
        "issued_at": datetime(2027, 11, 20, 23, 15, 42, tzinfo=UTC),
        "verify_url": "https://hejie.example.cn/verify/certificate/JQ-2027-000045",
    }
    arguments.update(changes)
    return settlement_certificate_pdf(**arguments)


def test_settlement_certificate() -> None:
    document = certificate(total_paid_fen=2_000_001)
    reader = read(document)
    lines = all_lines(reader)
    text = squeezed(reader)

    assert len(reader.pages) == 1
    assert_page_numbers(reader)
    assert "结清证明" in lines
    assert "证明编号：JQ-2027-000045" in lines
    assert (
        "兹证明：借款人王芳（公民身份号码：110105********1234）已按照其与东方银行经和解调解中心"
        f"调解达成、备案编号为{FILING_NO}的调解协议（案件编号：{CASE_NO}），"
        "足额偿还约定还款总额¥20,000.00。该调解协议项下的债务已结清。"
    ) in text
    assert_in_order(
        lines,
        ["约定还款总额", "¥20,000.00", "实际还款总额", "¥20,000.01", "结清日期", "2027年11月20日"],
    )
    assert "本证明由和解调解平台代表和解调解中心出具。" in lines
    assert "出具时间：2027年11月21日 07:15:42（北京时间）" in lines
    assert "https://hejie.example.cn/verify/certificate/JQ-2027-000045" in lines
    assert certificate(total_paid_fen=2_000_001) == document


def test_settlement_certificate_refuses_a_plan_not_paid_in_full() -> None:
    with pytest.raises(ValueError, match="paid in full"):
        certificate(total_paid_fen=1_999_999)
