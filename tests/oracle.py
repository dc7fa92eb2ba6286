"""A deterministic stand-in for a model that has learnt from demonstrations.

It answers a OneKE instruction with the gold answer of the record whose text it is asked
about, but only when the prompt carries at least one demonstration; zero-shot it echoes
the instruction (as the tiny embedded model does). So a compiled program with demos beats
the zero-shot baseline, and the test can tell which one it runs.
"""

import json
import re
from pathlib import Path

from kgopt.core.tasks import get_task
from kgopt.data.readers import load_examples
from kgopt.testing.fake_endpoint import FakeEndpoint, asked, chat_response


class Oracle:
    def __init__(self, task: str, lang: str, data_dir: Path, source: str | None = None):
        self.spec = get_task(task)
        self.records = {}
        for split in ("train", "dev", "test"):
            for ex in load_examples(task, lang, split, data_dir=data_dir, source=source):
                self.records[ex.record.text] = ex.record
        self.broken = False  # set True to simulate a model that regressed
        self.server: FakeEndpoint | None = None

    def __enter__(self) -> "Oracle":
        """Serve the oracle from a fake endpoint (``self.server``) while the block runs."""
        self.server = FakeEndpoint(respond=self).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)

    def structured(self, msgs: list) -> str:
        """A reply in DSPy's chat format to DSPy's own prompts (MIPRO's proposer, GEPA's reflection)."""
        system = msgs[0]["content"] if msgs and msgs[0]["role"] == "system" else ""
        m = re.search(r"Your output fields are:(.*?)(?:\n\n|All interactions)", system, re.S)
        if not m:
            return "I cannot help with that."
        names = re.findall(r"`(\w+)`", m.group(1))
        text = "Extract every span of the input that matches a schema label; answer in JSON keyed by the labels."
        body = "".join(f"[[ ## {n} ## ]]\n{text}\n\n" for n in names)
        return body + "[[ ## completed ## ]]"

    def answer(self, req: dict) -> str:
        msgs = req["messages"]
        last = msgs[-1]["content"]
        try:
            instr = asked(msgs)
            rec = self.records[instr["input"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            return self.structured(msgs)
        has_demos = sum(1 for m in msgs if m["role"] == "assistant") > 0
        if not has_demos or self.broken:
            return last  # an echo: not an answer
        return json.dumps(self.spec.gold_answer(rec, instr["schema"]), ensure_ascii=False)

    def __call__(self, req: dict):
        return 200, chat_response(self.answer(req))
