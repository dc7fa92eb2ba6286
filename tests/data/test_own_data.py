"""A user's own data (docs/own-data.md): the format, its layout, its checks, and what it carries
into instructions, manifests and fingerprints."""

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
import ujson
from typer.testing import CliRunner

from kgopt.cli.data import data_app
from kgopt.compiler.fingerprint import fingerprint_of
from kgopt.compiler.instructions import describe_labels, label_meanings, propose_instructions
from kgopt.compiler.manifest import TrainingData, schemas_of
from kgopt.core.schema import Schema, merge_schemas
from kgopt.core.tasks import get_task
from kgopt.data.check import check_data
from kgopt.data.layouts import InstructIEFiles, IEPileTree, UserData, is_user_folder, layout_of
from kgopt.data.readers import list_sources, load_examples, read_schema_file, read_user_schema, split_files
from kgopt.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "dataset" / "examples" / "orchestra"
EXAMPLE_NER = ROOT / "dataset" / "examples" / "orchestra-ner"
RELATIONS = ["conductor of", "member of", "plays", "composed by", "performed at"]


def _files(folder: Path) -> UserData:
    return UserData(train=folder / "train.jsonl", dev=folder / "dev.jsonl", test=folder / "test.jsonl", schema=folder / "schema.json")


@pytest.fixture()
def folder(tmp_path) -> Path:
    """A copy of the example domain to break."""
    dst = tmp_path / "orchestra"
    shutil.copytree(EXAMPLE, dst)
    return dst


# --- the example domain and the layout ------------------------------------------------------------


def test_the_example_folder_loads_as_user_data():
    assert is_user_folder(EXAMPLE) and isinstance(layout_of("RE", EXAMPLE), UserData)
    counts = {split: len(load_examples("RE", "en", split, data_dir=EXAMPLE)) for split in ("train", "dev", "test")}
    assert counts == {"train": 24, "dev": 8, "test": 8}
    train = load_examples("RE", "en", "train", data_dir=EXAMPLE)
    assert {ex.record.source for ex in train} == {"user"} and train[0].record.id == "orchestra-train-01"
    schema = train[0].schema
    assert list(schema.roles) == RELATIONS and schema.types == () and set(schema.descriptions) == set(RELATIONS)
    for ex in train:  # every span is in its text (the example was written so)
        assert all(r["head"] in ex.record.text and r["tail"] in ex.record.text for r in ex.record.labels)
    assert list_sources("RE", "en", EXAMPLE) == ["user"]
    assert split_files("RE", "en", "dev", EXAMPLE) == [EXAMPLE / "dev.jsonl", EXAMPLE / "schema.json"]
    assert [e.record.id for e in load_examples("RE", "en", "valid", data_dir=EXAMPLE, limit=3)] == [f"orchestra-dev-0{i}" for i in (1, 2, 3)]
    assert load_examples("RE", "en", "train", data_dir=EXAMPLE, source="user", limit=2) == train[:2]
    ner = load_examples("NER", "en", "test", data_dir=EXAMPLE_NER)
    assert len(ner) == 8 and ner[0].schema.types == ("person", "ensemble", "instrument", "work", "venue")


def test_explicit_files_are_the_same_data():
    by_files = _files(EXAMPLE)
    for split in ("train", "dev", "test"):
        assert load_examples("RE", "en", split, data_dir=by_files) == load_examples("RE", "en", split, data_dir=EXAMPLE)
    assert list_sources("RE", "en", by_files) == ["user"]
    only_test = UserData(test=EXAMPLE / "test.jsonl", schema=EXAMPLE / "schema.json")
    assert len(load_examples("RE", "en", "test", data_dir=only_test)) == 8
    with pytest.raises(DataError, match="no train file was given"):
        load_examples("RE", "en", "train", data_dir=only_test)
    assert split_files("RE", "en", "train", only_test) == []
    with pytest.raises(ConfigError, match="schema"):
        UserData(train=EXAMPLE / "train.jsonl")
    with pytest.raises(ConfigError, match="not both"):
        UserData(EXAMPLE, schema=EXAMPLE / "schema.json")
    with pytest.raises(DataError, match=r"nope\.jsonl: dev file not found"):
        UserData(train=EXAMPLE / "train.jsonl", dev=EXAMPLE / "nope.jsonl", schema=EXAMPLE / "schema.json")


