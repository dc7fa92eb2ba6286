"""Augmentation: every rejection reason on real records, counts, provenance, merge on re-run (copies: test_copies.py)."""

import json

import pytest

from kgopt.augmentation import augment
from kgopt.augmentation.generate import PROMPT_VERSION
from kgopt.augmentation.validate import SampleChecker
from kgopt.clients.config import EndpointConfig
from kgopt.clients.lm import connect
from kgopt.core.shapes import shape_named
from kgopt.core.tasks import get_task
from kgopt.data.readers import load_examples, read_unified
from kgopt.testing.fake_endpoint import FakeEndpoint, chat_response

LANG, SOURCE = "zh", "DuIE2.0"


@pytest.fixture()
def train(shared_data):
    return load_examples("RE", LANG, "train", data_dir=shared_data, source=SOURCE)


def _sample(text, head, rel, tail):
    return {"text": text, "relation": [{"head": head, "relation": rel, "tail": tail}]}


def test_checker_gives_one_reason_per_rejection(train):
    spec, schema = get_task("RE"), train[0].schema
    real = next(ex.record for ex in train if ex.record.labels)
    rel = real.labels[0]
    c = SampleChecker(spec, schema, [ex.record.text for ex in train])
    new = "《星河之歌》是一首由王小明演唱的歌曲，收录于2020年发行的同名专辑。"
    good = _sample(new, "星河之歌", "歌手", "王小明")
    assert c.check(good)[1] is None
    assert c.check(good) == (None, "duplicate")
    assert c.check({"text": real.text, "relation": real.labels}) == (None, "near_copy")
    assert c.check({"text": real.text, "relation": real.labels}, [real.text]) == (None, "copy_of_shown")
    assert c.check(_sample("李雷的妻子是韩梅梅。", "李雷", "不存在的关系", "韩梅梅")) == (None, "label_not_in_schema")
    assert c.check(_sample("李雷的妻子是韩梅梅。", "李雷", "妻子", "王芳")) == (None, "span_not_in_text")
    assert c.check({"text": "李雷的妻子是韩梅梅。", "relation": []}) == (None, "no_labels")
    for bad in ("not an object", {"relation": []}, {"text": "x", "relation": [{"head": "x"}]}, {"text": "x", "relation": "x"}):
        assert c.check(bad) == (None, "malformed")
    assert rel["relation"] in schema.roles


def test_augment_counts_and_writes_with_provenance(shared_data, train, tmp_path):
    schema = train[0].schema
    first_rel = next(r for r in schema.roles if any(r == l["relation"] for ex in train for l in ex.record.labels))

    def respond(req):
        prompt = req["messages"][0]["content"]
        shown = [json.loads(line) for line in prompt.split("的真实样本")[1].splitlines() if line.startswith('{"text"')]
        other = next(ex.record for ex in train if ex.record.labels and ex.record.text not in {s["text"] for s in shown})
        reply = {"samples": [
            _sample("《海上花开》由歌手张三演唱，发行于2019年。", "海上花开", first_rel, "张三"),  # accepted
            _sample("《海上花开》由歌手张三演唱，发行于2019年。", "海上花开", first_rel, "张三"),  # duplicate
            shown[0],  # a copy of a sentence shown
            {"text": other.text, "relation": other.labels},  # a copy of a training text not shown
            _sample("李雷出生于北京。", "李雷", "没有这个关系", "北京"),  # not in schema
            _sample("李雷出生于北京。", "李雷", first_rel, "上海"),  # span not in text
        ]}  # fmt: skip
        return 200, chat_response(json.dumps(reply, ensure_ascii=False))

    with FakeEndpoint(respond=respond) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        rep = augment("RE", LANG, conn, source=SOURCE, per_label=6, data_dir=shared_data, out_dir=tmp_path, max_labels=1, copy_retries=0, show="sentences")
        req = server.requests[0]
    data = rep.to_json()
    assert (data["asked"], data["received"], data["accepted"]) == (6, 6, 1)
    assert data["rejected"] == {"malformed": 0, "copy_of_shown": 1, "near_copy": 1, "duplicate": 1, "no_labels": 0, "label_not_in_schema": 1,
                                "span_not_in_text": 1}  # fmt: skip
    # The prompt shows real records with the label; the reply was constrained to the sample schema.
    assert first_rel in req["messages"][0]["content"] and "response_format" in req
    out = tmp_path / "iepile" / "IE-zh" / "RE" / SOURCE / "train.json"
    recs = list(read_unified(out, "relation", SOURCE))
    assert [r.text for r in recs] == ["《海上花开》由歌手张三演唱，发行于2019年。"]
    row = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    prov = row["provenance"]
    assert prov["model"] == "fake" and prov["prompt_version"] == PROMPT_VERSION and prov["label"] == first_rel and prov["source_ids"]
    assert (out.parent / "schema.json").read_bytes() == (shared_data / "iepile" / "IE-zh" / "RE" / SOURCE / "schema.json").read_bytes()
    assert json.loads((tmp_path / "reports" / f"RE_zh_{SOURCE}_seed0.json").read_text())["accepted"] == 1
    # A second run adds nothing new (its only good sample is a duplicate now) and loses nothing.
    with FakeEndpoint(respond=respond) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        rep2 = augment("RE", LANG, conn, source=SOURCE, per_label=6, data_dir=shared_data, out_dir=tmp_path, max_labels=1, copy_retries=0, show="sentences")
    assert rep2.accepted == 0 and rep2.rejected["duplicate"] == 2
    assert [r.text for r in read_unified(out, "relation", SOURCE)] == ["《海上花开》由歌手张三演唱，发行于2019年。"]
    # The compiler reads augmented records with the same readers as real ones.
    aug = load_examples("RE", LANG, "train", data_dir=tmp_path, source=SOURCE)
    assert len(aug) == 1 and aug[0].record.labels[0]["relation"] == first_rel


