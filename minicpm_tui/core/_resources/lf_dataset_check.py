"""Run LLaMA-Factory's own dataset code over dataset files (run in the training Python).

Self-contained (stdlib + the training stack). Usage: ``python lf_dataset_check.py JOB.json``.
The job's "mode":
  agree   for each {dir, name, stage}: LLaMA-Factory's load + align (``_get_merged_dataset``, which
          also refuses ranking data for the wrong stage), then the stage's processor on each aligned
          record; reports per record whether it survives ("kept"), is dropped, or raises.
  align   load + align only, timed (the benchmark's reference path).
  load    for each {dir, name, stage}: load + align only; "ok" with the rows, or "crash" with the error;
          with {tail: N}, also the text of each aligned response from row N on.
  tokens  token length of each record of {file} rendered for {stage} (with {template}), else of
          its plain text.
  preview {file} rendered through {template}: segments of text, trained on or masked.
The result is one line on stdout: ``@@LFCHECK@@`` + JSON.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback

MARK = "@@LFCHECK@@"
LF_STAGE = {"sft": "sft", "dpo": "rm", "kto": "kto"}


def _quiet() -> None:
    import logging

    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "ERROR")
    for name in ("llamafactory", "datasets", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except Exception:
        pass


def _args(dataset_dir: str, name: str, tokenizer: str | None, template: str | None, cutoff: int, out: str):
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    data_args = DataArguments(dataset=name, dataset_dir=dataset_dir, template=template, cutoff_len=cutoff,
                              overwrite_cache=True)
    model_args = ModelArguments(model_name_or_path=tokenizer or "unused")
    training_args = Seq2SeqTrainingArguments(output_dir=out, report_to="none")
    return model_args, data_args, training_args


def _template(tokenizer_path: str, template_name: str, data_args):
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path, padding_side="right")
    data_args.template = template_name
    return tok, get_template_and_fix_tokenizer(tok, data_args)


def _row(ds, i: int) -> dict:
    return ds[i:i + 1]


def agree(job: dict) -> dict:
    from llamafactory.data.loader import _get_dataset_processor, _get_merged_dataset

    results = []
    tok = template = None
    work = tempfile.mkdtemp(prefix="lfcheck-")
    for item in job["jobs"]:
        stage = LF_STAGE[item["stage"]]
        model_args, data_args, training_args = _args(item["dir"], item["name"], job["tokenizer"],
                                                     job.get("template", "cpm4"), job.get("cutoff_len", 256), work)
        if tok is None:
            tok, template = _template(job["tokenizer"], job.get("template", "cpm4"), data_args)
        out: dict = {"id": item.get("id"), "stage": item["stage"]}
        try:
            ds = _get_merged_dataset([item["name"]], model_args, data_args, training_args, stage)
        except BaseException as exc:  # the load itself fails: the whole file is unusable
            out.update(status="crash", error=f"{type(exc).__name__}: {str(exc)[:300]}")
            results.append(out)
            continue
        processor = _get_dataset_processor(data_args, stage, template, tok, None)
        kept: list = []
        for i in range(len(ds)):
            try:
                res = processor.preprocess_dataset(_row(ds, i))
                key = "chosen_input_ids" if stage == "rm" else "input_ids"
                kept.append(len(res.get(key, [])) == 1)
            except BaseException as exc:
                kept.append(f"raise {type(exc).__name__}: {str(exc)[:200]}")
        out.update(status="ok", kept=kept)
        if stage == "kto":
            # Records one at a time pair each KL term with the record's own answer; LLaMA-Factory's map hands
            # the processor batches, where each record's KL term takes another record's answer.
            size = data_args.preprocessing_batch_size
            try:
                for start in range(0, len(ds), size):
                    processor.preprocess_dataset(ds[start:start + size])
                out["batch"] = "ok"
            except BaseException as exc:
                out["batch"] = f"raise {type(exc).__name__}: {str(exc)[:200]}"
        results.append(out)
    return {"results": results}


def align(job: dict) -> dict:
    from llamafactory.data.loader import _get_merged_dataset

    model_args, data_args, training_args = _args(job["dir"], job["name"], None, None, 1024, tempfile.mkdtemp())
    t0, c0 = time.perf_counter(), time.process_time()
    ds = _get_merged_dataset([job["name"]], model_args, data_args, training_args, LF_STAGE[job["stage"]])
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0  # cpu: all threads (pyarrow's too)
    import resource

    return {"rows": len(ds), "seconds": seconds, "cpu_seconds": cpu,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def load(job: dict) -> dict:
    from llamafactory.data.loader import _get_merged_dataset

    results = []
    for item in job["jobs"]:
        model_args, data_args, training_args = _args(item["dir"], item["name"], None, None, 1024, tempfile.mkdtemp())
        try:
            ds = _get_merged_dataset([item["name"]], model_args, data_args, training_args, LF_STAGE[item["stage"]])
        except Exception as exc:  # noqa: BLE001 - the verdict is that it fails
            cause = exc.__cause__ or exc.__context__
            error = f"{type(exc).__name__}: {exc}" + (f" <- {type(cause).__name__}: {cause}" if cause else "")
            results.append({"id": item["id"], "status": "crash", "error": " ".join(error.split())[:400]})
        else:
            out = {"id": item["id"], "status": "ok", "rows": len(ds)}
            if item.get("tail") is not None:  # the aligned responses' text from that row on (None: no response)
                out["tail"] = [r[0]["content"] if r else None for r in ds[item["tail"]:]["_response"]]
            results.append(out)
    return {"results": results}


def _strings(value, out: list) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def _rendered(job: dict):
    """Load {file} with its entry and run the stage's processor: rows of token ids and labels."""
    from llamafactory.data.loader import _get_dataset_processor, _get_merged_dataset

    work = tempfile.mkdtemp(prefix="lfcheck-")
    entry = dict(job["entry"])
    entry["file_name"] = os.path.abspath(job["file"])
    with open(os.path.join(work, "dataset_info.json"), "w", encoding="utf-8") as fh:
        json.dump({"sample": entry}, fh)
    stage = LF_STAGE[job.get("stage") or "sft"]
    model_args, data_args, training_args = _args(work, "sample", job["tokenizer"], job["template"],
                                                 int(job.get("cutoff_len") or 1 << 20), work)
    tok, template = _template(job["tokenizer"], job["template"], data_args)
    ds = _get_merged_dataset(["sample"], model_args, data_args, training_args, stage)
    processor = _get_dataset_processor(data_args, stage, template, tok, None)
    rows = []
    for i in range(len(ds)):
        res = processor.preprocess_dataset(_row(ds, i))
        rows.append({k: (v[0] if v else None) for k, v in res.items()})
    return tok, rows