def test_user_data_serialises_as_its_paths():
    u = _files(EXAMPLE)
    paths = {k: str(EXAMPLE / f"{k}.{'json' if k == 'schema' else 'jsonl'}") for k in ("train", "dev", "test", "schema")}
    assert u.to_json() == paths and ujson.loads(ujson.dumps(u)) == paths and json.loads(json.dumps(u.to_json())) == paths
    assert UserData(EXAMPLE) == u and hash(UserData(EXAMPLE)) == hash(u)


def test_other_layouts_are_still_the_trees(folder, shared_data):
    assert isinstance(layout_of("RE", None), IEPileTree) and isinstance(layout_of("KG", shared_data), InstructIEFiles)
    assert not is_user_folder(ROOT / "dataset" / "iepile" / "IE-en" / "RE" / "CoNLL2004")  # its schema.json is IEPile's lines
    assert not is_user_folder(shared_data)
    (folder / "test.jsonl").unlink()
    assert UserData(folder).test is None and split_files("RE", "en", "test", folder) == []
    with pytest.raises(DataError, match=r"orchestra: no test\.jsonl in this user data folder"):
        load_examples("RE", "en", "test", data_dir=folder)
    (folder / "dev.jsonl").unlink()
    with pytest.raises(DataError, match="missing: dev.jsonl"):
        load_examples("RE", "en", "train", data_dir=folder)
    with pytest.raises(DataError, match="unknown source 'CoNLL2004'"):
        load_examples("RE", "en", "train", data_dir=_files(EXAMPLE), source="CoNLL2004")
    with pytest.raises(DataError, match="not KG"):
        load_examples("KG", "en", "train", data_dir=_files(EXAMPLE))


def test_an_event_schema_carries_roles(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"labels": [{"label": "concert", "description": "a performance", "roles": ["performer", "venue"]},
                                           {"label": "rehearsal", "roles": ["performer"]}, "tour"]}), encoding="utf-8")
    s = read_user_schema(path, "EE")
    assert s.types == ("concert", "rehearsal", "tour") and s.roles == ("performer", "venue")
    assert s.type_roles == {"concert": ("performer", "venue"), "rehearsal": ("performer",), "tour": ()}
    assert s.descriptions == {"concert": "a performance"} and read_user_schema(path, "EEA") == s
    assert read_schema_file(path, "EE") == s  # extract --schema reads either format
    iepile = ROOT / "dataset/iepile/IE-en/RE/CoNLL2004/schema.json"
    assert read_schema_file(iepile, "RE").roles == ("work for", "live in", "located in", "organization based in", "kill")


# --- bad input: file, line and field --------------------------------------------------------------

GOOD = {"id": "x1", "text": "Mira Ostrand conducts.", "relation": [{"head": "Mira Ostrand", "relation": "conductor of", "tail": "conducts"}]}
GOOD_EVENT = {"text": "The band played.", "event": [{"event_trigger": "played", "event_type": "concert", "arguments": [{"argument": "The band", "role": "performer"}]}]}


def _rel(**over):
    return {**GOOD["relation"][0], **over}


