"""An independent, line-by-line rendering of IEPile's official evaluator, for cross-checks.

Written in the upstream style on purpose (lists, ``in`` + ``remove`` matching, one extracter
per task, ``convert_kg`` for the gold) so that it shares no code with ``kgopt.core.scoring``.
Only the two upstream crashes are replaced by the documented fixes (EET, KG).
"""

import json
from collections import defaultdict
from copy import deepcopy

NAN = "NAN"


def extract(task, result):
    try:
        rst = json.loads(result)
    except (json.decoder.JSONDecodeError, TypeError):
        return False, []
    if type(rst) != dict:
        return False, []
    out = []
    for key, values in rst.items():
        if type(key) != str or type(values) != list:
            continue
        for v in values:
            if task in ("NER", "EET"):
                if type(v) != str:
                    continue
                out.append((v, key))
            elif task in ("RE", "KG"):
                if type(v) != dict:
                    continue
                head = v.get("subject", v.get("head", ""))
                tail = v.get("object", v.get("tail", ""))
                if type(head) != str or type(tail) != str:
                    continue
                out.append((head, key, tail))
            elif task == "EE":
                if type(v) != dict:
                    continue
                trigger = v.get("trigger", "")
                if type(trigger) != str:
                    continue
                args = []
                arguments = v.get("arguments", {})
                if type(arguments) != dict:
                    arguments = {}
                for k1, v1 in arguments.items():
                    if type(v1) == list:
                        for it in v1:
                            if it == NAN:
                                continue
                            args.append((it, k1))
                    else:
                        if v1 == NAN:
                            continue
                        args.append((v1, k1))
                out.append((key, trigger, tuple(args)))
            elif task == "EEA":
                if type(v) != dict:
                    continue
                args = []
                for k1, v1 in v.items():
                    if type(v1) == list:
                        for it in v1:
                            if it == NAN:
                                continue
                            args.append((it, k1))
                    else:
                        if v1 == NAN:
                            continue
                        args.append((v1, k1))
                out.append((key, "", tuple(args)))
    return True, out


def convert_kg(outputs, task):
    kgs = []
    if task == "NER":
        for it in outputs:
            kgs.append((it["entity"], it["entity_type"]))
    elif task in ("RE", "KG"):
        for it in outputs:
            kgs.append((it.get("head", ""), it.get("relation", ""), it.get("tail", "")))
    elif task == "EE":
        for it in outputs:
            kgs.append((it["event_type"], it["event_trigger"], tuple((a["argument"], a["role"]) for a in it["arguments"])))
    elif task == "EEA":
        for it in outputs:
            kgs.append((it["event_type"], "", tuple((a["argument"], a["role"]) for a in it["arguments"])))
    elif task == "EET":
        for it in outputs:
            kgs.append((it["event_trigger"], it["event_type"]))
    return kgs


def safe_div(a, b):
    return round(a / b * 100, 2) if b != 0 else 0


def f1_of(p, r):
    return round(2 * p * r / (p + r), 2) if p + r != 0 else 0


class Metric:
    def __init__(self, two_level):
        self.two_level = two_level
        self.cnt = self.error = 0
        self.c = defaultdict(float)

    def _count(self, prefix, gold, pred):
        dup_gold = deepcopy(gold)
        self.c[prefix + "pred"] += len(pred)
        self.c[prefix + "gold"] += len(gold)
        for p in pred:
            if p in dup_gold:
                self.c[prefix + "tp"] += 1
                dup_gold.remove(p)

    def count_instance(self, gold, pred):
        self.cnt += 1
        if not self.two_level:
            self._count("", list(gold), list(pred))
            return
        self._count("ev_", [(t, tr) for t, tr, _ in gold], [(t, tr) for t, tr, _ in pred])
        self._count("ag_", [(t, a, r) for t, _, args in gold for a, r in args], [(t, a, r) for t, _, args in pred for a, r in args])

    def compute(self):
        def prf(prefix):
            p = safe_div(self.c[prefix + "tp"], self.c[prefix + "pred"])
            r = safe_div(self.c[prefix + "tp"], self.c[prefix + "gold"])
            return {"P": p, "R": r, "F1": f1_of(p, r)}

        if self.two_level:
            return {"event": prf("ev_"), "argument": prf("ag_")}
        return prf("")


def evaluate_lines(task, lines):
    mapper = {}
    for data in lines:
        iid = data.get("source", "None") + str(data["id"])
        if iid in mapper:
            mapper[iid]["output"].append(data["output"])
        else:
            mapper[iid] = {"output": [data["output"]], "label": json.loads(data["label"]), "source": data.get("source", "None")}
    two = task in ("EE", "EEA")
    total = Metric(two)
    by_source = defaultdict(lambda: Metric(two))
    for value in mapper.values():
        preds = []
        for it in value["output"]:
            ok, rst = extract(task, it)
            if not ok:
                total.error += 1
                by_source[value["source"]].error += 1
            preds.extend(rst)
        gold = convert_kg(value["label"], task)
        total.count_instance(gold, preds)
        by_source[value["source"]].count_instance(gold, preds)
    return total, dict(by_source)
