"""Copies of real sentences: rejected with their own reason, counted, asked again within a bound.

The fake model does what the embedded Qwen did on KG/zh: it repeats the sentences it was shown
(verbatim, or with one punctuation or space changed) besides writing a new one.
"""

import json

import pytest

from kgopt.augmentation import augment
from kgopt.augmentation.generate import NO_COPY
from kgopt.augmentation.validate import NEAR_COPY, REASONS, SampleChecker, is_copy, normalise
from kgopt.clients.config import EndpointConfig
from kgopt.clients.lm import connect
from kgopt.core.tasks import get_task
from kgopt.data.readers import load_examples, read_unified
from kgopt.errors import BudgetExceeded, ConfigError
from kgopt.testing.fake_endpoint import FakeEndpoint, chat_response

TOPIC = "作品"  # KG/zh, the InstructIE topic with the most records
NEW_ZH = ["《星河之歌》是一档由王小明担任嘉宾的音乐综艺节目。", "歌手李青青在综艺节目《夏夜晚风》中担任嘉宾。", "《山海有约》第二季邀请演员赵一鸣作为飞行嘉宾。"]
SPANS_ZH = {NEW_ZH[0]: ("星河之歌", "王小明"), NEW_ZH[1]: ("夏夜晚风", "李青青"), NEW_ZH[2]: ("山海有约", "赵一鸣")}
NEW_EN = ["Ada Lovelace described an early algorithm for the Analytical Engine .", "Dijkstra 's algorithm finds shortest paths in a graph .",
          "The Viterbi algorithm decodes the most likely sequence of hidden states ."]  # fmt: skip


# --- the fake model ------------------------------------------------------------------------------


def _prompt(req):
    return req["messages"][0]["content"]


def _shown(req):
    """The samples the prompt showed (the JSON lines after "Real samples ...:" / "...的真实样本：")."""
    p = _prompt(req)
    part = p.split("的真实样本")[1] if "的真实样本" in p else p.split("Real samples")[1]
    return [json.loads(line) for line in part.split("\n\n")[0].splitlines() if line.startswith('{"text"')]


def _asked(req):
    return req["response_format"]["json_schema"]["schema"]["properties"]["samples"]["minItems"]


def _near(text, lang):
    """One punctuation mark added: a full-width comma in the middle (zh), a comma after the first word (en)."""
    if lang == "zh":
        return text[: len(text) // 2] + "，" + text[len(text) // 2 :]
    first, rest = text.split(" ", 1)
    return first + " , " + rest


def _new_zh(text, label):
    head, tail = SPANS_ZH[text]
    return {"text": text, "relation": [{"head": head, "head_type": "电视综艺", "relation": label, "tail": tail, "tail_type": "人物"}]}


def _new_en(text, label):
    return {"text": text, "entity": [{"entity": "algorithm", "entity_type": label}]}


class CopyingModel:
    """Per call: a verbatim copy of the first sentence shown, a near copy of the last, then new
    sentences (each new one once per run), as many as the call asks for. ``copies``: how many
    calls copy (None: every call)."""

    def __init__(self, lang, label, copies=None):
        self.lang, self.label, self.copies, self.calls = lang, label, copies, 0
        self.new = list(NEW_ZH if lang == "zh" else NEW_EN)

    def __call__(self, req):
        self.calls += 1
        shown = _shown(req)
        out = []
        if self.copies is None or self.calls <= self.copies:
            out += [dict(shown[0]), {**shown[-1], "text": _near(shown[-1]["text"], self.lang)}]
        make = _new_zh if self.lang == "zh" else _new_en
        out += [make(self.new.pop(0), self.label) for _ in range(max(0, _asked(req) - len(out)))]
        return 200, chat_response(json.dumps({"samples": out[: _asked(req)]}, ensure_ascii=False))


def _kg_zh(shared_data):
    exs = [ex for ex in load_examples("KG", "zh", "train", data_dir=shared_data) if ex.record.cate == TOPIC]
    used = {l["relation"] for ex in exs for l in ex.record.labels}
    return exs, next(r for r in exs[0].schema.roles if r in used)  # the first label augment asks about


def _ner_en(shared_data):
    exs = load_examples("NER", "en", "train", data_dir=shared_data, source="CrossNER_AI")
    used = {l["entity_type"] for ex in exs for l in ex.record.labels}
    return exs, next(t for t in exs[0].schema.types if t in used)


def _run(model, task, lang, shared_data, tmp_path, **kw):
    source = TOPIC if task == "KG" else "CrossNER_AI"
    kw.setdefault("show", "sentences")  # the way that shows sentences, and so can be copied (zh's default shows none)
    with FakeEndpoint(respond=model) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False, max_calls=kw.pop("max_calls", None))
        try:
            rep = augment(task, lang, conn, source=source, per_label=3, data_dir=shared_data, out_dir=tmp_path, max_labels=1, **kw)
        finally:
            requests = list(server.requests)
    return rep, requests


