"""The Cerebelum pages against an emulator holding 10,000 executions: calls to Core per page view
and the time to build and render the page (median of 5), over both of Core's APIs.

The pages' own code runs here (``cerebelum_provider.plugins.ui``: the same data functions and
templates the api-server's routes use), without the api-server around it: Airflow's login and
routing add the same cost to every page and none that grows with Core. The emulator runs in its own
process (bench/_support.py) and counts the calls it receives.

    .venv/bin/python bench/bench_ui_pages.py [--executions 10000] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import RemoteCore, write_section  # noqa: E402

#: How the executions are spread over states (fractions of the total).
MIX = {"running": 0.2, "sleeping": 0.1, "failed": 0.3, "completed": 0.4}


def seed(core: RemoteCore, total: int) -> None:
    for kind, share in MIX.items():
        count = int(total * share)
        if kind == "completed":
            ids = core.seed("orders", count, "running")
            core.complete_all(ids)
        else:
            core.seed("orders", count, kind)


def measure(core: RemoteCore, api: str, repeats: int, size: int) -> dict[str, tuple[float, float]]:
    """``{page: (calls to Core per view, median ms to build and render it)}`` over ``api``."""
    from starlette.requests import Request

    from cerebelum_provider.models import ExecutionState
    from cerebelum_provider.plugins import ui

    address = core.rest_url().split("://", 1)[1] if api == "http" else core.address
    os.environ["AIRFLOW_CONN_CEREBELUM_BENCH"] = f"cerebelum://{address}?api={api}"
    app = ui.create_app()
    request = Request({"type": "http", "app": app, "root_path": "/cerebelum", "path": "/", "headers": []})
    connection = ui.cerebelum_connection("cerebelum_bench")
    context = {"connection": connection, "can_act": True, "user_name": "bench"}

    def dashboard() -> None:
        ui._render(request, "dashboard.html", **context, **ui.dashboard_data(connection))

    def list_page(page: int, state: ExecutionState | None) -> None:
        rows, total, has_more = ui.list_page_data(connection, "", state, page)
        ui._render(
            request, "executions.html", **context, rows=rows, total=total, has_more=has_more, page=page,
            pages=-(-total // ui.PAGE_SIZE), workflow="", state=state.name if state else "", states=[],
        )

    pages = {
        "dashboard": dashboard,
        "list, page 1": lambda: list_page(1, None),
        "list, the middle page": lambda: list_page(size // 2 // ui.PAGE_SIZE + 1, None),
        "list, FAILED, page 1": lambda: list_page(1, ExecutionState.FAILED),
    }
    results = {}
    for name, view in pages.items():
        view()  # warm-up: imports, templates compiled
        before = sum(core.call_counts().values())
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            view()
            times.append((time.perf_counter() - started) * 1000)
        calls = (sum(core.call_counts().values()) - before) / repeats
        results[name] = (calls, statistics.median(times))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1,000 executions, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.executions, args.repeats = 1_000, 2
    small = args.executions // 10
    results = {}
    for size in (small, args.executions):
        with RemoteCore.start() as core:
            seed(core, size)
            results[size] = {api: measure(core, api, args.repeats, size) for api in ("http", "grpc")}
    big = results[args.executions]
    lines = [
        f"### Cerebelum pages: {args.executions} executions in the emulator, calls to Core per page view "
        f"and time to build and render it (median of {args.repeats})",
        "",
        f"Ratio: the time with {args.executions} executions over the time with {small} (1.0: no slower). "
        f"Load average when measured: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.",
        "",
        "| Page | Calls (HTTP) | ms (HTTP) | ratio | Calls (gRPC) | ms (gRPC) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for page in big["http"]:
        cells = []
        for api in ("http", "grpc"):
            calls, ms = big[api][page]
            cells += [f"{calls:g}", f"{ms:.0f}", f"{ms / results[small][api][page][1]:.1f}"]
        lines.append(f"| {page} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The dashboard makes one list call per state (6, each read for its total only) and one status "
        "read per active execution shown (at most 10): 16 calls however many executions Core holds. "
        "A list page is one call. What grows with the number of executions is the emulator's own work "
        "per list call (it filters and pages in memory), not the pages' calls or rendering.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section("ui_pages", text)


if __name__ == "__main__":
    main()
