"""Encode fixed conversations with LLaMA-Factory chat templates; print the token ids as JSON.

Run in a training Python (stdlib + the training stack only), one process for many templates:
    python template_probe.py JOB.json
JOB: {"entry": TRAIN_ENTRY_PY, "items": [{"tokenizer": DIR, "template": NAME, "registered": BOOL}, ...]}.
A "registered" item first removes the template from LLaMA-Factory's registry (where this release has it) and
lets the run directory's train_entry.py register it again: what a generated run trains with on a release
that lacks it. Others use the release's own definition; they are encoded first. The output line is
``@@TEMPLATE@@`` + a JSON list, one object per item, in the job's order.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import warnings

MARK = "@@TEMPLATE@@"

# Conversations that exercise every slot the MiniCPM templates define: a first turn (the BOS prefix),
# several turns, a system prompt, and a tool call answered by an observation turn.
CONVERSATIONS = [
    {"messages": [("user", "你好"), ("assistant", "你好！有什么可以帮你？")]},
    {"system": "You are a helpful assistant.",
     "messages": [("user", "What is 2+2?"), ("assistant", "4."), ("user", "And 3+3?"), ("assistant", "6.")]},
    {"messages": [("user", "Weather in Paris?"), ("function", '{"name": "weather", "arguments": {"city": "Paris"}}'),
                  ("observation", '{"temp": 18}'), ("assistant", "It is 18 degrees in Paris.")]},
]


def encode(lf_template, tokenizer_dir: str, name: str) -> dict:
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    template = lf_template.get_template_and_fix_tokenizer(tokenizer, DataArguments(template=name))
    encodings = []
    for conv in CONVERSATIONS:
        messages = [{"role": role, "content": content} for role, content in conv["messages"]]
        try:
            pairs = template.encode_multiturn(tokenizer, messages, conv.get("system"), None)
            encodings.append([[list(prompt), list(answer)] for prompt, answer in pairs])
        except Exception as exc:  # a release that cannot encode a turn kind says so, not crashes the probe
            encodings.append(f"{type(exc).__name__}: {exc}")
    return {"template": name, "eos_token": tokenizer.eos_token,
            "stop_words": list(getattr(template, "stop_words", []) or []), "encodings": encodings}


def main() -> int:
    warnings.filterwarnings("ignore")
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "ERROR")
    with open(sys.argv[1], encoding="utf-8") as handle:
        job = json.load(handle)
    import llamafactory
    from llamafactory.data import template as lf_template

    items = job["items"]
    results: list = [None] * len(items)
    order = sorted(range(len(items)), key=lambda i: bool(items[i].get("registered")))  # natives first
    entry = None
    for i in order:
        item = items[i]
        native = item["template"] in lf_template.TEMPLATES
        if item.get("registered"):
            if entry is None:
                spec = importlib.util.spec_from_file_location("train_entry", job["entry"])
                entry = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(entry)
            lf_template.TEMPLATES.pop(item["template"], None)
            added = entry.register_missing_templates()
            assert item["template"] in added, (item["template"], added)
        out = encode(lf_template, item["tokenizer"], item["template"])
        out.update(version=llamafactory.__version__, native=native, registered=bool(item.get("registered")))
        results[i] = out
    sys.stdout.write("\n" + MARK + json.dumps(results, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
