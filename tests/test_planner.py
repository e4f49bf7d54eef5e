"""The planner: choices against first-principles arithmetic, NCCL decisions, the `plan --json` contract."""

from __future__ import annotations

import json
import math

import pytest
from fake_nvml import FakePynvml, make_recording

from minicpm_tui.cli import main
from minicpm_tui.core.errors import UserError
from minicpm_tui.core.nvml import Nvml
from minicpm_tui.core.planner import PlanRequest, plan
from minicpm_tui.core.probe import hardware_presets, load_hardware, probe

CONTRACT = {"method", "zero_stage", "offload", "precision", "flash_attn", "nccl_env", "micro_batch", "grad_accum",
            "gradient_checkpointing", "peak_gib_per_gpu", "cpu_ram_gib", "fits", "terms", "reason"}


def test_lora_minicpm4_05b_fits_one_t4_with_a_large_micro_batch():
    # T4: 15360 MiB - 260 used - 0.75 GiB margin = 14.0 GiB usable. LoRA r8: frozen weights 2 x 0.434B =
    # 0.81 GiB, adapters 4.2M x 16 B = 0.06 GiB. Per 1024-token sequence: checkpointed layer inputs
    # 24 x 1024 x 1024 x 2 B = 0.05 GiB, logits 1024 x 73448 x 12 B = 0.84 GiB -> micro-batch 8 ~ 7.5 GiB + fixed.
    r = plan(PlanRequest(model="MiniCPM4-0.5B", method="lora", hardware="1x-t4-16gb", cutoff_len=1024))
    c = r.recommended
    assert c.fits and c.micro_batch >= 8 and c.zero_stage == 0 and not c.deepspeed
    assert c.precision == "fp16" and c.flash_attn == "sdpa"  # Turing: no bf16, no FlashAttention-2
    assert c.peak_gib_per_gpu <= c.budget_gib_per_gpu


def test_full_minicpm3_on_two_3090s_needs_offload_with_its_ram():
    # P = 4.07e9. ZeRO-2: 2P + 18P/2 = 11P = 44.8 GB = 41.7 GiB > 22.5 GiB usable. ZeRO-3: 18P/2 = 9P =
    # 34.1 GiB > 22.5. Offloading the optimizer leaves 16-bit weights/grads on the GPUs (<= 4P = 15 GiB)
    # and needs DeepSpeed's CPU figure: ZeRO-2 P x max(4 x 2, 16) x 1.5 = ZeRO-3 16P x 1.5 = 24P = 91 GiB
    # (+2 GiB per worker process).
    r = plan(PlanRequest(model="MiniCPM3-4B", method="full", hardware="2x-rtx3090", cutoff_len=1024))
    c = r.recommended
    alts = {(a.zero_stage, a.offload): a for a in r.alternatives}
    assert not alts[(2, "none")].fits and alts[(2, "none")].peak_gib_per_gpu > 41.7
    assert not alts[(3, "none")].fits and alts[(3, "none")].peak_gib_per_gpu > 34.1
    assert c.fits and c.offload != "none" and c.deepspeed
    p = 4.0739e9
    expected_ram = 16 * p * 1.5 / 2**30 + 2 * 2
    assert c.cpu_ram_gib == pytest.approx(expected_ram, rel=0.01)
    assert c.cpu_ram_gib < 118  # the workstation's free RAM
    assert "offload" in c.reason and "ZeRO-2 needs" in c.reason


def test_nothing_fits_says_what_would():
    # Full SFT of MiniCPM4-8B on one T4: even ZeRO-3 with everything offloaded needs 18P x 1.5 = 206 GiB of RAM
    # on a 30 GiB VM, and the logits alone at 2048 tokens (2048 x 73448 x 12 B = 1.7 GiB) are fine, so the
    # suggestions must offer LoRA/QLoRA (which fit) and say how much RAM offload would take.
    r = plan(PlanRequest(model="MiniCPM4-8B", method="full", hardware="1x-t4-16gb"))
    assert not r.recommended.fits and "nothing fits" in r.recommended.reason
    changes = {s["change"]: s for s in r.suggestions}
    assert changes["--method qlora (4-bit)"]["fits"]
    assert all("peak_gib_per_gpu" in s for s in r.suggestions)
    assert any("GiB of free RAM" in s["change"] for s in r.suggestions) or any("GPUs like" in k for k in changes)


