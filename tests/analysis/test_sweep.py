"""Resumable sweeps: interrupted runs resume, lost signals still stop, extended sweeps reuse units."""

import signal

import pandas as pd
import pytest

from analysis.kernel_spectrum import SpectrumConfig
from analysis.sweep import interruptible, run_sweep


def test_sweep_resumes_after_an_interruption(tmp_path):
    calls = []

    def compute(unit):
        calls.append(unit["k"])
        if unit["k"] == 2 and len(calls) == 3:
            raise KeyboardInterrupt  # the first run dies on the third unit
        return pd.DataFrame({"value": [unit["k"] ** 2]})

    units = [{"k": k} for k in range(4)]
    config = SpectrumConfig()
    with pytest.raises(KeyboardInterrupt):
        run_sweep("toy", config, units, compute, tmp_path, progress=False)
    assert calls == [0, 1, 2]
    assert len(list((tmp_path / "toy").glob("*.csv"))) == 2
    table = run_sweep("toy", config, units, compute, tmp_path, progress=False)
    assert calls == [0, 1, 2, 2, 3]  # only the unfinished units ran again
    assert list(table["k"]) == [0, 1, 2, 3] and list(table["value"]) == [0, 1, 4, 9]
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_signal_lost_in_a_finalizer_still_stops_the_sweep_at_the_next_unit(tmp_path, lost_interrupt):
    calls = []

    def compute(unit):
        calls.append(unit["k"])
        if unit["k"] == 1:
            lost_interrupt()
        return pd.DataFrame({"value": [unit["k"]]})

    units = [{"k": k} for k in range(4)]
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interruptible():
        run_sweep("toy", SpectrumConfig(), units, compute, tmp_path, progress=False)
    assert calls == [0, 1]  # unit 1 finished (the interrupt was dropped inside it), unit 2 never started
    assert lost_interrupt.dropped == [KeyboardInterrupt]  # Python dropped the handler's exception
    assert len(list((tmp_path / "toy").glob("*.csv"))) == 2
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored
    assert run_sweep("toy", SpectrumConfig(), units, compute, tmp_path, progress=False)["k"].tolist() == [0, 1, 2, 3]


def test_an_ignored_signal_stays_ignored():  # e.g. SIGINT in a shell's background job
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interruptible():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_extended_sweep_reuses_finished_units(tmp_path):
    calls = []

    def compute(unit):
        calls.append(unit["width"])
        return pd.DataFrame({"value": [unit["width"]]})

    run_sweep(
        "toy", SpectrumConfig(widths=(8, 16)), [{"width": 8}, {"width": 16}], compute, tmp_path, False, ("widths",)
    )
    run_sweep("toy", SpectrumConfig(widths=(8, 16, 32)), [{"width": w} for w in (8, 16, 32)], compute, tmp_path,
              False, ("widths",))  # fmt: skip
    assert calls == [8, 16, 32]
    run_sweep("toy", SpectrumConfig(widths=(8,), n=5), [{"width": 8}], compute, tmp_path, False, ("widths",))
    assert calls == [8, 16, 32, 8]  # another non-axis field is another computation
