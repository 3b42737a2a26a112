"""Loading the Qwen3 tokenizer the way NeMo's SALM does, prompt ids, and detokenisation.

NeMo builds ``AutoTokenizer(path, use_fast=True)`` and then ``add_special_tokens`` for the audio
locator tag: with the real Qwen3-1.7B tokenizer the tag gets id ``len(tokenizer)`` = 151669. This
module does exactly that, so prompt ids equal NeMo's; and it renders the ``qwen`` prompt format
turn by turn as ``QwenPromptFormatter.encode_dialog`` does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from canary_triton import contract as C
from canary_triton.errors import CheckpointError

# tokenizers and transformers are imported where a tokenizer is loaded: the contract's users
# (the CLI, the light Triton models) import this module without loading a tokenizer.

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

#: transformers 5 names a fast tokenizer's generic class ``TokenizersBackend``, a class transformers
#: 4 does not have: ``AutoTokenizer`` under 4.57.3 (TensorRT-LLM 1.2.1's pin, the GPU image's)
#: raises ``Tokenizer class TokenizersBackend does not exist``. Every tokenizer folder this project
#: writes names the transformers 4 class instead, which transformers 5 maps back to the same
#: class: both load ``tokenizer.json`` as it is, so ids are equal under both. (Naming a generic BPE
#: ``Qwen2Tokenizer`` would not do: transformers 5's ``Qwen2Tokenizer`` rebuilds the pre-tokenizer
#: with Qwen2's regex, transformers 4's keeps the file's.) A model class (``Qwen2Tokenizer`` for
#: Qwen3's own tokenizer) exists in both lines and is kept.
PORTABLE_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}
#: transformers 5 writes the added special tokens (the audio placeholder) as a list under
#: ``extra_special_tokens``; transformers 4 reads that key as a dict of named tokens
#: (``AttributeError: 'list' object has no attribute 'keys'``) and the list as
#: ``additional_special_tokens``, which transformers 5 still reads.
V4_SPECIAL_TOKENS_KEY = "additional_special_tokens"
V5_SPECIAL_TOKENS_KEY = "extra_special_tokens"


def make_tokenizer_config_portable(folder: str | Path) -> str:
    """Rewrite ``folder/tokenizer_config.json`` so transformers 4.57 and 5 both load it: the class
    (:data:`PORTABLE_TOKENIZER_CLASSES`) and the added special tokens' key; returns the class."""
    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text())
    before = json.dumps(config)
    name = config.get("tokenizer_class")
    config["tokenizer_class"] = PORTABLE_TOKENIZER_CLASSES.get(name, name)
    if isinstance(config.get(V5_SPECIAL_TOKENS_KEY), list):
        listed = config.pop(V5_SPECIAL_TOKENS_KEY)
        config[V4_SPECIAL_TOKENS_KEY] = list(dict.fromkeys([*config.get(V4_SPECIAL_TOKENS_KEY, []), *listed]))
    if json.dumps(config) != before:
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return config["tokenizer_class"]


def save_tokenizer(tok: "Tokenizer", out_dir: str | Path) -> Path:
    """``save_pretrained`` into ``out_dir`` under a class both transformers lines load."""
    out_dir = Path(out_dir)
    tok.hf.save_pretrained(str(out_dir))
    make_tokenizer_config_portable(out_dir)
    return out_dir