BAD_RECORDS = [
    ("RE", "[1, 2]", "a record must be a JSON object"),
    ("RE", '{"text": "x", "relation": [}', "invalid JSON"),
    ("RE", json.dumps({"relation": []}), "field 'text' is missing"),
    ("RE", json.dumps({"text": 5, "relation": []}), "field 'text' must be a non-empty string"),
    ("RE", json.dumps({"text": "  ", "relation": []}), "field 'text' must be a non-empty string"),
    ("RE", json.dumps({"id": True, "text": "x", "relation": []}), "field 'id' must be"),
    ("RE", json.dumps({"id": "x1", "text": "x", "relation": []}), "field 'id': 'x1' is the id of line 1 too"),
    ("RE", json.dumps({"text": "x"}), "field 'relation' is missing"),
    ("RE", json.dumps({"text": "x", "entity": []}), "field 'relation' is missing; the record has 'entity'"),
    ("RE", json.dumps({"text": "x", "relation": {}}), "field 'relation' must be a list"),
    ("RE", json.dumps({"text": "x", "relation": ["a"]}), r"relation\[0\] must be an object"),
    ("RE", json.dumps({"text": "x", "relation": [{"head": "a", "relation": "plays"}]}), r"relation\[0\] lacks field\(s\) tail"),
    ("RE", json.dumps({"text": "x", "relation": [_rel(head=3)]}), r"field 'relation\[0\]\.head' must be a non-empty string"),
    ("RE", json.dumps({"text": "x", "relation": [_rel(), _rel(relation="")]}), r"field 'relation\[1\]\.relation' must be"),
    ("NER", json.dumps({"text": "x", "entity": [{"entity": "x", "entity_type": None}]}), r"field 'entity\[0\]\.entity_type'"),
    ("EE", json.dumps({"text": "x", "event": [{**GOOD_EVENT["event"][0], "arguments": "none"}]}), r"event\[0\]\.arguments must be a list"),
    ("EE", json.dumps({"text": "x", "event": [{**GOOD_EVENT["event"][0], "arguments": [{"argument": "x", "role": 1}]}]}),
     r"field 'event\[0\]\.arguments\[0\]\.role' must be"),
]


@pytest.mark.parametrize(("task", "line", "message"), BAD_RECORDS)
def test_a_bad_record_names_file_line_and_field(tmp_path, task, line, message):
    first = {"RE": GOOD, "NER": {"text": "a", "entity": []}, "EE": GOOD_EVENT}[task]
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(first) + "\n" + line + "\n", encoding="utf-8")
    labels = {"RE": ["conductor of"], "NER": ["person"], "EE": [{"label": "concert", "roles": ["performer"]}]}[task]
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"labels": labels}), encoding="utf-8")
    data = UserData(train=path, schema=schema)
    with pytest.raises(DataError, match=message) as err:
        load_examples(task, "en", "train", data_dir=data)
    assert err.value.path == str(path) and err.value.line == 2 and str(err.value).startswith(f"{path}:2: ")
    report = check_data(data, task=task)  # the check lists the same error, and reads on
    assert not report.ok and any(e.startswith(f"{path}:2: ") and err.value.reason in e for e in report.errors)


BAD_SCHEMAS = [
    ('["a", "b"]', 1, "a schema file holds one JSON object"),
    ('{"labels": ["a",\n  ]}', 2, "invalid JSON"),
    ('{"types": ["a"]}', None, r"unknown field\(s\) 'types'"),
    ("{}", None, "field 'labels' is missing"),
    ('{"labels": []}', None, "field 'labels' must be a non-empty list"),
    ('{"labels": "plays"}', None, "field 'labels' must be a non-empty list"),
    ('{"labels": [\n  "plays",\n  7\n]}', 3, r"field 'labels\[1\]' must be a string or an object"),
    ('{"labels": [\n  "plays",\n  {"description": "x"}\n]}', 3, r"field 'labels\[1\]\.label' is missing"),
    ('{"labels": [\n  "plays",\n  {"label": ""}\n]}', 3, r"field 'labels\[1\]\.label' is missing or not a non-empty string"),
    ('{"labels": [\n  "plays",\n  {"label": "x", "description": 3}\n]}', 3, r"field 'labels\[1\]\.description' must be a string"),
    ('{"labels": [\n  "plays",\n  {"label": "x", "desc": "y"}\n]}', 3, r"field 'labels\[1\]': unknown field\(s\) 'desc'"),
    ('{"labels": [\n  "plays",\n  {"label": "plays"}\n]}', 3, r"field 'labels\[1\]\.label': label 'plays' is listed twice \(first on line 2\)"),
    ('{"labels": [\n  {"label": "plays", "roles": ["x"]}\n]}', 2, r"field 'labels\[0\]\.roles': only event types"),
]


@pytest.mark.parametrize(("body", "line", "message"), BAD_SCHEMAS)
def test_a_bad_schema_names_file_line_and_field(tmp_path, body, line, message):
    path = tmp_path / "schema.json"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        read_user_schema(path, "RE")
    assert err.value.path == str(path) and err.value.line == line