def test_unparsable_reply_is_counted_not_fatal(shared_data, tmp_path):
    with FakeEndpoint(respond=lambda req: (200, chat_response("Sure! Here are some sentences: ..."))) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        rep = augment("NER", "en", conn, source="CrossNER_AI", per_label=3, data_dir=shared_data, out_dir=tmp_path, max_labels=2)
    d = rep.to_json()
    assert d["asked"] == 6 and d["accepted"] == 0 and d["rejected"]["malformed"] == 2 and d["missing"] == 4
    assert not (tmp_path / "iepile").exists()  # nothing accepted, no empty file


def test_instructie_topics(shared_data, tmp_path):
    exs = load_examples("KG", "en", "train", data_dir=shared_data)
    topic = exs[1].record.cate
    in_topic = [ex for ex in exs if ex.record.cate == topic]
    used = {l["relation"] for ex in in_topic for l in ex.record.labels}
    rel = next(r for r in in_topic[0].schema.roles if r in used)  # the first label augment asks about
    s = {"text": "Maria Lopez works for Acme Robotics in Denver .", "relation": [
        {"head": "Maria Lopez", "head_type": "person", "relation": rel, "tail": "Acme Robotics", "tail_type": "organization"}]}
    with FakeEndpoint(respond=lambda req: (200, chat_response(json.dumps({"samples": [s]})))) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        rep = augment("KG", "en", conn, source=topic, per_label=1, data_dir=shared_data, out_dir=tmp_path, max_labels=1)
    assert (rep.asked, rep.received, rep.accepted) == (1, 1, 1)
    row = json.loads((tmp_path / "InstructIE" / "train_en.json").read_text().splitlines()[0])
    assert row["cate"] == topic and row["relation"][0]["relation"] == rel
    assert (tmp_path / "InstructIE" / "schema_en.json").is_file()
    assert [ex.record.cate for ex in load_examples("KG", "en", "train", data_dir=tmp_path)] == [topic]


def test_cli_augment_reports_its_counts(shared_data, tmp_path):
    import os
    import subprocess
    import sys

    with FakeEndpoint(respond=lambda req: (200, chat_response("Sure! Here are some sentences: ..."))) as server:
        env = dict(os.environ, KGOPT_API_BASE=server.url, KGOPT_MODEL="fake", KGOPT_HOME=str(tmp_path / "home"))
        env.pop("KGOPT_CONFIG", None)
        cmd = [sys.executable, "-m", "kgopt", "augment", "--task", "NER", "--lang", "en", "--source", "CrossNER_AI", "--per-label", "2",
               "--max-labels", "1", "--train-limit", "3", "--data-dir", str(shared_data), "--out", str(tmp_path / "aug"), "--json"]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        (prompt,) = [r["messages"][0]["content"] for r in server.requests]
    assert res.returncode == 0, res.stderr
    first = {ex.record.text for ex in load_examples("NER", "en", "train", data_dir=shared_data, source="CrossNER_AI", limit=3)}
    shown = {json.loads(line)["text"] for line in prompt.split("Real samples")[1].splitlines() if line.startswith('{"text"')}
    assert shown and shown <= first  # --train-limit reached augment
    d = json.loads(res.stdout)
    assert (d["task"], d["asked"], d["received"], d["rejected"]["malformed"], d["llm"]["calls"]) == ("NER", 2, 1, 1, 1)


