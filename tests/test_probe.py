"""The probe against the fake NVML call surface (tests/fake_nvml.py), presets and saved profiles."""

from __future__ import annotations

import json
import re

import pytest
from fake_nvml import (
    NVML_ERROR_NOT_SUPPORTED,
    NVML_P2P_STATUS_NOT_SUPPORTED,
    NVML_TOPOLOGY_SYSTEM,
    FakePynvml,
    make_recording,
)

from minicpm_tui.cli import main
from minicpm_tui.core.errors import UserError
from minicpm_tui.core.nvml import Nvml
from minicpm_tui.core.probe import (
    HardwareProfile,
    hardware_presets,
    load_hardware,
    probe,
    read_infiniband,
    record_nvml,
)


def _probe(fake: FakePynvml, **kw):
    return probe(Nvml(module=fake), **kw)


@pytest.mark.parametrize(("fake", "status", "hint"), [
    (FakePynvml.no_library(), "no_library", "libnvidia-ml"),
    (FakePynvml.no_driver(), "no_driver", "kernel driver"),
    (FakePynvml.mismatch(), "driver_mismatch", "reboot"),
])
def test_failure_paths_still_report(fake, status, hint, tmp_path):
    profile = _probe(fake, workdir=tmp_path)
    assert profile.status == status and hint in profile.hint
    assert profile.gpus == [] and profile.summary() == "no NVIDIA GPU"
    assert profile.host["cpu_cores"] >= 1 and profile.host["disk_free_gib"] is not None
    HardwareProfile.from_dict(json.loads(profile.to_json()))  # still a valid profile


def test_no_gpu_but_nvml_works():
    profile = _probe(FakePynvml(make_recording(0)))
    assert profile.status == "no_gpu" and "CUDA_VISIBLE_DEVICES" in profile.hint


def test_nvswitch_box_every_pair_nvlink():
    rec = make_recording(4)
    for dev in rec["devices"]:
        dev["nvlink"] = [{"link": i, "state": 1, "remote_bus_id": "00000000:C0:00.0", "remote_type": 2}
                         for i in range(12)]
    for key in rec["p2p"]:
        rec["p2p"][key]["nvlink"] = 0
    profile = _probe(FakePynvml(rec))
    assert profile.status == "ok" and len(profile.gpus) == 4
    assert all(lk.nvlinks == 12 and lk.label == "NV12" and lk.p2p_ok for lk in profile.links)
    g = profile.gpus[0]
    assert g.compute_capability == (8, 0) and g.memory_total_mib == 80 * 1024 and g.bf16
    assert g.pci_bus_id == "0000:10:00.0"  # normalised from NVML's 8-digit domain


def test_direct_nvlink_peers_and_pcie_topology():
    rec = make_recording(2, topology=NVML_TOPOLOGY_SYSTEM, p2p=NVML_P2P_STATUS_NOT_SUPPORTED)
    a, b = rec["devices"]
    a["nvlink"] = [{"link": 0, "state": 1, "remote_bus_id": b["pci_bus_id"]},
                   {"link": 1, "state": 1, "remote_bus_id": b["pci_bus_id"]}]
    profile = _probe(FakePynvml(rec))
    (link,) = profile.links
    assert link.nvlinks == 2 and link.topology == "SYS" and link.p2p_read == "not_supported"


def test_one_gpu_erroring_on_one_query():
    fake = FakePynvml(make_recording(2))
    fake.fail(1, "nvmlDeviceGetMemoryInfo", NVML_ERROR_NOT_SUPPORTED)
    profile = _probe(fake)
    assert profile.status == "ok"
    assert profile.gpus[0].memory_total_mib == 80 * 1024 and not profile.gpus[0].errors
    bad = profile.gpus[1]
    assert bad.memory_total_mib is None and bad.name == "NVIDIA A100-SXM4-80GB"
    assert any("memory" in e and "Not Supported" in e for e in bad.errors)
    assert any("GPU 1" in n for n in profile.notes)


def test_gpu_lost_and_unopenable():
    fake = FakePynvml(make_recording(3))
    fake.lose_gpu(2)
    profile = _probe(fake)
    assert [g.name is not None for g in profile.gpus] == [True, True, False]
    assert "GPU is lost" in profile.gpus[2].errors[0]
    assert len(profile.links) == 3  # pairs still listed, unknowns left empty


def test_gpu_lost_mid_run_for_samplers():
    fake = FakePynvml(make_recording(2, util=55))
    nv = Nvml(module=fake)
    assert nv.available
    h = nv.handle(1)
    assert nv.call("nvmlDeviceGetUtilizationRates", h).gpu == 55
    fake.device(1)["utilization"]["gpu"] = 97
    assert nv.call("nvmlDeviceGetUtilizationRates", h).gpu == 97
    fake.lose_gpu(1)
    assert not nv.call("nvmlDeviceGetUtilizationRates", h)
    assert "GPU is lost" in nv.errors["nvmlDeviceGetUtilizationRates"]
    assert nv.call("nvmlDeviceGetTemperature", nv.handle(0), 0) == 35


