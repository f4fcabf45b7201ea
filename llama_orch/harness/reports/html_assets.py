"""Inline stylesheet and script of index.html: kept here so the page needs no network at all."""

from __future__ import annotations

# One colour per verdict; also used by the per-family bars and the summary chips.
VERDICT_COLOURS = {
    "pass": "#2e7d32",
    "fail": "#c62828",
    "not-supported": "#607d8b",
    "skipped": "#9e9e9e",
    "unverified": "#ef8f00",
    "uncovered": "#6a1b9a",
    "waived": "#00838f",
}

CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #dadce0; --bg-alt: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); margin: 0 auto; padding: 24px 32px 48px; max-width: 1400px; }
h1 { font-size: 24px; margin: 0 0 12px; }
h2 { font-size: 18px; margin: 24px 0 10px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
h4 { font-size: 14px; margin: 14px 0 4px; }
code, pre { font: 12.5px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
pre { background: var(--bg-alt); border: 1px solid var(--line); border-radius: 4px;
  padding: 8px 10px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
table { border-collapse: collapse; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg-alt); }
header { display: flex; flex-wrap: wrap; gap: 8px 48px; align-items: flex-start; }
header h1 { flex-basis: 100%; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff;
  font-weight: 600; font-size: 12px; white-space: nowrap; }
.result-success { background: #2e7d32; } .result-partial { background: #ef8f00; }
.result-failure { background: #c62828; }
.counts td.n { text-align: center; font-variant-numeric: tabular-nums; font-size: 16px; }
.counts th { text-align: center; }
.counts button { all: unset; cursor: pointer; }
.bars { display: grid; grid-template-columns: max-content 1fr max-content; gap: 6px 12px;
  align-items: center; max-width: 900px; }
.bar { display: flex; height: 18px; border-radius: 3px; overflow: hidden;
  background: var(--bg-alt); }
.bar span { display: block; height: 100%; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 10px 0 0; color: var(--muted); }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px;
  border-radius: 2px; }
.filters { display: flex; gap: 12px; align-items: center; margin: 0 0 10px; }
.filters input { width: 320px; padding: 5px 8px; border: 1px solid var(--line);
  border-radius: 4px; font: inherit; }
.filters select { padding: 4px 6px; font: inherit; }
#shown-count { color: var(--muted); }
#req-table { width: 100%; table-layout: fixed; }
#req-table th:nth-child(1) { width: 118px; } #req-table th:nth-child(2) { width: 140px; }
#req-table th:nth-child(3), #req-table th:nth-child(4) { width: 72px; }
#req-table th:nth-child(5) { width: 112px; } #req-table th:nth-child(6) { width: 30%; }
#req-table th:nth-child(7) { width: 15%; }
#req-table td { overflow-wrap: anywhere; }
#req-table td:first-child { white-space: nowrap; }
#req-table ul { margin: 0; padding-left: 16px; }
#req-table tr[hidden] { display: none; }
.muted { color: var(--muted); }
.o-passed { color: #2e7d32; } .o-failed { color: #c62828; } .o-error { color: #ef8f00; }
.o-not-run { color: #757575; }
article.failure { border-left: 4px solid #c62828; padding: 2px 0 2px 14px; margin: 12px 0; }
"""

# Filtering: a free-text filter over ID, text, reason and check ids, plus a verdict filter.
# `?verdict=fail&q=text` in the URL preselects both, so a filtered view can be linked to.
JS = """
(function () {
  "use strict";
  var q = document.getElementById("filter");
  var sel = document.getElementById("verdict-filter");
  var out = document.getElementById("shown-count");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#req-table tbody tr"));
  function apply() {
    var text = q.value.trim().toLowerCase();
    var verdict = sel.value;
    var shown = 0;
    rows.forEach(function (row) {
      var ok = (!verdict || row.getAttribute("data-verdict") === verdict) &&
        (!text || row.getAttribute("data-search").indexOf(text) !== -1);
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    out.textContent = shown + " of " + rows.length + " shown";
  }
  var params = new URLSearchParams(window.location.search);
  if (params.get("q")) { q.value = params.get("q"); }
  if (params.get("verdict")) { sel.value = params.get("verdict"); }
  q.addEventListener("input", apply);
  sel.addEventListener("change", apply);
  Array.prototype.forEach.call(document.querySelectorAll("[data-pick]"), function (btn) {
    btn.addEventListener("click", function () {
      sel.value = btn.getAttribute("data-pick");
      apply();
      document.getElementById("requirements").scrollIntoView();
    });
  });
  apply();
})();
"""
