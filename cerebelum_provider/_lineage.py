"""OpenLineage facets of the execute, resume and bulk operators.

Core is the job namespace (``cerebelum://host:port``, never the token), the workflow is the job,
and the executions the task started or resumed are the run: a ``cerebelum`` run facet carries
``job`` (``namespace``, ``name``) and ``executionIds``; one execution is also the standard
``externalQuery`` run facet (its id, with Core's namespace as the source).

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


def core_namespace(host: str, port: int) -> str:
    """Core as an OpenLineage namespace: ``cerebelum://host:port`` (IPv6 hosts in brackets)."""
    host = f"[{host}]" if ":" in host else host
    return f"cerebelum://{host}:{port}"


def single_execution_lineage(
    hook: CerebelumHook, task_instance: Any, *, workflow_name: str | None
) -> OperatorLineage | None:
    """Facets of a task that acted on one execution (the id it published to XCom).

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
    return _lineage(hook, workflow_name=workflow_name, execution_ids=(execution_id,))


def bulk_lineage(
    hook: CerebelumHook, task_instance: Any, *, workflow_name: str | None
) -> OperatorLineage | None:
    """Facets of a bulk resume: the executions it resumed (Core answered ``resumed`` or
    ``already_running``); ``workflow_name`` None (every workflow) leaves the job's name None."""
    if not _openlineage_installed():
        return None
    summary = _pull(task_instance, "return_value")
    resumed: list[str] = []
    if isinstance(summary, dict):
        resumed = [*summary.get("resumed", ()), *summary.get("already_running", ())]
    return _lineage(hook, workflow_name=workflow_name, execution_ids=resumed)


def _openlineage_installed() -> bool:
    try:
        import airflow.providers.openlineage.extractors  # noqa: F401
    except ImportError:
        return False
    return True


def _lineage(
    hook: CerebelumHook, *, workflow_name: str | None, execution_ids: Sequence[str]
) -> OperatorLineage:
    from airflow.providers.common.compat.openlineage.facet import ExternalQueryRunFacet, RunFacet
    from airflow.providers.openlineage.extractors import OperatorLineage

    settings = hook.get_settings()
    namespace = core_namespace(settings.host, settings.port)
    run_facets: dict[str, Any] = {
        RUN_FACET: RunFacet().with_additional_properties(
            job={"namespace": namespace, "name": workflow_name}, executionIds=list(execution_ids)
        )
    }
    if len(execution_ids) == 1:
        run_facets["externalQuery"] = ExternalQueryRunFacet(
            externalQueryId=execution_ids[0], source=namespace
        )
    return OperatorLineage(run_facets=run_facets)


def _pull(task_instance: Any, key: str) -> Any:
    # One task id and no map index: Airflow answers this task instance's own value.
    return task_instance.xcom_pull(task_ids=task_instance.task_id, key=key)


def _workflow_of(hook: CerebelumHook, task_instance: Any, execution_id: str) -> str:
    result = _pull(task_instance, "return_value")
    execution = result.get("execution") if isinstance(result, dict) else None
    if isinstance(execution, dict) and isinstance(execution.get("workflow_name"), str):
        return execution["workflow_name"]
    with hook.get_client() as client:
        return client.get_execution_status(execution_id).workflow_name
