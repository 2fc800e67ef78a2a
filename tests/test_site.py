"""The static leaderboard site and the plots: what the pages hold, escaping, links, atomic writes,
and the plot data helpers (the browser test opens the same site in Chromium)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from avsbench_kit.cli.main import main
from avsbench_kit.errors import ConfigError
from avsbench_kit.plots import data as D
from avsbench_kit.site import html as H
from avsbench_kit.site.build import MARKER, build_site
from site_home import HOSTILE, built_site, site_home  # noqa: F401 (session fixtures shared with the browser test)

pytestmark = pytest.mark.slow


@pytest.fixture
def home(site_home):
    return site_home


@pytest.fixture
def site(built_site):
    return built_site


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("href", "src"):
            if a.get(key):
                self.refs.append(a[key])
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text("utf-8"))
    return p


def test_index_lists_every_dataset_with_runs(site, home):
    out, result = site
    index = (out / "index.html").read_text("utf-8")
    assert set(result.datasets) == {"synth-s4", "avsbench-s4"}
    for ds in result.datasets:
        assert f'href="datasets/{ds}.html"' in index and (out / "datasets" / f"{ds}.html").is_file()
    assert "Reported numbers only" in index and "avsbench-ms3" in index  # reported, no runs here
    assert result.runs == sum(len(v) for v in home[1].values())
    assert (out / MARKER).is_file()


def test_every_local_link_and_image_resolves_and_nothing_is_remote(site):
    out, result = site
    pages = sorted(out.rglob("*.html"))
    assert len(list((out / "runs").glob("*.html"))) == result.runs
    for page in pages:
        parsed = _parse(page)
        for ref in parsed.refs:
            if ref.startswith(("http://", "https://")):
                continue  # sources are links *out*; nothing is loaded from the network (see the CSP)
            target = (page.parent / ref.split("#")[0]).resolve()
            assert target.is_file(), f"{page.relative_to(out)} -> {ref}"
        html_text = page.read_text("utf-8")
        assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"https?:", html_text), page
        assert H.esc(H.CSP) in html_text  # no network: images, styles and scripts are local or inline


def test_record_text_is_escaped(site):
    out, _ = site
    for page in out.rglob("*.html"):
        text = page.read_text("utf-8")
        assert HOSTILE not in text and '<script>alert' not in text
    ds = (out / "datasets" / "avsbench-s4.html").read_text("utf-8")
    assert H.esc(HOSTILE) in ds  # shown, as text


def test_dataset_page_separates_reported_and_reproduced(site):
    out, _ = site
    ds = (out / "datasets" / "avsbench-s4.html").read_text("utf-8")
    tables = re.findall(r'<table class="sortable" id="(table-[^"]+)">(.*?)</table>', ds, re.S)
    kinds = {ident: set(re.findall(r'<tr class="(reported|reproduced)">', body)) for ident, body in tables}
    assert kinds["table-avsbench-s4-reported"] == {"reported"}
    assert kinds["table-avsbench-s4-avsbench-v1-1.0"] == {"reproduced"}
    assert kinds["table-avsbench-s4-avsbench-clip-v1-1.0"] == {"reproduced"}
    # protocol badges carry versions; seeds collapse to mean ± std with links to each run
    assert '<span class="badge protocol">avsbench-v1 v1.0</span>' in ds
    assert "61.00 ± 1.00" in ds  # av2t mIoU over seeds 0.60/0.62/0.61
    assert ds.count('href="../runs/20260101T00000') >= 5
    # sources become links (arXiv ids, GitHub issues)
    assert 'href="https://arxiv.org/abs/2406.06163"' in ds


def test_run_pages_show_metrics_categories_curves_probes_gallery(site, home):
    out, _ = site
    real = home[1]["synth-s4"][0]
    page = (out / "runs" / f"{real}.html").read_text("utf-8")
    rec = json.loads((home[0] / "runs" / real / "record.json").read_text())
    miou = rec["metrics"]["test"]["avsbench-v1"]["mIoU"]
    assert f"{miou * 100:.2f}" in page
    assert 'id="categories"' in page and "gallery-" in page and "curves-" in page
    assert "Per-category J" in page and rec["config_hash"] in page
    fake = home[1]["avsbench-s4"][0]
    page = (out / "runs" / f"{fake}.html").read_text("utf-8")
    assert 'id="probes"' in page and "audio-silent" in page and "probes-" in page  # J vs FPR plot
    assert "loss: bce" in page and "loss: dice" in page
    assert "<h2>Model</h2>" in page and "sam2 hiera-t (random init)" in page
    assert "prepared avsbench-s4 manifest is needed" in page  # said, not hidden
    for kind in ("bars-avsbench-s4-avsbench-v1-1.0", "scatter-avsbench-s4", f"curves-{real}",
                 f"categories-{real}", f"gallery-{real}-test", f"probes-{fake}"):
        for ext in ("png", "svg"):
            assert (out / "plots" / f"{kind}.{ext}").stat().st_size > 1000, kind


def test_svg_titles_name_the_protocol_and_version(site):
    out, _ = site
    svg = (out / "plots" / "bars-avsbench-s4-avsbench-v1-1.0.svg").read_text("utf-8")
    assert "avsbench-v1 v1.0" in svg and "score (%)" in svg and "mean ± std over seeds" in svg
    scatter = (out / "plots" / "scatter-avsbench-s4.svg").read_text("utf-8")
    assert "avsbench-v1 v1.0" in scatter and "reported" in scatter and "AV2T-SAM" in scatter


def test_site_is_replaced_atomically_and_only_if_it_is_a_site(home, tmp_path, monkeypatch):
    out = tmp_path / "site"
    build_site(out, home[0], gallery=False)
    before = (out / "index.html").read_text("utf-8")
    import avsbench_kit.site.build as B

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(B, "dataset_plots", boom)
    with pytest.raises(RuntimeError):
        build_site(out, home[0], gallery=False)
    assert (out / "index.html").read_text("utf-8") == before  # the old site is intact
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no temp dir left behind
    monkeypatch.undo()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not an avskit site"):
        build_site(mine, home[0])
    assert (mine / "thesis.tex").read_text() == "precious"


def test_cli_html_and_plot(home, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["leaderboard", "--format", "html", "--out", str(out), "--home", str(home[0])]) == 0
    assert (out / "index.html").is_file() and "open file://" in capsys.readouterr().out
    assert main(["leaderboard", "--format", "html", "--home", str(home[0])]) == 2
    assert "needs --out DIR" in capsys.readouterr().err
    plots = tmp_path / "p"
    run = home[1]["synth-s4"][0]
    assert main(["plot", "--out", str(plots), "--home", str(home[0]), "--run", run[:22],
                 "--kind", "curves", "--kind", "bars", "--kind", "gallery"]) == 0
    names = sorted(p.name for p in plots.iterdir())
    assert f"curves-{run}.png" in names and f"gallery-{run}-test.svg" in names
    assert "bars-synth-s4-avsbench-v1-1.0.png" in names and not any(n.startswith("categories") for n in names)
    assert main(["plot", "--kind", "pie", "--home", str(home[0])]) == 2
    assert "unknown plot kind" in capsys.readouterr().err


# -- the data helpers ---------------------------------------------------------------------------
def test_linkify_escapes_and_links():
    text = 'arXiv 2406.06163 Tab.1; GeWu-Lab/GAVS#3; see https://x.org/a?b=1&c=<2> and wizwand.com <i>'
    out = H.linkify(text)
    assert '<a href="https://arxiv.org/abs/2406.06163"' in out
    assert '<a href="https://github.com/GeWu-Lab/GAVS/issues/3"' in out
    assert '<a href="https://wizwand.com"' in out
    assert "<i>" not in out and "&lt;i&gt;" in out and "&amp;" in out


def test_probe_results_accept_both_shapes_and_find_j_fpr():
    as_map = {"probes": {"audio-silent": {"version": "1", "seed": 0, "test": {"p": {"J": 0.4, "FPR": 0.1}}}}}
    as_list = {"probes": [{"name": "audio-silent", "version": "1", "seed": 0, "test": {"p": {"J": 0.4, "FPR": 0.1}}}]}
    for raw in (as_map, as_list):
        results = D.probe_results(raw)
        assert [(r.probe, r.version, r.values) for r in results] == [("audio-silent", "1", {"test/p/J": 0.4,
                                                                                             "test/p/FPR": 0.1})]
        pts = D.j_fpr_points(results)
        assert [(p.probe, p.where, p.j, p.fpr) for p in pts] == [("audio-silent v1", "test/p", 0.4, 0.1)]
    assert D.probe_results({}) == [] and D.probe_results({"probes": "?"}) == []


def test_category_table_is_the_clip_mean_within_each_category():
    per_sample = pd.DataFrame({"split": ["test"] * 4, "sample_key": list("abcd"), "mIoU": [0.2, 0.4, 0.9, 0.5],
                               "F": [0.1, 0.3, 0.8, 0.6]})
    manifest = pd.DataFrame({"sample_key": list("abcd"), "category": ["dog", "dog", "cat", ""]})
    t = D.category_table(per_sample, manifest)
    assert t[["category", "samples"]].values.tolist() == [["cat", 1], ["(none)", 1], ["dog", 2]]
    assert t.loc[t.category == "dog", "J"].item() == pytest.approx(0.3)


def test_loss_components_and_spread():
    assert D.loss_components({"loss_components": {"bce": [1, 2], "dice": [3, 4]}}) == {"bce": [1.0, 2.0],
                                                                                       "dice": [3.0, 4.0]}
    assert D.loss_components({"loss_components": [{"total": 1}, {"total": 2}]}) == {}  # no breakdown
    got = D.loss_components({"loss_components": [{"bce": 1, "total": 1}, {"bce": 2, "dice": 3, "total": 5}]})
    assert "total" not in got
    assert got["bce"] == [1.0, 2.0] and got["dice"][1] == 3.0 and got["dice"][0] != got["dice"][0]  # NaN gap
    scores = {k: v for k, v in zip("abcdefg", [0.9, 0.1, 0.5, 0.7, 0.3, 0.0, 0.8])}
    assert D.pick_spread(list("abcdefg"), scores, 3) == ["a", "c", "f"]  # best, middle, worst
    assert D.pick_spread(list("xyz"), {}, 2) == ["x", "y"]
