"""``make demo``: the example DAGs in a real Airflow, against the Cerebelum Core emulator.

Starts the emulator with its demo set (both of Core's APIs), then Airflow (scheduler,
dag-processor, triggerer and api-server as separate processes, SQLite metadata database,
AIRFLOW_HOME in ``.demo/``). The example DAGs use ``cerebelum_default``, a connection with only a
host and a port, so it speaks Core's HTTP API (the default); one demo DAG waits over gRPC through
``cerebelum_grpc``. The demo triggers each DAG through the REST API (``plan_runs``: add a
``DemoRun`` there to show one more), answers the approval example's request as a person would in
the Required actions page (``answer_required_action``), then shows the event-driven example: an
``orders`` execution fails, the asset watcher fires and the DAG it schedules resumes the execution
(``run_event_driven``). It prints every task state change as it happens and a summary read from
XCom and from Core, then stops everything it started.

Exit status: 0 when every DAG run succeeded, 1 when one did not, 2 when the stack failed.
``--keep-running`` (``make demo-ui``) leaves Airflow and the emulator up afterwards and prints
the UI address and the Cerebelum pages' (the demo's executions, to resume, stop or approve), until
Ctrl-C.
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
#: DAGs only the demo runs, beside the examples.
DEMO_DAGS_FOLDER = REPO / "scripts" / "demo_dags"
UI_PORT = 8080
EVENT_DAG = "example_cerebelum_event_resume"
#: Cron-scheduled examples: paused while the scheduler creates runs by itself (event-driven part).
SCHEDULED_DAGS = ("example_cerebelum_bulk_resume",)
#: An ``orders`` execution that waits for approval, then fails at its next step (once): the demo
#: approves it once the event watcher is up, so that its failure is new to the watcher; the DAG
#: that failure schedules resumes it, and it completes.
EVENT_EXECUTION = "demo-orders-fails-after-approval"
EVENT_SCENARIO = {
    "workflows": {"orders": ["validate", "charge", "ship", "notify"]},
    "executions": [
        {
            "workflow": "orders",
            "execution_id": EVENT_EXECUTION,
            "inputs": {"order_id": 1006},
            "approval_at": "charge",
            "fail_at": "ship",
            "fail_times": 1,
            "error_kind": "carrier_unavailable",
            "error_message": "carrier API answered 503",
            "settle": True,
        }
    ],
}


#: The approval example's execution (the emulator's demo set has it wait at "ship"), and what the
#: demo answers in the Required actions page, as a person would.
APPROVAL_DAG = "example_cerebelum_approval"
APPROVAL_EXECUTION = "demo-orders-approval"
APPROVAL_ANSWER = {"chosen_options": ["Approve"], "params_input": {"note": "approved by make demo"}}


@dataclass(frozen=True)
class DemoRun:
    """One DAG run the demo triggers, and why."""

    dag_id: str
    conf: dict[str, Any]
    purpose: str


def plan_runs(client: SyncExecutionClient) -> list[DemoRun]:
    """The DAG runs to trigger; starts the executions the sensor DAGs wait on."""
    fresh = client.execute_workflow("orders", {"order_id": 2001})
    over_grpc = client.execute_workflow("billing", {"invoice": "INV-GRPC"})
    return [
        DemoRun(
            "example_cerebelum_wait",
            {"execution_id": fresh.execution_id},
            f"wait (deferred, in the triggerer) for execution {fresh.execution_id}, just started",
        ),
        DemoRun(
            "demo_cerebelum_wait_grpc",
            {"execution_id": over_grpc.execution_id},
            f"the same wait over Core's gRPC API (connection cerebelum_grpc) for {over_grpc.execution_id}",
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
        DemoRun(
            APPROVAL_DAG,
            {"execution_id": APPROVAL_EXECUTION},
            f"approve {APPROVAL_EXECUTION} in Airflow's Required actions (answered by the demo), then wait",
        ),
    ]


def answer_required_action(airflow: AirflowStack, change: TaskStateChange) -> None:
    """When the approval example's task waits for a person, answer it through the Airflow API the
    Required actions page uses."""
    if change.dag_id != APPROVAL_DAG or change.state != "awaiting_input":
        return
    shown = airflow.answer_hitl(change.dag_id, change.run_id, change.task_id, APPROVAL_ANSWER)
    print(f"  Required action {shown['subject']!r}: answered {APPROVAL_ANSWER}", flush=True)


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
    if isinstance(value, dict) and "approval_status" in value:
        text = (
            f"{value['execution_id']} {value['approval_status']} at step {value.get('step')!r} by "
            f"{value.get('responded_by')}, response {value.get('response')}"
        )
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


def run_event_driven(
    airflow: AirflowStack, client: SyncExecutionClient, timeout: float
) -> tuple[DemoRun, str, Any]:
    """Show the event-driven example: a failure of an ``orders`` execution schedules its DAG.

    The scheduler creates asset-triggered runs only with ``use_job_schedule`` on, so the cron
    examples are paused and the scheduler restarted with it. The watcher's first poll takes the
    executions already FAILED as its baseline (it logs "First start"); only then is
    ``EVENT_EXECUTION`` approved, and it fails at its next step: that failure is the event.
    """
    for dag_id in SCHEDULED_DAGS:
        airflow.pause(dag_id)
    airflow.restart_service("scheduler", AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="True")
    airflow.unpause(EVENT_DAG)
    print(f"\nEvent-driven: unpaused {EVENT_DAG}; waiting for its watcher's first poll ...", flush=True)
    _wait_until(lambda: "First start" in airflow.service_log("triggerer"), timeout, "the watcher's baseline")
    client.approve_execution(EVENT_EXECUTION, {"approved_by": "make demo"})
    print(f"Approved {EVENT_EXECUTION}: it fails at its next step, and the watcher sees it", flush=True)
    runs = _wait_until(lambda: airflow.asset_triggered_runs(EVENT_DAG), timeout, "an asset event's run")
    run_id = runs[0]
    demo_run = DemoRun(EVENT_DAG, {}, f"scheduled by the failure of {EVENT_EXECUTION}: resume it")
    print(f"Asset event: {EVENT_DAG} run {run_id} started", flush=True)
    result = airflow.wait_for_run(EVENT_DAG, run_id, timeout=timeout, on_change=_print_change)
    if result.succeeded:
        # The run's resume checked that the execution left FAILED; it completes a step or two later.
        final = _wait_until(
            lambda: (status := client.get_execution_status(EVENT_EXECUTION)).status.is_terminal and status,
            timeout,
            f"{EVENT_EXECUTION} to end after its resume",
        )
        print(f"After the event-driven resume: {final.describe_progress()}", flush=True)
    return demo_run, run_id, result


def _wait_until(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1.0)
    raise StackError(f"the demo waited {timeout:.0f}s for {what}")


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
    emulator = EmulatorProcess(
        db_path=work / "core.sqlite", demo=True, step_seconds=args.step_seconds, scenario=EVENT_SCENARIO
    )
    airflow: AirflowStack | None = None
    try:
        emulator.start()
        print(f"Cerebelum Core emulator (demo set): HTTP at {emulator.http_url}, gRPC at {emulator.address}")
        port = free_port() if not args.keep_running or _port_taken(UI_PORT) else UI_PORT
        airflow = AirflowStack(
            home=work / "airflow",
            dags_folder=DAGS_FOLDER,
            extra_dag_folders={"demo": DEMO_DAGS_FOLDER},
            connections=_connections(emulator),
            api_port=port,
        )
        print(f"Starting Airflow (AIRFLOW_HOME={airflow.home.relative_to(REPO)}) ...", flush=True)
        airflow.start()
        print(
            f"Airflow healthy after {airflow.timings['startup']:.1f}s: scheduler, dag-processor, "
            f"triggerer, api-server at {airflow.base_url}"
        )
        with SyncExecutionClient(emulator.http_url) as client:
            planned = plan_runs(client)
            airflow.wait_for_dags([demo_run.dag_id for demo_run in planned] + [EVENT_DAG])
            runs = []
            for demo_run in planned:
                run_id = airflow.trigger_dag(demo_run.dag_id, conf=demo_run.conf)
                print(f"Triggered {demo_run.dag_id} {demo_run.conf}: {demo_run.purpose}")
                runs.append((demo_run, run_id))
            print("\nTask state changes, live:")
            def on_change(change: TaskStateChange) -> None:
                _print_change(change)
                answer_required_action(airflow, change)

            results = airflow.wait_for_runs(
                [(demo_run.dag_id, run_id) for demo_run, run_id in runs],
                timeout=args.timeout,
                on_change=on_change,
            )
            event_run, event_run_id, event_result = run_event_driven(airflow, client, args.timeout)
            runs.append((event_run, event_run_id))
            results[(EVENT_DAG, event_run_id)] = event_result
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


def _connections(emulator: EmulatorProcess) -> dict[str, str]:
    """``cerebelum_default``: host and port only, so HTTP (the default); ``cerebelum_grpc``: gRPC."""
    return {
        "cerebelum_default": f"cerebelum://127.0.0.1:{emulator.http_port}",
        "cerebelum_grpc": f"cerebelum://{emulator.address}?api=grpc",
    }


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_ctrl_c(airflow: AirflowStack, emulator: EmulatorProcess) -> None:
    print(f"\nAirflow UI: {airflow.base_url}/")
    print(f"Cerebelum pages (the Cerebelum entry in its navigation): {airflow.base_url}/cerebelum/")
    print("Login: none needed (SimpleAuthManager with all_admins: every visitor is admin)")
    print(f"Connection cerebelum_default -> Core emulator over HTTP at {emulator.http_url}")
    print(f"Connection cerebelum_grpc -> the same emulator over gRPC at {emulator.address}")
    print("Everything keeps running; press Ctrl-C to stop.", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
