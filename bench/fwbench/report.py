"""Figures as they come, then medians, targets and Fireworq's reference figures."""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Figure:
    variant: str  # "" for the working tree, "baseline" for --baseline's commit
    scenario: str
    key: str
    label: str
    unit: str
    fmt: str
    values: list[float] = field(default_factory=list)

    def text(self, value: float) -> str:
        return (self.fmt.format(value) + " " + self.unit).rstrip()

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    def summary(self, values: bool = True) -> dict[str, Any]:
        summary = {"median": _round(self.median), "min": _round(min(self.values)),
                   "max": _round(max(self.values)), "unit": self.unit}
        if values:
            summary.update(label=self.label, values=[_round(v) for v in self.values])
        return summary


def _round(value: float) -> float:
    """Four significant digits at least, three decimals at most."""
    return round(value, max(0, min(3, 3 - len(str(int(abs(value)))) + 1)))


class Recorder:
    """Prints one figure per line as it is measured and keeps them for the summary."""

    def __init__(self, runs: int, out: Any = None) -> None:
        self.runs = runs
        self.out = out or sys.stdout
        self.figures: dict[tuple[str, str], Figure] = {}
        self.checks: list[dict[str, Any]] = []
        self.details: dict[str, list[dict[str, Any]]] = {}
        self.run = 0
        self.variant = ""  # whose daemon the figures are of: "" the tree, "baseline"

    def _prefix(self, scenario: str) -> str:
        return "run %d/%d  %-18s" % (self.run, self.runs, self._name(scenario))

    def _name(self, scenario: str) -> str:
        return scenario + "@" + self.variant if self.variant else scenario

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def figure(self, scenario: str, key: str, label: str, value: float, unit: str = "",
               fmt: str = "{:,.0f}") -> None:
        figure = self.figures.setdefault((self.variant, scenario, key),
                                         Figure(self.variant, scenario, key, label, unit, fmt))
        figure.values.append(value)
        self.line("%s %-40s %s" % (self._prefix(scenario), label, figure.text(value)))

    def note(self, scenario: str, label: str, text: str) -> None:
        self.line("%s %-40s %s" % (self._prefix(scenario), label, text))

    def check(self, scenario: str, name: str, ok: bool, detail: str) -> None:
        self.checks.append({"run": self.run, "scenario": self._name(scenario), "check": name,
                            "ok": ok,
                            "detail": detail})
        self.line("%s %-40s %s  (%s)" % (self._prefix(scenario), name,
                                          "OK" if ok else "MISMATCH", detail))

    def detail(self, scenario: str, data: dict[str, Any]) -> None:
        """Raw data for the JSON summary only."""
        self.details.setdefault(self._name(scenario), []).append({"run": self.run, **data})

    def get(self, scenario: str, key: str, variant: str = "") -> Figure | None:
        return self.figures.get((variant, scenario, key))


def spread(figure: Figure) -> str:
    if len(figure.values) == 1:
        return figure.text(figure.values[0])
    return "%s  (%s – %s)" % (figure.text(figure.median), figure.fmt.format(min(figure.values)),
                              figure.fmt.format(max(figure.values)))


@dataclass
class Target:
    name: str
    goal: str
    measure: Callable[[Recorder], tuple[float, str] | None]
    passes: Callable[[float], bool]


def _median(scenario: str, key: str, fmt: str, unit: str
            ) -> Callable[[Recorder], tuple[float, str] | None]:
    def measure(rec: Recorder) -> tuple[float, str] | None:
        figure = rec.get(scenario, key)
        if figure is None:
            return None
        return figure.median, (fmt.format(figure.median) + " " + unit).rstrip()
    return measure


def _push_share(rec: Recorder) -> tuple[float, str] | None:
    push, ceiling = rec.get("push", "jobs_per_s"), rec.get("ceilings", "insert_rows_per_s")
    if push is None or ceiling is None:
        return None
    share = push.median / ceiling.median
    return share, "%.2f × (%s jobs/s / %s rows/s)" % (share, "{:,.0f}".format(push.median),
                                                       "{:,.0f}".format(ceiling.median))


def _rss_max(rec: Recorder) -> tuple[float, str] | None:
    values = [(max(f.values), f.scenario) for f in rec.figures.values()
              if f.key == "rss_max_mb" and not f.variant]
    if not values:
        return None
    value, scenario = max(values)
    return value, "%.1f MB (max, in %s)" % (value, scenario)


TARGETS = [
    Target("push ≥ 0.5 × INSERT ceiling", "≥ 0.50", _push_share, lambda v: v >= 0.5),
    Target("drain, max_workers 50", "≥ 4,500 jobs/s",
           _median("drain/50", "jobs_per_s", "{:,.0f}", "jobs/s"), lambda v: v >= 4500),
    Target("drain, max_workers 200", "≥ 4,500 jobs/s",
           _median("drain/200", "jobs_per_s", "{:,.0f}", "jobs/s"), lambda v: v >= 4500),
    Target("latency p50, polling 200 ms", "≤ 10 ms",
           _median("latency/200ms", "p50_ms", "{:.1f}", "ms"), lambda v: v <= 10),
    Target("latency p99, polling 200 ms", "≤ 50 ms",
           _median("latency/200ms", "p99_ms", "{:.1f}", "ms"), lambda v: v <= 50),
    Target("latency p50, polling 1000 ms", "≤ 10 ms",
           _median("latency/1000ms", "p50_ms", "{:.1f}", "ms"), lambda v: v <= 10),
    Target("latency p99, polling 1000 ms", "≤ 50 ms",
           _median("latency/1000ms", "p99_ms", "{:.1f}", "ms"), lambda v: v <= 50),
    Target("idle queries/s, 100 queues", "≤ 60 /s",
           _median("idle", "queries_per_s", "{:.1f}", "/s"), lambda v: v <= 60),
    Target("idle CPU, 100 queues", "≤ 2 % of a core",
           _median("idle", "cpu_pct", "{:.2f}", "% of a core"), lambda v: v <= 2),
    Target("daemon RSS", "≤ 80 MB", _rss_max, lambda v: v <= 80),
]

