"""The GPU sampler over the fake pynvml surface: data, this run's memory, lost GPUs, no NVML, bounded history."""

from __future__ import annotations

from fake_nvml import GIB, NVML_ERROR_UNKNOWN, FakePynvml, make_recording

from minicpm_tui.core import runner
from minicpm_tui.core.nvml import Nvml
from minicpm_tui.core.telemetry import NO_GPU_DATA, GpuSampler


def _sampler(fake: FakePynvml, **kw) -> GpuSampler:
    return GpuSampler(Nvml(module=fake), **kw)


def test_sample_reads_every_gpu_and_the_runs_own_memory():
    rec = make_recording(2, util=87, used_gib=30.0,
                         processes=[{"pid": 4242, "used_memory": 20 * GIB}, {"pid": 999, "used_memory": 5 * GIB}])
    sample = _sampler(FakePynvml(rec), pids=lambda: [4242, 7]).sample()
    assert sample.ok and len(sample.gpus) == 2
    g = sample.gpus[0]
    assert g.name.startswith("NVIDIA A100")
    assert g.utilization_pct == 87
    assert round(g.memory_used_mib / 1024) == 30 and round(g.memory_total_mib / 1024) == 80
    assert g.temperature_c == 35 and g.power_w == 60.0 and g.power_limit_w == 400.0
    assert g.sm_clock_mhz == 210 and g.mem_clock_mhz == 1593
    assert g.run_pids == [4242] and round(g.run_memory_mib / 1024) == 20
    assert sample.summary().startswith("gpu0 87% 30.0/80G run 20.0G 35C 60W | gpu1 87%")
    assert sample.to_dict()["gpus"][1]["index"] == 1


def test_indices_restrict_the_gpus_shown():
    sample = _sampler(FakePynvml(make_recording(4)), indices=[1, 3, 9]).sample()
    assert [g.index for g in sample.gpus] == [1, 3]


def test_a_gpu_lost_mid_run_is_shown_not_fatal():
    fake = FakePynvml(make_recording(2, util=50))
    sampler = _sampler(fake)
    assert sampler.sample().gpus[1].error is None
    fake.lose_gpu(1)
    sample = sampler.sample()
    assert sample.ok
    assert sample.gpus[0].error is None and sample.gpus[0].utilization_pct == 50
    assert "GPU lost" in sample.gpus[1].error
    assert "gpu1 GPU lost" in sample.summary()


def test_a_single_failing_query_leaves_a_gap_not_an_error():
    fake = FakePynvml(make_recording(1))
    fake.fail(0, "nvmlDeviceGetTemperature", NVML_ERROR_UNKNOWN)
    g = _sampler(fake).sample().gpus[0]
    assert g.temperature_c is None and g.error is None and g.utilization_pct == 0


def test_no_nvml_says_no_gpu_data():
    for fake in (FakePynvml.no_library(), FakePynvml.no_driver(), FakePynvml.mismatch()):
        sample = _sampler(fake).sample()
        assert not sample.ok and sample.gpus == []
        assert sample.summary().startswith(NO_GPU_DATA)


def test_zero_gpus_says_no_gpu_data():
    sample = _sampler(FakePynvml(make_recording(0))).sample()
    assert not sample.ok and NO_GPU_DATA in sample.message


def test_sampler_never_raises_even_when_the_pid_callback_or_module_breaks():
    def broken() -> list[int]:
        raise RuntimeError("boom")

    sample = _sampler(FakePynvml(make_recording(1)), pids=broken).sample()
    assert sample.ok

    class Exploding(FakePynvml):
        def nvmlDeviceGetCount(self):  # a TypeError from deep inside a binding
            raise TypeError("bad ctypes")

    assert not _sampler(Exploding(make_recording(1))).sample().ok


def test_history_is_bounded_and_feeds_sparklines():
    fake = FakePynvml(make_recording(1))
    sampler = _sampler(fake, history=5)
    for util in range(12):
        fake.device(0)["utilization"]["gpu"] = util
        sampler.sample()
    assert len(sampler.history[0]) == 5
    assert sampler.series(0, "utilization_pct") == [7, 8, 9, 10, 11]


def test_background_thread_samples_at_the_interval():
    import time

    sampler = _sampler(FakePynvml(make_recording(1)), interval=0.1)
    sampler.start()
    try:
        time.sleep(0.5)
    finally:
        sampler.stop()
    assert 2 <= len(sampler.history[0]) <= 8
    assert sampler.latest is not None and sampler.latest.ok


def test_busy_gpu_warning_before_launch():
    rec = make_recording(2, processes=[])
    rec["devices"][1]["processes"] = [{"pid": 31337, "used_memory": 40 * GIB}]
    lines = runner.busy_gpus(nvml=Nvml(module=FakePynvml(rec)))
    assert len(lines) == 1 and "GPU 1 is busy" in lines[0] and "31337" in lines[0] and "40.0 GiB" in lines[0]
    assert runner.busy_gpus([0], nvml=Nvml(module=FakePynvml(rec))) == []
    assert runner.busy_gpus(nvml=Nvml(module=FakePynvml.no_library())) == []
