"""`avskit features extract device=...`: what a CPU-only machine can check of extraction devices."""

from __future__ import annotations

import json

import pytest
import torch

from avsbench_kit.cli.main import main
from avsbench_kit.features.base import _move_model, build_encoder
from avsbench_kit.features.cache import find_caches
from avsbench_kit.features.extract import extract
from test_features_cache import OV, tree_bytes
from test_features_plan import make_s4_dataset


@pytest.fixture(scope="module")
def s4(tmp_path_factory):
    return make_s4_dataset(tmp_path_factory.mktemp("s4dev"))


def test_cli_device_cpu_and_auto_write_todays_bytes(s4, tmp_path, capsys, monkeypatch) -> None:
    manifest, home = s4
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("avsbench_kit.device._mps_available", lambda: False)
    plain = extract(manifest, "vggish", OV, split="val", cache=tmp_path / "plain", progress=False)
    for spec in ("cpu", "auto"):
        root = tmp_path / spec
        assert main(["features", "extract", "encoder=vggish", "dataset=avsbench-s4", "split=val", f"device={spec}",
                     *OV, "--home", str(home), "--cache", str(root), "--no-progress"]) == 0
        (cache,) = find_caches(root)
        assert tree_bytes(cache.path) == tree_bytes(plain.path)
        index = json.loads((cache.path / "index.json").read_text())
        assert index["environments"][0]["device"] == "cpu"


def test_cli_device_cuda_without_cuda_fails_before_writing(s4, tmp_path, capsys, monkeypatch) -> None:
    _, home = s4
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["features", "extract", "encoder=vggish", "dataset=avsbench-s4", "device=cuda:0",
                 "--home", str(home), "--cache", str(tmp_path / "c"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "device=cuda:0 but torch sees no CUDA GPU" in err
    assert not (tmp_path / "c").exists()


def test_models_and_inputs_move_to_the_device() -> None:
    """Modules and tensors inside a loaded model tuple move; tokenizers and None stay."""
    net, table, tok = torch.nn.Linear(2, 2), torch.zeros(3), object()
    moved = _move_model((net, (table, None), tok), torch.device("meta"))
    assert moved[0].weight.device.type == "meta" and moved[1][0].device.type == "meta"
    assert moved[1][1] is None and moved[2] is tok
    enc = build_encoder("vggish")
    x = torch.ones(2)
    assert enc.on_device(x) is x and enc.device_name == "cpu"  # CPU: nothing moved, no copy
    enc._device = torch.device("meta")
    assert enc.on_device({"a": x})["a"].device.type == "meta" and enc.device_name == "meta"
