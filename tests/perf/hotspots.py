"""Where agentgw spends its CPU under 32-client load, sampled with py-spy.

Starts the sim and agentgw (as `tests.perf.overhead` does), drives 32 clients at agentgw,
non-streaming (wrk) then streaming (aiohttp client), and while each runs samples the agentgw
process with `py-spy record --format raw --function`. Then it prints, for the event-loop thread:

- how busy it was and which package the sampled (innermost) frame was in;
- agentgw's own functions by *attributed* share: each sample goes to the innermost agentgw
  frame on its stack, so a function is charged for its own code and for the library calls it
  makes directly (orjson, pydantic, aiohttp), but not for the agentgw functions it calls;
  samples whose innermost frame is uvicorn's or asyncio's (socket writes, HTTP parsing,
  scheduling: what the relay pays too) form a bucket of their own;
- agentgw's own functions by inclusive share (on the stack at all);
- the hottest leaf functions anywhere.

    pip install py-spy                      # needs ptrace rights (root, or CAP_SYS_PTRACE)
    python -m tests.perf.hotspots [--duration 8] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.perf.loadgen import Load, Result, measure
from tests.perf.stack import Target, revision, running

PROJECT_DIRS = ("core/", "adapters/", "store/", "filters/", "mcp_bridge/")
# Time whose innermost frame is here is the server's and the loop's, whoever asked for it.
SERVER_PACKAGES = frozenset({"uvicorn", "asyncio", "selectors"})
LOOP_ROOT = "Runner.run"
SERVER_BUCKET = "(uvicorn and the event loop: socket writes, HTTP parsing, scheduling)"
FRAMEWORK_BUCKET = "(Starlette and libraries with no agentgw frame above them)"
WARMUP_SECONDS = 1.0


@dataclass(frozen=True)
class Frame:
    """One `function (file:line)` entry of a py-spy stack."""

    function: str
    location: str

    @classmethod
    def parse(cls, text: str) -> Frame:
        function, _, rest = text.rpartition(" (")
        return cls(function or text, rest.rstrip(")"))

    @property
    def file(self) -> str:
        return self.location.rpartition(":")[0] or self.location

    @property
    def ours(self) -> bool:
        return self.file.startswith(PROJECT_DIRS)

    @property
    def package(self) -> str:
        if self.ours:
            return "agentgw"
        head, sep, _ = self.file.partition("/")
        return head if sep else self.file.removesuffix(".py")

    def __str__(self) -> str:
        return f"{self.location} {self.function}"


@dataclass
class Profile:
    """Raw py-spy samples split into the event-loop thread and every other thread."""

    loop: list[tuple[tuple[Frame, ...], int]] = field(default_factory=list)
    others: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, path: Path) -> Profile:
        profile = cls()
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = tuple(Frame.parse(f) for f in stack.split(";"))
            roots = [i for i, f in enumerate(frames) if f.function == LOOP_ROOT]
            if roots:
                # Only what the loop runs: the process's entry frames (cli.main) are not hot.
                profile.loop.append((frames[roots[0] :], int(count)))
            else:
                profile.others[str(frames[-1])] += int(count)
        return profile

    @property
    def loop_samples(self) -> int:
        return sum(n for _, n in self.loop)

    def by_package(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for frames, n in self.loop:
            out[frames[-1].package] += n
        return out

    def attributed(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for frames, n in self.loop:
            if frames[-1].package in SERVER_PACKAGES:
                out[SERVER_BUCKET] += n
                continue
            ours = [f for f in frames if f.ours]
            out[str(ours[-1]) if ours else FRAMEWORK_BUCKET] += n
        return out

    def inclusive(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for frames, n in self.loop:
            for name in {str(f) for f in frames if f.ours}:
                out[name] += n
        return out

    def leaves(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for frames, n in self.loop:
            out[str(frames[-1])] += n
        return out


def _top(counts: Counter[str], total: int, n: int) -> list[str]:
    return [f"  {100 * c / total:5.1f}%  {name}" for name, c in counts.most_common(n)]


def report(title: str, profile: Profile, seconds: float, rate: int, top: int, rps: float) -> str:
    total = profile.loop_samples or 1
    busy = profile.loop_samples / (seconds * rate)
    per_request = f"{1e6 * busy / rps:.0f} µs" if rps else "-"
    shares = [(k, 100 * v / total) for k, v in profile.by_package().most_common()]
    packages = ", ".join(f"{k} {pct:.0f}%" for k, pct in shares if pct >= 0.5)
    lines = [
        f"== {title}",
        f"event-loop thread busy {100 * busy:.0f}% of {seconds:g} s ({profile.loop_samples} "
        f"samples), ~{per_request} of loop time per request; "
        f"other threads {sum(profile.others.values())} samples",
        f"innermost frame by package: {packages}",
        "attributed to the innermost agentgw frame (own code + library calls it makes):",
        *_top(profile.attributed(), total, top),
        "agentgw functions, inclusive:",
        *_top(profile.inclusive(), total, top),
        "hottest leaf functions anywhere:",
        *_top(profile.leaves(), total, top),
        "other threads (leaf):",
        *_top(profile.others, max(1, sum(profile.others.values())), 3),
    ]
    return "\n".join(lines)


def sample(target: Target, load: Load, seconds: float, rate: int, out: Path) -> Result:
    """Run `load` in the background and py-spy the target for `seconds` inside its window."""
    results: list[Result] = []
    runner = threading.Thread(target=lambda: results.append(measure(load)), daemon=True)
    runner.start()
    time.sleep(load.warmup + 0.5)
    cmd = ["py-spy", "record", "--pid", str(target.pid), "--duration", str(int(seconds))]
    cmd += ["--rate", str(rate), "--function", "--format", "raw", "--output", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 30)
    runner.join(timeout=load.duration + 60)
    if not results:
        raise RuntimeError("the load generator did not finish")
    return results[0]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="py-spy agentgw under 32-client load")
    p.add_argument("--duration", type=int, default=8, help="seconds sampled per phase")
    p.add_argument("--rate", type=int, default=100, help="samples per second")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--keep", type=Path, help="keep the raw py-spy stacks in this directory")
    p.add_argument(
        "--targets",
        nargs="+",
        choices=["agentgw", "relay"],
        default=["agentgw"],
        help="what to profile (the relay, for comparison)",
    )
    args = p.parse_args(argv)
    if shutil.which("py-spy") is None:
        p.error("py-spy is not installed: pip install py-spy")
    print(f"# py-spy at {args.rate} Hz, {args.duration} s per phase; agentgw at {revision()}\n")
    with running(relay="relay" in args.targets) as dep, tempfile.TemporaryDirectory() as tmp:
        for name, stream in itertools.product(args.targets, (False, True)):
            gw = dep.targets[name]
            kind = "streaming" if stream else "non-streaming"
            load = Load(
                url=gw.url,
                body=gw.body(stream=stream),
                headers=gw.headers,
                concurrency=args.clients,
                duration=args.duration + 2,
                warmup=WARMUP_SECONDS,
                stream=stream,
            )
            raw = (args.keep or Path(tmp)) / f"{name}-{kind}.txt"
            raw.parent.mkdir(parents=True, exist_ok=True)
            result = sample(gw, load, args.duration, args.rate, raw)
            title = (
                f"{name}, {args.clients} clients, {kind}: {result.rps:.0f} req/s, "
                f"p50 {result.p50_ms:.1f} ms under the profiler"
            )
            profile = Profile.read(raw)
            print(report(title, profile, args.duration, args.rate, args.top, result.rps))
            print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