def _written(tmp_path, task, lang):
    if task == "KG":
        return [json.loads(line) for line in (tmp_path / "InstructIE" / f"train_{lang}.json").read_text(encoding="utf-8").splitlines()]
    return [{"text": r.text} for r in read_unified(tmp_path / "iepile" / f"IE-{lang}" / task / "CrossNER_AI" / "train.json", "entity", "CrossNER_AI")]


# --- the checker ----------------------------------------------------------------------------------


def test_copies_of_a_shown_chinese_sentence_are_rejected_as_such(shared_data):
    exs, label = _kg_zh(shared_data)
    shown = [ex.record for ex in exs if label in {l["relation"] for l in ex.record.labels}]
    pool = [ex.record.text for ex in exs]
    c = SampleChecker(get_task("KG"), exs[0].schema, pool)
    s = shown[0]
    texts = [r.text for r in shown]
    assert c.check({"text": s.text, "relation": s.labels}, texts) == (None, "copy_of_shown")
    assert c.check({"text": _near(s.text, "zh"), "relation": s.labels}, texts) == (None, "copy_of_shown")  # punctuation added
    assert c.check({"text": s.text.replace("，", " , "), "relation": s.labels}, texts) == (None, "copy_of_shown")  # spaces, half-width
    assert c.check({"text": s.text + "，节目收视率很高。", "relation": s.labels}, texts) == (None, "copy_of_shown")  # a clause added
    # Not shown in this prompt, but a training text: a near copy of the pool.
    other = next(ex.record for ex in exs if ex.record.text not in texts and ex.record.labels)
    assert c.check({"text": other.text, "relation": other.labels}, texts) == (None, "near_copy")
    # A copy is a copy whatever its labels: the reason says why the sample adds nothing.
    bad = [{**s.labels[0], "relation": "不存在的关系"}]
    assert c.check({"text": s.text, "relation": bad}, texts) == (None, "copy_of_shown")
    new = _new_zh(NEW_ZH[0], label)
    assert c.check(new, texts) == ({"text": NEW_ZH[0], "relation": new["relation"]}, None)
    assert c.check({**new, "text": NEW_ZH[0].replace("。", "！")}, texts) == (None, "duplicate")


