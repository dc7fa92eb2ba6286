"""Readers on every layout of the real data, JSON arrays, and clear errors for bad input."""

import json

import pytest

from kgopt.core.schema import split_round_robin
from kgopt.core.tasks import TASKS, get_task
from kgopt.data.jsonio import iter_json
from kgopt.data.readers import (
    iepile_root,
    list_sources,
    load_examples,
    read_iepile_schema,
    read_instruction_file,
    read_instructie,
    read_instructie_schema,
    read_unified,
)
from kgopt.errors import DataError


def test_every_unified_file_and_schema_reads(shared_data):
    root = iepile_root(shared_data)
    files = sorted(root.glob("IE-*/*/*/*.json"))
    assert len(files) > 30
    n_records = 0
    for f in files:
        if f.name == "schema.json":
            s = read_iepile_schema(f)
            assert s.types or s.roles
            continue
        folder = f.parent.parent.name
        key = {"NER": "entity", "RE": "relation", "KG": "relation", "EE": "event"}[folder]
        recs = list(read_unified(f, key, f.parent.name))
        assert recs and all(r.text for r in recs)
        n_records += len(recs)
    assert n_records > 3000


def test_unified_counts_match_the_data_readme(shared_data):
    assert len(list(read_unified(iepile_root(shared_data) / "IE-zh/NER/WeiboNER/train.json", "entity"))) == 258
    assert len(list(read_unified(iepile_root(shared_data) / "IE-en/RE/CoNLL2004/dev.json", "relation"))) == 79


def test_instruction_files(shared_data):
    lines = list(read_instruction_file(iepile_root(shared_data) / "train.json"))
    assert len(lines) == 841
    by_task = {}
    for l in lines:
        by_task[l.task] = by_task.get(l.task, 0) + 1
        assert isinstance(l.instruction["schema"], list)
        json.loads(l.output)
    assert by_task == {"EE": 120, "EEA": 120, "EET": 120, "NER": 360, "RE": 121}
    # templates in the files are exactly the registry's
    for l in lines[:200]:
        lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in l.instruction["instruction"]) else "en"
        assert l.instruction["instruction"] == get_task(l.task).template(lang)


def test_instructie(shared_data):
    root = shared_data / "instructie" if (shared_data / "instructie").is_dir() else shared_data / "InstructIE"
    for lang in ("zh", "en"):
        schemas = read_instructie_schema(root / f"schema_{lang}.json")
        assert schemas
        for split in ("train", "valid", "test"):
            recs = list(read_instructie(root / f"{split}_{lang}.json"))
            assert recs and all(r.cate for r in recs)
    ex = load_examples("KG", "zh", "dev", data_dir=shared_data)
    assert len(ex) == 75 and all(e.schema.types == (e.record.cate,) for e in ex)


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_load_examples_every_task(task, lang, shared_data):
    spec = get_task(task)
    sources = list_sources(task, lang, shared_data)
    assert sources
    ex = load_examples(task, lang, "test", data_dir=shared_data, limit=3)
    assert ex
    for e in ex:
        chunks = spec.chunks(e.schema, e.record)
        assert chunks and all(isinstance(c, list) for c in chunks)