@pytest.mark.parametrize(("roles", "message"), [('"x"', "must be a list of non-empty strings"), ('["x", 2]', "must be a list of non-empty strings"),
                                                ('["x", "x"]', "lists a role twice")])
def test_bad_event_roles(tmp_path, roles, message):
    path = tmp_path / "schema.json"
    path.write_text('{"labels": [\n  "tour",\n  {"label": "concert", "roles": ' + roles + "}\n]}", encoding="utf-8")
    with pytest.raises(DataError, match=r"field 'labels\[1\]\.roles' " + message) as err:
        read_user_schema(path, "EE")
    assert err.value.line == 3


def test_a_folder_with_a_broken_schema_is_still_user_data(folder):
    (folder / "schema.json").write_text('{"labels": [3]}', encoding="utf-8")
    assert is_user_folder(folder)
    with pytest.raises(DataError, match=r"schema\.json:1: field 'labels\[0\]'"):
        load_examples("RE", "en", "train", data_dir=folder)


# --- label descriptions ---------------------------------------------------------------------------


def test_descriptions_round_trip_and_leave_other_schemas_as_they_were(tmp_path):
    plain = Schema.make(["a"], ["r"], {"a": ["r"]})
    assert plain == Schema(types=("a",), roles=("r",), type_roles={"a": ("r",)}) and plain.descriptions == {}
    assert plain.to_json() == {"types": ["a"], "roles": ["r"], "type_roles": {"a": ["r"]}}  # the manifest form it always had
    assert Schema.coerce(plain.to_json()) == plain
    described = Schema.make(["a"], ["r"], {"a": ["r"]}, descriptions={"a": "an A"})
    assert described != plain and Schema.coerce(described.to_json()) == described
    assert merge_schemas([plain, described, Schema.make(["b"], descriptions={"a": "other", "b": "a B"})]).descriptions == {"a": "an A", "b": "a B"}
    with pytest.raises(ConfigError, match="descriptions"):
        Schema.coerce({"types": ["a"], "descriptions": ["an A"]})


def test_descriptions_survive_a_program_manifest(tmp_path):
    from kgopt.api import Extractor
    from kgopt.program import IEProgram, load_program

    train = load_examples("RE", "en", "train", data_dir=EXAMPLE, limit=2)
    manifest = {"schemas": schemas_of(train)}
    path = IEProgram("RE", "en").save_artifact(tmp_path / "RE_en.json", manifest)
    program, loaded = load_program(path)
    assert Extractor(program, loaded, path).schema_for() == train[0].schema
    assert Extractor(program, loaded, path).schema_for().descriptions["plays"].startswith("the head is a musician")


def test_a_description_candidate_only_when_labels_are_described():
    spec = get_task("RE")
    schema = load_examples("RE", "en", "train", data_dir=EXAMPLE, limit=1)[0].schema
    official = spec.template("en")
    candidates, counts = propose_instructions(spec, "en", None, [], 0, schemas=[schema, schema])
    assert candidates == [official, describe_labels(official, [schema], "en")] and counts["asked"] == 0
    assert candidates[1].startswith(official + " Label meanings: conductor of: the head is a person who conducts")
    assert candidates[1].endswith("; performed at: the head is an ensemble or a piece of music and the tail the hall, church or park where it was performed.")
    plain = load_examples("RE", "en", "train", data_dir=ROOT / "dataset", limit=1)[0].schema
    assert propose_instructions(spec, "en", None, [], 0, schemas=[plain])[0] == [official]
    assert propose_instructions(spec, "en", None, [], 0)[0] == [official]
    zh = describe_labels(spec.template("zh"), [Schema.make(roles=["指挥"], descriptions={"指挥": "头实体指挥尾实体。"})], "zh")
    assert zh == spec.template("zh") + "标签含义：指挥：头实体指挥尾实体。" and label_meanings([plain], "zh") is None


# --- data check -----------------------------------------------------------------------------------