def test_nccl_flags_from_measured_topology():
    a100 = plan(PlanRequest(model="MiniCPM-2B", method="lora", hardware="8x-a100-80gb-nvlink")).recommended
    assert a100.nccl_env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert any("NVLink" in n for n in a100.notes)
    rtx = plan(PlanRequest(model="MiniCPM-2B", method="lora", hardware="8x-rtx4090-pcie")).recommended
    assert rtx.nccl_env["NCCL_P2P_DISABLE"] == "1" and "535.129.03" in rtx.nccl_reasons["NCCL_P2P_DISABLE"]
    assert "NCCL_IB_DISABLE" not in rtx.nccl_env  # one node: IB is irrelevant
    r3090 = plan(PlanRequest(model="MiniCPM-2B", method="lora", hardware="2x-rtx3090")).recommended
    assert "NCCL_P2P_DISABLE" not in r3090.nccl_env  # P2P reported unsupported: NCCL falls back by itself
    one = plan(PlanRequest(model="MiniCPM-2B", method="lora", hardware="1x-rtx4090")).recommended
    assert set(one.nccl_env) == {"CUDA_DEVICE_ORDER"}
    # every variable carries a reason (the run-directory writer puts it in a comment)
    for c in (a100, rtx, r3090, one):
        assert set(c.nccl_env) == set(c.nccl_reasons)


def test_multi_node_infiniband_rules():
    h100 = load_hardware("8x-h100-80gb-nvlink-ib")
    c = plan(PlanRequest(model="MiniCPM4-8B", hardware=h100, nodes=2)).recommended
    assert "NCCL_IB_DISABLE" not in c.nccl_env and any("InfiniBand" in n for n in c.notes)
    for port in h100.infiniband:
        port["state"] = "1: DOWN"
    c = plan(PlanRequest(model="MiniCPM4-8B", hardware=h100, nodes=2)).recommended
    assert c.nccl_env["NCCL_IB_DISABLE"] == "1" and "ACTIVE" in c.nccl_reasons["NCCL_IB_DISABLE"]


def test_p2p_check_result_decides():
    rtx = load_hardware("8x-rtx4090-pcie")
    rtx.driver_version = "560.35.03"  # new driver: P2P might work; ask for the real check
    c = plan(PlanRequest(model="MiniCPM-2B", method="lora", hardware=rtx)).recommended
    assert "NCCL_P2P_DISABLE" not in c.nccl_env and any("--p2p-check" in n for n in c.notes)
    rtx.p2p_check = {"ok": False, "status": "hung", "detail": "copy 0->1 hung"}
    c = plan(PlanRequest(model="MiniCPM-2B", method="lora", hardware=rtx)).recommended
    assert c.nccl_env["NCCL_P2P_DISABLE"] == "1" and "hung" in c.nccl_reasons["NCCL_P2P_DISABLE"]


def test_pre_ampere_gets_fp16_and_sdpa():
    c = plan(PlanRequest(model="MiniCPM3-4B", method="lora", hardware="4x-v100-32gb")).recommended
    assert c.precision == "fp16" and c.flash_attn == "sdpa" and "remote code" in c.reasons["flash_attn"]
    with pytest.raises(UserError, match="compute capability"):
        plan(PlanRequest(model="MiniCPM3-4B", hardware="4x-v100-32gb", precision="bf16"))


def test_busy_gpu_is_left_out():
    rec = make_recording(4)
    rec["devices"][2]["processes"] = [{"pid": 999, "used_memory": 30 * 1024**3}]
    rec["devices"][2]["memory"].update(used=31 * 1024**3, free=49 * 1024**3)
    profile = probe(Nvml(module=FakePynvml(rec)))
    r = plan(PlanRequest(model="MiniCPM-2B", method="lora", hardware=profile))
    c = r.recommended
    assert c.gpu_indices == [0, 1, 3] and c.nccl_env["CUDA_VISIBLE_DEVICES"] == "0,1,3"
    assert any("busy" in w for w in r.warnings)


def test_wall_time_arithmetic():
    # 8x A100, MiniCPM4-8B full SFT, 10M tokens x 3 epochs. FLOPs/token ~ (2P + attention) x 4 with
    # recomputation = 8 x 8.19e9 = 65.5 GFLOP (+ attention); 3e7 tokens -> ~2.0e18 FLOP over
    # 8 x 312 TFLOPS x 40% = 1.0e15 FLOP/s -> ~33 min before communication.
    r = plan(PlanRequest(model="MiniCPM4-8B", hardware="8x-a100-80gb-nvlink", cutoff_len=2048,
                         train_tokens=10_000_000, epochs=3))
    t = r.recommended.time
    assert t["tokens"] == 30_000_000
    assert 30 * 60 <= t["seconds"] <= 60 * 60
    assert "40%" in t["assumption"] and "312" in t["assumption"] and t["human"].startswith("about")


