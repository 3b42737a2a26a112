"""Reading a Canary-Qwen checkpoint in the Hugging Face layout of ``nvidia/canary-qwen-2.5b``.

The layout: ``config.json`` holding NeMo's SALM config and one ``model.safetensors`` with
``perception.*``, ``llm.base_model.model.*`` (PEFT layout, ``lora_A``/``lora_B`` on the adapted
projections) and the top-level ``embed_tokens.weight``. The Qwen3 tokenizer and the Qwen3
``config.json`` come from a folder given separately (``llm_dir``, e.g. a local copy of
``Qwen/Qwen3-1.7B``) or sit beside the checkpoint as NeMo saves them offline (tokenizer files at
the root, the LLM config in ``llm_backbone/``), or are named by ``pretrained_llm`` in ``config.json`` (a
folder, or a hub id such as ``Qwen/Qwen3-1.7B`` found in the local Hugging Face cache), the order
:func:`locate` documents.

:func:`inspect_checkpoint` reads everything that needs no torch: paths, the config, dimensions and
the LoRA scale. :func:`load_salm` builds NeMo's ``SALM`` and loads the weights strictly: a missing,
extra or misshapen tensor is an error that names it; nothing stays randomly initialised.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from canary_triton import contract as C
from canary_triton.checkpoint.tokenizer import TOKENIZER_FILES, Tokenizer, find_tokenizer_dir, load_tokenizer
from canary_triton.errors import CheckpointError

# torch, NeMo, safetensors and huggingface_hub are imported by the functions that load weights or
# look in the hub cache: inspect_checkpoint (the CLI, the GPU throughput model) needs no torch.

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LLM_BACKBONE_DIR = "llm_backbone"  # NeMo's name (speechlm2/parts/hf_hub.py)
REQUIRED_SALM_KEYS = ("perception", "pretrained_llm", "audio_locator_tag", "prompt_format")
MAX_NAMES_IN_ERROR = 8


@dataclass(frozen=True)
class CheckpointPaths:
    root: Path
    config: Path
    weights: Path
    tokenizer_dir: Path
    llm_config_dir: Path  # holds the Qwen3 config.json


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint's config says, with every dimension read from it."""

    paths: CheckpointPaths
    cfg: dict[str, Any]
    llm_cfg: dict[str, Any]
    mel: C.MelParams
    subsampling: C.Subsampling
    encoder_dim: int
    llm_hidden: int
    vocab_rows: int
    lora_r: int | None
    lora_alpha: float | None
    lora_targets: tuple[str, ...]

    @property
    def lora_scale(self) -> float:
        """PEFT's scale alpha / r (2.0 for Canary-Qwen-2.5B); 0 when there is no adapter."""
        if not self.lora_r:
            return 0.0
        return float(self.lora_alpha) / float(self.lora_r)

    def num_audio_frames(self, num_samples: int) -> int:
        return C.num_audio_frames(num_samples, self.mel, self.subsampling)


def _names(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:MAX_NAMES_IN_ERROR])
    more = f" (and {len(keys) - MAX_NAMES_IN_ERROR} more)" if len(keys) > MAX_NAMES_IN_ERROR else ""
    return shown + more


def _hub_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of a hub id in the Hugging Face cache (``HF_HUB_CACHE`` /
    ``HF_HOME``), looked up with local files only; None when it is not cached."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError, OSError):
        return None


def _named_folders(root: Path, key: str, value: Any) -> list[tuple[str, Path | None]]:
    """Where a config entry naming the Qwen3 (``pretrained_llm`` / ``tokenizer_path``) may point,
    as (what was tried, folder or None): an existing folder, absolute or relative to the checkpoint
    (NeMo's ``save_pretrained`` writes it as given at training time); then, for a hub id such as
    ``Qwen/Qwen3-1.7B``, its snapshot in the local Hugging Face cache."""
    if not isinstance(value, str) or not value.strip():
        return []
    given = Path(value).expanduser()
    folder = given if given.is_absolute() else root / given
    tried = [(f"{folder} ({key}={value!r})", folder if folder.is_dir() else None)]
    if not given.is_absolute() and not value.startswith((".", "~")) and value.count("/") <= 1:
        tried.append(
            (f"hub id {value!r} in the local Hugging Face cache {_hub_cache_dir()} ({key})", _hub_snapshot(value))
        )
    return tried