def test_check_the_example_domain():
    report = check_data(EXAMPLE)
    assert report.ok and report.layout == "user" and report.warnings_total == 0
    (d,) = report.datasets
    assert d.task == "RE" and d.schema_labels == RELATIONS and d.described == 5
    assert {s.split: s.records for s in d.splits} == {"train": 24, "dev": 8, "test": 8}
    assert {s.split: s.no_labels for s in d.splits} == {"train": 2, "dev": 1, "test": 1}
    assert sum(d.splits[0].labels.values()) == sum(len(ex.record.labels) for ex in load_examples("RE", "en", "train", data_dir=EXAMPLE))
    assert d.not_in_schema() == [] and d.not_in_data() == []
    assert check_data(EXAMPLE_NER).datasets[0].task == "NER" and check_data(_files(EXAMPLE)).ok
    assert check_data(EXAMPLE / "dev.jsonl").datasets[0].splits[0].records == 8  # one file, with the schema beside it


def test_check_the_bundled_iepile_tree():
    report = check_data(ROOT / "dataset" / "iepile")
    assert report.ok and report.layout == "iepile" and len(report.datasets) == 14
    conll = next(d for d in report.datasets if d.name == "IE-en/RE/CoNLL2004")
    assert {s.split: s.records for s in conll.splits} == {"train": 264, "dev": 79, "test": 79} and conll.not_in_schema() == []
    only = check_data(ROOT / "dataset", task="EET", lang="en")
    assert [d.name for d in only.datasets] == ["IE-en/EE/PHEE"] and only.datasets[0].task == "EET"
    kg = check_data(ROOT / "dataset", task="KG", lang="zh")
    assert kg.layout == "iepile+instructie" and [d.name for d in kg.datasets] == ["IE-zh/KG/DeepKE_sample", "InstructIE/zh"] and kg.ok
    with pytest.raises(DataError, match="no data here"):
        check_data(ROOT / "docs")


