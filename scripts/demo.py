"""``make demo``: the example DAGs in a real Airflow, against the Cerebelum Core emulator.

Starts the emulator with its demo set, then Airflow (scheduler, dag-processor, triggerer and
api-server as separate processes, SQLite metadata database, AIRFLOW_HOME in ``.demo/``),
triggers each example DAG through the REST API, prints every task state change as it happens
and a summary read from XCom and from Core, then stops everything it started.

Exit status: 0 when every DAG run succeeded, 1 when one did not, 2 when the stack failed.
``--keep-running`` (``make demo-ui``) leaves Airflow and the emulator up afterwards and prints
the UI address, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from airflow_stack import (
    REPO,
    AirflowStack,
    EmulatorProcess,
    StackError,
    TaskStateChange,
    free_port,
    fresh_dir,
)

from cerebelum_provider import ExecutionState, SyncExecutionClient

DEMO_DIR = REPO / ".demo"
DAGS_FOLDER = REPO / "example_dags"
UI_PORT = 8080


@dataclass(frozen=True)
class DemoRun:
    """One DAG run the demo triggers, and why."""

    dag_id: str
    conf: dict[str, Any]
    purpose: str


def plan_runs(client: SyncExecutionClient) -> list[DemoRun]:
    """The DAG runs to trigger; starts the execution the sensor DAG waits on."""
    fresh = client.execute_workflow("orders", {"order_id": 2001}, correlation_id="make-demo")
    return [
        DemoRun(
            "example_cerebelum_wait",
            {"execution_id": fresh.execution_id},
            f"wait (deferred, in the triggerer) for execution {fresh.execution_id}, just started",
        ),
        DemoRun(
            "example_cerebelum_execute",
            {"workflow_name": "billing", "inputs": {"invoice": "INV-DEMO"}},
            "start a 'billing' execution and wait for it",
        ),
        DemoRun(
            "example_cerebelum_bulk_resume",
            {"workflow_name": "orders"},
            "resume every FAILED 'orders' execution",
        ),
        DemoRun(
            "example_cerebelum_resume",
            {"execution_id": "demo-billing-failed"},
            "resume execution demo-billing-failed and wait for it",
        ),
    ]


def _print_change(change: TaskStateChange) -> None:
    print(f"  {change.describe()}", flush=True)


def _execution_ids_in(value: Any) -> list[str]:
    """Execution ids named by a task's XCom: an execution dict, a resume result or a bulk summary."""
    if not isinstance(value, dict):
        return []
    if "execution_id" in value:
        return [value["execution_id"]]
    ids: list[str] = []
    for key in ("resumed", "already_running", "failed_to_resume"):
        ids.extend(item for item in value.get(key) or [] if isinstance(item, str))
    ids.extend((value.get("errors") or {}).keys())
    return ids


def _describe_execution(execution: dict[str, Any]) -> str:
    state = ExecutionState.coerce(execution["status"]).name
    steps = f"{execution.get('current_step_index', '?')}/{execution.get('total_steps', '?')} steps"
    return f"execution {execution['execution_id']} ({execution.get('workflow_name')}) ended {state}, {steps}"


def _describe_xcom(value: Any) -> str:
    if isinstance(value, dict) and "resume_status" in value:
        text = f"resume of {value['execution_id']} answered {value['resume_status']!r}"
        if isinstance(value.get("execution"), dict):
            text += f"; then {_describe_execution(value['execution'])}"
        return text
    if isinstance(value, dict) and "status" in value and "execution_id" in value:
        return _describe_execution(value)
    if isinstance(value, dict) and "matched" in value:
        parts = [f"matched {value['matched']}"]
        for key in ("resumed", "already_running", "failed_to_resume"):
            parts.append(f"{key} {sorted(value.get(key) or [])}")
        if value.get("errors"):
            parts.append(f"errors {value['errors']}")
        if value.get("dry_run"):
            parts.append("dry run")
        return "bulk resume: " + ", ".join(parts)
    return f"returned {value!r}"