def _hub_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return "HF_HUB_CACHE"


def locate(path: str | Path, llm_dir: str | Path | None = None) -> CheckpointPaths:
    """Find the checkpoint's files and its Qwen3 (config + tokenizer), in the order NeMo's
    ``SALM.from_pretrained`` would, offline: ``llm_dir`` when given; else the folder beside the
    checkpoint (tokenizer at the root, config in ``llm_backbone/``); else ``tokenizer_path`` (the
    tokenizer only) and ``pretrained_llm`` from ``config.json`` as an existing folder (absolute or
    relative to the checkpoint) or as a hub id cached locally."""
    root = Path(path)
    if not root.exists():
        raise CheckpointError(
            f"checkpoint folder {root} does not exist; expected a folder with {CONFIG_FILE} and "
            f"{WEIGHTS_FILE} (the Hugging Face layout of nvidia/canary-qwen-2.5b)"
        )
    if not root.is_dir():
        raise CheckpointError(
            f"checkpoint path {root} is a file; expected a folder with {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (root / name).is_file():
            raise CheckpointError(f"checkpoint folder {root} has no {name}; expected {CONFIG_FILE} and {WEIGHTS_FILE}")
    tried_tok: list[str] = []
    tried_cfg: list[str] = []
    if llm_dir is not None:
        llm_dir = Path(llm_dir)
        if not llm_dir.is_dir():
            raise CheckpointError(f"Qwen3 folder {llm_dir} (--llm-dir) does not exist")
        tok_candidates = [(f"{llm_dir} (--llm-dir)", llm_dir)]
        cfg_candidates = list(tok_candidates)
    else:
        backbone = root / LLM_BACKBONE_DIR
        cfg = _read_json(root / CONFIG_FILE, "config")
        named = _named_folders(root, "pretrained_llm", cfg.get("pretrained_llm"))
        tok_candidates = [(f"{root} (beside the checkpoint)", root), (str(backbone), backbone)]
        tok_candidates += _named_folders(root, "tokenizer_path", cfg.get("tokenizer_path")) + named
        cfg_candidates = [(f"{backbone} (beside the checkpoint)", backbone)] + named
    tok_dir = None
    for what, folder in tok_candidates:
        tried_tok.append(what)
        if folder is not None and find_tokenizer_dir([folder]) is not None:
            tok_dir = folder
            break
    cfg_dir = None
    for what, folder in cfg_candidates:
        tried_cfg.append(what)
        if folder is not None and (folder / CONFIG_FILE).is_file():
            cfg_dir = folder
            break
    if tok_dir is None:
        raise CheckpointError(
            f"no Qwen3 tokenizer ({' + '.join(TOKENIZER_FILES)}) found; tried: {'; '.join(tried_tok)}. "
            "Pass the Qwen3-1.7B folder with --llm-dir"
        )
    if cfg_dir is None:
        raise CheckpointError(
            f"no Qwen3 {CONFIG_FILE} found; tried: {'; '.join(tried_cfg)}. Pass the Qwen3-1.7B folder "
            "(config.json + tokenizer) with --llm-dir"
        )
    return CheckpointPaths(root, root / CONFIG_FILE, root / WEIGHTS_FILE, tok_dir, cfg_dir)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{what} {path} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} {path} must hold a JSON object")
    return data


