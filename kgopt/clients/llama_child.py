"""The embedded server's process: ``llama_cpp.server`` with the JSON grammar checked after sampling.

llama-cpp-python puts the grammar sampler inside its sampling chain, so for every generated
token the grammar is matched against all ~151k vocabulary entries before the greedy pick.
Under a JSON-schema grammar that made constrained answers about 5x slower to generate than
plain ones here (BENCHMARKS.md#constrained-decoding-on-the-embedded-server). llama.cpp's own
server samples first and asks the grammar about the one chosen token; only when the grammar
refuses it does it filter the whole vocabulary and sample again (``common_sampler_sample``).
``CheckedGrammarSampler`` does the same. At temperature 0 the answer is the same token for
token: the unconstrained argmax, when the grammar accepts it, is also the argmax of the tokens
the grammar allows. At a positive temperature it samples as llama.cpp's server does.

Run as ``python -m kgopt.clients.llama_child <llama_cpp.server flags>``; ``embedded.py`` does.
"""

from __future__ import annotations

import ctypes
import math
import runpy
import sys
from typing import Any

import numpy as np

__all__ = ["CheckedGrammarSampler", "install"]


class CheckedGrammarSampler:
    """A sampling chain without the grammar, and the grammar asked about the sampled token only."""

    def __init__(self, plain: Any, grammar: Any, n_vocab: int):
        import llama_cpp

        self._ll = llama_cpp
        self.plain = plain  # llama_cpp._internals.LlamaSampler: frees its chain itself
        self.grammar = grammar  # a llama_sampler pointer, ours to free
        self.n_vocab = n_vocab
        self._all = (llama_cpp.llama_token_data * n_vocab)()
        self._view = np.frombuffer(self._all, dtype=np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._one = (llama_cpp.llama_token_data * 1)()
        self.checked = self.refused = 0  # tokens asked about, and how many the grammar refused

    def _fill(self, ctx: Any, idx: int) -> Any:
        ll = self._ll
        logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx.ctx, idx), shape=(self.n_vocab,))
        self._view["id"], self._view["logit"], self._view["p"] = self._ids, logits, 0.0
        return ll.llama_token_data_array(data=self._all, size=self.n_vocab, selected=-1, sorted=False)

    def _pick(self, cur: Any) -> int:
        self._ll.llama_sampler_apply(self.plain.sampler, ctypes.byref(cur))
        return int(cur.data[cur.selected].id)

    def _allowed(self, token: int) -> bool:
        ll = self._ll
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 0.0, 0.0
        one = ll.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        ll.llama_sampler_apply(self.grammar, ctypes.byref(one))
        return not math.isinf(self._one[0].logit)

    def sample(self, ctx: Any, idx: int = -1) -> int:
        token = self._pick(self._fill(ctx, idx))
        self.checked += 1
        if not self._allowed(token):
            self.refused += 1
            cur = self._fill(ctx, idx)  # the chain may have reordered or trimmed the array
            self._ll.llama_sampler_apply(self.grammar, ctypes.byref(cur))
            token = self._pick(cur)
        self._ll.llama_sampler_accept(self.grammar, token)
        self._ll.llama_sampler_accept(self.plain.sampler, token)
        return token

    def accept(self, token: int) -> None:
        self._ll.llama_sampler_accept(self.grammar, token)
        self.plain.accept(token)

    def reset(self) -> None:
        self._ll.llama_sampler_reset(self.grammar)
        self.plain.reset()

    def close(self) -> None:
        grammar, self.grammar = self.grammar, None
        if grammar is not None:
            self._ll.llama_sampler_free(grammar)
        self.plain.close()

    def __del__(self) -> None:
        self.close()


def install() -> None:
    """Make ``Llama`` build a ``CheckedGrammarSampler`` whenever a grammar is given."""
    import llama_cpp
    from llama_cpp.llama import Llama

    if getattr(Llama._init_sampler, "kgopt_checked", False):
        return
    original = Llama._init_sampler

    def _init_sampler(self: Any, *args: Any, grammar: Any = None, **kwargs: Any) -> Any:
        plain = original(self, *args, grammar=None, **kwargs)
        if grammar is None:
            return plain
        g = llama_cpp.llama_sampler_init_grammar(self._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8"))
        if not g:
            plain.close()
            raise ValueError("llama.cpp could not build the grammar sampler")
        return CheckedGrammarSampler(plain, g, self._n_vocab)

    _init_sampler.kgopt_checked = True  # type: ignore[attr-defined]
    Llama._init_sampler = _init_sampler  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