def test_json_array_layout_streams_with_line_numbers(tmp_path):
    p = tmp_path / "arr.json"
    p.write_text('[\n {"text": "a", "entity": []},\n {"text": "b", "entity": []}\n]\n', encoding="utf-8")
    assert [(n, o["text"]) for n, o in iter_json(p)] == [(2, "a"), (3, "b")]
    big = tmp_path / "big.json"  # elements cross the 1 MiB read buffer
    rows = [{"text": "x" * 5000 + str(i), "entity": []} for i in range(600)]
    big.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]", encoding="utf-8")
    got = list(read_unified(big, "entity"))
    assert [r.text for r in got] == [r["text"] for r in rows]
    bad = tmp_path / "bad.json"
    bad.write_text('[\n {"text": "a"},\n {"text": \n]', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.json:4"):
        list(iter_json(bad))


def test_bad_records_name_file_and_line(tmp_path):
    p = tmp_path / "train.json"
    p.write_text('{"text": "ok", "entity": []}\n{"text": "x", "entity": [{"entity": "x"}]}\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        list(read_unified(p, "entity"))
    assert str(e.value).startswith(f"{p}:2:") and "entity_type" in str(e.value)
    p.write_bytes(b'{"text": "ok", "entity": []}\n{"text": "\xff\xfe", "entity": []}\n')
    with pytest.raises(DataError, match=r"train.json:2: not UTF-8"):
        list(read_unified(p, "entity"))
    p.write_text('{"text": "ok", "entity": []}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train.json:2: field 'text'"):
        list(read_unified(p, "entity"))
    s = tmp_path / "schema.json"
    s.write_text('["a"]\n[]\n', encoding="utf-8")
    with pytest.raises(DataError, match="expected 3 JSON lines"):
        read_iepile_schema(s)


def test_unknown_source_and_missing_dir(tmp_path, shared_data):
    with pytest.raises(DataError, match="unknown source"):
        load_examples("NER", "en", "test", data_dir=shared_data, source="Nope")
    with pytest.raises(DataError, match="no IEPile data"):
        load_examples("NER", "en", "test", data_dir=tmp_path)


def test_split_round_robin_matches_iepile_rule():
    items = list(range(10))
    # 10 labels, split 4: 4 + 4 + a remainder of 2 (>= 4 // 2) as its own chunk
    assert split_round_robin(items, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # 9 labels, split 4: the remainder 1 (< 2) joins the previous chunk
    assert split_round_robin(items[:9], 4) == [[0, 1, 2, 3], [4, 5, 6, 7, 8]]
    assert split_round_robin(items[:3], 6) == [[0, 1, 2]]
    assert split_round_robin(items[:7], 6) == [[0, 1, 2, 3, 4, 5, 6]]
    assert split_round_robin(items[:9], 6) == [[0, 1, 2, 3, 4, 5], [6, 7, 8]]
    assert split_round_robin([], 4) == [[]]
    with pytest.raises(ValueError):
        split_round_robin(items, 0)


def test_chunks_cover_the_schema_once(shared_data):
    for task, lang in [("NER", "en"), ("EE", "zh"), ("RE", "zh")]:
        spec = get_task(task)
        for e in load_examples(task, lang, "test", data_dir=shared_data, limit=1):
            chunks = spec.chunks(e.schema, e.record)
            flat = [spec.item_label(it) for c in chunks for it in c]
            expected = list(e.schema.roles if task == "RE" else e.schema.types)
            assert flat == expected


def test_missing_split_everywhere_is_an_error(tmp_path):
    folder = tmp_path / "iepile" / "IE-zh" / "NER" / "OnlyTest"
    folder.mkdir(parents=True)
    (folder / "schema.json").write_text('["人名"]\n[]\n{}\n', encoding="utf-8")
    (folder / "test.json").write_text('{"text": "张三", "entity": []}\n', encoding="utf-8")
    assert len(load_examples("NER", "zh", "test", data_dir=tmp_path)) == 1
    with pytest.raises(DataError, match="no NER source has a train split"):
        load_examples("NER", "zh", "train", data_dir=tmp_path)


@pytest.mark.parametrize(
    "key, labels, message",
    [
        ("entity", '"x"', "field 'entity' must be a list"),
        ("relation", '["x"]', "relation[0] must be an object"),
        ("relation", '[{"head": "a", "tail": "b"}]', "relation[0] lacks field(s) relation"),
        ("event", '[{"event_type": "t", "event_trigger": "x", "arguments": [{"role": "r"}]}]', "event[0].arguments must be a list of {argument, role}"),
    ],
)
def test_every_kind_of_gold_item_is_checked(tmp_path, key, labels, message):
    """The checks come from the record items (kgopt.core.shapes.RECORD_ITEMS); each names file and line."""
    p = tmp_path / "test.json"
    p.write_text(f'{{"text": "ok", "{key}": []}}\n{{"text": "x", "{key}": {labels}}}\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        list(read_unified(p, key))
    assert str(e.value) == f"{p}:2: {message}"


@pytest.mark.parametrize("task,lang", [("NER", "en"), ("KG", "zh"), ("EE", "zh")])
def test_skip_takes_a_later_slice_of_each_source(task, lang, shared_data):
    def keys(**kw):
        return [(e.record.source, e.record.id) for e in load_examples(task, lang, "test", data_dir=shared_data, **kw)]

    first4 = keys(limit=4)
    assert keys(limit=2) + keys(skip=2, limit=2) != [] and sorted(keys(limit=2) + keys(skip=2, limit=2)) == sorted(first4)
    assert set(keys(limit=2)).isdisjoint(keys(skip=2, limit=2))
    by_source = {}
    for source, rid in keys(skip=2, limit=2):
        by_source.setdefault(source, []).append(rid)
    assert all(len(ids) == 2 for ids in by_source.values())  # per source, as limit
    assert len(keys(skip=1)) == len(keys()) - len(by_source)  # no limit: all but the first of each source
    with pytest.raises(DataError, match="skip must be 0 or more"):
        keys(skip=-1)