def test_chinese_similarity_is_measured_on_characters():
    a = "《玄殇神剑》是乾坤太极创作的网络小说，发表于17K小说网，讲述了少年修仙的故事"
    one = a.replace("少年", "青年")  # one character of 36 changed: bigram Jaccard about 0.9
    assert " " not in a and is_copy(a, one)
    # A sentence of the same pattern about other entities is new (its real neighbour in DuIE, Jaccard 0.42).
    assert not is_copy("《玄殇神剑》是乾坤太极创作的网络小说，发表于17K小说网", "《武当弟子在异界》是自韵创作的网络小说，发表于17K小说网")
    # A long new sentence that quotes a short name is not a copy of it; a sentence cut to half of itself is.
    assert not is_copy("哈卡斯共和国", "哈卡斯共和国位于西伯利亚南部，首府是阿巴坎，面积六万平方公里")
    assert is_copy(a[: len(a) * 2 // 3], a)
    assert normalise("Ｐｙｔｈｏｎ ，是 A  language.") == "python是alanguage"
    assert NEAR_COPY == 0.8


def test_english_copies_are_rejected_ignoring_case_spaces_and_punctuation(shared_data):
    exs, label = _ner_en(shared_data)
    s = next(ex.record for ex in exs if label in {l["entity_type"] for l in ex.record.labels})
    c = SampleChecker(get_task("NER"), exs[0].schema, [ex.record.text for ex in exs])
    for text in (s.text, _near(s.text, "en"), s.text.upper(), s.text.replace(" , ", ", ").replace(" .", ".")):
        assert c.check({"text": text, "entity": s.labels}, [s.text]) == (None, "copy_of_shown"), text
    assert c.check({"text": s.text, "entity": s.labels}) == (None, "near_copy")  # not shown: still a training text
    assert c.check(_new_en(NEW_EN[0], label), [s.text])[1] is None
    assert c.check(_new_en(NEW_EN[0].lower().replace(" .", "!"), label), [s.text]) == (None, "duplicate")


# --- a run ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "lang"), [("KG", "zh"), ("NER", "en")])
def test_only_the_new_sentence_is_kept_and_the_copies_are_counted(shared_data, tmp_path, task, lang):
    exs, label = _kg_zh(shared_data) if lang == "zh" else _ner_en(shared_data)
    rep, reqs = _run(CopyingModel(lang, label), task, lang, shared_data, tmp_path, copy_retries=0)
    d = rep.to_json()
    assert (d["asked"], d["received"], d["accepted"], d["retried_calls"], d["llm"]["calls"]) == (3, 3, 1, 0, 1)
    assert d["rejected"] == {r: 2 if r == "copy_of_shown" else 0 for r in REASONS}
    assert [r["text"] for r in _written(tmp_path, task, lang)] == [(NEW_ZH if lang == "zh" else NEW_EN)[0]]
    report = json.loads((tmp_path / "reports" / f"{task}_{lang}_{'作品' if task == 'KG' else 'CrossNER_AI'}_seed0.json").read_text(encoding="utf-8"))
    assert report["rejected"]["copy_of_shown"] == 2 and report["accepted"] == 1  # the yield problem is in the report
    # The prompt tells the model not to copy, in its language.
    (req,) = reqs
    assert NO_COPY[lang] in _prompt(req)
    assert ("不要重复、照抄或稍加改动上面的句子" if lang == "zh" else "do not repeat, copy or lightly edit the sentences above") in _prompt(req)
    assert ("不同的实体" if lang == "zh" else "about other entities") in _prompt(req)


@pytest.mark.parametrize(("task", "lang"), [("KG", "zh"), ("NER", "en")])
def test_copies_are_asked_again_once_with_other_sentences_shown(shared_data, tmp_path, task, lang):
    exs, label = _kg_zh(shared_data) if lang == "zh" else _ner_en(shared_data)
    rep, reqs = _run(CopyingModel(lang, label, copies=1), task, lang, shared_data, tmp_path)  # copies in its first call only
    d = rep.to_json()
    # Asked again for the two copies only; the second call's two new sentences are kept.
    assert (d["asked"], d["received"], d["accepted"], d["retried_calls"], d["llm"]["calls"]) == (5, 5, 3, 1, 2)
    assert d["rejected"]["copy_of_shown"] == 2 and sum(d["rejected"].values()) == 2
    first, again = reqs
    assert _asked(again) == 2 and again["seed"] != first["seed"]
    copied = {_shown(first)[0]["text"], _shown(first)[-1]["text"]}
    shown_again = {s["text"] for s in _shown(again)}
    assert shown_again and not shown_again & copied  # the sentences copied are not shown again
    with_label = [ex.record for ex in exs if label in {it.get("relation" if task == "KG" else "entity_type") for it in ex.record.labels}]
    if len(with_label) > 6:  # enough records: a wholly other set
        assert not shown_again & {s["text"] for s in _shown(first)}
    assert NO_COPY[lang] in _prompt(again)
    assert len(_written(tmp_path, task, lang)) == 3
    if task == "KG":  # provenance: the records each sample was asked with
        ids = {r.text: r.id for r in with_label}
        rows = _written(tmp_path, task, lang)
        assert rows[1]["provenance"]["source_ids"] == [ids[t] for t in (s["text"] for s in _shown(again))]


def test_a_model_that_always_copies_costs_a_bounded_number_of_calls(shared_data, tmp_path):
    exs, label = _kg_zh(shared_data)
    rep, reqs = _run(CopyingModel("zh", label), "KG", "zh", shared_data, tmp_path / "a", copy_retries=2)
    assert len(reqs) == 3 and rep.retried_calls == 2  # one call, then copy_retries more, never unbounded
    assert [_asked(r) for r in reqs] == [3, 2, 2]  # each retry asks for as many samples as were copies
    assert rep.rejected["copy_of_shown"] == 6 and rep.accepted == 1 and rep.asked == 7
    # The label has three records: the first retry shows the one not copied; once all were copied, all again.
    first, second, third = ({s["text"] for s in _shown(r)} for r in reqs)
    assert len(first) == 3 and len(second) == 1 and not second & {_shown(reqs[0])[0]["text"], _shown(reqs[0])[-1]["text"]} and third == first
    # Retries count in the connection's call budget like every call: a spent budget stops them,
    # and what was accepted is written.
    with pytest.raises(BudgetExceeded):
        _run(CopyingModel("zh", label), "KG", "zh", shared_data, tmp_path / "b", max_calls=1)
    assert [r["text"] for r in _written(tmp_path / "b", "KG", "zh")] == [NEW_ZH[0]]
    rep_b = json.loads((tmp_path / "b" / "reports" / f"KG_zh_{TOPIC}_seed0.json").read_text(encoding="utf-8"))
    assert (rep_b["accepted"], rep_b["retried_calls"], rep_b["llm"]["calls"]) == (1, 0, 1)


def test_a_duplicate_of_a_sample_accepted_in_the_same_run_is_rejected(shared_data, tmp_path):
    """Two labels, the same new sentence (once with other punctuation) for each: kept once; no retry for duplicates."""
    exs, _ = _ner_en(shared_data)
    types = [t for t in exs[0].schema.types if any(l["entity_type"] == t for ex in exs for l in ex.record.labels)][:2]

    def respond(req):
        label = next(t for t in types if f'label "{t}"' in _prompt(req))
        same = [_new_en(NEW_EN[1], label), _new_en(NEW_EN[1].replace(" 's", "'s").replace(" .", "."), label)]
        return 200, chat_response(json.dumps({"samples": same}))

    with FakeEndpoint(respond=respond) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        rep = augment("NER", "en", conn, source="CrossNER_AI", per_label=2, data_dir=shared_data, out_dir=tmp_path, max_labels=2)
        calls = len(server.requests)
    assert (rep.asked, rep.received, rep.accepted, rep.rejected["duplicate"], rep.retried_calls, calls) == (4, 4, 1, 3, 0, 2)
    assert [r["text"] for r in _written(tmp_path, "NER", "en")] == [NEW_EN[1]]


def test_copy_retries_cannot_be_negative():
    with pytest.raises(ConfigError, match="copy_retries"):
        augment("KG", "zh", None, copy_retries=-1)  # refused before any data is read or call made
