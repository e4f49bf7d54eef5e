"""LLaMA-Factory's own verdict on each record's media placeholders (run in the training Python, not imported).

Usage: ``python lf_mm_counts.py JOBS.json``; each job: {dataset_dir, name, stage, template}. The entry is read by
LLaMA-Factory's parser (``data/parser.py``, ``get_dataset_list``), the file by ``datasets`` (as its loader does),
each row by its converter (``data/converter.py``, ``get_dataset_converter``) and then, alone, by the stage's
processor (``data/processor/*.py``). The template's plugin is wrapped: its ``process_messages`` runs the
plugin's own ``_validate_input`` (with a stand-in processor) and ``_validate_messages`` on the messages the
processor hands it, and nothing that needs a model (expanding tokens, opening files); the encoding is a stub.
Prints one JSON line: a list of {"records": ["ok" | "dropped" | "error: ..."], "validates": bool}, one per job;
a KTO job also has "batch": "ok" | "error: ..." (the whole file through the processor, batch by batch).
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import sys
from types import SimpleNamespace


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        jobs = json.load(f)
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "ERROR")
    import datasets
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.data.processor import (
        FeedbackDatasetProcessor,
        PairwiseDatasetProcessor,
        SupervisedDatasetProcessor,
    )
    from llamafactory.data.template import TEMPLATES
    from llamafactory.hparams import DataArguments

    datasets.disable_progress_bars()
    print(json.dumps([run(job, datasets, get_dataset_converter, get_dataset_list, TEMPLATES, DataArguments,
                          (SupervisedDatasetProcessor, PairwiseDatasetProcessor, FeedbackDatasetProcessor))
                      for job in jobs]))


def run(job, datasets, get_dataset_converter, get_dataset_list, TEMPLATES, DataArguments, processors) -> dict:
    attr = get_dataset_list([job["name"]], job["dataset_dir"])[0]
    data_args = DataArguments(dataset_dir=job["dataset_dir"], template=job["template"], cutoff_len=4096)
    rows = datasets.load_dataset("json", data_files=os.path.join(job["dataset_dir"], attr.dataset_name),
                                 split="train")
    converter = get_dataset_converter(attr.formatting, attr, data_args)
    real = TEMPLATES[job["template"]].mm_plugin
    source = inspect.getsource(type(real).process_messages)
    stand_in = SimpleNamespace(image_processor=object(), video_processor=object(), feature_extractor=object())

    class Probe:
        def process_messages(self, messages, images, videos, audios, processor):
            real._validate_input(stand_in, images, videos, audios)
            if "_validate_messages" in source:
                real._validate_messages(messages, images, videos, audios)
            if images and videos and "at the same time" in source:  # MiniCPM-V's plugins, right after
                raise ValueError("MiniCPM-V model does not support input images and videos at the same time.")
            return messages

        def process_token_ids(self, input_ids, labels, *args):
            return input_ids, labels

    template = copy.copy(TEMPLATES[job["template"]])
    template.mm_plugin = Probe()
    template.encode_multiturn = lambda tok, messages, *a, **k: [([1], [2])] * (len(messages) // 2)
    template.encode_oneturn = lambda tok, messages, *a, **k: ([1], [2])
    kinds = dict(zip(("sft", "dpo", "kto"), processors, strict=True))
    processor = kinds[job["stage"]](template=template, tokenizer=SimpleNamespace(eos_token_id=0), processor=None,
                                    data_args=data_args)
    out = []
    for row in rows:
        aligned = converter(row)
        if not aligned["_prompt"]:
            out.append("dropped")
            continue
        try:
            got = processor.preprocess_dataset({k: [v] for k, v in aligned.items()})
        except ValueError as exc:
            out.append(f"error: {exc}")
            continue
        out.append("ok" if got.get("input_ids") or got.get("chosen_input_ids") else "dropped")
    result = {"records": out, "validates": "_validate_messages" in source}
    if job["stage"] == "kto":
        # Alone, a record's KL term takes its own answer; dataset.map hands the processor batches, where it
        # takes another record's (feedback.py, preprocess_dataset).
        aligned = [converter(row) for row in rows]
        size = data_args.preprocessing_batch_size
        try:
            for start in range(0, len(aligned), size):
                part = aligned[start:start + size]
                processor.preprocess_dataset({k: [a[k] for a in part] for k in part[0]})
            result["batch"] = "ok"
        except (ValueError, IndexError) as exc:
            result["batch"] = f"error: {exc}"
    return result


if __name__ == "__main__":
    main()
