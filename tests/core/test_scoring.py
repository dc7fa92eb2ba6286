"""The scorer against hand-computed numbers and against an independent port of the official
evaluator, on prediction files built from real data with malformed outputs, duplicates,
labels outside the schema and near-miss strings."""

import json
import zlib
import random

import pytest
from typer.testing import CliRunner

from kgopt.cli.main import app
from kgopt.core.scoring import group_lines, prf, score_groups
from kgopt.core.tasks import get_task
from kgopt.data.readers import load_examples
from kgopt.errors import DataError

from tests import official_reference as ref


def _line(rid, source, chunk, gold, output, text="t"):
    instr = {"instruction": "x", "schema": chunk, "input": text}
    return {"id": str(rid), "source": source, "instruction": json.dumps(instr, ensure_ascii=False),
            "label": json.dumps(gold, ensure_ascii=False), "output": output}


def _score(task, lines, **kw):
    return score_groups(task, group_lines(enumerate(lines, 1)), **kw)


def test_prf_rounds_p_and_r_before_f1():
    # 2/3 -> 66.67, 1/3 -> 33.33; F1 from the rounded values: 2*66.67*33.33/100 = 44.44
    assert prf(2, 3, 6) == {"P": 66.67, "R": 33.33, "F1": 44.44}
    assert prf(0, 0, 5) == {"P": 0.0, "R": 0.0, "F1": 0.0}


def test_ner_hand_computed():
    gold = [{"entity": "Paris", "entity_type": "location"}, {"entity": "Paris", "entity_type": "location"},
            {"entity": "Le Guin", "entity_type": "writer"}]
    lines = [
        # duplicate prediction of a label that occurs twice in gold: both match (multiset)
        _line(1, "S", ["location"], gold, json.dumps({"location": ["Paris", "Paris", "Paris"]})),
        # case differs: no match; a type outside the chunk still counts (not restricted)
        _line(1, "S", ["writer"], gold, json.dumps({"writer": ["le guin"], "person": ["Le Guin"]})),
        # a second record whose only output is malformed: one error, nothing predicted
        _line(2, "S", ["writer"], [{"entity": "Lem", "entity_type": "writer"}], '{"writer": ["Lem"'),
    ]
    rep = _score("NER", lines)
    assert rep.total.instances == 2 and rep.total.errors == 1
    # tp 2, pred 5, gold 4 -> P 40.0, R 50.0, F1 44.44
    assert rep.total.scores() == {"P": 40.0, "R": 50.0, "F1": 44.44}


def test_ee_two_levels_and_nan_dropped():
    gold = [{"event_type": "质押", "event_trigger": "质押",
             "arguments": [{"argument": "黄立", "role": "主体个人"}, {"argument": "1100万", "role": "数量"}]}]
    out = {"质押": [{"trigger": "质押", "arguments": {"主体个人": "黄立", "数量": ["1100万", "NAN"], "时间": "NAN"}}],
           "减持": [{"trigger": 3}]}  # non-string trigger: skipped
    rep = _score("EE", [_line(1, "FewFC", [], gold, json.dumps(out, ensure_ascii=False))])
    s = rep.total.scores()
    assert s["event"] == {"P": 100.0, "R": 100.0, "F1": 100.0}
    assert s["argument"] == {"P": 100.0, "R": 100.0, "F1": 100.0}


def test_eet_and_kg_are_scored_not_crashing():
    gold = [{"event_type": "投资", "event_trigger": "入股", "arguments": []}]
    rep = _score("EET", [_line(1, "F", ["投资"], gold, json.dumps({"投资": ["入股", "投资"]}, ensure_ascii=False))])
    assert rep.total.scores() == {"P": 50.0, "R": 100.0, "F1": 66.67}
    kg_gold = [{"head": "A", "head_type": "人物", "relation": "父母", "tail": "B", "tail_type": "人物"}]
    out = {"父母": [{"head": "A", "head_type": "人物", "tail": "B", "tail_type": "人物"}]}
    typed = [{"topic": "人物", "relations": ["父母"]}]  # the chunk tells the answer format
    rep = _score("KG", [_line(1, "InstructIE", typed, kg_gold, json.dumps(out, ensure_ascii=False))], ccks=True)
    assert rep.total.scores()["F1"] == 100.0
    assert rep.ccks == {"F1": 100.0, "rouge2": 100.0, "score": 100.0}
    oneke = [{"entity_type": "人物", "attributes": ["父母"]}]  # OneKE's format, the default
    out = {"人物": {"A": {"父母": ["B", "C"]}}}
    rep = _score("KG", [_line(1, "InstructIE", oneke, kg_gold, json.dumps(out, ensure_ascii=False))], ccks=True)
    assert rep.total.scores() == {"P": 50.0, "R": 100.0, "F1": 66.67}


