"""multi_node.sh really runs: two node ranks on loopback, one CPU process each, c10d rendezvous."""

from __future__ import annotations

import math
import subprocess
import time

import pytest
from test_smoke_support import SMOKE_TIMEOUT_S, TEST_TIMEOUT_S, demo_recipe

from minicpm_tui.core.smoke import prepare_smoke, read_losses, stop_tree
from minicpm_tui.core.writers import generate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(TEST_TIMEOUT_S)]


def test_two_nodes_on_loopback(tmp_path, lf, tiny_model_cpm3):
    run = tmp_path / "run"
    generate(demo_recipe("sft", "lora", nodes=2), run, info=lf, preflight=False)
    spec = prepare_smoke(run, steps=2, nproc=1, nnodes=2, script="multi_node.sh")
    procs: list[subprocess.Popen[bytes]] = []
    codes: list[int | None] = []
    try:
        for rank in (0, 1):
            env = spec.full_env()
            env.update({"NODE_RANK": str(rank), "NNODES": "2", "NPROC_PER_NODE": "1",
                        "RDZV_ID": f"smoke-{spec.env['MASTER_PORT']}"})
            with open(tmp_path / f"node{rank}.log", "wb") as log:
                procs.append(subprocess.Popen(["bash", str(run / "multi_node.sh")], cwd=run, env=env, stdout=log,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True))
        deadline = time.monotonic() + SMOKE_TIMEOUT_S
        for proc in procs:
            codes.append(proc.wait(timeout=max(1.0, deadline - time.monotonic())))
    finally:
        for proc in procs:  # on a timeout or failure: each node's launch with all it started
            if proc.poll() is None:
                stop_tree(proc, grace=10)
    logs = [(tmp_path / f"node{r}.log").read_text(errors="replace")[-3000:] for r in (0, 1)]
    assert codes == [0, 0], logs
    for rank, log in enumerate(logs):
        assert f"minicpm-tui: node {rank} of 2, 1 process(es)" in (tmp_path / f"node{rank}.log").read_text(
            errors="replace"), log
    losses = read_losses(spec.output_dir)
    assert [s for s, _ in losses] == [1, 2], logs
    assert all(math.isfinite(v) for _, v in losses), losses