def test_busy_gpu_processes_and_visible_devices(monkeypatch):
    rec = make_recording(2, processes=[])
    rec["devices"][1]["processes"] = [{"pid": 4242, "used_memory": 20 * 1024**3, "name": "python"}]
    rec["devices"][1]["memory"].update(used=21 * 1024**3, free=59 * 1024**3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    profile = _probe(FakePynvml(rec))
    g0, g1 = profile.gpus
    assert g1.busy and g1.processes[0] == {"pid": 4242, "used_mib": 20 * 1024, "name": "python"}
    assert g1.available_mib() == 59 * 1024
    assert not g0.visible and g1.visible and profile.usable_gpus() == [g1]


def test_p2p_read_index_is_passed_as_int():
    # pynvml's NVML_P2P_CAPS_INDEX_READ is the tuple (0,); the probe must not pass it (the fake raises).
    profile = _probe(FakePynvml(make_recording(2)))
    assert profile.links[0].p2p_read == "ok" and profile.links[0].p2p_write == "ok"


def test_infiniband_from_sysfs(tmp_path):
    port = tmp_path / "mlx5_0" / "ports" / "1"
    port.mkdir(parents=True)
    (port / "state").write_text("4: ACTIVE\n")
    (port / "link_layer").write_text("InfiniBand\n")
    (port / "rate").write_text("400 Gb/sec (4X NDR)\n")
    down = tmp_path / "mlx5_1" / "ports" / "1"
    down.mkdir(parents=True)
    (down / "state").write_text("1: DOWN\n")
    ports = read_infiniband(tmp_path)
    assert [p["state"] for p in ports] == ["4: ACTIVE", "1: DOWN"]
    profile = _probe(FakePynvml(make_recording(1)), ib_root=tmp_path)
    assert [p["device"] for p in profile.active_ib_ports()] == ["mlx5_0"]
    assert read_infiniband(tmp_path / "missing") == []


def test_recording_round_trip_replays_the_same_profile():
    rec = make_recording(4, nvlink=True)
    first = _probe(FakePynvml(rec))
    again = _probe(FakePynvml(record_nvml(Nvml(module=FakePynvml(rec)))))
    strip = lambda p: [(g.name, g.pci_bus_id, g.memory_total_mib, g.compute_capability) for g in p.gpus]  # noqa: E731
    assert strip(first) == strip(again)
    assert [lk.label for lk in first.links] == [lk.label for lk in again.links] == ["NV1"] * 6  # one link to each peer


def test_save_and_load_anywhere(tmp_path):
    profile = _probe(FakePynvml(make_recording(2, name="NVIDIA GeForce RTX 4090", total_gib=24, cc=(8, 9))))
    path = tmp_path / "box.json"
    path.write_text(profile.to_json())
    loaded = load_hardware(path)
    assert loaded.gpus[0].compute_capability == (8, 9) and loaded.gpus[0].geforce
    assert loaded.links[0].p2p_ok and loaded.source == str(path)


def test_presets_are_realistic():
    names = set(hardware_presets())
    assert {"8x-a100-80gb-nvlink", "8x-h100-80gb-nvlink-ib", "8x-rtx4090-pcie", "2x-rtx3090", "4x-v100-32gb",
            "1x-t4-16gb", "1x-rtx4090", "1x-a10-24gb"} <= names
    h100 = load_hardware("8x-h100-80gb-nvlink-ib")
    assert len(h100.gpus) == 8 and all(lk.nvlinks == 18 for lk in h100.links) and len(h100.active_ib_ports()) == 8
    rtx = load_hardware("8x-rtx4090-pcie")
    assert rtx.link(0, 1).topology == "PIX" and rtx.link(0, 4).topology == "SYS" and rtx.gpus[0].geforce
    v100 = load_hardware("4x-v100-32gb")
    assert not v100.gpus[0].bf16 and v100.link(0, 2).nvlinks == 2
    assert load_hardware("1x-t4-16gb").gpus[0].compute_capability == (7, 5)
    for name in names:  # every preset survives a save/load round trip
        prof = load_hardware(name)
        assert HardwareProfile.from_dict(json.loads(prof.to_json())).summary() == prof.summary()


def test_bad_hardware_inputs(tmp_path):
    with pytest.raises(UserError, match="unknown hardware preset"):
        load_hardware("16x-b300")
    not_profile = tmp_path / "x.json"
    not_profile.write_text('{"hello": 1}')
    with pytest.raises(UserError, match="not a hardware profile"):
        load_hardware(not_profile)
    bad_gpu = tmp_path / "y.json"
    bad_gpu.write_text(json.dumps({"gpus": [{"index": 0, "memory_total_mib": -5}]}))
    with pytest.raises(UserError, match="memory_total_mib"):
        load_hardware(bad_gpu)
    bad_host = tmp_path / "h.json"
    bad_host.write_text(json.dumps({"gpus": [{"index": 0, "memory_total_mib": 1000}], "host": 3}))
    with pytest.raises(UserError, match="host must be a mapping"):  # was: AttributeError, an internal error
        load_hardware(bad_host)
    raw = tmp_path / "rec.json"
    raw.write_text(json.dumps(make_recording(1)))
    with pytest.raises(UserError, match="raw NVML recording"):
        load_hardware(raw)


@pytest.mark.parametrize(("change", "where", "message"), [
    (lambda g, d: g.pop("memory_total_mib"), "gpu.memory_total_mib", "is missing"),
    (lambda g, d: g.update(memory_total_mib="80GB"), "gpu.memory_total_mib", "'80GB', not a whole number of MiB"),
    (lambda g, d: g.update(memory_used_mib=99999), "gpu.memory_used_mib", "more than memory_total_mib"),
    (lambda g, d: g.update(compute_capability="eight"), "gpu.compute_capability", "write it as [major, minor]"),
    (lambda g, d: g.update(count=-2), "gpu.count", "is -2"),
    (lambda g, d: g.update(numa_nodes=[0]), "gpu.numa_nodes", "one value per GPU (8)"),
    (lambda g, d: d.update(nodes="two"), "nodes", "nodes is 'two'"),
    (lambda g, d: d.update(host=5), "host", "host must be a mapping"),
    (lambda g, d: d.pop("topology"), "topology", "8 GPUs need a 8x8 GPU-to-GPU topology matrix (there is none)"),
])
def test_a_hand_written_preset_names_its_bad_field(tmp_path, capsys, change, where, message):
    """A preset written by hand for one's own cluster (a copy of a shipped one, edited) gave an internal error
    (KeyError 'memory_total_mib', int('80GB'), 'int' object is not iterable) instead of naming the field."""
    import yaml

    from minicpm_tui.assets import asset_path

    data = yaml.safe_load(asset_path("presets", "hardware", "8x-a100-80gb-nvlink.yaml").read_text())
    change(data["gpu"], data)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=re.escape(message)) as err:
        load_hardware(path)
    assert err.value.where == f"{path}: {where}" and err.value.fix
    assert main(["plan", "--model", "MiniCPM4-8B", "--hardware", str(path)]) == 2
    err_text = capsys.readouterr().err
    assert "internal error" not in err_text and where in err_text