REFERENCE = [
    ("push", "5,000–6,800 jobs/s (0.26–0.36 of an INSERT ceiling of ~18,800 rows/s)"),
    ("drain, max_workers 50", "3,600–4,300 jobs/s"),
    ("latency, polling 200 ms", "p50 104 ms / p99 200 ms"),
    ("latency, polling 1000 ms", "p50 518 ms / p99 996 ms"),
    ("idle, 100 queues", "600 queries/s, 12 % of a core"),
    ("RSS", "15–30 MB"),
]


def evaluate(rec: Recorder) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = baseline_targets(rec)
    for target in TARGETS:
        measured = target.measure(rec)
        if measured is None:
            rows.append({"target": target.name, "goal": target.goal, "value": None,
                         "measured": "not measured", "result": "n/a"})
            continue
        value, text = measured
        rows.append({"target": target.name, "goal": target.goal, "value": value,
                     "measured": text, "result": "PASS" if target.passes(value) else "MISS"})
    return rows


#: Figures where more is better (the ratio's direction is told either way).
HIGHER_IS_BETTER = {"jobs_per_s"}

#: The issue's speed-up asked of the tree against --baseline's commit, same run.
BASELINE_GOAL = 1.8


def baseline_rows(rec: Recorder) -> list[dict[str, Any]]:
    """Every figure measured for both the tree and the baseline: medians and their ratio."""
    rows = []
    for (variant, scenario, key), figure in rec.figures.items():
        base = rec.get(scenario, key, "baseline")
        if variant or base is None:
            continue
        ratio = figure.median / base.median if base.median else None
        rows.append({"scenario": scenario, "key": key, "label": figure.label, "unit": figure.unit,
                     "current": figure.median, "baseline": base.median, "ratio": ratio,
                     "current_text": spread(figure), "baseline_text": spread(base),
                     "higher_is_better": key in HIGHER_IS_BETTER})
    return rows


def baseline_targets(rec: Recorder) -> list[dict[str, Any]]:
    rows = []
    for scenario in ("push", "drain/50", "drain/200"):
        current = rec.get(scenario, "jobs_per_s")
        base = rec.get(scenario, "jobs_per_s", "baseline")
        if current is None or base is None:
            continue
        ratio = current.median / base.median
        rows.append({"target": "%s ≥ %.1f × baseline" % (scenario, BASELINE_GOAL),
                     "goal": "≥ %.2f" % BASELINE_GOAL, "value": ratio,
                     "measured": "%.2f × (%s / %s jobs/s)" % (
                         ratio, "{:,.0f}".format(current.median), "{:,.0f}".format(base.median)),
                     "result": "PASS" if ratio >= BASELINE_GOAL else "MISS"})
    return rows


def comparison_table(rec: Recorder, commit: str) -> list[str]:
    rows = baseline_rows(rec)
    if not rows:
        return []
    lines = ["", "== This tree against baseline %s, same run, medians (min – max) ==" % commit,
             "%-14s %-40s %-34s %-34s %s" % ("scenario", "figure", "current", "baseline",
                                             "current / baseline")]
    for row in rows:
        lines.append("%-14s %-40s %-34s %-34s %s" % (
            row["scenario"], row["label"], row["current_text"], row["baseline_text"],
            "–" if row["ratio"] is None else "%.2f ×" % row["ratio"]))
    return lines


def final_tables(rec: Recorder, targets: list[dict[str, Any]], baseline: str | None = None
                 ) -> list[str]:
    lines = ["", "== Medians over %d run%s (min – max) ==" % (rec.runs, "s" * (rec.runs > 1))]
    for figure in rec.figures.values():
        name = figure.scenario + ("@" + figure.variant if figure.variant else "")
        lines.append("%-18s %-40s %s" % (name, figure.label, spread(figure)))
    if baseline:
        lines.extend(comparison_table(rec, baseline))
    failed = [c for c in rec.checks if not c["ok"]]
    lines.append("")
    lines.append("== Checks: %d run, %d MISMATCH ==" % (len(rec.checks), len(failed)))
    for check in failed:
        lines.append("MISMATCH run %d %s %s: %s" % (check["run"], check["scenario"],
                                                     check["check"], check["detail"]))
    lines.append("")
    lines.append("== Targets (medians; RSS: max) ==")
    lines.append("%-32s %-44s %-18s %s" % ("target", "measured", "goal", "result"))
    for row in targets:
        if row["value"] is not None:
            lines.append("%-32s %-44s %-18s %s" % (row["target"], row["measured"], row["goal"],
                                                   row["result"]))
    missing = [row["target"] for row in targets if row["value"] is None]
    if missing:
        lines.append("(not measured in this run: %s)" % "; ".join(missing))
    lines.append("")
    lines.append("== Go Fireworq 1.5 reference figures (from the issue, for context) ==")
    for name, text in REFERENCE:
        lines.append("%-32s %s" % (name, text))
    return lines