def summarize(airflow: AirflowStack, client: SyncExecutionClient, runs, results) -> bool:
    """Print what each run did (XCom) and what Core says now; return True when all succeeded."""
    print("\n=== Summary ===")
    all_ok = True
    mentioned: list[str] = []
    waited: dict[str, str] = {}
    resumed: list[str] = []
    for demo_run, run_id in runs:
        result = results[(demo_run.dag_id, run_id)]
        all_ok &= result.succeeded
        print(f"\n{demo_run.dag_id}: {result.state.upper()}  ({demo_run.purpose})")
        for task_id, states in result.task_states.items():
            path = " -> ".join(states)
            value = airflow.xcom(demo_run.dag_id, run_id, task_id)
            print(f"  task {task_id}: {path}")
            if value is None:
                continue
            print(f"    {_describe_xcom(value)}")
            mentioned.extend(i for i in _execution_ids_in(value) if i not in mentioned)
            if isinstance(value, dict):
                execution = value.get("execution") if "resume_status" in value else value
                if isinstance(execution, dict) and "status" in execution and "execution_id" in execution:
                    waited[execution["execution_id"]] = ExecutionState.coerce(execution["status"]).name
                if value.get("resume_status") == "resumed":
                    resumed.append(value["execution_id"])
                resumed.extend(value.get("resumed") or [])
    print("\nWaited on: " + (", ".join(f"{i} -> {s}" for i, s in waited.items()) or "none"))
    print("Resumed: " + (", ".join(resumed) or "none"))
    print("\nCore now (read with SyncExecutionClient):")
    for execution_id in mentioned:
        print(f"  {client.get_execution_status(execution_id).describe_progress()}")
    failed_left = [e.execution_id for e in client.iter_executions(status=ExecutionState.FAILED)]
    print(f"  executions still FAILED in Core: {', '.join(failed_left) or 'none'}")
    return all_ok


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep-running", action="store_true", help="leave Airflow and the emulator up")
    parser.add_argument("--step-seconds", type=float, default=5.0, help="emulator: seconds per workflow step")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the DAG runs")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # so that `finally` stops everything

    started = time.monotonic()
    work = fresh_dir(DEMO_DIR)
    emulator = EmulatorProcess(db_path=work / "core.sqlite", demo=True, step_seconds=args.step_seconds)
    airflow: AirflowStack | None = None
    try:
        emulator.start()
        print(f"Cerebelum Core emulator (demo set) listening on {emulator.address}")
        port = free_port() if not args.keep_running or _port_taken(UI_PORT) else UI_PORT
        airflow = AirflowStack(
            home=work / "airflow",
            dags_folder=DAGS_FOLDER,
            connections={"cerebelum_default": f"cerebelum://{emulator.address}?api=grpc"},
            api_port=port,
        )
        print(f"Starting Airflow (AIRFLOW_HOME={airflow.home.relative_to(REPO)}) ...", flush=True)
        airflow.start()
        print(
            f"Airflow healthy after {airflow.timings['startup']:.1f}s: scheduler, dag-processor, "
            f"triggerer, api-server at {airflow.base_url}"
        )
        dag_ids = ["example_cerebelum_wait", "example_cerebelum_execute",
                   "example_cerebelum_bulk_resume", "example_cerebelum_resume"]
        airflow.wait_for_dags(dag_ids)
        with SyncExecutionClient(emulator.address) as client:
            runs = []
            for demo_run in plan_runs(client):
                run_id = airflow.trigger_dag(demo_run.dag_id, conf=demo_run.conf)
                print(f"Triggered {demo_run.dag_id} {demo_run.conf}: {demo_run.purpose}")
                runs.append((demo_run, run_id))
            print("\nTask state changes, live:")
            results = airflow.wait_for_runs(
                [(demo_run.dag_id, run_id) for demo_run, run_id in runs],
                timeout=args.timeout,
                on_change=_print_change,
            )
            all_ok = summarize(airflow, client, runs, results)
        print(f"\nDemo finished in {time.monotonic() - started:.0f}s: "
              f"{'every DAG run succeeded' if all_ok else 'a DAG run FAILED'}")
        if args.keep_running:
            _wait_for_ctrl_c(airflow, emulator)
        return 0 if all_ok else 1
    except StackError as error:
        print(f"\nThe demo stack failed: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted.")
        return 130
    finally:
        print("Stopping Airflow and the emulator ...", flush=True)
        if airflow is not None:
            airflow.stop()
        emulator.stop()
        print(f"Stopped. Logs are in {DEMO_DIR.relative_to(REPO)}/.")


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_ctrl_c(airflow: AirflowStack, emulator: EmulatorProcess) -> None:
    print(f"\nAirflow UI: {airflow.base_url}/")
    print("Login: none needed (SimpleAuthManager with all_admins: every visitor is admin)")
    print(f"Connection cerebelum_default -> Core emulator at {emulator.address}")
    print("Everything keeps running; press Ctrl-C to stop.", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
