"""``bench/run``'s body: the runs, the cleanup, the summary."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

from fwbench import infra
from fwbench.report import REFERENCE, Recorder, _round, baseline_rows, evaluate, final_tables
from fwbench.scenarios import FULL, QUICK, SCENARIOS, Context


class Interrupted(BaseException):
    """Ctrl-C, SIGTERM or SIGHUP: stop measuring, clean up."""


_interrupted = False


def _on_signal(signum: int, frame: Any) -> None:
    global _interrupted
    if _interrupted:  # let the cleanup finish
        print("bench/run: cleaning up, please wait", file=sys.stderr, flush=True)
        return
    _interrupted = True
    raise Interrupted(signal.Signals(signum).name)


def _tool_version(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        return "unavailable (%s)" % error
    text = (result.stdout + result.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def _loadavg() -> list[float]:
    with open("/proc/loadavg") as loadavg:
        return [float(value) for value in loadavg.read().split()[:3]]


def _environment(ctx: Context, arguments: argparse.Namespace) -> dict[str, Any]:
    for tool in (infra.WRK, infra.NGINX):
        if not os.access(tool, os.X_OK):
            raise infra.BenchError("%s is missing (Debian packages wrk and nginx)" % tool)
    versions = {"wrk": _tool_version([infra.WRK, "-v"]),
                "nginx": _tool_version([infra.NGINX, "-v"]),
                "daemon_python": _tool_version([ctx.python, "-VV"]),
                "fireworq_commit": _tool_version(["git", "-C", infra.REPO_DIR, "rev-parse",
                                                  "HEAD"])}
    if subprocess.run([ctx.python, "-c", "import fireworq, twisted"],
                      capture_output=True).returncode:
        raise infra.BenchError("--python %s cannot import fireworq and twisted" % ctx.python)
    if ctx.driver == "mysql" or "ceilings" in arguments.scenarios:
        try:
            with contextlib.closing(ctx.mysql.connect()) as connection:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT VERSION(), @@innodb_flush_log_at_trx_commit")
                    version, flush = cursor.fetchone()
            versions["mariadb"] = "%s (innodb_flush_log_at_trx_commit=%s)" % (version, flush)
        except Exception as error:
            if ctx.driver == "mysql":
                raise infra.BenchError("cannot reach MariaDB at %s:%d: %s"
                                       % (ctx.mysql.host, ctx.mysql.port, error)) from error
    slap = shutil.which("mariadb-slap") or shutil.which("mysqlslap")
    versions["mariadb_slap"] = slap or "missing: 32 PyMySQL processes instead"
    return versions


def run(arguments: argparse.Namespace) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    rec = Recorder(arguments.runs)
    started = datetime.datetime.now().astimezone()
    root = tempfile.mkdtemp(prefix="fireworq-bench-")
    ctx = Context(driver=arguments.driver, python=arguments.python or sys.executable,
                  durations=QUICK if arguments.quick else FULL,
                  mysql=infra.MySQLServer.parse(arguments.mysql), root=root, rec=rec,
                  daemon_args=(*arguments.daemon_arg, *arguments.current_arg),
                  twistd_args=tuple(arguments.current_twistd_arg), cpus=arguments.daemon_cpus)
    base_ctx: Context | None = None
    summary: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"), "driver": ctx.driver,
        "runs": arguments.runs, "quick": arguments.quick, "scenarios": arguments.scenarios,
        "python": ctx.python, "daemon_args": arguments.daemon_arg,
        "current_args": arguments.current_arg,
        "current_twistd_args": arguments.current_twistd_arg,
        "daemon_cpus": arguments.daemon_cpus, "baseline": arguments.baseline,
        "durations": dataclasses.asdict(ctx.durations),
        "cpus": os.cpu_count(), "loadavg_start": _loadavg(), "error": None,
    }
    status = 0
    stack = contextlib.ExitStack()
    try:
        summary["versions"] = _environment(ctx, arguments)
        if arguments.baseline:
            print("bench/run: checking out %s and installing it in a venv of its own"
                  % arguments.baseline, file=sys.stderr, flush=True)
            checkout = infra.Checkout(stack, arguments.baseline)
            summary["versions"]["baseline_commit"] = checkout.commit
            base_ctx = dataclasses.replace(ctx, python=checkout.python,
                                           daemon_args=tuple(arguments.daemon_arg),
                                           twistd_args=())
        rec.line("fireworq-py bench: driver %s, %d run%s of %s%s; %d CPUs, load %s"
                 % (ctx.driver, arguments.runs, "s" * (arguments.runs > 1),
                    ",".join(arguments.scenarios), " (QUICK: short durations)"
                    if arguments.quick else "", os.cpu_count() or 0,
                    " ".join("%.2f" % v for v in summary["loadavg_start"])))
        for name, version in summary["versions"].items():
            rec.line("  %-16s %s" % (name, version))
        if arguments.daemon_arg:
            rec.line("  %-16s %s (not the defaults the targets assume)"
                     % ("daemon options", " ".join(arguments.daemon_arg)))
        if arguments.current_arg or arguments.current_twistd_arg:
            rec.line("  %-16s %s" % ("tree's options", " ".join(
                (*arguments.current_twistd_arg, *arguments.current_arg))))
        if ctx.cpus:
            rec.line("  %-16s taskset -c %s" % ("daemon pinned", ctx.cpus))
        if summary["loadavg_start"][0] > 0.7:
            rec.line("  note: the machine is busy (1-min load %.2f); figures will suffer"
                     % summary["loadavg_start"][0])
        for number in range(1, arguments.runs + 1):
            rec.run = number
            for name in arguments.scenarios:
                variants: list[tuple[str, Context]] = [("", ctx)]
                if base_ctx is not None and name != "ceilings":  # ceilings: no daemon
                    variants.append(("baseline", base_ctx))
                    if number % 2 == 0:
                        variants.reverse()
                for variant, variant_ctx in variants:
                    rec.variant = variant
                    began, busy = time.time(), infra.host_busy()
                    SCENARIOS[name](variant_ctx)
                    after = infra.host_busy()
                    share = (after[0] - busy[0]) / max(1.0, after[1] - busy[1])
                    rec.line("run %d/%d  %-18s (took %.0f s, load %.2f, host CPU %.0f %% busy)"
                             % (number, arguments.runs, name + ("@" + variant if variant
                                                                 else ""),
                                time.time() - began, _loadavg()[0], share * 100))
                rec.variant = ""
    except infra.BenchError as error:
        summary["error"] = str(error)
        print("\nbench/run: ERROR: %s" % error, file=sys.stderr, flush=True)
        status = 1
    except Interrupted as interruption:
        summary["error"] = "interrupted by %s" % interruption
        print("\nbench/run: interrupted (%s); cleaning up" % interruption, file=sys.stderr,
              flush=True)
        status = 1
    except Exception as error:
        summary["error"] = "%s: %s" % (type(error).__name__, error)
        traceback.print_exc()
        status = 1
    finally:
        global _interrupted
        _interrupted = True  # from here on, signals only ask for patience
        stack.close()
        for line in infra.sweep():
            print("bench/run: cleanup: %s" % line, file=sys.stderr, flush=True)
        shutil.rmtree(root, ignore_errors=True)
    return _finish(rec, summary, status, arguments.baseline)


def _finish(rec: Recorder, summary: dict[str, Any], status: int, baseline: str | None
            ) -> int:
    targets = evaluate(rec)
    if status == 0 and any(not check["ok"] for check in rec.checks):
        status = 2
    summary.update({
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg_end": _loadavg(),
        "exit_status": status,
    })
    figures: dict[str, dict[str, Any]] = {}
    medians: dict[str, dict[str, Any]] = {}
    for figure in rec.figures.values():
        name = figure.scenario + ("@" + figure.variant if figure.variant else "")
        figures.setdefault(name, {})[figure.key] = figure.summary()
        medians.setdefault(name, {})[figure.key] = figure.summary(values=False)
    for line in final_tables(rec, targets, baseline):
        rec.line(line)
    results = os.path.join(infra.BENCH_DIR, "results")
    os.makedirs(results, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(results, "%s.json" % stamp)
    if os.path.exists(path):
        path = os.path.join(results, "%s-%d.json" % (stamp, os.getpid()))
    full = {**summary, "figures": figures, "targets": targets, "checks": rec.checks,
            "against_baseline": [{k: (_round(v) if isinstance(v, float) else v)
                                  for k, v in row.items()} for row in baseline_rows(rec)],
            "reference_go_fireworq": dict(REFERENCE), "details": rec.details}
    with open(path, "w") as out:
        json.dump(full, out, indent=1, ensure_ascii=False)
        out.write("\n")
    short = {key: summary[key] for key in ("started", "finished", "driver", "runs", "quick",
                                           "daemon_args", "loadavg_start", "loadavg_end",
                                           "error", "exit_status") if key in summary}
    short["results_file"] = os.path.relpath(path, infra.REPO_DIR)
    short["figures"] = medians
    if baseline:
        short["against_baseline"] = {
            "%s %s" % (row["scenario"], row["key"]): row["ratio"] and _round(row["ratio"])
            for row in baseline_rows(rec)}
    short["targets"] = [{"target": row["target"], "value": _round(row["value"]),
                         "goal": row["goal"], "result": row["result"]}
                        for row in targets if row["value"] is not None]
    short["checks"] = {"run": len(rec.checks),
                       "mismatch": [check for check in rec.checks if not check["ok"]]}
    rec.line("")
    rec.line("== JSON summary (everything, with per-run values, in %s) ==" % short["results_file"])
    rec.line(compact_json(short))
    return status


def compact_json(data: dict[str, Any]) -> str:
    """JSON with one figure, target or check per line."""

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    def block(items: list[str], indent: str, opening: str, closing: str) -> list[str]:
        if not items:
            return [opening + closing]
        return [opening, *(indent + item + "," for item in items[:-1]),
                indent + items[-1], indent[:-1] + closing]

    lines = []
    for key, value in data.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict)
                                                     for v in value.values()):
            inner = []
            for name, nested in value.items():
                rows = ["%s: %s" % (dump(k), dump(v)) for k, v in nested.items()]
                inner.append("\n".join(block(rows, "   ", "%s: {" % dump(name), "}")))
            lines.append("\n".join(block(inner, "  ", "%s: {" % dump(key), "}")))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append("\n".join(block([dump(v) for v in value], "  ",
                                          "%s: [" % dump(key), "]")))
        elif isinstance(value, dict) and any(isinstance(v, list) for v in value.values()):
            rows = ["%s: %s" % (dump(k), dump(v)) for k, v in value.items()]
            lines.append("\n".join(block(rows, "  ", "%s: {" % dump(key), "}")))
        else:
            lines.append("%s: %s" % (dump(key), dump(value)))
    text = "\n".join(block(lines, " ", "{", "}"))
    json.loads(text)  # still JSON
    return text