def tokens(job: dict) -> dict:
    if job.get("template"):
        _, rows = _rendered(job)
        lengths = [max(len(r.get("input_ids") or []), len(r.get("chosen_input_ids") or []),
                       len(r.get("rejected_input_ids") or [])) for r in rows]
        return {"lengths": lengths}
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(job["tokenizer"])
    lengths = []
    with open(job["file"], encoding="utf-8") as fh:
        for line in fh:
            parts: list = []
            _strings(json.loads(line), parts)
            lengths.append(len(tok("\n".join(parts), add_special_tokens=True)["input_ids"]))
    return {"lengths": lengths}


def _segments(tok, ids: list, labels: list) -> list:
    out = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or (labels[i] != -100) != (labels[start] != -100):
            out.append({"text": tok.decode(ids[start:i], skip_special_tokens=False),
                        "trained": labels[start] != -100, "tokens": i - start})
            start = i
    return out


def preview(job: dict) -> dict:
    tok, rows = _rendered(job)
    out = []
    for row in rows:
        item = {}
        for prefix in ("", "chosen_", "rejected_"):
            ids = row.get(prefix + "input_ids")
            if ids is not None:
                item[prefix.rstrip("_") or "sequence"] = _segments(tok, ids, row[prefix + "labels"])
        if "kto_tags" in row:
            item["kto_tag"] = row["kto_tags"]
        out.append(item)
    return {"records": out}


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as fh:
        job = json.load(fh)
    os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="lfcheck-cache-"))
    _quiet()
    try:
        result = {"agree": agree, "align": align, "load": load, "tokens": tokens, "preview": preview}[job["mode"]](job)
    except Exception as exc:
        traceback.print_exc()
        print(MARK + json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(MARK + json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