# --- cross-check with the official semantics on real data ------------------------------------


def _corrupt(rng, spec, chunk, answer):
    """Turn a gold answer into a realistic model output (often wrong, sometimes broken)."""
    r = rng.random()
    if r < 0.08:
        return json.dumps(answer, ensure_ascii=False)[: rng.randint(0, 30)]  # truncated
    if r < 0.11:
        return "Sure! Here it is: " + json.dumps(answer, ensure_ascii=False)  # prose
    if r < 0.13:
        return json.dumps([answer], ensure_ascii=False)  # not an object
    if r < 0.15:
        return "NAN"
    ans = json.loads(json.dumps(answer))
    for key in list(ans):
        vals = ans[key]
        if not isinstance(vals, list):
            continue
        if vals and rng.random() < 0.3:
            vals.append(vals[0])  # duplicate
        if vals and rng.random() < 0.2:
            vals.pop(rng.randrange(len(vals)))  # miss one
        if vals and rng.random() < 0.2:
            v = vals[0]
            if isinstance(v, str):
                vals[0] = v.lower() if rng.random() < 0.5 else v + " "  # near miss
            elif isinstance(v, dict):
                k = rng.choice(list(v))
                v[k] = "NAN" if rng.random() < 0.5 else [v[k], "NAN"] if isinstance(v[k], str) else v[k]
        if rng.random() < 0.05:
            ans[key] = "not a list"
    if rng.random() < 0.2:
        other = "unasked_label" if rng.random() < 0.5 else "人名"
        ans[other] = ["Paris"] if spec.shape in ("entities", "triggers") else [{"subject": "A", "object": "B"}]
    return json.dumps(ans, ensure_ascii=False)


CASES = [("NER", "en"), ("NER", "zh"), ("RE", "en"), ("RE", "zh"), ("EE", "zh"), ("EE", "en"), ("EEA", "zh"),
         ("EEA", "en"), ("EET", "zh"), ("EET", "en")]


def _build_lines(task, lang, data_dir, seed):
    spec = get_task(task)
    rng = random.Random(seed)
    lines = []
    for ex in load_examples(task, lang, "test", data_dir=data_dir):
        gold = ex.record.labels
        for chunk in spec.chunks(ex.schema, ex.record):
            answer = spec.gold_answer(ex.record, chunk)
            lines.append(_line(ex.record.id, ex.record.source, chunk, gold, _corrupt(rng, spec, chunk, answer), ex.record.text))
    return lines


@pytest.mark.parametrize("task,lang", CASES)
def test_matches_official_semantics_on_real_data(task, lang, shared_data, tmp_path):
    lines = _build_lines(task, lang, shared_data, seed=zlib.crc32(f"{task}{lang}".encode()))
    assert len(lines) > 40
    ref_total, ref_sources = ref.evaluate_lines(task, lines)
    path = tmp_path / "pred.jsonl"
    path.write_text("".join(json.dumps(l, ensure_ascii=False) + "\n" for l in lines), encoding="utf-8")

    res = CliRunner().invoke(app, ["score", "--task", task, "--input", str(path), "--sort-by", "source", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["instances"] == ref_total.cnt
    assert got["errors"] == ref_total.error
    assert ref_total.error > 0  # the corruption really produced malformed outputs
    assert got["total"] == ref_total.compute()
    assert set(got["by_source"]) == set(ref_sources)
    for src, m in ref_sources.items():
        assert got["by_source"][src] == {"instances": m.cnt, "errors": m.error, "total": m.compute()}
    # not a degenerate case: something matched and something did not
    f1 = got["total"]["argument"]["F1"] if task in ("EE", "EEA") else got["total"]["F1"]
    assert 0 < f1 < 100


def test_lenient_mode_recovers_prose_and_fences():
    gold = [{"entity": "Paris", "entity_type": "location"}]
    lines = [_line(1, "S", ["location"], gold, 'Answer:\n```json\n{"location": ["Paris"],}\n```')]
    assert _score("NER", lines).total.scores()["F1"] == 0.0
    rep = _score("NER", lines, lenient=True)
    assert rep.total.errors == 0 and rep.total.scores()["F1"] == 100.0


def test_bad_prediction_file_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(_line(1, "S", [], [], "{}")) + "\n" + '{"id": "2", "output": "{}"}\n', encoding="utf-8")
    res = CliRunner().invoke(app, ["score", "--task", "NER", "--input", str(p)])
    assert res.exit_code == 2
    assert f"{p}:2" in res.output and "label" in res.output
    p.write_text("{not json\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["score", "--task", "NER", "--input", str(p)])
    assert res.exit_code == 2 and f"{p}:1" in res.output
    with pytest.raises(DataError):
        group_lines(enumerate([{"id": 1, "label": "[", "output": ""}], 1))