@dataclass(frozen=True)
class Tokenizer:
    """A HF fast tokenizer with the audio placeholder added and the special ids resolved."""

    hf: object  # transformers.PreTrainedTokenizerFast, or a RawTokenizer (serving)
    ids: C.SpecialIds
    path: Path

    def __len__(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        """NeMo's ``text_to_ids``: ``tokenize`` then ``convert_tokens_to_ids``; no BOS/EOS."""
        return list(self.hf.convert_tokens_to_ids(self.hf.tokenize(text)))

    def decode(self, ids: Sequence[int]) -> str:
        """NeMo's rule: cut at the first EOS, drop special tokens, strip whitespace."""
        ids = [int(i) for i in ids]
        if self.ids.eos in ids:
            ids = ids[: ids.index(self.ids.eos)]
        return self.hf.decode(ids, skip_special_tokens=True).strip()

    # -- prompts ------------------------------------------------------------------------------
    def prompt_ids(self, user_message: str) -> list[int]:
        """Ids of a one-turn ``qwen`` prompt followed by the inference prefix."""
        return self.encode(C.USER_TURN_TEMPLATE.format(message=user_message)) + self.encode(C.INFERENCE_PREFIX)

    def asr_prompt_ids(self) -> list[int]:
        """The ASR prompt: holds exactly one audio placeholder id."""
        ids = self.prompt_ids(C.ASR_INSTRUCTION)
        if ids.count(self.ids.audio_placeholder) != 1:
            raise CheckpointError(
                f"the ASR prompt must hold exactly one {C.AUDIO_PLACEHOLDER_TOKEN} id, "
                f"the tokenizer at {self.path} produced {ids.count(self.ids.audio_placeholder)}"
            )
        return ids

    def llm_prompt_ids(self, text: str) -> list[int]:
        """LLM mode (adapter off): the user's text as one user turn; it may not hold the tag."""
        if C.AUDIO_PLACEHOLDER_TOKEN in text:
            raise ValueError(f"LLM-mode text may not contain {C.AUDIO_PLACEHOLDER_TOKEN}")
        return self.prompt_ids(text)


def find_tokenizer_dir(candidates: Sequence[Path]) -> Path | None:
    for c in candidates:
        if all((c / f).is_file() for f in TOKENIZER_FILES):
            return c
    return None


class RawTokenizer:
    """The few calls :class:`Tokenizer` makes of a transformers fast tokenizer, answered by the
    ``tokenizers`` library alone from the same ``tokenizer.json``: what the serving processes
    load (transformers and the torch it imports cost ~300 MiB per process; the Rust tokenizer
    ~80 MiB with Qwen3's vocabulary). Same ids and text as transformers' fast tokenizer, which
    wraps the same Rust object: ``tokenize`` + ``convert_tokens_to_ids`` = ``encode`` without
    special tokens; ``decode`` = the Rust decode plus transformers' optional space clean-up."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer as RustTokenizer

        self._tok = RustTokenizer.from_file(str(folder / "tokenizer.json"))
        config = json.loads((folder / "tokenizer_config.json").read_text())
        self.eos_token = _token_text(config.get("eos_token"))
        self.pad_token = _token_text(config.get("pad_token"))
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)

    def tokenize(self, text: str) -> list[str]:
        return self._tok.encode(text, add_special_tokens=False).tokens

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self._tok.token_to_id(t) for t in tokens]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        text = self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return _clean_up_tokenization(text) if self.clean_up_tokenization_spaces else text


def _token_text(value) -> str | None:
    """A tokenizer_config.json token entry: a string, or an AddedToken dict with ``content``."""
    return value.get("content") if isinstance(value, dict) else value


def _clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization`` (applied when the config asks for it)."""
    for a, b in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(a, b)
    return text


#: Tokenizers already loaded, most recent last: by (folder as given, its files' names, sizes and
#: modification times, the options), and by (the files' content, the options) for a copy of the
#: same files in another folder (an export's tokenizer folder is its checkpoint's, copied).
_BY_FOLDER: "OrderedDict[tuple, Tokenizer]" = OrderedDict()
_BY_CONTENT: "OrderedDict[tuple, Tokenizer]" = OrderedDict()
_LOADED_MAX = 8
_LOADED_LOCK = threading.Lock()


def _folder_signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file directly in ``path`` with its size and modification time (ns)."""
    files = []
    for entry in os.scandir(path):
        if entry.is_file():
            st = entry.stat()
            files.append((entry.name, st.st_size, st.st_mtime_ns))
    return tuple(sorted(files))


def _folder_digest(path: Path, signature: tuple[tuple[str, int, int], ...]) -> str:
    """SHA-256 over the names and bytes of the folder's files (tens of ms for Qwen3's)."""
    h = hashlib.sha256()
    for name, _, _ in signature:
        h.update(name.encode() + b"\0")
        with open(path / name, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _remember(cache: OrderedDict, key: tuple, tok: Tokenizer) -> None:
    cache[key] = tok
    cache.move_to_end(key)
    while len(cache) > _LOADED_MAX:
        cache.popitem(last=False)


def load_tokenizer(path: str | Path, *, require_placeholder: bool = False, raw: bool = False) -> Tokenizer:
    """Load a Qwen3-style tokenizer folder and add the audio placeholder as NeMo does.

    ``require_placeholder=True`` is for serving artifacts written by export, which must already
    hold the placeholder (a plain Qwen3 tokenizer would otherwise silently renumber nothing but
    hide a wrong folder). ``raw=True`` (serving; needs the placeholder): the ``tokenizers``
    library alone (:class:`RawTokenizer`), without transformers.

    A tokenizer loaded before from the same files (the same folder, none of its files changed:
    names, sizes, modification times; or another folder holding the same bytes) is returned again
    instead of parsed again: an export reads its checkpoint's tokenizer five times, about 1 s
    each with Qwen3's 151,669 tokens. Nothing modifies a tokenizer once loaded.
    """
    path = Path(path)
    missing = [f for f in TOKENIZER_FILES if not (path / f).is_file()]
    if missing:
        raise CheckpointError(
            f"tokenizer folder {path} lacks {', '.join(missing)}: expected a Qwen3 tokenizer "
            "(tokenizer.json + tokenizer_config.json)"
        )
    options = (require_placeholder or raw, raw)
    signature = _folder_signature(path)
    by_folder = (str(path), signature, options)
    with _LOADED_LOCK:
        tok = _BY_FOLDER.get(by_folder)
        if tok is not None:
            _BY_FOLDER.move_to_end(by_folder)
            return tok
    by_content = (_folder_digest(path, signature), options)
    with _LOADED_LOCK:
        same = _BY_CONTENT.get(by_content)
    tok = (
        dataclasses.replace(same, path=path)
        if same is not None
        else _load_tokenizer(path, require_placeholder=options[0], raw=raw)
    )
    with _LOADED_LOCK:
        _remember(_BY_CONTENT, by_content, tok)
        _remember(_BY_FOLDER, by_folder, tok)
    return tok


def _load_tokenizer(path: Path, *, require_placeholder: bool, raw: bool) -> Tokenizer:
    if raw:
        require_placeholder = True  # a raw tokenizer cannot add it as transformers does
        hf = RawTokenizer(path)
    else:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(path), use_fast=True, local_files_only=True)
    vocab = hf.get_vocab()
    tag = C.AUDIO_PLACEHOLDER_TOKEN
    if tag not in vocab:
        if require_placeholder:
            raise CheckpointError(
                f"tokenizer at {path} has no {tag} token; serving needs the tokenizer written by "
                "`canary-triton export`, which adds it"
            )
        hf.add_special_tokens({"additional_special_tokens": [tag]})
        vocab = hf.get_vocab()
    needed = {
        "pad": C.PAD_TOKEN,
        "im_start": C.IM_START_TOKEN,
        "im_end": C.IM_END_TOKEN,
        "audio_placeholder": tag,
    }
    absent = [tok for tok in needed.values() if tok not in vocab]
    if absent:
        raise CheckpointError(f"tokenizer at {path} lacks the Qwen3 special token(s) {', '.join(absent)}")
    for role, want, got in (("eos", C.IM_END_TOKEN, hf.eos_token), ("pad", C.PAD_TOKEN, hf.pad_token)):
        if got != want:
            raise CheckpointError(
                f"tokenizer at {path} declares {role}_token={got!r}; Canary-Qwen needs {want!r} "
                "(NeMo stops generation at the tokenizer's EOS and pads with its pad token)"
            )
    ids = C.SpecialIds(**{k: int(vocab[t]) for k, t in needed.items()})
    tok = Tokenizer(hf=hf, ids=ids, path=path)
    if len(tok.encode(tag)) != 1:
        raise CheckpointError(f"tokenizer at {path} splits {tag} into several tokens")
    return tok
