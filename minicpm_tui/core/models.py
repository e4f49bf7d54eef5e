"""Model architectures: the shipped MiniCPM presets, or any Hugging Face ``config.json``.

``load_model(name_or_path)`` accepts a preset name or alias (``MiniCPM4-8B``, ``minicpm3-4b``), a Hub id
of a preset (``openbmb/MiniCPM3-4B``), a local checkpoint folder or its ``config.json``, or a Hub id whose
config is already in the local Hugging Face cache (no network is ever used). The estimator needs only
the shapes, so a user's own checkpoint or a non-MiniCPM model works too.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from minicpm_tui.assets import asset_path
from minicpm_tui.core.errors import UserError

CHAT_FORMATS = ("cpm", "cpm3")
ATTENTIONS = ("gqa", "mla")

# Linear layers LoRA adapts under ``lora_target: all`` for a Llama/MiniCPM GQA block.
GQA_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MLA_LORA_TARGETS = ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj",
                    "gate_proj", "up_proj", "down_proj"]


@dataclass
class MlaDims:
    """Multi-head latent attention widths (MiniCPM3 / DeepSeek-V2 style)."""

    q_lora_rank: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass
class ModelArch:
    """The shapes of a decoder-only transformer, enough to count parameters, memory and FLOPs.

    ``chat_format`` is "cpm" (MiniCPM 1B/2B: ``<用户>..<AI>``) or "cpm3" (ChatML-style, MiniCPM3/4/4.1 and
    most other chat models). ``remote_code`` says whether the checkpoint ships its own modelling code
    (``trust_remote_code: true`` needed). ``attention`` is "gqa" (MHA/GQA/MQA) or "mla".
    """

    name: str
    hub_id: str | None
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_embeddings: bool
    max_position: int
    chat_format: str = "cpm3"
    remote_code: bool = False
    attention: str = "gqa"
    mla: MlaDims | None = None
    family: str = "other"
    aliases: list[str] = field(default_factory=list)
    lora_targets: list[str] = field(default_factory=list)
    published_params_b: float | None = None
    source: str = ""  # "preset:<file>" or the config.json path it came from

    # -- counts ----------------------------------------------------------
    def attention_linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each attention projection in one layer."""
        h = self.hidden_size
        if self.attention == "mla" and self.mla is not None:
            m = self.mla
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            return {
                "q_a_proj": (h, m.q_lora_rank),
                "q_b_proj": (m.q_lora_rank, self.num_heads * qk),
                "kv_a_proj_with_mqa": (h, m.kv_lora_rank + m.qk_rope_head_dim),
                "kv_b_proj": (m.kv_lora_rank, self.num_heads * (m.qk_nope_head_dim + m.v_head_dim)),
                "o_proj": (self.num_heads * m.v_head_dim, h),
            }
        return {
            "q_proj": (h, self.num_heads * self.head_dim),
            "k_proj": (h, self.num_kv_heads * self.head_dim),
            "v_proj": (h, self.num_kv_heads * self.head_dim),
            "o_proj": (self.num_heads * self.head_dim, h),
        }

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of every linear layer in one decoder block."""
        h, i = self.hidden_size, self.intermediate_size
        out = self.attention_linears()
        out.update({"gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)})
        return out

    def layer_params(self) -> int:
        norms = 2 * self.hidden_size
        if self.attention == "mla" and self.mla is not None:
            norms += self.mla.q_lora_rank + self.mla.kv_lora_rank  # q_a / kv_a layernorms
        return sum(a * b for a, b in self.linears().values()) + norms

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def param_count(self) -> int:
        """All parameters, counting a tied embedding/LM head once (what the checkpoint holds)."""
        emb = self.embedding_params()
        head = 0 if self.tie_embeddings else emb
        return emb + head + self.num_layers * self.layer_params() + self.hidden_size

    def largest_layer_params(self) -> int:
        """The largest single parameter tensor group DeepSpeed ZeRO-3 gathers at once (embedding or a block)."""
        return max(self.embedding_params(), self.layer_params())

    def default_lora_targets(self) -> list[str]:
        if self.lora_targets:
            return list(self.lora_targets)
        return list(MLA_LORA_TARGETS if self.attention == "mla" else GQA_LORA_TARGETS)

    def lora_params(self, rank: int, targets: list[str] | str | None = None) -> int:
        """Trainable LoRA parameters: sum over adapted linears of r x (in + out), all layers."""
        names = self.default_lora_targets() if targets in (None, "all", ["all"]) else targets
        if isinstance(names, str):
            names = [t.strip() for t in names.split(",") if t.strip()]
        lin = self.linears()
        unknown = [n for n in names if n not in lin]
        if unknown:
            raise UserError(f"LoRA target(s) {', '.join(unknown)} are not layers of {self.name}",
                            where="lora_target", fix=f"use 'all' or some of: {', '.join(lin)}")
        return self.num_layers * sum(rank * (lin[n][0] + lin[n][1]) for n in names)

    @property
    def kv_dim(self) -> int:
        if self.attention == "mla" and self.mla is not None:
            return self.num_heads * (self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim)
        return self.num_kv_heads * self.head_dim

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["param_count"] = self.param_count()
        return data


# -- presets -----------------------------------------------------------------
_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
             "head_dim", "tie_embeddings", "max_position")


def _from_mapping(data: dict[str, Any], source: str) -> ModelArch:
    missing = [k for k in ("name", *_REQUIRED) if data.get(k) is None]
    if missing:
        raise UserError(f"missing field(s) {', '.join(missing)}", where=source,
                        fix="a model preset needs name, vocab_size, hidden_size, intermediate_size, "
                        "num_layers, num_heads, num_kv_heads, head_dim, tie_embeddings, max_position")
    known = set(ModelArch.__dataclass_fields__)
    extra = sorted(set(data) - known)
    if extra:
        raise UserError(f"unknown field(s) {', '.join(extra)}", where=source, fix=f"known: {', '.join(sorted(known))}")
    kwargs = dict(data)
    if kwargs.get("mla"):
        kwargs["mla"] = MlaDims(**kwargs["mla"])
    kwargs["source"] = source
    arch = ModelArch(**kwargs)
    _check(arch, source)
    return arch


def _check(arch: ModelArch, where: str) -> None:
    if arch.chat_format not in CHAT_FORMATS:
        raise UserError(f"chat_format {arch.chat_format!r} is not one of {', '.join(CHAT_FORMATS)}", where=where)
    if arch.attention not in ATTENTIONS:
        raise UserError(f"attention {arch.attention!r} is not one of {', '.join(ATTENTIONS)}", where=where)
    if arch.attention == "mla" and arch.mla is None:
        raise UserError("attention is mla but the mla dims are missing", where=where)
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                "head_dim"):
        if int(getattr(arch, key)) <= 0:
            raise UserError(f"{key} must be a positive number", where=where)


@cache
def _presets() -> tuple[ModelArch, ...]:
    folder = asset_path("presets", "models")
    out = []
    for path in sorted(folder.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out.append(_from_mapping(data, f"preset:{path.name}"))
    return tuple(out)


def list_models() -> list[ModelArch]:
    """The shipped model presets, smallest first."""
    return sorted(_presets(), key=lambda m: m.param_count())


def _norm(text: str) -> str:
    return text.strip().lower().replace("_", "-")


def find_preset(name: str) -> ModelArch | None:
    key = _norm(name)
    for arch in _presets():
        names = [arch.name, *(arch.aliases or [])]
        if arch.hub_id:
            names += [arch.hub_id, arch.hub_id.split("/")[-1]]
        if key in {_norm(n) for n in names}:
            return arch
    return None


# -- config.json -------------------------------------------------------------
def _chat_format_for(config: dict[str, Any], folder: Path | None) -> str:
    """"cpm" for the MiniCPM 1/2 chat format, else "cpm3" (ChatML-like, what everything newer uses)."""
    if folder is not None:
        tok = folder / "tokenizer_config.json"
        if tok.is_file():
            try:
                template = json.loads(tok.read_text(encoding="utf-8")).get("chat_template") or ""
            except (OSError, ValueError):
                template = ""
            if isinstance(template, str) and template:
                if "<用户>" in template or "<AI>" in template:
                    return "cpm"
                return "cpm3"
    # MiniCPM 1B/2B share model_type "minicpm" with MiniCPM4; their vocabularies differ.
    if config.get("model_type") == "minicpm" and config.get("vocab_size") in (73440, 122753):
        return "cpm"
    return "cpm3"


def arch_from_config(config: dict[str, Any], *, name: str, source: str, folder: Path | None = None) -> ModelArch:
    """A :class:`ModelArch` from a Hugging Face ``config.json`` mapping."""
    if isinstance(config.get("text_config"), dict):  # multimodal wrappers keep the LM in text_config
        config = {**config["text_config"], "auto_map": config.get("auto_map")}

    def need(*keys: str) -> int:
        for key in keys:
            if isinstance(config.get(key), int) and not isinstance(config.get(key), bool):
                return int(config[key])
        raise UserError(f"config has no {keys[0]}", where=source,
                        fix="point --model at a decoder-only transformer's config.json (Llama/MiniCPM/Qwen-like)",
                        fix_tui="type the path of a decoder-only transformer's checkpoint (Llama/MiniCPM/Qwen-like)")

    hidden = need("hidden_size", "n_embd", "d_model")
    heads = need("num_attention_heads", "n_head")
    kv = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    mla = None
    attention = "gqa"
    if config.get("kv_lora_rank"):
        attention = "mla"
        mla = MlaDims(
            q_lora_rank=int(config.get("q_lora_rank") or 0) or hidden,
            kv_lora_rank=int(config["kv_lora_rank"]),
            qk_nope_head_dim=int(config.get("qk_nope_head_dim") or head_dim),
            qk_rope_head_dim=int(config.get("qk_rope_head_dim") or 0),
            v_head_dim=int(config.get("v_head_dim") or head_dim),
        )
        head_dim = mla.v_head_dim
    # MiniCPM's own config class defaults to tied embeddings; transformers' default is tied too.
    tie = config.get("tie_word_embeddings")
    arch = ModelArch(
        name=name,
        hub_id=config.get("_name_or_path") or None,
        vocab_size=need("vocab_size"),
        hidden_size=hidden,
        intermediate_size=need("intermediate_size", "n_inner", "ffn_dim"),
        num_layers=need("num_hidden_layers", "n_layer", "num_layers"),
        num_heads=heads,
        num_kv_heads=int(kv),
        head_dim=int(head_dim),
        tie_embeddings=True if tie is None else bool(tie),
        max_position=int(config.get("max_position_embeddings") or config.get("n_positions") or 2048),
        chat_format=_chat_format_for(config, folder),
        remote_code=bool(config.get("auto_map")),
        attention=attention,
        mla=mla,
        family=str(config.get("model_type") or "other"),
        source=source,
    )
    _check(arch, source)
    return arch


def _hf_cache_config(hub_id: str) -> Path | None:
    """config.json of a Hub id already downloaded into the Hugging Face cache (never downloads)."""
    home = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    folder = Path(home) / ("models--" + hub_id.replace("/", "--")) / "snapshots"
    if not folder.is_dir():
        return None
    candidates = sorted(folder.glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    return candidates[0] if candidates else None


def load_model(name_or_path: str | os.PathLike[str]) -> ModelArch:
    """Resolve a preset name/alias, a preset's Hub id, a local folder / config.json, or a cached Hub id.

    Raises :class:`UserError` (naming ``--model``) when nothing matches.
    """
    text = str(name_or_path).strip()
    if not text:
        raise UserError("no model given", where="--model", fix="name a preset (see `minicpm-tui plan --list-models`)",
                        fix_tui="pick a model from the list, or type a checkpoint's path")
    path = Path(text).expanduser()
    if path.exists():
        cfg = path / "config.json" if path.is_dir() else path
        if not cfg.is_file():
            raise UserError(f"{path} has no config.json", where="--model",
                            fix="point at a checkpoint folder that contains config.json, or at the file itself")
        if cfg.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict):
                raise UserError("not a model preset mapping", where=str(cfg))
            return _from_mapping(data, str(cfg))
        try:
            config = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read JSON: {exc}", where=str(cfg)) from None
        if not isinstance(config, dict):
            raise UserError("config.json is not a JSON object", where=str(cfg))
        folder = cfg.parent
        name = folder.name if cfg.name == "config.json" else cfg.stem
        return arch_from_config(config, name=name, source=str(cfg), folder=folder)
    preset = find_preset(text)
    if preset is not None:
        return preset
    if "/" in text and not text.startswith((".", "/", "~")):
        cached = _hf_cache_config(text)
        if cached is not None:
            config = json.loads(cached.read_text(encoding="utf-8"))
            return arch_from_config(config, name=text.split("/")[-1], source=str(cached), folder=cached.parent)
    names = ", ".join(m.name for m in list_models())
    raise UserError(f"unknown model {text!r}", where="--model",
                    fix=f"use a preset ({names}), a local checkpoint folder, or its config.json")
