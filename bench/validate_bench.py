"""Benchmark: our `validate` against LLaMA-Factory's own load + align on the same big files.

Generates a ~SIZE alpaca JSON array, a ~SIZE sharegpt DPO JSON Lines file, a ~SIZE alpaca CSV file and a
~SIZE OpenAI-style JSON Lines file (registered through a ``"formatting": "openai"`` dataset_info.json entry, with tool calls
and tool turns), then, for each, runs (in separate subprocesses, so each peak RSS is measured alone through wait4):
  ours  validate_file(path[, entry=...])     (minicpm_tui, no training stack)
  LF    _get_merged_dataset: load + align    (LLaMA-Factory 0.9.x in the training Python)
and prints both times (wall and CPU: on a shared machine the CPU time is the fairer figure), the
ratio and each peak RSS.

    .venv/bin/python bench/validate_bench.py                 # 1 GB each (slow on a small box)
    .venv/bin/python bench/validate_bench.py --size-mb 200   # what a 2-core machine manages
    .venv/bin/python bench/validate_bench.py --size-mb 64 --only openai --repeat 5   # best of 5 (shared box)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# CPU time counts the worker processes of a parallel validation too (RUSAGE_CHILDREN), and
# their largest peak RSS is reported next to the main process's.
OURS = """
import json, resource, sys, time
from minicpm_tui.core.datasets import validate_file
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
t, c = time.perf_counter(), cpu()
entry = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
r = validate_file(sys.argv[1], entry=entry, lf_version=sys.argv[3] if len(sys.argv) > 3 else None)
print("@@" + json.dumps({"seconds": time.perf_counter() - t, "cpu_seconds": cpu() - c,
                         "worker_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                         "records": r.records, "valid": r.valid}))
"""


def generate_alpaca(path: Path, size: int) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("[\n")
        written = 2
        while written < size:
            rec = {"instruction": f"Question {n}: explain item {n % 97} in detail, 请详细解释。",
                   "input": "context " * (n % 40), "output": ("Answer text with some length. 这是回答。" * (5 + n % 30))}
            line = ("," if n else "") + json.dumps(rec, ensure_ascii=False) + "\n"
            fh.write(line)
            written += len(line.encode("utf-8"))
            n += 1
        fh.write("]\n")
    return n


def generate_csv(path: Path, size: int) -> int:
    """alpaca columns plus a numeric "score" one: every cell goes through the CSV chunk typing."""
    import csv

    n = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["instruction", "input", "output", "score"])
        while fh.tell() < size:
            w.writerow([f"Question {n}: explain item {n % 97}, 请详细解释。", "context, " * (n % 40),
                        "Answer text with some length. 这是回答。" * (5 + n % 30), n % 7])
            n += 1
    return n


def generate_dpo(path: Path, size: int) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        written = 0
        while written < size:
            rec = {"conversations": [{"from": "human", "value": f"Prompt {n}: " + "which is better? " * (n % 20)},
                                     {"from": "gpt", "value": "An earlier answer. " * (n % 10 + 1)},
                                     {"from": "human", "value": "Follow-up question 追问。"}],
                   "chosen": {"from": "gpt", "value": "A careful, correct answer. 正确的回答。" * (3 + n % 20)},
                   "rejected": {"from": "gpt", "value": "A sloppy answer. " * (2 + n % 10)}}
            line = json.dumps(rec, ensure_ascii=False) + "\n"
            fh.write(line)
            written += len(line.encode("utf-8"))
            n += 1
    return n


# The entry an OpenAI-style file is registered with (LLaMA-Factory's data/README.md tags, tool roles mapped).
OPENAI_ENTRY = {"formatting": "openai", "columns": {"messages": "messages", "tools": "tools"},
                "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                         "assistant_tag": "assistant", "system_tag": "system", "observation_tag": "tool",
                         "function_tag": "function_call"}}
OPENAI_TOOLS = json.dumps([{"name": "get_weather", "description": "Current weather in a city",
                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                           "required": ["city"]}}])


def generate_openai(path: Path, size: int) -> int:
    """Multi-turn chats with a system prompt; every fourth record calls a tool (one call, then two tool turns)."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        written = 0
        while written < size:
            msgs = [{"role": "system", "content": "You are a helpful assistant. 你是一个有用的助手。"}]
            for k in range(1 + n % 4):
                msgs.append({"role": "user", "content": f"Question {n}.{k}: " + "tell me more. " * (n % 15 + 1)})
                msgs.append({"role": "assistant", "content": "Here is an answer. 这是回答。" * (2 + (n + k) % 12)})
            rec: dict = {"messages": msgs}
            if n % 4 == 0:
                msgs.append({"role": "user", "content": "What is the weather in Paris?"})
                msgs.append({"role": "assistant", "content": "", "tool_calls": [
                    {"id": f"call_{n}", "type": "function",
                     "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]})
                msgs.append({"role": "tool", "content": '{"temp_c": 21}'})
                msgs.append({"role": "tool", "content": '{"sky": "clear"}'})
                msgs.append({"role": "assistant", "content": "It is 21 °C and clear in Paris."})
                rec["tools"] = OPENAI_TOOLS
            line = json.dumps(rec, ensure_ascii=False) + "\n"
            fh.write(line)
            written += len(line.encode("utf-8"))
            n += 1
    return n


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of that child alone, stdout)."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 - read back below, closed with the process
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=str(ROOT))
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    text = out.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed with {proc.returncode}: {text[-2000:]}")
    return wall, usage.ru_maxrss / 1024, text


def marked(text: str, mark: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith(mark):
            return json.loads(line[len(mark):])
    raise SystemExit(f"no result line in: {text[-2000:]}")


def bench_one(label: str, path: Path, stage: str, entry: dict, python: str, ours_entry: dict | None = None,
              lf_version: str | None = None, repeat: int = 1) -> None:
    from minicpm_tui.core.resources import resource_script
    from minicpm_tui.core.tinymodel import offline_env

    size_mib = path.stat().st_size / 2**20
    argv = [sys.executable, "-c", OURS, str(path)]
    if ours_entry is not None:  # validated through the entry, as `minicpm-tui validate --entry` does
        argv += [json.dumps(dict(ours_entry, file_name=str(path))), lf_version or ""]
    runs = []
    for _ in range(repeat):  # on a shared machine the best of a few runs is the fairer figure
        wall, rss, out = run_measured(argv)
        runs.append((marked(out, "@@"), wall, rss))
    ours, wall_o, rss_o = min(runs, key=lambda r: r[0]["cpu_seconds"])
    work = Path(tempfile.mkdtemp(prefix="bench-lf-"))
    entry = dict(entry, file_name=str(path))
    (work / "dataset_info.json").write_text(json.dumps({"bench": entry}), encoding="utf-8")
    job = work / "job.json"
    job.write_text(json.dumps({"mode": "align", "dir": str(work), "name": "bench", "stage": stage}))
    env = offline_env()
    env["HF_DATASETS_CACHE"] = str(work / "cache")
    wall_l, rss_l, out_l = run_measured([python, str(resource_script("lf_dataset_check.py")), str(job)], env)
    lf = marked(out_l, "@@LFCHECK@@")
    print(f"{label}: {size_mib:,.0f} MiB, {ours['records']:,} records ({ours['valid']:,} valid; LF rows {lf['rows']:,})")
    print(f"  ours validate           : {ours['seconds']:8.2f} s wall, {ours['cpu_seconds']:8.2f} s CPU  "
          f"(process wall {wall_o:.2f} s)  peak RSS {rss_o:,.0f} MiB ({rss_o / size_mib:.2f}x file)"
          + (f", each worker at most {ours['worker_rss_mib']:,.0f} MiB" if ours.get("worker_rss_mib") else ""))
    if repeat > 1:
        print(f"    (best of {repeat} by CPU time; all runs: "
              + ", ".join(f"{r['seconds']:.2f} s wall / {r['cpu_seconds']:.2f} s CPU" for r, _, _ in runs) + ")")
    print(f"  LLaMA-Factory load+align: {lf['seconds']:8.2f} s wall, {lf.get('cpu_seconds', 0):8.2f} s CPU  "
          f"(process wall incl. imports {wall_l:.2f} s)  peak RSS {rss_l:,.0f} MiB ({rss_l / size_mib:.2f}x file)")
    cpu_ratio = lf.get("cpu_seconds", 0) / max(ours["cpu_seconds"], 1e-9)
    print(f"  ratio [{label}]: ours is {lf['seconds'] / ours['seconds']:.1f}x faster than LLaMA-Factory's load+align "
          f"by wall time, {cpu_ratio:.1f}x by CPU time ({wall_l / wall_o:.1f}x by process wall); peak RSS ours "
          f"{rss_o:,.0f} MiB vs LF {rss_l:,.0f} MiB")
    sys.stdout.flush()


def main() -> int:
    from minicpm_tui.core.datasets import dataset_info_entry, validate_file
    from minicpm_tui.core.lfinfo import installed_lf_version, training_python

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=1024, help="size of each generated file (default 1024)")
    ap.add_argument("--workdir", help="where to write the files (default: a temp dir, removed after)")
    ap.add_argument("--repeat", type=int, default=1, help="run our validate N times and report the best by CPU "
                    "time (default 1)")
    ap.add_argument("--only", choices=("alpaca", "dpo", "openai", "csv"), help="run one of the files")
    args = ap.parse_args()
    size = int(args.size_mb * 2**20)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="validate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    python = training_python()
    cases = [("alpaca JSON array", work / "bench_alpaca.json", "sft", generate_alpaca),
             ("sharegpt DPO JSONL", work / "bench_dpo.jsonl", "dpo", generate_dpo),
             ("openai SFT JSONL", work / "bench_openai.jsonl", "sft", generate_openai),
             ("alpaca CSV", work / "bench_csv.csv", "sft", generate_csv)]
    try:
        for label, path, stage, gen in cases:
            if args.only and args.only not in path.name:
                continue
            t = time.perf_counter()
            n = gen(path, size)
            print(f"generated {path.name}: {n:,} records in {time.perf_counter() - t:.1f} s")
            if gen is generate_openai:  # a hand-written entry: detection would call it sharegpt
                bench_one(label, path, stage, OPENAI_ENTRY, python, OPENAI_ENTRY, installed_lf_version(python),
                          args.repeat)
                path.unlink()
                continue
            # The entry our register would write (read from a small head of the same shape).
            head = work / ("head" + path.suffix)
            with open(path, encoding="utf-8") as src:
                lines = [src.readline() for _ in range(4)]
            if path.suffix == ".json":
                head.write_text("[" + "".join(lines[1:3]).rstrip().rstrip(",") + "]", encoding="utf-8")
            else:
                head.write_text("".join(lines[:2]), encoding="utf-8")
            entry = dataset_info_entry(validate_file(head, stage=stage))
            bench_one(label, path, stage, entry, python, repeat=args.repeat)
            path.unlink()
    finally:
        if not args.workdir:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
