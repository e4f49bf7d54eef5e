"""Dataset shapes LLaMA-Factory reads, and how to tell which one a file holds.

The names mirror LLaMA-Factory's ``DatasetAttr`` (llamafactory/data/parser.py): ``formatting``,
``ranking``, ``columns`` and ``tags`` are exactly what goes into a dataset_info.json entry.
OpenAI-style ``messages`` (role/content, user/assistant) are registered as ``sharegpt`` with
role/content tags, not as LLaMA-Factory's ``openai`` formatting, because that converter silently
appends "\ndetailed thinking off" to every system prompt of a record without tools, or makes it the whole
system prompt where there is none (converter.py, OpenAIDatasetConverter, 0.9.4 and 0.9.5), and does not
exist before 0.9.4. Entries that use it are still validated as it reads them (``openai_lf.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STAGES = ("sft", "dpo", "kto")
# What a person can pass as --format; "auto" (None) detects it from the first record.
FORMATS = ("alpaca", "sharegpt", "openai")
# Keys we recognise as a KTO label, in the order we prefer them.
KTO_KEYS = ("kto_tag", "label")
MESSAGE_KEYS = ("conversations", "messages")
ALPACA_KEYS = ("instruction", "input", "output", "system", "history")

SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"}

# LLaMA-Factory's DatasetAttr (parser.py): the column and tag keys an entry may map, and what it reads
# without a ``columns`` / ``tags`` block. With a block, every key the block does not name is unset (None).
COLUMN_KEYS = ("prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
               "audios", "chosen", "rejected", "kto_tag")
TAG_KEYS = tuple(SHAREGPT_TAGS)
LF_COLUMN_DEFAULTS = {"prompt": "instruction", "query": "input", "response": "output", "messages": "conversations"}
# Where LLaMA-Factory loads an entry from before it looks at file_name (data/parser.py get_dataset_list).
REMOTE_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
MEDIA_KEYS = ("images", "videos", "audios")


@dataclass
class Shape:
    """One dataset layout: what LLaMA-Factory needs to know to read every record of it."""

    style: str  # "alpaca" | "sharegpt" | "openai" (what the person wrote)
    ranking: bool = False  # chosen/rejected pairs (DPO)
    kto_key: str | None = None  # the field holding the KTO boolean label
    messages_key: str = "conversations"
    tags: dict[str, str | None] = field(default_factory=dict)
    # LLaMA-Factory column key -> the record field it reads, as a dataset_info.json entry maps them (None:
    # unset). None here: a detected shape, read by the standard names (``column``).
    columns: dict[str, str | None] | None = None
    # "openai": an entry with ``"formatting": "openai"``, read by LLaMA-Factory's OpenAIDatasetConverter
    # (``openai_lf.py``); None: the alpaca / sharegpt converters.
    converter: str | None = None
    lf_version: str | None = None  # the release that reads it, where known (its converter differs by release)
    # an entry's: which media the template reads and where their files are (``media.MediaReading``);
    # None: read as the presets' text templates
    media: Any = None

    @property
    def formatting(self) -> str:
        if self.converter == "openai":
            return "openai"
        return "alpaca" if self.style == "alpaca" else "sharegpt"

    @property
    def name(self) -> str:
        suffix = "-dpo" if self.ranking else "-kto" if self.kto_key else ""
        return self.style + suffix

    def default_stage(self) -> str:
        return "dpo" if self.ranking else "kto" if self.kto_key else "sft"

    @property
    def from_entry(self) -> bool:
        return self.columns is not None

    def column(self, key: str) -> str | None:
        """The record field LLaMA-Factory reads for column ``key`` (prompt, response, system, ...), or None."""
        if self.columns is not None:
            return self.columns.get(key)
        if self.style == "alpaca":
            names = {"prompt": "instruction", "query": "input", "response": "output", "history": "history",
                     "system": "system"}
        else:
            names = {"messages": self.messages_key, "system": "system", "tools": "tools"}
        if self.ranking:
            names.update(chosen="chosen", rejected="rejected")
        names["kto_tag"] = self.kto_key
        return names.get(key)

    def kto_column(self, stage: str) -> str | None:
        """The label field LLaMA-Factory reads for ``stage``: an entry's kto_tag is read at every stage
        (converter.py), a detected label only for KTO (``dataset_info_entry`` maps it only then)."""
        if self.columns is not None:
            return self.columns.get("kto_tag")
        return self.kto_key if stage == "kto" else None

    def read_columns(self) -> dict[str, str]:
        """An entry's mapped fields that LLaMA-Factory looks up in every record (field -> column key): one
        that no record has fails the load with a KeyError. Chosen/rejected are read only for ranking data,
        an alpaca response only where chosen/rejected are not both strings; empty for a detected shape."""
        if self.columns is None:
            return {}
        keys = ["prompt", "query", "response", "history"] if self.style == "alpaca" else ["messages"]
        # the OpenAI converter reads system and tools with .get (a column no record has reads as "")
        keys += ([] if self.converter == "openai" else ["system", "tools"]) + [*MEDIA_KEYS, "kto_tag"]
        if self.ranking:
            keys += ["chosen", "rejected"]
            if self.style == "alpaca":
                keys.remove("response")
        out: dict[str, str] = {}
        for key in keys:
            name = self.columns.get(key)
            if name is not None:
                out.setdefault(name, key)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"style": self.style, "formatting": self.formatting, "ranking": self.ranking,
                "kto_key": self.kto_key, "messages_key": self.messages_key if self.style != "alpaca" else None,
                "tags": dict(self.tags), "columns": dict(self.columns) if self.columns is not None else None}


def _first_message(messages: Any) -> dict | None:
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict):
                return m
    return None


def detect_format(record: Any, fmt: str | None = None) -> Shape | None:
    """The shape of a dataset judged from one record (the first object of the file).

    Returns None when the record fits no known shape. ``fmt`` forces the style; the
    ranking / KTO parts are still read from the record's keys.
    """
    if not isinstance(record, dict):
        return None
    kto_key = next((k for k in KTO_KEYS if k in record), None)
    ranking = "chosen" in record and "rejected" in record
    messages_key = next((k for k in MESSAGE_KEYS if isinstance(record.get(k), list)), None)
    if messages_key is None:
        messages_key = next((k for k in MESSAGE_KEYS if k in record), None)
    style = fmt
    if style is None:
        if messages_key is not None:
            first = _first_message(record.get(messages_key))
            style = "openai" if first is not None and "role" in first and "from" not in first else "sharegpt"
            if first is None and messages_key == "messages":
                style = "openai"
        elif any(k in record for k in ("instruction", "output")) or (
                ranking and isinstance(record.get("chosen"), str)):
            style = "alpaca"
        else:
            return None
    if style == "alpaca":
        return Shape("alpaca", ranking=ranking, kto_key=kto_key, messages_key="", tags={})
    messages_key = messages_key or ("messages" if style == "openai" else "conversations")
    first = _first_message(record.get(messages_key)) or {}
    if "from" in first or (style == "sharegpt" and "role" not in first):
        tags = dict(SHAREGPT_TAGS)
    else:
        tags = dict(OPENAI_TAGS)
    # Role values: people mix from/value keys with user/assistant values and the reverse.
    roles = {m.get(tags["role_tag"]) for m in record.get(messages_key) or [] if isinstance(m, dict)}
    if "user" in roles or "assistant" in roles:
        tags.update(user_tag="user", assistant_tag="assistant")
    elif "human" in roles or "gpt" in roles:
        tags.update(user_tag="human", assistant_tag="gpt")
    if "tool" in roles:
        tags["observation_tag"] = "tool"
    return Shape(style, ranking=ranking, kto_key=kto_key, messages_key=messages_key, tags=tags)


def _message_like(value: Any) -> bool:
    first = _first_message(value)
    return first is not None and ({"from", "value"} <= first.keys() or {"role", "content"} <= first.keys())


def misspelt_messages_key(record: Any) -> tuple[str, str] | None:
    """(a key of ``record`` that holds a list and reads like a misspelt messages key, the key LLaMA-Factory
    reads) when the record has neither ``conversations`` nor ``messages``: a close name (``conversation``,
    ``converstions``, ``Messages``) or, failing that, a list of message objects under another name."""
    import difflib

    if not isinstance(record, dict) or any(k in record for k in MESSAGE_KEYS):
        return None
    lists = [k for k, v in record.items() if isinstance(v, list)]
    lower = {k.lower(): k for k in lists}
    for std in MESSAGE_KEYS:
        close = difflib.get_close_matches(std, list(lower), n=1, cutoff=0.8)
        if close:
            return lower[close[0]], std
    for k in lists:
        if _message_like(record[k]):
            first = _first_message(record[k]) or {}
            return k, "messages" if "role" in first and "from" not in first else "conversations"
    return None


def describe_keys(record: Any) -> str:
    if isinstance(record, dict):
        return "keys " + ", ".join(repr(k) for k in list(record)[:8])
    return f"a JSON {json_kind(record)}"


def skipped(stage: str, *, otherwise: bool = False) -> str:
    """What LLaMA-Factory does with a record its converter finds broken (turns out of order, an odd count): it
    skips it, except in KTO. There ``FeedbackDatasetProcessor.preprocess_dataset`` pairs each record's prompt with
    another record's answer of its preprocessing batch for the KL term (the previous one from 0.9.3 on, the
    mirrored one in 0.9.2), and a broken record's answer is an empty list: the record it is paired with stops the
    whole preprocessing with an IndexError (a real 0.9.5 run: ``kl_response[0]``, list index out of range)."""
    if stage == "kto":
        return ("in KTO LLaMA-Factory cannot skip it: another record's KL pair takes its missing answer and "
                "preprocessing stops with an IndexError")
    return "LLaMA-Factory skips the record" + (" otherwise" if otherwise else "")


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
