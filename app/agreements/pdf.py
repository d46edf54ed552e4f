"""Every PDF of step 5: the agreement, its sealed form, the judicial application, the certificate.

Pure functions, bytes in and bytes out: no database, no clock, no randomness. The same input gives
the same bytes (ReportLab's invariant mode, creation dates taken from the input, a /ID derived from
the input), so a document can be rendered again and its SHA-256 compared. Chinese text uses
ReportLab's built-in STSong-Light CID font, which PDF readers supply: nothing is embedded or
downloaded. Money is integer fen; times arrive as aware UTC datetimes and print in Asia/Shanghai.
"""

import hashlib
import io
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import IO, Any
from xml.sax.saxutils import escape

from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, ByteStringObject, NameObject, TextStringObject
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import (
    KeepInFrame,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from app.i18n import SHANGHAI, format_fen

FONT = "STSong-Light"
PLATFORM = "和解调解平台"
PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN_X = 20 * mm
MARGIN_TOP = 25 * mm
MARGIN_BOTTOM = 22 * mm
CONTENT_WIDTH = PAGE_WIDTH - 2 * MARGIN_X
FILING_KEYWORD_PREFIX = "hejie-filing:"
USER_AGENT_MAX = 60

SIDE_LABELS = {"borrower": "借款人", "bank": "债权银行", "mediator": "调解员"}
IDENTITY_METHOD_LABELS = {"sms_otp": "短信验证码", "totp": "动态口令"}
# Written into /Keywords as a bare literal string, so only characters that need no escaping.
_FILING_NO = re.compile(r"[A-Za-z0-9-]{1,40}")

Story = list[Any]


@dataclass(frozen=True)
class SignatureLine:
    """One party's signature as the signature page prints it."""

    side: str
    name: str
    signed_at: datetime
    identity_method: str
    ip_address: str
    user_agent: str
    document_sha256: str


# ---------------------------------------------------------------------------------------------
# Formatting


def mask_ip(address: str) -> str:
    """The address with its last IPv4 octet or last IPv6 group replaced by `*`."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return "—"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return "::ffff:" + mask_ip(str(ip.ipv4_mapped))
        head, _, _ = ip.compressed.partition("%")[0].rpartition(":")
        return f"{head}:*"
    head, _, _ = str(ip).rpartition(".")
    return f"{head}.*"


def shorten_user_agent(user_agent: str, limit: int = USER_AGENT_MAX) -> str:
    """The user agent on one line, cut to `limit` characters with an ellipsis when longer."""
    flat = " ".join(user_agent.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _fen(value: object) -> int:
    # bool is an int and a float would lose fen: both mean the content was built wrongly.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"Money must be integer fen, not {type(value).__name__}.")
    return value


def _money(value: object) -> str:
    return format_fen(_fen(value))


def _local(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("Times must be timezone-aware.")
    return at.astimezone(SHANGHAI)


def _cn_date(day: date) -> str:
    return f"{day.year:04d}年{day.month:02d}月{day.day:02d}日"


def _cn_time(at: datetime) -> str:
    local = _local(at)
    return f"{_cn_date(local.date())} {local:%H:%M:%S}（北京时间）"


def _pdf_date(at: datetime) -> str:
    # Shanghai has kept UTC+8 without daylight saving since 1991.
    return f"D:{_local(at):%Y%m%d%H%M%S}+08'00'"


# ---------------------------------------------------------------------------------------------
# Layout


@cache
def _register_font() -> str:
    """Register the CID font once per process (ReportLab's registry is global)."""
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


@dataclass(frozen=True)
class _Styles:
    title: ParagraphStyle
    subtitle: ParagraphStyle
    heading: ParagraphStyle
    body: ParagraphStyle
    clause: ParagraphStyle
    cell: ParagraphStyle
    cell_right: ParagraphStyle
    small: ParagraphStyle
    small_center: ParagraphStyle


@cache
def _styles() -> _Styles:
    font = _register_font()
    # CJK wrapping breaks between any two characters, so hashes, URLs and long names wrap too.
    body = ParagraphStyle(
        "body", fontName=font, fontSize=10.5, leading=17, wordWrap="CJK", spaceAfter=4
    )
    cell = ParagraphStyle("cell", parent=body, fontSize=9.5, leading=14, spaceAfter=0)
    small = ParagraphStyle("small", parent=body, fontSize=8.5, leading=12, spaceAfter=0)
    return _Styles(
        title=ParagraphStyle(
            "title", parent=body, fontSize=20, leading=28, alignment=TA_CENTER, spaceAfter=6
        ),
        subtitle=ParagraphStyle(
            "subtitle", parent=body, fontSize=10.5, alignment=TA_CENTER, spaceAfter=10
        ),
        heading=ParagraphStyle(
            "heading", parent=body, fontSize=12.5, leading=20, spaceBefore=8, spaceAfter=4
        ),
        body=body,
        clause=ParagraphStyle("clause", parent=body, firstLineIndent=21),
        cell=cell,
        cell_right=ParagraphStyle("cell_right", parent=cell, alignment=TA_RIGHT),
        small=small,
        small_center=ParagraphStyle("small_center", parent=small, alignment=TA_CENTER),
    )


def _p(text: str, style: ParagraphStyle) -> Paragraph:
    # Everything printed is data, never markup: names and user agents may contain < or &.
    return Paragraph(escape(text), style)


def _grid(
    rows: Sequence[Sequence[Any]],
    widths: Sequence[float],
    *,
    header: bool = False,
    total: bool = False,
    min_row_height: float | None = None,
) -> Table:
    table = Table(
        [list(row) for row in rows],
        colWidths=list(widths),
        repeatRows=1 if header else 0,
        minRowHeights=None if min_row_height is None else [min_row_height] * len(rows),
        hAlign="LEFT",
    )
    commands: list[tuple[Any, ...]] = [
        ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#EEEEEE")))
    if total:
        commands.append(("BACKGROUND", (0, -1), (-1, -1), colors.HexColor("#F5F5F5")))
    table.setStyle(TableStyle(commands))
    return table


def _label_value_table(rows: Sequence[tuple[str, str]], label_width: float = 32 * mm) -> Table:
    s = _styles()
    return _grid(
        [(_p(label, s.cell), _p(value, s.cell)) for label, value in rows],
        [label_width, CONTENT_WIDTH - label_width],
    )


def _qr(value: str, size: float = 32 * mm) -> Drawing:
    widget = QrCodeWidget(value, barLevel="M")
    left, bottom, right, top = widget.getBounds()
    drawing = Drawing(
        size, size, transform=[size / (right - left), 0, 0, size / (top - bottom), 0, 0]
    )
    drawing.add(widget)
    drawing.hAlign = "CENTER"
    return drawing


def _verification(verify_url: str, sentence: str) -> Story:
    s = _styles()
    return [
        Spacer(1, 4 * mm),
        _qr(verify_url),
        _p(verify_url, s.small_center),
        _p(sentence, s.small_center),
    ]


@dataclass(frozen=True)
class _Page:
    """What every page of one document carries around its body."""

    title: str
    subject: str
    header_left: str
    header_right: str
    created: datetime
    # None: "第 N 页 / 共 M 页"; otherwise this fixed footer (the one-page signature page).
    footer: str | None = None


def _build(story: Story, page: _Page, *, total_pages: int | None) -> tuple[bytes, int]:
    font = _register_font()
    created = _pdf_date(page.created)
    seen: list[int] = []

    def decorate(canvas: Any, _doc: Any) -> None:
        number = canvas.getPageNumber()
        seen.append(number)
        # ReportLab's invariant mode pins the dates to 2000-01-01; ours come from the input.
        canvas.setDateFormatter(lambda *_parts: created)
        canvas.saveState()
        canvas.setFont(font, 8.5)
        canvas.setFillColor(colors.HexColor("#555555"))
        top = PAGE_HEIGHT - 14 * mm
        canvas.drawString(MARGIN_X, top, page.header_left)
        canvas.drawRightString(PAGE_WIDTH - MARGIN_X, top, page.header_right)
        canvas.setStrokeColor(colors.HexColor("#AAAAAA"))
        canvas.setLineWidth(0.5)
        canvas.line(MARGIN_X, top - 2.5 * mm, PAGE_WIDTH - MARGIN_X, top - 2.5 * mm)
        footer = page.footer
        if footer is None:
            footer = f"第 {number} 页 / 共 {total_pages or '?'} 页"
        canvas.drawCentredString(PAGE_WIDTH / 2, 12 * mm, footer)
        canvas.restoreState()

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN_X,
        rightMargin=MARGIN_X,
        topMargin=MARGIN_TOP,
        bottomMargin=MARGIN_BOTTOM,
        title=page.title,
        author=PLATFORM,
        subject=page.subject,
        creator=PLATFORM,
        invariant=1,
        lang="zh-CN",
    )
    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue(), max(seen, default=0)


def _render(make_story: Callable[[], Story], page: _Page) -> bytes:
    """Lay the document out twice: the first pass counts the pages the footers print."""
    # Flowables are consumed by a build, hence a fresh story for each pass. The footer is drawn
    # outside the frame, so the second pass paginates exactly like the first.
    _, total_pages = _build(make_story(), page, total_pages=None)
    pdf, pages = _build(make_story(), page, total_pages=total_pages)
    assert pages == total_pages
    return pdf


# ---------------------------------------------------------------------------------------------
# 1. The agreement


def _schedule_rows(plan: dict[str, Any]) -> list[tuple[int, date, int]]:
    rows = [
        (int(item["number"]), date.fromisoformat(item["due_date"]), _fen(item["amount_fen"]))
        for item in plan["schedule"]
    ]
    total = _fen(plan["total_fen"])
    if sum(amount for _, _, amount in rows) != total:
        raise ValueError("The schedule does not add up to the plan's total.")
    if len(rows) != int(plan["installments"]):
        raise ValueError("The schedule does not have the plan's number of installments.")
    return rows


def _agreement_story(content: dict[str, Any]) -> Story:
    s = _styles()
    parties = content["parties"]
    borrower = parties["borrower"]
    plan = content["plan"]
    rows = _schedule_rows(plan)

    story: Story = [
        _p("调解协议书", s.title),
        _p(f"案件编号：{content['case_no']}　　第 {content['version']} 版", s.subtitle),
        _p("当事人", s.heading),
        _label_value_table(
            [
                ("借款人", f"{borrower['name']}（身份证号：{borrower['id_number_masked']}）"),
                ("债权银行", str(parties["bank"]["name"])),
                ("调解机构", str(parties["institution"]["name"])),
                ("调解员", str(parties["mediator"]["name"])),
            ]
        ),
    ]
    for clause in content["clauses"]:
        story.append(_p(str(clause["heading"]), s.heading))
        story.extend(_p(str(text), s.clause) for text in clause["text"])

    story.append(_p("还款计划表", s.heading))
    schedule_table = [(_p("期数", s.cell), _p("到期日", s.cell), _p("金额", s.cell_right))]
    schedule_table += [
        (_p(str(number), s.cell), _p(_cn_date(due), s.cell), _p(format_fen(amount), s.cell_right))
        for number, due, amount in rows
    ]
    schedule_table.append(
        (_p("合计", s.cell), _p("", s.cell), _p(_money(plan["total_fen"]), s.cell_right))
    )
    story.append(_grid(schedule_table, [25 * mm, 70 * mm, 50 * mm], header=True, total=True))

    signature_note = "电子签名，签署记录见签名页"
    signers = [
        ("借款人", str(borrower["name"])),
        ("债权银行", str(parties["bank"]["name"])),
        ("调解员（见证，代表调解机构）", str(parties["mediator"]["name"])),
    ]
    story.append(
        KeepTogether(
            [
                _p("签署", s.heading),
                _grid(
                    [
                        (_p(label, s.cell), _p(name, s.cell), _p(signature_note, s.cell))
                        for label, name in signers
                    ],
                    [52 * mm, 55 * mm, CONTENT_WIDTH - 107 * mm],
                ),
            ]
        )
    )
    return story


def agreement_pdf(content: dict[str, Any]) -> bytes:
    """The 调解协议书 the parties read and sign, rendered from the agreement's frozen content."""
    case_no = str(content["case_no"])
    page = _Page(
        title=f"调解协议书 {case_no}",
        subject=f"案件编号 {case_no}，第 {content['version']} 版",
        header_left=f"{PLATFORM} · 调解协议书",
        header_right=f"案件编号 {case_no}",
        created=datetime.fromisoformat(str(content["drafted_at"])),
    )
    return _render(lambda: _agreement_story(content), page)


# ---------------------------------------------------------------------------------------------
# 2. The sealed, filed document


class _PlainLiteral(TextStringObject):
    """A literal string written byte for byte (pypdf octal-escapes all but letters and digits)."""

    def write_to_stream(self, stream: IO[Any]) -> None:
        stream.write(b"(" + self.encode("ascii") + b")")


_SIDE_ORDER = tuple(SIDE_LABELS)


def _signature_table(line: SignatureLine) -> Table:
    s = _styles()
    label, value = 27 * mm, CONTENT_WIDTH / 2 - 27 * mm
    table = _grid(
        [
            (
                _p("签署方", s.cell),
                _p(SIDE_LABELS[line.side], s.cell),
                _p("签署人", s.cell),
                _p(line.name, s.cell),
            ),
            (
                _p("签署时间", s.cell),
                _p(_cn_time(line.signed_at), s.cell),
                _p("身份确认方式", s.cell),
                _p(IDENTITY_METHOD_LABELS[line.identity_method], s.cell),
            ),
            (
                _p("IP 地址", s.cell),
                _p(mask_ip(line.ip_address), s.cell),
                _p("设备", s.cell),
                _p(shorten_user_agent(line.user_agent), s.cell),
            ),
            (_p("所签文件 SHA-256", s.cell), _p(line.document_sha256, s.cell), "", ""),
        ],
        [label, value, label, value],
    )
    table.setStyle(TableStyle([("SPAN", (1, 3), (3, 3))]))
    return table


def _signature_story(
    *,
    content: dict[str, Any],
    document_sha256: str,
    filing_no: str,
    filed_at: datetime,
    verify_url: str,
    signatures: Sequence[SignatureLine],
) -> Story:
    s = _styles()
    body: Story = [
        _p("签名页", s.title),
        _p(f"所签署文件（调解协议书）SHA-256：{document_sha256}", s.small_center),
        _p("备案信息", s.heading),
        _label_value_table(
            [
                ("案件编号", str(content["case_no"])),
                ("协议版本", f"第 {content['version']} 版"),
                ("备案编号", filing_no),
                ("备案时间", _cn_time(filed_at)),
            ]
        ),
        _p("签署记录", s.heading),
    ]
    for line in signatures:
        body += [_signature_table(line), Spacer(1, 2.5 * mm)]
    body += _verification(
        verify_url,
        "持有本文件的任何人均可扫描二维码或访问上述网址，核验本文件的真实性与备案状态。",
    )
    # Always exactly one page: an unusually long name shrinks the page rather than add a second.
    frame_height = PAGE_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM - 12
    return [KeepInFrame(CONTENT_WIDTH, frame_height, body, mode="shrink")]


def seal(
    document_pdf: bytes,
    *,
    content: dict[str, Any],
    filing_no: str,
    filed_at: datetime,
    verify_url: str,
    signatures: list[SignatureLine],
) -> bytes:
    """The filed record: the signed pages untouched, then one signature page.

    The verifier finds `/Keywords (hejie-filing:<filing_no>)` in the raw bytes, so the info
    dictionary is written uncompressed with that literal string.
    """
    if not _FILING_NO.fullmatch(filing_no):
        raise ValueError("A filing number is letters, digits and hyphens.")
    document_sha256 = hashlib.sha256(document_pdf).hexdigest()
    for line in signatures:
        if line.document_sha256 != document_sha256:
            raise ValueError(f"The {line.side} signature is over a different document.")
        if line.side not in SIDE_LABELS or line.identity_method not in IDENTITY_METHOD_LABELS:
            raise ValueError(f"Unknown signature side or identity method: {line}.")
    ordered = sorted(signatures, key=lambda line: _SIDE_ORDER.index(line.side))

    original = PdfReader(io.BytesIO(document_pdf))
    case_no = str(content["case_no"])
    page = _Page(
        title=f"签名页 {case_no}",
        subject=f"备案编号 {filing_no}",
        header_left=f"{PLATFORM} · 签名页 / 备案信息",
        header_right=f"案件编号 {case_no}　备案编号 {filing_no}",
        created=filed_at,
        footer=f"签名页（附于调解协议书正文共 {len(original.pages)} 页之后）",
    )
    signature_pdf, _ = _build(
        _signature_story(
            content=content,
            document_sha256=document_sha256,
            filing_no=filing_no,
            filed_at=filed_at,
            verify_url=verify_url,
            signatures=ordered,
        ),
        page,
        total_pages=1,
    )
    signature_pages = PdfReader(io.BytesIO(signature_pdf)).pages
    assert len(signature_pages) == 1

    writer = PdfWriter()
    # Pages are copied object by object: content streams keep their exact encoded bytes.
    for original_page in original.pages:
        writer.add_page(original_page)
    writer.add_page(signature_pages[0])
    writer.add_metadata(
        {
            "/Title": f"调解协议书 {case_no}（备案编号 {filing_no}）",
            "/Author": PLATFORM,
            "/Subject": f"案件编号 {case_no}，备案编号 {filing_no}",
            "/Creator": PLATFORM,
            "/Producer": PLATFORM,
            "/CreationDate": _pdf_date(filed_at),
            "/ModDate": _pdf_date(filed_at),
        }
    )
    # pypdf has no public handle on the live /Info dictionary or on /ID.
    info = writer._info
    assert info is not None
    info[NameObject("/Keywords")] = _PlainLiteral(FILING_KEYWORD_PREFIX + filing_no)
    file_id = ByteStringObject(
        hashlib.sha256(
            b"\0".join([document_pdf, signature_pdf, filing_no.encode(), verify_url.encode()])
        ).digest()[:16]
    )
    writer._ID = ArrayObject([file_id, file_id])
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# 3. The judicial confirmation application


def _signing_rows(rows: Sequence[tuple[str, str, str]]) -> Table:
    """Applicant, name, and room to sign on paper and date."""
    s = _styles()
    widths = [34 * mm, 40 * mm, 64 * mm, CONTENT_WIDTH - 138 * mm]
    table = _grid(
        [
            (_p(role, s.cell), _p(name, s.cell), _p(how, s.small), _p("日期：", s.small))
            for role, name, how in rows
        ],
        widths,
        min_row_height=18 * mm,
    )
    table.setStyle(TableStyle([("VALIGN", (2, 0), (-1, -1), "TOP")]))
    return table


def _judicial_story(
    content: dict[str, Any], *, filing_no: str, effective_at: datetime, deadline: date
) -> Story:
    s = _styles()
    parties = content["parties"]
    borrower = str(parties["borrower"]["name"])
    bank = str(parties["bank"]["name"])
    institution = str(parties["institution"]["name"])
    mediator = str(parties["mediator"]["name"])
    debt = content["debt"]
    plan = content["plan"]
    effective_day = _cn_date(_local(effective_at).date())
    first_due = _cn_date(date.fromisoformat(str(plan["first_due"])))
    deferral = int(plan.get("deferral_months") or 0)

    facts = (
        f"申请人{borrower}尚欠申请人{bank}债务共计{_money(debt['total_fen'])}"
        f"（其中本金{_money(debt['principal_fen'])}、利息{_money(debt['interest_fen'])}、"
        f"费用{_money(debt['fees_fen'])}）。经{institution}调解员{mediator}主持调解，"
        f"双方自愿达成调解协议：{borrower}分 {int(plan['installments'])} 期向{bank}偿还共计"
        f"{_money(plan['total_fen'])}，首期还款日为{first_due}；"
        f"{bank}减免{_money(plan['waiver_fen'])}"
    )
    facts += f"，并同意延期还款 {deferral} 个月。" if deferral else "。"
    facts += f"该调解协议已于{effective_day}生效，并已在{PLATFORM}备案，备案编号：{filing_no}。"

    undertakings = [
        "一、双方出于解决纠纷的目的自愿达成调解协议，没有恶意串通、规避法律的行为；",
        "二、调解协议内容不损害国家利益、社会公共利益、集体利益或者第三人的合法权益；",
        "三、申请人提交的证明材料真实、合法。",
    ]
    attachments = [
        "1. 调解协议书",
        "2. 各方身份证明文件（借款人居民身份证复印件、银行营业执照复印件及负责人身份证明、"
        "授权委托书）",
        "3. 签署记录",
    ]
    story: Story = [
        _p("司法确认申请书", s.title),
        _p(f"案件编号：{content['case_no']}　　备案编号：{filing_no}", s.subtitle),
        _p("申请人", s.heading),
        _p(
            f"申请人一（借款人）：{borrower}，公民身份号码："
            f"{parties['borrower']['id_number_masked']}（身份证明文件见附件）。",
            s.body,
        ),
        _p(f"申请人二（债权银行）：{bank}（身份证明文件见附件）。", s.body),
        _p("调解机构及调解员", s.heading),
        _p(f"调解机构：{institution}；调解员：{mediator}。", s.body),
        _p("请求事项", s.heading),
        _p(
            f"请求依法确认申请人{borrower}与{bank}于{effective_day}经{institution}调解达成的"
            "调解协议有效。",
            s.clause,
        ),
        _p("事实和理由", s.heading),
        _p(facts, s.clause),
        _p("申请人承诺", s.heading),
        *(_p(text, s.body) for text in undertakings),
        _p("备案与申请期限", s.heading),
        _label_value_table(
            [
                ("备案编号", filing_no),
                ("协议生效日期", effective_day),
                ("申请期限", f"请于 {_cn_date(deadline)} 前共同向有管辖权的人民法院提出申请"),
            ]
        ),
        KeepTogether(
            [
                _p("申请人签名", s.heading),
                _signing_rows(
                    [
                        ("申请人（借款人）", borrower, "签名："),
                        ("申请人（债权银行）", bank, "盖章，负责人或委托代理人签名："),
                    ]
                ),
            ]
        ),
        KeepTogether([_p("附件", s.heading), *(_p(text, s.body) for text in attachments)]),
    ]
    return story


def judicial_application_pdf(
    content: dict[str, Any], *, filing_no: str, effective_at: datetime, deadline: date
) -> bytes:
    """The 司法确认申请书 both parties may file with a court, filled in from the case."""
    case_no = str(content["case_no"])
    page = _Page(
        title=f"司法确认申请书 {case_no}",
        subject=f"案件编号 {case_no}，备案编号 {filing_no}",
        header_left=f"{PLATFORM} · 司法确认申请书",
        header_right=f"案件编号 {case_no}",
        created=effective_at,
    )
    return _render(
        lambda: _judicial_story(
            content, filing_no=filing_no, effective_at=effective_at, deadline=deadline
        ),
        page,
    )


# ---------------------------------------------------------------------------------------------
# 4. The settlement certificate


def settlement_certificate_pdf(
    *,
    certificate_no: str,
    case_no: str,
    filing_no: str,
    borrower_name: str,
    id_number_masked: str,
    bank_name: str,
    institution_name: str,
    total_paid_fen: int,
    agreed_total_fen: int,
    completed_on: date,
    issued_at: datetime,
    verify_url: str,
) -> bytes:
    """The 结清证明: the borrower paid the agreed total; the debt under the agreement is settled."""
    if _fen(total_paid_fen) < _fen(agreed_total_fen):
        raise ValueError("A plan that is not paid in full cannot be certified as settled.")

    def story() -> Story:
        s = _styles()
        return [
            _p("结清证明", s.title),
            _p(f"证明编号：{certificate_no}", s.subtitle),
            _p(
                f"兹证明：借款人{borrower_name}（公民身份号码：{id_number_masked}）已按照其与"
                f"{bank_name}经{institution_name}调解达成、备案编号为 {filing_no} 的调解协议"
                f"（案件编号：{case_no}），足额偿还约定还款总额{format_fen(agreed_total_fen)}。"
                "该调解协议项下的债务已结清。",
                s.clause,
            ),
            Spacer(1, 3 * mm),
            _label_value_table(
                [
                    ("借款人", borrower_name),
                    ("债权银行", bank_name),
                    ("调解机构", institution_name),
                    ("案件编号", case_no),
                    ("备案编号", filing_no),
                    ("约定还款总额", format_fen(agreed_total_fen)),
                    ("实际还款总额", format_fen(total_paid_fen)),
                    ("结清日期", _cn_date(completed_on)),
                ]
            ),
            Spacer(1, 4 * mm),
            _p(f"本证明由{PLATFORM}代表{institution_name}出具。", s.body),
            _p(f"出具时间：{_cn_time(issued_at)}", s.body),
            KeepTogether(
                _verification(
                    verify_url,
                    "持有本证明的任何人均可扫描二维码或访问上述网址，核验本证明的真实性。",
                )
            ),
        ]

    page = _Page(
        title=f"结清证明 {certificate_no}",
        subject=f"案件编号 {case_no}，备案编号 {filing_no}",
        header_left=f"{PLATFORM} · 结清证明",
        header_right=f"证明编号 {certificate_no}",
        created=issued_at,
    )
    return _render(story, page)
