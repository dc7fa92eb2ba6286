"""The compiler and the augmenter on the real embedded model (small budgets)."""

import pytest

from kgopt.augmentation import augment
from kgopt.clients.config import resolve_endpoint
from kgopt.clients.lm import connect
from kgopt.compiler import compile_program

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def embedded():
    # No response cache: other tests may already have asked the same prompts, and this one
    # checks that the model itself was called.
    return connect(resolve_endpoint(), max_tokens=256, cache=False)


def test_compile_on_the_embedded_model(embedded, shared_data, tmp_path):
    res = compile_program(
        "NER", "en", embedded, source="CrossNER_AI", trials=1, data_dir=shared_data, compiled_dir=tmp_path,
        train_limit=6, dev_limit=1, max_demos=1, instruction_proposals=1, augmented=False,
    )
    m = res.manifest
    assert res.path.is_file() and m["endpoint"].startswith("embedded|")
    assert m["study"]["trials_finished"] == 1
    assert m["llm"]["calls"] > 0 and m["llm"]["total_tokens"] > 0
    assert m["study"]["name"] == "NER_en" and len(m["data"]["dev"]) == 2  # dev.json + schema.json


def test_compile_with_instructzero_and_cmaes_on_the_embedded_model(embedded, shared_data, tmp_path):
    """The continuous search end to end: the embedded model writes instructions from soft prompts
    (in-process, white box), the served model is scored with them (black box, text only), and a
    CMA-ES study searches the rest."""
    res = compile_program(
        "NER", "en", embedded, source="CrossNER_AI", trials=1, data_dir=shared_data, compiled_dir=tmp_path,
        train_limit=6, dev_limit=1, max_demos=1, instruction_proposals=0, augmented=False, instructzero_trials=2, sampler="cmaes",
    )
    iz = res.manifest["study"]["instructzero"]
    assert len(iz["trials"]) == 2 and len(iz["best"]["z"]) == iz["writer"]["d"]
    assert len(iz["writer"]["model"]["sha256"]) == 64  # the writer's weights, verified before use
    assert all(isinstance(t["instruction"], str) for t in iz["trials"])


def test_augment_on_the_embedded_model(embedded, shared_data, tmp_path):
    rep = augment("NER", "en", embedded, source="CrossNER_AI", per_label=2, max_labels=1, data_dir=shared_data, out_dir=tmp_path)
    d = rep.to_json()
    # Two samples asked, and the ones that copied a real sentence asked once more (copy_retries=1).
    assert d["failed_calls"] == 0 and d["retried_calls"] <= 1 and 2 <= d["asked"] <= 4
    # Every sample the model returned is accounted for: accepted or rejected with a reason.
    # (an unparsable reply counts as one malformed sample).
    assert d["accepted"] + sum(d["rejected"].values()) == d["received"]
    assert d["received"] <= d["asked"] and d["missing"] == d["asked"] - d["received"]
    assert (tmp_path / "reports" / "NER_en_CrossNER_AI_seed0.json").is_file()