def read_salm_config(path: Path) -> dict[str, Any]:
    cfg = _read_json(path, "config")
    missing = [k for k in REQUIRED_SALM_KEYS if k not in cfg]
    perception = cfg.get("perception")
    if isinstance(perception, dict):
        missing += [f"perception.{k}" for k in ("preprocessor", "encoder") if k not in perception]
    if missing:
        raise CheckpointError(
            f"{path} is not a NeMo SALM config (missing {', '.join(missing)}); expected the config.json "
            "of nvidia/canary-qwen-2.5b"
        )
    if cfg["audio_locator_tag"] != C.AUDIO_PLACEHOLDER_TOKEN:
        raise CheckpointError(
            f"{path}: audio_locator_tag is {cfg['audio_locator_tag']!r}, expected {C.AUDIO_PLACEHOLDER_TOKEN!r}"
        )
    if cfg["prompt_format"] != C.PROMPT_FORMAT_NAME:
        raise CheckpointError(f"{path}: prompt_format is {cfg['prompt_format']!r}, expected {C.PROMPT_FORMAT_NAME!r}")
    return cfg


def inspect_checkpoint(path: str | Path, llm_dir: str | Path | None = None) -> CheckpointInfo:
    paths = locate(path, llm_dir)
    cfg = read_salm_config(paths.config)
    llm_cfg = _read_json(paths.llm_config_dir / CONFIG_FILE, "Qwen3 config")
    for key in ("hidden_size", "vocab_size"):
        if key not in llm_cfg:
            raise CheckpointError(f"Qwen3 config {paths.llm_config_dir / CONFIG_FILE} has no {key}")
    perception = cfg["perception"]
    try:
        mel = C.MelParams.from_config(perception["preprocessor"])
        sub = C.Subsampling.from_config(perception["encoder"])
    except ValueError as e:
        raise CheckpointError(f"{paths.config}: {e}") from None
    lora = cfg.get("lora") or {}
    return CheckpointInfo(
        paths=paths,
        cfg=cfg,
        llm_cfg=llm_cfg,
        mel=mel,
        subsampling=sub,
        encoder_dim=int(perception["encoder"]["d_model"]),
        llm_hidden=int(llm_cfg["hidden_size"]),
        vocab_rows=int(llm_cfg["vocab_size"]),
        lora_r=int(lora["r"]) if "r" in lora else None,
        lora_alpha=float(lora.get("lora_alpha", lora.get("r", 0))) if "r" in lora else None,
        lora_targets=tuple(lora.get("target_modules", ())),
    )


def checkpoint_tokenizer(info: CheckpointInfo) -> Tokenizer:
    """The tokenizer as NeMo's SALM builds it, checked against the checkpoint's embedding rows."""
    tok = load_tokenizer(info.paths.tokenizer_dir)
    if tok.ids.audio_placeholder >= info.vocab_rows:
        raise CheckpointError(
            f"the tokenizer in {info.paths.tokenizer_dir} puts {C.AUDIO_PLACEHOLDER_TOKEN} at id "
            f"{tok.ids.audio_placeholder}, beyond the model's {info.vocab_rows} embedding rows; "
            "use the tokenizer the checkpoint was trained with"
        )
    return tok


def read_weight_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"{weights} is not a readable safetensors file: {e}") from None


def check_weights(
    expected: dict[str, tuple[int, ...]], stored: dict[str, tuple[int, ...]], tied: dict[str, str], weights: Path
) -> None:
    """Fail, naming the tensors, unless ``stored`` holds exactly the ``expected`` set.

    ``tied`` maps a parameter name to the name it shares storage with (the tied ``lm_head``),
    which the file may store under either name, as safetensors de-duplicates shared tensors.
    """
    missing = [k for k in expected if k not in stored and tied.get(k) not in stored]
    unexpected = [k for k in stored if k not in expected]
    if missing:
        raise CheckpointError(f"{weights} is missing {len(missing)} tensor(s) the model needs: {_names(missing)}")
    if unexpected:
        raise CheckpointError(
            f"{weights} holds {len(unexpected)} tensor(s) this model does not have: {_names(unexpected)}"
        )
    wrong = [
        f"{k} {list(stored[k])} (expected {list(shape)})"
        for k, shape in expected.items()
        if k in stored and tuple(stored[k]) != tuple(shape)
    ]
    if wrong:
        raise CheckpointError(f"{weights} has tensor(s) of the wrong shape: {_names(wrong)}")