@pytest.mark.parametrize("hardware", sorted(hardware_presets()))
def test_plan_json_contract_matrix(hardware, capsys):
    # Every shipped preset x {MiniCPM4-8B, MiniCPM3-4B, MiniCPM-2B} x {full, lora} x {sft, dpo}.
    for model in ("MiniCPM4-8B", "MiniCPM3-4B", "MiniCPM-2B"):
        for method in ("full", "lora"):
            for stage in ("sft", "dpo"):
                args = ["plan", "--model", model, "--method", method, "--stage", stage, "--hardware", hardware,
                        "--cutoff-len", "1024", "--json"]
                assert main(args) == 0, args
                data = json.loads(capsys.readouterr().out)
                rec = data["recommended"]
                assert set(rec) >= CONTRACT, args
                assert rec["zero_stage"] in (0, 1, 2, 3) and rec["offload"] in ("none", "optimizer", "optimizer+param")
                assert rec["precision"] in ("bf16", "fp16", "fp32", "pure_bf16") and isinstance(rec["fits"], bool)
                assert sum(rec["terms"].values()) == pytest.approx(rec["peak_gib_per_gpu"], abs=0.1)
                assert rec["reason"] and isinstance(data["alternatives"], list) and isinstance(data["suggestions"], list)
                assert all(a["reason"] for a in data["alternatives"])
                if not rec["fits"]:
                    assert data["suggestions"], args
                if stage == "dpo" and method == "full":
                    assert "reference_model" in rec["terms"]


@pytest.mark.parametrize(("argv", "needle"), [
    (["--model", "MiniCPM9"], "--model"),
    (["--model", "MiniCPM-2B", "--hardware", "nowhere-99x"], "--hardware"),
    (["--model", "MiniCPM-2B", "--hardware", "1x-t4-16gb", "--cutoff-len", "0"], "--cutoff-len"),
    (["--model", "MiniCPM-2B", "--hardware", "1x-t4-16gb", "--method", "prefix"], "--method"),
    (["--model", "MiniCPM-2B", "--hardware", "1x-t4-16gb", "--gpus", "4"], "--gpus"),
    (["--model", "MiniCPM-2B", "--hardware", "2x-rtx3090", "--zero-stage", "1", "--offload", "optimizer"],
     "--offload"),
    # NaN passed `epochs <= 0` and inf too; both crashed the time estimate (an internal error, exit 70).
    (["--model", "MiniCPM-2B", "--hardware", "1x-t4-16gb", "--num-samples", "1000", "--epochs", "nan"], "--epochs"),
    (["--model", "MiniCPM-2B", "--hardware", "1x-t4-16gb", "--num-samples", "1000", "--epochs", "inf"], "--epochs"),
])
def test_bad_input_is_one_line_exit_2(argv, needle, capsys):
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_plan_on_gpuless_machine_points_at_presets(capsys):
    assert main(["plan", "--model", "MiniCPM-2B"]) == 2
    assert "--hardware" in capsys.readouterr().err


