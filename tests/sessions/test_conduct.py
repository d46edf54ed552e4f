"""The conduct list: threats and abuse are caught, evasions too, lawful negotiation is not."""

import random
import re
import unicodedata
from pathlib import Path

import pytest

from app.sessions.conduct import (
    TERMS_FILE,
    Screen,
    flagged_terms,
    load_terms,
    matching_terms,
    squeeze,
)

REQUIRED = ["威胁", "起诉你家人", "曝光", "黑名单", "坐牢"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "terms.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_list_loads_and_is_substantial() -> None:
    terms = load_terms(TERMS_FILE)
    entries = [t.entry for t in terms]
    assert len(entries) >= 40
    assert len(entries) == len(set(entries))
    assert all(e in entries for e in REQUIRED)


@pytest.mark.parametrize("term", REQUIRED)
def test_each_required_chinese_term_is_flagged(term: str) -> None:
    assert term in flagged_terms(f"你再不还钱，{term}！")


def test_every_literal_entry_catches_itself() -> None:
    for term in load_terms(TERMS_FILE):
        if not term.entry.startswith("re:"):
            assert term.entry in flagged_terms(term.entry), term.entry


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("你要坐 牢了", "坐牢"),
        ("你要坐-牢了", "坐牢"),
        ("你要坐！牢了", "坐牢"),
        ("你要坐\u3000牢了", "坐牢"),  # ideographic space
        ("你要坐\u200b牢了", "坐牢"),  # zero-width space
        ("你要坐\u0336牢了", "坐牢"),  # combining strike-through
        ("拉进黑·名·单", "黑名单"),
        ("给你曝.光", "曝光"),
        ("We will send you to ＪＡＩＬ", "jail"),
        ("You will go to J A I L", "jail"),
        ("j.a.i.l is waiting", "jail"),
        ("Ｗｅ ｋｎｏｗ ｗｈｅｒｅ ｙｏｕ ｌｉｖｅ", "we know where you live"),
        ("you d-e-a-d-b-e-a-t", "deadbeat"),
    ],
)
def test_evasions_with_gaps_or_full_width_are_flagged(text: str, entry: str) -> None:
    assert entry in flagged_terms(text)


@pytest.mark.parametrize(
    "text",
    [
        "You will go to JAIL if you do not pay",
        "We Know Where You Live.",
        "We are going to EXPOSE YOU to everyone",
        "Pay now or we will sue your family",
        "We'll tell your employer about this debt",
        "I will call your wife and your boss tomorrow",
        "The police will ARREST YOU",
        "You are a Deadbeat and a SCUMBAG",
        "You're a liar",
        "Your name is on the Blacklist",
        "You have been blacklisted",
        "We will post your photo online",
        "I'll break your legs",
        "You'll regret this",
        "我们会把你挂到网上",
        "明天就打电话给你老婆",
        "我们会联系你的同事",
        "我们会通知你单位领导",
        "We're going to contact all of your relatives",
        "再不还钱就起诉你的父母",
        "把你的照片发到朋友圈",
        "信不信我打断你的腿",
        "你这个老赖，不要脸",
        "你怎么不去死",
        "公安上门抓你",
    ],
)
def test_threats_and_abuse_are_flagged_in_any_case(text: str) -> None:
    assert flagged_terms(text), text


LAWFUL = [
    "我们可以提供12期免息分期",
    "逾期会影响征信记录",
    "我们可以依法起诉",
    "如协商不成，我行将依法向人民法院提起诉讼",
    "您可以申请停息挂账，本金分60期偿还",
    "请提供近三个月的收入证明和银行流水",
    "请向您所在单位开具收入证明",
    "请联系您的单位开具收入证明",
    "抱歉打断一下，我们先核对欠款金额",
    "我们可以砍掉一部分利息，本金分24期还",
    "工作人员可以上门办理签约手续",
    "减免后剩余本金为3万元，请在月底前还款",
    "您的个人信息我们会严格保密",
    "您的家人不承担还款责任",
    "我们理解您的困难，可以延期三个月还款",
    "按时还款后，我们会向征信中心报送正常记录",
    "您好，请问现在方便沟通吗？",
    "We can waive 30% of the interest",
    "Please send your income proof",
    "Late payments may be reported to the credit reference center",
    "Missing payments will hurt your credit score",
    "We can offer a 12-month instalment plan with no fees",
    "If we cannot agree, the bank may take the matter to court lawfully",
    "Please check your mail for the statement",
    "The rates are written on the blackboard in the branch",
    "We appreciate your skill in budgeting",
    "Please contact us by email if you have any questions",
    "I suggest you contact your employer for the income certificate",
    "Would you prefer to pay on the 15th of each month?",
    "You can show up at your nearest branch to sign",
    "The mediator will send the agreement for you to sign",
]


@pytest.mark.parametrize("text", LAWFUL)
def test_ordinary_lawful_negotiation_is_not_flagged(text: str) -> None:
    assert flagged_terms(text) == []


def test_a_regex_entry_matches_word_forms(tmp_path: Path) -> None:
    terms = load_terms(write(tmp_path, "re:\\bexpos(e|ing)\\s+you\n"))
    assert matching_terms("We are EXPOSING you", terms) == ["re:\\bexpos(e|ing)\\s+you"]
    assert matching_terms("We expose you", terms) == ["re:\\bexpos(e|ing)\\s+you"]
    assert matching_terms("Exposure to risk", terms) == []