def test_check_lists_every_problem_with_its_line(folder):
    lines = (folder / "train.jsonl").read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[2])
    rec["relation"].append({"head": "Lantern Songs", "relation": "sung at", "tail": "Quayside Hall"})  # not in the schema
    rec["relation"].append({"head": "Lantern Songs", "relation": "composed by", "tail": "Ada Merow"})  # not in the text
    lines[2] = json.dumps(rec)
    lines[5] = '{"text": "broken'
    lines[7] = json.dumps({"text": "No label key here."})
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = check_data(folder)
    train = folder / "train.jsonl"
    assert report.errors_total == 2 and report.errors[0].startswith(f"{train}:6: invalid JSON")
    assert report.errors[1] == f"{train}:8: field 'relation' is missing (an empty list if the text has none)"
    (d,) = report.datasets
    assert d.splits[0].records == 22 and d.unknown == {"sung at": 1} and d.not_in_data() == []
    assert report.warnings == [f"{train}:3: relation[3].tail 'Ada Merow' is not in the text"]
    out = report.text()
    assert "in the data, not in the schema: sung at (1)" in out and "2 errors, 1 warning" in out

    app = typer.Typer()
    app.add_typer(data_app, name="data")
    res = CliRunner().invoke(app, ["data", "check", str(folder)])
    assert res.exit_code == 2 and f"error: {train}:6: invalid JSON" in res.output and "Traceback" not in res.output
    assert res.output.index(f"error: {train}:6:") < res.output.index(f"error: {train}:8:")
    res = CliRunner().invoke(app, ["data", "check", str(EXAMPLE), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["datasets"][0]["splits"]["dev"]["records"] == 8
    res = CliRunner().invoke(app, ["data", "check", str(folder / "nothing")])
    assert res.exit_code == 2 and res.output.startswith("error: ") and "not found" in res.output


def test_check_cannot_guess_the_task_of_mixed_records(folder):
    with open(folder / "dev.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "Mira Ostrand", "entity": [{"entity": "Mira Ostrand", "entity_type": "person"}]}) + "\n")
    report = check_data(folder)
    assert not report.ok and "cannot tell the task" in report.errors[0] and "pass --task" in report.errors[0]
    assert check_data(folder, task="RE").errors == [f"{folder / 'dev.jsonl'}:9: field 'relation' is missing; the record has 'entity': is the task right?"]


# --- manifests and fingerprints -------------------------------------------------------------------


def _data(data_dir) -> TrainingData:
    train = load_examples("RE", "en", "train", data_dir=data_dir, limit=5)
    dev = load_examples("RE", "en", "dev", data_dir=data_dir, limit=3)
    return TrainingData(train, [], dev, data_dir, Path("unused"), None, 5, 3)


def _fingerprint(files):
    from kgopt.compiler.study import CompileOptions

    conn = SimpleNamespace(model="fake", identity="http://127.0.0.1:1/v1|fake")
    return fingerprint_of(CompileOptions("RE", "en", train_limit=5, dev_limit=3), files, ["user"], conn)


def test_manifest_files_of_user_data(folder):
    files = _data(EXAMPLE).files("RE", "en")
    assert [e["path"] for e in files["train"]] == ["orchestra/train.jsonl", "orchestra/schema.json"]
    assert [e.get("records_used") for e in files["train"] + files["dev"]] == [5, None, 3, None]
    for e in files["train"] + files["dev"]:
        assert e["sha256"] == hashlib.sha256((EXAMPLE.parent / e["path"]).read_bytes()).hexdigest()
    assert files["augmented"] == [] and "test" not in json.dumps(files)
    assert _data(_files(EXAMPLE)).files("RE", "en") == files  # the files named one by one: the same entries
    assert _fingerprint(_data(_files(EXAMPLE)).files("RE", "en")).digest == _fingerprint(files).digest
    schema = json.loads((folder / "schema.json").read_text(encoding="utf-8"))
    schema["labels"][0]["description"] = "someone who leads an ensemble"
    (folder / "schema.json").write_text(json.dumps(schema), encoding="utf-8")  # a description is data: another fingerprint
    changed = _data(folder).files("RE", "en")
    assert [e["path"] for e in changed["train"]] == ["orchestra/train.jsonl", "orchestra/schema.json"]
    assert _fingerprint(changed).digest != _fingerprint(files).digest


def test_compile_on_the_example_domain(tmp_path, monkeypatch):
    """End to end with the fake endpoint: the program's manifest hashes the user's files and
    keeps the schema with its descriptions for ``kgopt.load``."""
    import kgopt
    from kgopt.clients.config import EndpointConfig
    from kgopt.clients.lm import connect
    from kgopt.compiler import compile_program
    from kgopt.testing.fake_endpoint import FakeEndpoint
    from tests.oracle import Oracle

    monkeypatch.chdir(tmp_path)
    oracle = Oracle("RE", "en", EXAMPLE)
    with FakeEndpoint(respond=oracle) as server:
        conn = connect(EndpointConfig(api_base=server.url, model="fake", max_retries=1), cache=False)
        res = compile_program("RE", "en", conn, trials=1, data_dir=_files(EXAMPLE), compiled_dir=tmp_path / "compiled", train_limit=6,
                              dev_limit=3, instruction_proposals=0, augmented=False, max_demos=1)
        m = res.manifest
        assert m["sources"] == ["user"] and m["dev"]["by_source"].keys() == {"user"}
        assert [e["path"] for e in m["data"]["dev"]] == ["orchestra/dev.jsonl", "orchestra/schema.json"]
        assert m["schemas"]["user"]["descriptions"]["composed by"] == "the head is a piece of music and the tail the person who wrote it"
        ie = kgopt.load(res.path, connection=conn)
        assert ie.schema_for() == UserData(EXAMPLE).schema_for("RE")


def test_augment_refuses_user_data(tmp_path):
    from kgopt.augmentation.generate import _units

    with pytest.raises(DataError, match="does not augment UserData"):
        _units(get_task("RE"), "en", None, EXAMPLE, tmp_path, None)


def test_extract_asks_a_user_schema_file():
    from kgopt.extraction.job import plan_programs

    baseline = ROOT / "programs" / "RE_en.json"  # its manifest has no schemas
    (tp,) = plan_programs("en", ["RE"], [baseline], schemas={"RE": EXAMPLE / "schema.json"})
    assert tp.schema == UserData(EXAMPLE).schema_for("RE")
    (tp,) = plan_programs("en", ["RE"], [baseline], data_dir=EXAMPLE)  # no --schema: the data's, here a user folder
    assert tp.schema == UserData(EXAMPLE).schema_for("RE")