def build_config_for_local_load(info: CheckpointInfo) -> dict[str, Any]:
    """The SALM config with the LLM and tokenizer redirected to the local folders (no hub)."""
    cfg = json.loads(json.dumps(info.cfg))
    cfg["pretrained_llm"] = str(info.paths.llm_config_dir)
    cfg["tokenizer_path"] = str(info.paths.tokenizer_dir)
    cfg["pretrained_weights"] = False
    for key in ("model_type", "architectures"):
        cfg.pop(key, None)
    return cfg


def load_salm(path: str | Path, llm_dir: str | Path | None = None, *, threads: int | None = None):
    """Build NeMo's SALM offline from a checkpoint and load its weights strictly (fp32, eval)."""
    import torch

    info = inspect_checkpoint(path, llm_dir)
    checkpoint_tokenizer(info)  # fails early with a clear message on a wrong tokenizer
    stored = read_weight_shapes(info.paths.weights)
    from nemo.collections.speechlm2.models import SALM

    if threads:
        torch.set_num_threads(threads)
    model = SALM(build_config_for_local_load(info))
    state = model.state_dict(keep_vars=True)
    tied = _tied_names(state)
    check_weights({k: tuple(v.shape) for k, v in state.items()}, stored, tied, info.paths.weights)
    # Tensor by tensor from the file straight into the model's own parameters (plain reads, no
    # memory map whose touched pages would stay in this process's RSS, no second copy: at full
    # size 10 GB in fp32); every parameter is written (check_weights proved the file holds
    # exactly the model's set).
    with torch.no_grad():
        read_safetensors_into(
            info.paths.weights, {name: (name if name in stored else tied[name], param) for name, param in state.items()}
        )
    return model.eval(), info


#: safetensors dtype names -> torch dtype names (the ones a checkpoint may hold; export.lora writes them).
SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
_READ_CHUNK = 64 << 20  # bytes per read() (Linux caps one read at ~2 GiB)


def read_safetensors_into(path: Path, targets: dict[str, tuple[str, Any]]) -> None:
    """Fill tensors from a safetensors file: ``targets`` maps a label to (stored name, tensor).

    The bytes are read with ``readinto`` straight into each tensor's memory when the dtypes agree
    (else into one temporary of that tensor's size, then converted), so the peak is the model
    itself plus at most one tensor; nothing of the file stays mapped."""
    import torch

    with open(path, "rb", buffering=0) as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        for label, (stored, tensor) in targets.items():
            meta = header[stored]
            start, end = meta["data_offsets"]
            dtype = getattr(torch, SAFETENSORS_DTYPES[meta["dtype"]])
            if tuple(meta["shape"]) != tuple(tensor.shape):
                raise CheckpointError(
                    f"{path}: {stored} has shape {tuple(meta['shape'])}, the model's {label} {tuple(tensor.shape)}"
                )
            direct = dtype == tensor.dtype and tensor.is_contiguous()
            dest = tensor if direct else torch.empty(tuple(meta["shape"]), dtype=dtype)
            raw = dest.detach().reshape(-1).view(torch.uint8).numpy()
            if raw.nbytes != end - start:
                raise CheckpointError(f"{path}: {stored} holds {end - start} bytes, expected {raw.nbytes}")
            f.seek(base + start)
            view, done = memoryview(raw), 0
            while done < raw.nbytes:
                got = f.readinto(view[done : done + _READ_CHUNK])
                if not got:
                    raise CheckpointError(f"{path} ends inside tensor {stored}: the file is truncated")
                done += got
            if not direct:
                tensor.copy_(dest.to(tensor.dtype))


def _tied_names(state: dict[str, Any]) -> dict[str, str]:
    by_ptr: dict[int, list[str]] = {}
    for k, v in state.items():
        if v.numel() == 0:
            continue
        by_ptr.setdefault(v.data_ptr(), []).append(k)
    tied: dict[str, str] = {}
    for names in by_ptr.values():
        if len(names) > 1:
            for n in names:
                tied[n] = next(o for o in names if o != n)
    return tied
