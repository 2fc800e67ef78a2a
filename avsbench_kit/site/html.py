"""HTML pieces of the static site: escaping, source links, badges, sortable tables, the page shell.

Everything that comes from a record or ``published.csv`` goes through :func:`esc` (or
:func:`linkify`, which escapes the text around the links it makes). The CSS and the sorting
script are inlined in every page, and a Content-Security-Policy forbids any network load, so a
page opened from disk (``file://``) shows exactly what was written.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Iterable

CSP = ("default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")

CSS = """
:root{--fg:#1d2330;--muted:#5d6677;--line:#d9dee7;--rep:#fff4e0;--repro:#e8f4ff;--accent:#2463b8}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
margin:0;background:#fafbfc}header{background:#1d2330;color:#fff;padding:10px 24px}header a{color:#cfe0ff}
main{padding:16px 24px 40px;max-width:1500px}h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:28px 0 6px}
h3{font-size:15px;margin:18px 0 6px}a{color:var(--accent)}p.muted,.muted{color:var(--muted)}
table{border-collapse:collapse;margin:6px 0 10px;background:#fff;font-size:13px}
th,td{border:1px solid var(--line);padding:4px 8px;vertical-align:top;text-align:left}
th{background:#eef1f6;white-space:nowrap}table.sortable th{cursor:pointer;user-select:none}
table.sortable th:after{content:" \\2195";color:#9aa3b2;font-size:11px}
table.sortable th[aria-sort=ascending]:after{content:" \\25B2";color:var(--fg)}table.sortable th[aria-sort=descending]:after{content:" \\25BC";color:var(--fg)}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.reported td{background:var(--rep)}tr.reproduced td{background:var(--repro)}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;border:1px solid;white-space:nowrap}
.badge.protocol{background:#eef4ff;border-color:#9bb8ea;color:#1b4a94}
.badge.reported{background:#fff0d2;border-color:#e2b15a;color:#7a4a00}
.badge.reproduced{background:#dcefff;border-color:#7fb2e5;color:#0f4c81}
.badge.complete{background:#e3f6e8;border-color:#7cc48f;color:#1d6b32}
.badge.failed{background:#fde4e4;border-color:#e08c8c;color:#8a1f1f}
.badge.running{background:#fff7d6;border-color:#e6c85a;color:#6b5400}
figure{margin:10px 0 18px;background:#fff;border:1px solid var(--line);padding:8px;display:inline-block;max-width:100%}
figure img{max-width:100%;height:auto;display:block}figcaption{font-size:12px;color:var(--muted);margin-top:4px}
pre{background:#fff;border:1px solid var(--line);padding:8px;overflow:auto;font-size:12px;max-height:480px}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;background:#fff;border:1px solid var(--line);padding:8px}
dl.kv dt{color:var(--muted)}dl.kv dd{margin:0;word-break:break-all}ul.notes{color:var(--muted);font-size:13px}
"""

# Sort a table by a clicked header: numbers by data-sort (blank cells always last), text by its
# content; the first click on a number sorts high to low, on text A to Z; a second click reverses.
JS = """
(function(){
  function key(cell, numeric){
    if(!cell) return null;
    if(numeric){var v=cell.getAttribute('data-sort');return v===null||v===''?null:parseFloat(v);}
    return cell.textContent.trim().toLowerCase();
  }
  function sortBy(table, col, th){
    var numeric = th.getAttribute('data-type') === 'num';
    var current = th.getAttribute('aria-sort');
    var dir = current ? (current === 'ascending' ? 'descending' : 'ascending') : (numeric ? 'descending' : 'ascending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function(a, b){
      var x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
      if(x === null && y === null) return 0;
      if(x === null) return 1;
      if(y === null) return -1;
      var c = x < y ? -1 : (x > y ? 1 : 0);
      return dir === 'ascending' ? c : -c;
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(h){ h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir);
    rows.forEach(function(r){ body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function(table){
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(th, col){
      th.tabIndex = 0;
      th.title = 'sort by this column';
      th.addEventListener('click', function(){ sortBy(table, col, th); });
      th.addEventListener('keydown', function(e){ if(e.key === 'Enter' || e.key === ' '){ e.preventDefault(); sortBy(table, col, th); } });
    });
  });
})();
"""


def esc(value: object) -> str:
    """HTML-escape any value (quotes too: safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


_LINKS = (
    (re.compile(r"https?://[^\s<>\"';,)]+"), lambda m: m.group(0)),
    (re.compile(r"\barXiv[ :]*(\d{4}\.\d{4,5})(v\d+)?", re.I), lambda m: f"https://arxiv.org/abs/{m.group(1)}"),
    (re.compile(r"\b([A-Za-z0-9][\w.-]*/[\w.-]+)#(\d+)\b"),
     lambda m: f"https://github.com/{m.group(1)}/issues/{m.group(2)}"),
    (re.compile(r"\b((?:[a-z0-9-]+\.)+(?:com|org|io|net))\b(?!/)"), lambda m: f"https://{m.group(1)}"),
)


def linkify(text: str) -> str:
    """Escaped ``text`` with URLs, arXiv ids, GitHub ``owner/repo#N`` and bare domains as links."""
    text = "" if text is None else str(text)
    spans: list[tuple[int, int, str]] = []
    for pattern, url in _LINKS:
        for m in pattern.finditer(text):
            if any(s < m.end() and m.start() < e for s, e, _ in spans):
                continue
            spans.append((m.start(), m.end(), url(m)))
    out, pos = [], 0
    for start, end, url in sorted(spans):
        out.append(esc(text[pos:start]))
        out.append(f'<a href="{esc(url)}" rel="noopener noreferrer">{esc(text[start:end])}</a>')
        pos = end
    out.append(esc(text[pos:]))
    return "".join(out)


def badge(text: str, kind: str) -> str:
    return f'<span class="badge {esc(kind)}">{esc(text)}</span>'


def protocol_badge(name: str, version: str = "") -> str:
    return badge(f"{name} v{version}" if version else name, "protocol")


@dataclass
class Cell:
    html: str  # already escaped / built markup
    sort: float | None = None  # numeric sort key (None: blank, sorts last)
    num: bool = False


@dataclass
class Table:
    """A sortable table; ``types[i]`` is ``num`` or ``text`` for column i."""

    headers: list[str]
    types: list[str]
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)  # (row class, cells)
    css: str = "sortable"
    id: str = ""

    def add(self, cells: list[Cell], row_class: str = "") -> None:
        self.rows.append((row_class, cells))

    def render(self) -> str:
        ident = f' id="{esc(self.id)}"' if self.id else ""
        head = "".join(f'<th data-type="{t}" scope="col">{esc(h)}</th>' for h, t in zip(self.headers, self.types))
        body = []
        for row_class, cells in self.rows:
            tds = []
            for c in cells:
                attrs = ' class="num"' if c.num else ""
                if c.sort is not None:
                    attrs += f' data-sort="{c.sort!r}"'
                tds.append(f"<td{attrs}>{c.html}</td>")
            cls = f' class="{esc(row_class)}"' if row_class else ""
            body.append(f"<tr{cls}>{''.join(tds)}</tr>")
        return (f'<table class="{esc(self.css)}"{ident}><thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(body)}</tbody></table>")


def text(value: object) -> Cell:
    return Cell(esc(value))


def kv(pairs: Iterable[tuple[str, object]]) -> str:
    """A definition list of escaped key/value pairs."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v if isinstance(v, Markup) else esc(v)}</dd>" for k, v in pairs)
    return f'<dl class="kv">{items}</dl>'


class Markup(str):
    """A string that is already HTML (built here from escaped parts): :func:`kv` keeps it as is."""


def figure(src: str, caption: str, alt: str) -> str:
    return (f'<figure><img src="{esc(src)}" alt="{esc(alt)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def page(title: str, body: str, *, root: str, crumbs: list[tuple[str, str]], footer: str) -> str:
    """A whole page: ``root`` is the relative path to the site root ("" or "../")."""
    nav = f'<a href="{esc(root)}index.html">avsbench-kit results</a>'
    for label, href in crumbs:
        nav += " › " + (f'<a href="{esc(href)}">{esc(label)}</a>' if href else esc(label))
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body><header><nav>{nav}</nav></header>\n"
        f"<main>\n{body}\n</main>\n<footer class=\"muted\" style=\"padding:0 24px 24px\">{footer}</footer>"
        f"<script>{JS}</script></body></html>\n"
    )