@pytest.mark.parametrize(("task", "lang", "source"), [("NER", "en", "CrossNER_AI"), ("RE", "zh", SOURCE), ("EE", "zh", "FewFC")])
def test_constrained_reply_has_exactly_the_samples_asked_and_only_schema_labels(shared_data, tmp_path, task, lang, source):
    with FakeEndpoint(respond=lambda req: (200, chat_response("{}"))) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        augment(task, lang, conn, source=source, per_label=3, data_dir=shared_data, out_dir=tmp_path, max_labels=1)
        req = server.requests[0]
    schema = load_examples(task, lang, "train", data_dir=shared_data, source=source)[0].schema
    samples = req["response_format"]["json_schema"]["schema"]["properties"]["samples"]
    assert samples["minItems"] == samples["maxItems"] == 3  # a small model otherwise stops after one or two
    key = shape_named(get_task(task).shape).record.key
    item = samples["items"]["properties"][key]["items"]["properties"]
    if task == "NER":
        assert item["entity_type"]["enum"] == list(schema.types)
    elif task == "RE":
        assert item["relation"]["enum"] == list(schema.roles)
    else:
        assert item["event_type"]["enum"] == list(schema.types)
        roles = item["arguments"]["items"]["properties"]["role"]["enum"]
        assert set(roles) == {r for rs in schema.type_roles.values() for r in rs}


def test_train_limit_shows_only_the_first_train_records(shared_data, train, tmp_path):
    """As compile's --train-limit: the samples shown (and the labels asked) come from the first N records."""
    first = train[:3]
    with FakeEndpoint(respond=lambda req: (200, chat_response('{"samples": []}'))) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        augment("RE", LANG, conn, source=SOURCE, per_label=1, data_dir=shared_data, out_dir=tmp_path, train_limit=3, show="sentences")
        prompts = [r["messages"][0]["content"] for r in server.requests]
    shown = {json.loads(line)["text"] for p in prompts for line in p.split("的真实样本")[1].splitlines() if line.startswith('{"text"')}
    labels = {l["relation"] for ex in first for l in ex.record.labels}
    assert shown and shown <= {ex.record.text for ex in first} and len(train) > 3
    assert len(prompts) == len(labels)  # one call per label the first three records carry


@pytest.mark.parametrize("show", [{"show": "annotations"}, {}], ids=["asked", "zh-default"])
def test_show_annotations_keeps_the_real_sentences_out_of_the_prompt(shared_data, train, tmp_path, show):
    """--show annotations (Chinese's default): the prompt holds the real samples' annotations but
    none of their sentences, so there is no sentence to copy; the samples' provenance names llmicl-v4."""
    from kgopt.augmentation.generate import PROMPT_VERSIONS

    schema = train[0].schema
    first_rel = next(r for r in schema.roles if any(r == l["relation"] for ex in train for l in ex.record.labels))
    reply = {"samples": [_sample("《海上花开》由歌手张三演唱，发行于2019年。", "海上花开", first_rel, "张三")]}
    with FakeEndpoint(respond=lambda req: (200, chat_response(json.dumps(reply, ensure_ascii=False)))) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake"), cache=False)
        rep = augment("RE", LANG, conn, source=SOURCE, per_label=1, data_dir=shared_data, out_dir=tmp_path, max_labels=1, **show)
        prompt = server.requests[0]["messages"][0]["content"]
    shown = [json.loads(line) for line in prompt.splitlines() if line.startswith('{"relation"')]
    with_label = [ex.record for ex in train if any(l["relation"] == first_rel for l in ex.record.labels)]
    assert shown and all(s["relation"] in [r.labels for r in with_label] for s in shown)  # real annotations, as they are
    assert not any(r.text in prompt for r in with_label) and "不给出它们的句子" in prompt
    assert rep.accepted == 1 and rep.to_json()["prompt_version"] == PROMPT_VERSIONS["annotations"] == "llmicl-v4"
    row = json.loads((tmp_path / "iepile" / "IE-zh" / "RE" / SOURCE / "train.json").read_text(encoding="utf-8").splitlines()[0])
    assert row["provenance"]["prompt_version"] == "llmicl-v4"


def test_each_language_has_its_default_way_of_showing():
    from kgopt.augmentation import AugmentOptions

    assert AugmentOptions("KG", "zh").show == "annotations"  # sentences shown were mostly copied (KG/zh)
    assert AugmentOptions("NER", "en").show == "sentences"
    assert AugmentOptions("KG", "zh", show="sentences").show == "sentences"  # asked for: kept


def test_an_unknown_way_of_showing_is_a_config_error(shared_data, tmp_path):
    from kgopt.errors import ConfigError

    with pytest.raises(ConfigError, match="show must be one of sentences, annotations"):
        augment("RE", LANG, None, source=SOURCE, data_dir=shared_data, out_dir=tmp_path, show="pictures")
