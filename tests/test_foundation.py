"""Registry, config overrides, atomic writes and the CLI's error contract."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from avsbench_kit.atomic import atomic_path, write_json
from avsbench_kit.cli.main import main
from avsbench_kit.config import apply_overrides, config_hash, parse_override
from avsbench_kit.errors import ConfigError, RegistryError
from avsbench_kit.registry import Registry

CFG = {"seed": 0, "train": {"lr": 0.001, "epochs": 2, "amp": False}, "name": "x", "sizes": [1, 2]}


def test_registry_lazy_and_did_you_mean():
    reg: Registry = Registry("widget")
    reg.add("json-dumps", "json:dumps", kind="fn")
    assert reg.get("json-dumps") is json.dumps
    assert reg.meta("json-dumps") == {"kind": "fn"}
    with pytest.raises(RegistryError) as err:
        reg.get("json-dump")
    assert "did you mean 'json-dumps'" in err.value.hint
    with pytest.raises(ValueError):
        reg.add("json-dumps", "json:loads")


def test_overrides_apply_and_coerce():
    out = apply_overrides(CFG, ["train.lr=1", "seed=3", "train.amp=true", "sizes=[3,4]"])
    assert out["train"]["lr"] == 1.0 and isinstance(out["train"]["lr"], float)
    assert out["seed"] == 3 and out["train"]["amp"] is True and out["sizes"] == [3, 4]
    assert CFG["seed"] == 0  # the preset itself is untouched


def test_override_unknown_key_suggests():
    with pytest.raises(ConfigError) as err:
        apply_overrides(CFG, ["train.epoch=3"])
    assert "unknown config key 'train.epoch'" in err.value.message
    assert "train.epochs" in err.value.hint


@pytest.mark.parametrize("text", ["seed=abc", "train.amp=3", "train.epochs=0.5", "name=[1]"])
def test_override_wrong_type(text):
    with pytest.raises(ConfigError):
        apply_overrides(CFG, [text])


def test_override_syntax():
    with pytest.raises(ConfigError):
        parse_override("seed")
    assert parse_override("a.b=x=y") == ("a.b", "x=y")


def test_config_hash_is_order_independent():
    a = {"x": 1, "y": {"b": 2, "a": 1}}
    b = {"y": {"a": 1, "b": 2}, "x": 1}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "x": 2})


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_cli_user_error_is_one_line(tmp_path, capsys):
    code = main(["prepare", "refavs", "--home", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3
    assert "Traceback" not in err
    assert err.startswith("error: no refavs data at")
    assert "hint:" in err


def test_analysis_scripts_report_user_errors_in_one_line(capsys):
    """``python -m baselines.….analysis`` scripts: an AvsKitError is 'error:' + 'hint:' and code 2."""
    from avsbench_kit.errors import run_script

    def bad() -> None:
        raise ConfigError("no run id starts with 'x'", hint="avskit runs ls")

    assert run_script(bad) == 2
    assert capsys.readouterr().err == "error: no run id starts with 'x'\nhint: avskit runs ls\n"
    assert run_script(lambda: None) == 0
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_script(lambda: 1 / 0)


@pytest.mark.parametrize("where", ["front", "end"])
def test_cli_debug_reraises_anywhere_on_the_line(tmp_path, where):
    from avsbench_kit.errors import AvsKitError

    args = ["prepare", "refavs", "--home", str(tmp_path)]
    args = ["--debug", *args] if where == "front" else [*args, "--debug"]
    with pytest.raises(AvsKitError, match="no refavs data"):
        main(args)


def test_cli_unknown_dataset_hint(tmp_path, capsys):
    code = main(["prepare", "refav", "--root", str(tmp_path), "--home", str(tmp_path)])
    assert code == 2
    assert "did you mean 'refavs'" in capsys.readouterr().err


def test_cli_bad_root_names_layout(tmp_path, capsys):
    code = main(["prepare", "avsbench-s4", "--root", str(tmp_path), "--home", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3 and "s4_meta_data.csv" in err and "expected layout" in err


def test_cli_help_imports_no_heavy_library():
    code = (
        "import sys; from avsbench_kit.cli.main import main; rc = main(['--help']);"
        "heavy = [m for m in ('torch', 'transformers', 'sam2', 'cv2', 'webdataset', 'pandas') if m in sys.modules];"
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_ls_datasets_lists_registry(tmp_path, capsys):
    assert main(["ls", "datasets", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("avsbench-s4", "avsbench-ms3", "avss", "refavs", "synth-s4", "synth-ms3", "synth-refavs",
                 "synth-avss"):
        assert name in out