def test_a_saved_probe_without_gpus_is_named(tmp_path, capsys):
    # `probe --save box.json` where there is no GPU, then `plan --hardware box.json` (the README's session
    # run in the wrong place): the error said "the hardware profile has no (visible) GPU", naming no file.
    from minicpm_tui.core.probe import HardwareProfile

    box = tmp_path / "box.json"
    box.write_text(json.dumps(HardwareProfile(status="no_library").to_dict()))
    assert main(["plan", "--model", "MiniCPM-2B", "--hardware", str(box)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--hardware {box}: this hardware profile has no GPU" in err and "no_library" in err
    assert "probe --save" in err and len(err.splitlines()) == 1


def test_qlora_8bit_never_gets_zero3():
    # LLaMA-Factory loads a bitsandbytes base under ZeRO-3 only in 4 bits; 4-bit QLoRA may use it.
    r = plan(PlanRequest(model="MiniCPM4-8B", method="qlora", quant_bits=8, hardware="2x-rtx3090", cutoff_len=2048))
    assert all(c.zero_stage != 3 for c in [r.recommended, *r.alternatives])
    with pytest.raises(UserError) as err:
        plan(PlanRequest(model="MiniCPM4-8B", method="qlora", quant_bits=8, hardware="2x-rtx3090", zero_stage=3))
    assert err.value.where == "--zero-stage" and "--quant-bits 4" in str(err.value)
    four = plan(PlanRequest(model="MiniCPM4-8B", method="qlora", hardware="2x-rtx3090", cutoff_len=2048))
    assert any(c.zero_stage == 3 for c in [four.recommended, *four.alternatives])



def _nothing_fits_plans() -> list[tuple[str, object]]:
    from minicpm_tui.core.models import list_models

    out = []
    for hw in sorted(hardware_presets()):
        for model in (m.name for m in list_models()):
            for method in ("full", "freeze", "lora"):
                for stage in ("sft", "dpo"):
                    r = plan(PlanRequest(model=model, method=method, stage=stage, hardware=hw))
                    if not r.recommended.fits:
                        out.append((f"{hw} {model} {method} {stage}", r))
    return out


def test_each_suggestion_agrees_with_its_own_numbers(capsys):
    # QA: MiniCPM4-8B full on one RTX 4090 offered "2 GPUs like these ... (fits; needs 210 GiB of CPU RAM
    # ...; the host has 55 GiB)" and "a host with 208 GiB of free RAM ... (still too big; ... the host has
    # 55 GiB)". A suggestion is a way out with everything its change names, or it says it is not one.
    from minicpm_tui.commands.plan import render

    cases = _nothing_fits_plans()
    assert len(cases) > 20
    for label, r in cases:
        usable = r.hardware["usable_gib_per_gpu"]
        ram = r.hardware["cpu_ram_available_gib"]
        for s in r.suggestions:
            if s["fits"]:
                assert s["peak_gib_per_gpu"] <= usable, (label, s)
                assert "does not fit" not in s["detail"] and "the host has" not in s["detail"], (label, s)
                if s["cpu_ram_gib"] > ram:  # needs more RAM than this host: the change itself must say so
                    assert "GiB of free RAM" in s["change"], (label, s)
                    assert f"{math.ceil(s['cpu_ram_gib'])} GiB of free RAM" in s["change"], (label, s)
            else:
                assert "does not fit" in s["detail"] or "needs" in s["detail"], (label, s)
        text = render(r)
        ways = text.split("What would fit:\n", 1)[1].split("\nNot enough", 1)[0] if "What would fit:" in text else ""
        for line in ways.splitlines():
            if line.startswith("  - "):
                assert "(fits; " in line and "still too big" not in line and "the host has" not in line, (label, line)
    r = dict(cases)["1x-rtx4090 MiniCPM4-8B full sft"]
    host = next(s for s in r.suggestions if s["change"].startswith("a host with"))
    assert host["fits"] and host["change"].startswith("a host with 208 GiB of free RAM")
    gpus = next(s for s in r.suggestions if "GPUs like these" in s["change"])
    assert gpus["fits"] and gpus["cpu_ram_gib"] <= 55  # more GPUs on hosts like this one, or it names the RAM


def test_a_suggestion_that_does_not_fit_is_not_offered_as_one(capsys):
    # At 16k tokens nothing on one T4 fits, LoRA included: that suggestion is listed as not enough.
    r = plan(PlanRequest(model="MiniCPM4-8B", method="full", hardware="1x-t4-16gb", cutoff_len=16384))
    lora = next(s for s in r.suggestions if s["change"] == "--method lora")
    assert not lora["fits"] and "does not fit" in lora["detail"]
    from minicpm_tui.commands.plan import render

    text = render(r)
    assert "--method lora: still too big (does not fit" in text.split("Not enough on its own:", 1)[1]
    assert "--method lora" not in text.split("What would fit:", 1)[-1].split("Not enough", 1)[0]


def test_ram_texts_never_read_as_equal_when_short():
    from minicpm_tui.core.planner import gib_pair, ram_have_text, ram_needed_text

    assert ram_needed_text(29.6) == "30 GiB" and ram_have_text(29.5) == "29 GiB"
    assert ram_needed_text(32.0) == "32 GiB" and ram_have_text(55.0) == "55 GiB"
    assert gib_pair(22.32, 22.28) == ("22.32", "22.28") and gib_pair(20.7, 22.3) == ("20.7", "22.3")


@pytest.mark.parametrize("hardware", sorted(hardware_presets()))
def test_usable_is_one_number_in_every_line(hardware):
    # QA: 8x H100 said "26.7 of 75.1 GiB usable" in the reason and "of 75.2 usable" in the peak line.
    import re

    from minicpm_tui.commands.plan import render

    r = plan(PlanRequest(model="MiniCPM4-8B", method="lora", hardware=hardware))
    text = render(r)
    shown = set(re.findall(r"of (\d+\.\d) (?:GiB )?usable", text))
    assert shown == {f"{r.hardware['usable_gib_per_gpu']:.1f}"}, text
    assert r.recommended.budget_gib_per_gpu == r.hardware["usable_gib_per_gpu"]
