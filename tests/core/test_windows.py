"""kgopt.core.windows: document windows with offsets, spans and the sentence around a span."""

from hypothesis import given, settings
from hypothesis import strategies as st

from kgopt.core.windows import window_spans, find_span, sentence_around


def test_chunks_cut_at_sentence_ends_and_keep_offsets():
    text = "华为公司总部位于深圳。任正非于1987年创立华为。Huawei is based in Shenzhen. It was founded in 1987."
    spans = window_spans(text, 30)
    assert [text[s:e] for s, e in spans] == [
        "华为公司总部位于深圳。任正非于1987年创立华为。",
        "Huawei is based in Shenzhen.",
        "It was founded in 1987.",
    ]


def test_chunks_of_blank_unpunctuated_and_short_texts():
    assert window_spans("   \n ", 10) == []
    assert window_spans("短文本", 10) == [(0, 3)]
    long = "字" * 25  # no break anywhere: hard cuts
    assert window_spans(long, 10) == [(0, 10), (10, 20), (20, 25)]
    assert window_spans("aaa bbb ccc ddd", 8) == [(0, 7), (8, 15)]  # cut at a space, the space dropped


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab 。.\n华为x!?", max_size=200), st.integers(1, 40))
def test_chunks_cover_all_content_in_order(text, size):
    spans = window_spans(text, size)
    pos = 0
    for s, e in spans:
        assert pos <= s < e <= len(text) and e - s <= size
        assert text[pos:s].strip() == ""  # nothing but whitespace is left out
        assert not text[s].isspace() and not text[e - 1].isspace()
        pos = e
    assert text[pos:].strip() == ""


def test_find_span_offsets_into_the_document():
    assert find_span("北京大学位于北京", "北京", 100) == [100, 102]
    assert find_span("abc", "z") is None and find_span("abc", "") is None


def test_sentence_around_a_span():
    text = "张三出生于北京。他在上海工作！Bob lives in Paris. He likes it."
    s, e = sentence_around(text, text.index("上海"), text.index("上海") + 2)
    assert text[s:e] == "他在上海工作！"
    s, e = sentence_around(text, text.index("Paris"), text.index("Paris") + 5)
    assert text[s:e] == "Bob lives in Paris."
    long = "x" * 1000 + "目标" + "y" * 1000
    s, e = sentence_around(long, 1000, 1002, max_chars=40)
    assert s <= 1000 and e >= 1002 and e - s <= 40