def test_the_shipped_regexes_catch_their_word_forms() -> None:
    assert any(e.startswith("re:") for e in flagged_terms("they were exposing you"))
    assert any(e.startswith("re:") for e in flagged_terms("we will SUE YOUR PARENTS"))


def test_parser_ignores_comments_and_blank_lines(tmp_path: Path) -> None:
    text = "# header\n\n   \n  # indented comment\n坐牢\n  jail  \nre:\\bkill\\w*\n"
    path = write(tmp_path, text)
    assert [t.entry for t in load_terms(path)] == ["坐牢", "jail", "re:\\bkill\\w*"]


def test_results_follow_list_order_without_repeats(tmp_path: Path) -> None:
    terms = load_terms(write(tmp_path, "jail\n坐牢\njail\nre:坐.?牢\n"))
    assert matching_terms("坐牢 jail 坐牢 JAIL", terms) == ["jail", "坐牢", "re:坐.?牢"]
    assert matching_terms("nothing here", terms) == []


def test_full_width_and_spaced_entries_are_normalised_like_the_text(tmp_path: Path) -> None:
    terms = load_terms(write(tmp_path, "ＪＡＩＬ\n坐 牢\n"))
    assert matching_terms("jail and 坐牢", terms) == ["ＪＡＩＬ", "坐 牢"]


def test_english_literals_match_whole_words_only(tmp_path: Path) -> None:
    terms = load_terms(write(tmp_path, "jail\nkill\n"))
    assert matching_terms("Jail", terms) == ["jail"]
    assert matching_terms("你要坐jail了", terms) == ["jail"]
    for text in ("mail", "jailbreak", "skill", "sk ill", "Raj ailment"):
        assert matching_terms(text, terms) == [], text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("re:(unclosed\n", "line 1"),
        ("坐牢\nre:威胁|\n", "empty message"),
        ("# comment\n！！！\n", "line 2"),
    ],
)
def test_bad_entries_are_refused_with_their_line(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        load_terms(write(tmp_path, text))


def test_latin_words_are_sought_whole_with_any_gaps_between_letters() -> None:
    """Each Latin entry matches where "no letter or digit before, its letters with any gaps,
    no letter or digit after" does: the pattern is written first-letter-first for speed."""
    rng = random.Random(20261124)
    for term in load_terms(TERMS_FILE):
        word = term.entry.lower()
        if term.in_squeezed or term.entry.startswith("re:"):
            continue
        gapped = r"[\W_]*".join(re.escape(ch) for ch in word)
        reference = re.compile(rf"(?<![a-z0-9]){gapped}(?![a-z0-9])")
        pieces = [*word, " ", "-", "_", ".", "x", "9", word, word.upper()]
        for _ in range(300):
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
            got = term.entry in matching_terms(text, [term])
            assert got == bool(reference.search(text.lower())), (term.entry, text)


def _squeeze_by_category(text: str) -> str:
    """The definition `squeeze` must keep: every character whose category is a gap, dropped."""
    gaps = ("Z", "P", "S", "C", "Mn", "Me")
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith(gaps))


def test_squeeze_drops_exactly_the_gap_characters() -> None:
    rng = random.Random(7)
    samples = ["坐 牢！", "J\u200bA\u0336IL", "ｊａｉｌ。", "\x00\t\n 曝-光 ", ""]
    for _ in range(300):
        samples.append("".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(40))))
    for text in samples:
        assert squeeze(text) == _squeeze_by_category(text), repr(text)


def test_the_screen_never_clears_a_text_an_entry_matches() -> None:
    """`flagged_terms` clears most texts with the screen; it must find what the list finds."""
    terms = load_terms(TERMS_FILE)
    screen = Screen.of(terms)
    rng = random.Random(11)
    pieces = [t.entry.removeprefix("re:") for t in terms] + [
        "我们可以讨论分期还款的方案",
        "we will tell your parents",
        "起诉你的家人",
        "J A I L",
        "please confirm the amount",
        "，",
        " ",
    ]
    texts = [t.entry for t in terms]
    for _ in range(2000):
        texts.append("".join(rng.choice(pieces) for _ in range(rng.randrange(1, 4))))
    flagged = 0
    for text in texts:
        found = matching_terms(text, terms)
        assert matching_terms(text, terms, screen) == found, text
        assert flagged_terms(text) == found, text
        flagged += bool(found)
    assert flagged > len(texts) // 3  # the corpus does exercise both outcomes
    assert matching_terms("我们可以讨论分期还款的方案", terms, screen) == []


def test_expressions_the_screen_cannot_join_are_still_found(tmp_path: Path) -> None:
    """An expression with a top-level `|` or a group reference is sought on its own: joined
    behind one word boundary it would miss what it matches."""
    terms = load_terms(
        write(
            tmp_path,
            "re:\\bthreat|menace\nre:\\b(ha)\\1\nre:\\b(?P<w>no)(?P=w)\nre:\\bexpos(e|ing)\\s+you\n",
        )
    )
    screen = Screen.of(terms)
    assert screen.bounded is not None and len(screen.spaced) == 3
    for text, entry in [
        ("xmenace", "re:\\bthreat|menace"),  # "menace" needs no boundary
        ("haha", "re:\\b(ha)\\1"),
        ("nono", "re:\\b(?P<w>no)(?P=w)"),
        ("EXPOSING YOU", "re:\\bexpos(e|ing)\\s+you"),
    ]:
        assert matching_terms(text, terms, screen) == [entry], text
    assert matching_terms("xexposing you", terms, screen) == []
