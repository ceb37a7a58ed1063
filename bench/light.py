"""How light is the daemon once idle, and how quick are the commands people type?

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.light --out bench/results/light

Runs `cltool run --demo-feed data/demo` in a fresh folder on its defaults (training in the supervised
child) until the log says every file was fed and no cycle is running, lets the daemon sit idle for
--settle seconds, then samples its own resident memory (VmRSS of the daemon process, not its training
children, which have exited) and CPU share over --idle seconds. The daemon releases the models it loaded
for scoring once they have been unused for `model.keep_loaded_seconds` (120 s; its log says "released
loaded model"), so the samples are split at that line: the idle daemon holding the champion (and the
version it replaced) against the same process after the release, side by side in one run. With the
daemon still running, as a user would, it times `cltool status`, `cltool status --live` and `cltool
predict` --repeats times each (wall clock of the whole command, medians). Writes light.json and light.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLTOOL = str(Path(sys.executable).parent / "cltool")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


RELEASED = "released loaded model"


def _mib(value: float | None) -> str:
    return f"{value:.0f} MiB" if value is not None else "— (no sample)"


def timed(args: list[str], env: dict[str, str], cwd: Path, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run([CLTOOL, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"cltool {' '.join(args)}: {done.stderr[-500:]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/light"))
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--idle", type=float, default=240, help="seconds of samples: past keep_loaded_seconds")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLTOOL_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               MLFLOW_DISABLE_TELEMETRY="true")
    with tempfile.TemporaryDirectory(prefix="bench-light-") as tmp:
        root = Path(tmp)
        subprocess.run([CLTOOL, "init", "--dir", str(root)], env=env, check=True, capture_output=True)
        env["CLTOOL_CONFIG"] = str(root / "cltool.toml")
        env["CLTOOL_OBSERVE__PORT"] = "0"
        log_path = root / "daemon.log"
        started = time.monotonic()
        with log_path.open("w") as log:
            daemon = subprocess.Popen([CLTOOL, "run", "--demo-feed", str(REPO / "data" / "demo")], env=env, cwd=root,
                                      stdout=log, stderr=subprocess.STDOUT)
        try:
            while "all 6 files fed" not in log_path.read_text():
                if daemon.poll() is not None:
                    raise RuntimeError(f"the daemon exited: {log_path.read_text()[-2000:]}")
                time.sleep(5)
            demo_minutes = (time.monotonic() - started) / 60
            print(f"demo fed in {demo_minutes:.1f} min; settling {args.settle:.0f} s", flush=True)
            time.sleep(args.settle)
            cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
            samples, held, released, released_at = [], [], [], None
            before = log_path.read_text().count(RELEASED)  # releases during the demo do not count
            while time.monotonic() - t0 < args.idle:
                now = time.monotonic()
                samples.append(rss_mib(daemon.pid))
                if released_at is None and log_path.read_text().count(RELEASED) > before:
                    released_at = now
                if released_at is None:
                    held.append(samples[-1])
                elif now - released_at >= 5:  # the release and its malloc_trim are done
                    released.append(samples[-1])
                time.sleep(1)
            cpu_share = (cpu_seconds(daemon.pid) - cpu0) / (time.monotonic() - t0)
            status = timed(["status"], env, root, args.repeats)
            live = timed(["status", "--live"], env, root, args.repeats)  # the aliases from MLflow, side by side
            predict = timed(["predict", "Shares plunge after profit warning"], env, root, args.repeats)
        finally:
            daemon.terminate()
            daemon.wait(timeout=300)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    result = {"commit": commit, "demo_minutes": demo_minutes, "idle_rss_mib_median": statistics.median(samples),
              "idle_rss_mib_max": max(samples), "idle_cpu_share": cpu_share,
              "held_rss_mib": held, "released_rss_mib": released,
              "held_rss_mib_median": statistics.median(held) if held else None,
              "released_rss_mib_median": statistics.median(released) if released else None,
              "status_seconds": status, "status_median": statistics.median(status),
              "status_live_seconds": live, "status_live_median": statistics.median(live),
              "predict_seconds": predict, "predict_median": statistics.median(predict), "cpus": os.cpu_count()}
    (args.out / "light.json").write_text(json.dumps(result, indent=2) + "\n")
    text = "\n".join([
        "# The idle daemon and the quick commands", "",
        f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python -m bench.light --out {args.out}` (commit {commit}, "
        f"{os.cpu_count()} CPUs; the demo took {demo_minutes:.1f} min).", "",
        "| what | figure |", "|---|---|",
        f"| daemon RSS, idle after the demo, still holding its models (median of {len(held)} samples, 1/s) | "
        f"{_mib(result['held_rss_mib_median'])} |",
        f"| the same daemon once it released them (`model.keep_loaded_seconds`; median of {len(released)} samples) | "
        f"{_mib(result['released_rss_mib_median'])} |",
        f"| all {len(samples)} samples | median {result['idle_rss_mib_median']:.0f} MiB, max "
        f"{result['idle_rss_mib_max']:.0f} |",
        f"| daemon CPU, idle | {cpu_share:.2%} of one core |",
        f"| `cltool status` (median of {args.repeats}; the event log) | {result['status_median']:.2f} s |",
        f"| `cltool status --live` (median of {args.repeats}; MLflow) | {result['status_live_median']:.2f} s |",
        f"| `cltool predict TEXT` (median of {args.repeats}) | {result['predict_median']:.2f} s |", ""])
    (args.out / "light.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
