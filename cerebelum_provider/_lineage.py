"""OpenLineage facets of the execute, resume and bulk operators.

Core is the job namespace (``cerebelum://host:port``, never the token), the workflow is the job,
and the executions that run because of the task are the run: a ``cerebelum`` run facet carries
``job`` (``namespace``, ``name``), ``executionIds`` (started, resumed, or the reruns of those Core
did not resume) and, when there were reruns, ``rerunOf`` (``{rerun id: failed id}``). A task that
ran one execution also sends it as the standard ``externalQuery`` run facet (its id, with Core's
namespace as the source).

Only the OpenLineage provider's listener calls ``get_openlineage_facets_on_complete``. Everything
OpenLineage is imported inside these functions: without the provider, importing an operator
loads none of it, and the operators' methods answer None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cerebelum_provider.links.cerebelum import EXECUTION_ID_XCOM_KEY

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

    from cerebelum_provider.hooks.cerebelum import CerebelumHook

#: The run facet that names Core's job (namespace and workflow) and the executions.
RUN_FACET = "cerebelum"
#: XCom key under which the resume operator publishes the rerun it started or found.
RERUN_XCOM_KEY = "rerun_execution_id"


def core_namespace(host: str, port: int) -> str:
    """Core as an OpenLineage namespace: ``cerebelum://host:port`` (IPv6 hosts in brackets)."""
    from cerebelum_provider.client.config import host_port

    return f"cerebelum://{host_port(host, port)}"


def single_execution_lineage(
    hook: CerebelumHook, task_instance: Any, *, workflow_name: str | None
) -> OperatorLineage | None:
    """Facets of a task that acted on one execution (the id it published to XCom), or on its rerun.

    ``workflow_name`` None (the resume operator knows only the id): the workflow is read from
    the XCom result when the task waited for the execution, else from Core.
    """
    if not _openlineage_installed():
        return None
    execution_id = _pull(task_instance, EXECUTION_ID_XCOM_KEY)
    if not isinstance(execution_id, str):
        return _lineage(hook, workflow_name=workflow_name, execution_ids=())
    if workflow_name is None:
        workflow_name = _workflow_of(hook, task_instance, execution_id)
    rerun_id = _pull(task_instance, RERUN_XCOM_KEY)
    if isinstance(rerun_id, str):
        return _lineage(
            hook, workflow_name=workflow_name, execution_ids=(rerun_id,), rerun_of={rerun_id: execution_id}
        )
    return _lineage(hook, workflow_name=workflow_name, execution_ids=(execution_id,))


def bulk_lineage(
    hook: CerebelumHook, task_instance: Any, *, workflow_name: str | None
) -> OperatorLineage | None:
    """Facets of a bulk resume: the executions Core answered ``resumed`` or ``already_running`` for,
    and the reruns of those it did not resume; ``workflow_name`` None (every workflow) leaves the
    job's name None."""
    if not _openlineage_installed():
        return None
    summary = _pull(task_instance, "return_value")
    if not isinstance(summary, dict):
        return _lineage(hook, workflow_name=workflow_name, execution_ids=())
    rerun_of = {
        rerun_id: failed_id
        for key in ("rerun", "already_rerun")
        for failed_id, rerun_id in (summary.get(key) or {}).items()
    }
    running = [*summary.get("resumed", ()), *summary.get("already_running", ()), *rerun_of]
    return _lineage(hook, workflow_name=workflow_name, execution_ids=running, rerun_of=rerun_of)


def _openlineage_installed() -> bool:
    try:
        import airflow.providers.openlineage.extractors  # noqa: F401
    except ImportError:
        return False
    return True


def _lineage(
    hook: CerebelumHook,
    *,
    workflow_name: str | None,
    execution_ids: Sequence[str],
    rerun_of: dict[str, str] | None = None,
) -> OperatorLineage:
    from airflow.providers.common.compat.openlineage.facet import ExternalQueryRunFacet, RunFacet
    from airflow.providers.openlineage.extractors import OperatorLineage

    settings = hook.get_settings()
    namespace = core_namespace(settings.host, settings.port)
    properties: dict[str, Any] = {
        "job": {"namespace": namespace, "name": workflow_name},
        "executionIds": list(execution_ids),
    }
    if rerun_of:
        properties["rerunOf"] = dict(rerun_of)
    run_facets: dict[str, Any] = {RUN_FACET: RunFacet().with_additional_properties(**properties)}
    if len(execution_ids) == 1:
        run_facets["externalQuery"] = ExternalQueryRunFacet(
            externalQueryId=execution_ids[0], source=namespace
        )
    return OperatorLineage(run_facets=run_facets)


def _pull(task_instance: Any, key: str) -> Any:
    # One task id and no map index: Airflow answers this task instance's own value.
    return task_instance.xcom_pull(task_ids=task_instance.task_id, key=key)


def _workflow_of(hook: CerebelumHook, task_instance: Any, execution_id: str) -> str | None:
    """The execution's workflow: from the task's XCom result when it waited for it, else from Core
    (its status; over HTTP, whose status does not name the workflow, its log's start event)."""
    from cerebelum_provider.client import CoreAPI
    from cerebelum_provider.client._rerun import StartRecord
    from cerebelum_provider.exceptions import CerebelumError

    result = _pull(task_instance, "return_value")
    execution = result.get("execution") if isinstance(result, dict) else None
    if isinstance(execution, dict) and execution.get("workflow_name"):
        return str(execution["workflow_name"])
    with hook.get_client() as client:
        workflow = client.get_execution_status(execution_id).workflow_name
        if workflow or client.api is not CoreAPI.HTTP:
            return workflow or None
        try:
            events = client.get_execution_events(execution_id)
            return StartRecord.of(events, execution_id, client.address).workflow_name
        except CerebelumError:
            return None