def test_a_hand_written_preset_may_write_compute_capability_as_nvidia_smi_does(tmp_path):
    import yaml

    from minicpm_tui.assets import asset_path

    data = yaml.safe_load(asset_path("presets", "hardware", "1x-t4-16gb.yaml").read_text())
    data["gpu"]["compute_capability"] = "7.5"
    path = tmp_path / "t4.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_hardware(path).gpus[0].compute_capability == (7, 5)


def test_cli_probe_without_gpu_is_clean(capsys, tmp_path):
    # This machine has no NVIDIA GPU (nor libnvidia-ml): a clean report and exit 0.
    assert main(["probe"]) == 0
    out = capsys.readouterr().out
    assert "No NVIDIA GPU" in out and "plan --hardware" in out and "Traceback" not in out
    save = tmp_path / "box.json"
    assert main(["probe", "--json", "--save", str(save)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gpus"] == [] and data["format"] == "minicpm-tui-hardware/1"
    assert main(["probe", "--save", str(save)]) == 2  # never overwrite without --force
    assert "--force" in capsys.readouterr().err


def test_hardware_that_is_a_folder_says_so(tmp_path, monkeypatch):
    # `--hardware DIR` said "unknown hardware preset 'DIR'"; a folder named like a preset still gets the preset.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "boxes").mkdir()
    with pytest.raises(UserError, match="'boxes' is a folder, not a hardware preset or a saved probe") as err:
        load_hardware("boxes")
    assert "probe --save" in err.value.one_line()
    (tmp_path / "1x-rtx4090").mkdir()
    assert load_hardware("1x-rtx4090").gpus


def test_saving_a_probe_without_gpus_does_not_promise_a_plan(capsys, tmp_path, monkeypatch):
    # `probe --save box.json` on a box whose NVML failed said "plan with `minicpm-tui plan --hardware
    # box.json`", and that plan then refused the file ("this hardware profile has no GPU").
    from minicpm_tui.core import probe as probe_mod

    monkeypatch.setattr(probe_mod, "probe", lambda **_: HardwareProfile(status="no_library", hint="no driver"))
    save = tmp_path / "box.json"
    assert main(["probe", "--save", str(save)]) == 0
    out = capsys.readouterr().out
    assert save.is_file()
    assert f"plan --hardware {save}" not in out
    assert "records no GPU" in out and "on the GPU machine" in out
