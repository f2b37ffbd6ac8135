"""``fastnn info`` on the GPU: the card, its compute capability, the CUDA driver and
runtime versions and the pip extra that fits, or why no GPU is usable. The driver is
faked here (this machine has none); on a lent GPU, benchmarks/gpu_check.sh records the
real output."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fastnn.backends import gpu_info
from fastnn.cli import main


class FakeDriver:
    """Answers the five libcuda calls gpu_info makes."""

    def __init__(self, version=13000, cards=(("NVIDIA H200", 9, 0),), init_status=0):
        self.version, self.cards, self.init_status = version, cards, init_status

    def cuInit(self, flags):
        return self.init_status

    def cuDriverGetVersion(self, ref):
        ref._obj.value = self.version
        return 0

    def cuDeviceGetCount(self, ref):
        ref._obj.value = len(self.cards)
        return 0

    def cuDeviceGet(self, ref, i):
        ref._obj.value = i
        return 0

    def cuDeviceGetName(self, buf, size, dev):
        buf.value = self.cards[dev.value][0].encode()
        return 0

    def cuDeviceGetAttribute(self, ref, attr, dev):
        ref._obj.value = self.cards[dev.value][1 if attr == 75 else 2]
        return 0


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setattr(gpu_info, "_installed_cupy", lambda: None)


def test_info_without_a_gpu_says_why(monkeypatch, no_cupy):
    monkeypatch.setattr(gpu_info, "_load_driver", lambda: None)
    res = CliRunner().invoke(main, ["info"])
    assert res.exit_code == 0, res.output
    block = res.output.split("gpu:\n", 1)[1].split("versions:", 1)[0]
    assert "none usable: no NVIDIA driver here (libcuda not found)" in block
    assert "cupy     not installed" in block
    assert "extra" not in block  # nothing to recommend without a driver


def test_info_names_card_capability_cuda_and_extra(monkeypatch, no_cupy):
    monkeypatch.setattr(gpu_info, "_load_driver", lambda: FakeDriver(13000))
    res = CliRunner().invoke(main, ["info"])
    assert res.exit_code == 0, res.output
    assert "card 0   NVIDIA H200 (compute capability 9.0)" in res.output
    assert "driver   CUDA 13.0" in res.output
    assert "pip install 'fastnn[gpu-cuda13]' (cupy-cuda13x)" in res.output


@pytest.mark.parametrize(
    ("version", "extra"), [(12040, "gpu"), (12090, "gpu"), (13010, "gpu-cuda13"), (11080, None)]
)
def test_extra_follows_the_driver_cuda_version(no_cupy, version, extra):
    rep = gpu_info.gpu_report(FakeDriver(version, (("NVIDIA A100", 8, 0),)))
    assert rep.driver_cuda == (version // 1000, (version % 1000) // 10)
    assert rep.extra == extra
    assert (rep.problem is None) == (extra is not None)
    if extra is None:
        assert "need CUDA 12 or newer" in rep.problem


def test_a_cupy_wheel_for_a_newer_cuda_than_the_driver_is_named(monkeypatch):
    monkeypatch.setattr(gpu_info, "_installed_cupy", lambda: "cupy-cuda13x 14.0.0")
    rep = gpu_info.gpu_report(FakeDriver(12040))
    assert any("cupy-cuda13x needs a CUDA 13 driver" in n for n in rep.notes)
    assert "install fastnn[gpu] instead" in rep.notes[0]


def test_driver_without_devices_is_a_reason(no_cupy):
    rep = gpu_info.gpu_report(FakeDriver(init_status=100))
    assert rep.problem and "cuInit failed" in rep.problem and not rep.cards
    rep = gpu_info.gpu_report(FakeDriver(cards=()))
    assert "sees no CUDA device" in rep.problem
