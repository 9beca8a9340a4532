"""bench/train_throughput.py runs the paper-size configs' training step on tiny sizes here, unchanged on a GPU."""
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "train_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_durations_spread_every_frame(bench):
    d = bench.durations(7, 30)
    assert sum(d) == 30 and len(d) == 7 and max(d) - min(d) <= 1


@pytest.mark.parametrize("system", ["latentlm", "valle"])
def test_tiny_run_counts_flops_and_fills_the_batch(bench, system, tmp_path):
    out = bench.main(["--system", system, "--tiny", "--steps", "1", "--warmup", "0", "--utt-seconds", "4",
                      "--json", str(tmp_path / "out.json")])
    slots = out["batch"] * (out["prompt"] + out["phones"] + out["target"])
    assert slots <= 2000 and slots + out["prompt"] + out["phones"] + out["target"] > 2000  # the batch is full
    # a training step costs about 6 FLOPs per parameter and target token; attention and the head add more
    assert out["tflops_per_step"] * 1e12 > 2 * out["params_m"] * 1e6 * out["batch"] * out["target"]
    assert out["device"] == "cpu" and out["mfu"] is None and (tmp_path / "out.json").is_file()
