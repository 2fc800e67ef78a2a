"""No silent skips: a missing shared folder fails in CI, and no test skips on an ImportError of the
project's own code (a broken import would otherwise look like a skip)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import shared_data

TESTS = Path(__file__).resolve().parent
OWN = ("avsbench_kit", "baselines", "fake_trees", "official_reference", "tiny_baseline", "test_", "shared_data")


def test_missing_shared_file_fails_in_ci_and_skips_locally(monkeypatch, tmp_path):
    monkeypatch.setattr(shared_data, "SHARED", tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"CI requires it: shared file {tmp_path}/spec/x.npz is missing"):
        shared_data.shared_file("spec/x.npz")
    for value in ("", "0", "false"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.skip.Exception, match="spec/x.npz is missing"):
            shared_data.shared_file("spec/x.npz")
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "x.npz").write_bytes(b"x")
    monkeypatch.setenv("CI", "1")
    assert shared_data.shared_file("spec/x.npz") == tmp_path / "spec" / "x.npz"


def _own_module(name: str) -> bool:
    return name.split(".")[0].startswith(OWN)


def _skips(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr in ("skip", "importorskip") for n in ast.walk(node))


def own_import_skips(source: str) -> list[int]:
    """Lines where a test skips on the project's own import: ``importorskip("avsbench_kit...")``, or
    ``try: import <own> ... except ImportError: pytest.skip(...)``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "importorskip"
                and node.args and isinstance(node.args[0], ast.Constant) and _own_module(str(node.args[0].value))):
            lines.append(node.lineno)
        if isinstance(node, ast.Try):
            names = [a.name for n in node.body if isinstance(n, ast.Import) for a in n.names]
            names += [n.module or "" for n in node.body if isinstance(n, ast.ImportFrom)]
            for handler in node.handlers:
                caught = ast.unparse(handler.type) if handler.type is not None else "BaseException"
                if "ImportError" in caught and any(map(_own_module, names)) and _skips(handler):
                    lines.append(node.lineno)
    return sorted(lines)


def test_the_checker_finds_both_patterns():
    bad = ("import pytest\nm = pytest.importorskip('avsbench_kit.features.base')\n"
           "try:\n    from avsbench_kit.data import synth\nexcept ImportError:\n    pytest.skip('no')\n"
           "ok = pytest.importorskip('datasets')\n")
    assert own_import_skips(bad) == [2, 3]


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.py")), ids=lambda p: p.name)
def test_no_test_skips_on_its_own_imports(path):
    assert own_import_skips(path.read_text("utf-8")) == [], f"{path.name} skips on an ImportError of project code"
