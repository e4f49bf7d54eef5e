"""multi_node.sh really runs: two node ranks on loopback, one CPU process each, c10d rendezvous."""

from __future__ import annotations

import subprocess

import pytest
from test_smoke_support import demo_recipe

from minicpm_tui.core.smoke import prepare_smoke, read_losses
from minicpm_tui.core.writers import generate

pytestmark = pytest.mark.integration


def test_two_nodes_on_loopback(tmp_path, lf, tiny_model_cpm3):
    run = tmp_path / "run"
    generate(demo_recipe("sft", "lora", nodes=2), run, info=lf, preflight=False)
    spec = prepare_smoke(run, nproc=1, nnodes=2, script="multi_node.sh")
    procs = []
    for rank in (0, 1):
        env = spec.full_env()
        env.update({"NODE_RANK": str(rank), "NNODES": "2", "NPROC_PER_NODE": "1",
                    "RDZV_ID": f"smoke-{spec.env['MASTER_PORT']}"})
        log = open(tmp_path / f"node{rank}.log", "wb")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(["bash", str(run / "multi_node.sh")], cwd=run, env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True), log))
    codes = []
    for proc, log in procs:
        try:
            codes.append(proc.wait(timeout=600))
        finally:
            log.close()
            if proc.poll() is None:
                proc.kill()
    logs = [(tmp_path / f"node{r}.log").read_text(errors="replace")[-3000:] for r in (0, 1)]
    assert codes == [0, 0], logs
    losses = read_losses(spec.output_dir)
    assert losses, logs
