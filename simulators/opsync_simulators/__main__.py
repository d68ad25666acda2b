"""Run one simulator alone: `python -m opsync_simulators jira --records 20000 [--port P]
[--latency-ms 150] [--projects PAY,CHK,GRO]`.

Prints its base URL on the first line of stdout once it serves, then serves until killed;
benchmarks use it to keep the simulator's work out of the measured process.
"""

from __future__ import annotations

import argparse
import threading

from opsync_simulators.github import GitHubSim
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m opsync_simulators")
    parser.add_argument("tool", choices=["jira", "github"])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="bench-token")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every API answer")
    parser.add_argument("--projects", default="PAY,CHK,GRO", help="Jira: the project keys, comma-separated")
    args = parser.parse_args()
    if args.tool == "jira":
        projects = tuple(key.strip() for key in args.projects.split(",") if key.strip())
        sim: JiraSim | GitHubSim = JiraSim(
            issues=args.records, seed=args.seed, projects=projects, latency_ms=args.latency_ms
        )
    else:
        sim = GitHubSim(
            items=args.records, seed=args.seed, token=args.token, rate_limit=10**9, latency_ms=args.latency_ms
        )
    with serving(sim.app, port=args.port) as url:
        print(url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
