"""``CerebelumExecutionLink``: the "Cerebelum execution" button on a task: the execution in Core's
UI when the connection has a ``ui_url``, else its page in Airflow's UI (the Cerebelum plugin's).

Airflow 3 computes extra links in the worker whenever a task stops running, deferral included,
and stores the result in XCom for the UI; so the link can read the connection there. The task
records the execution id on itself (and in XCom, under :data:`EXECUTION_ID_XCOM_KEY`, for
downstream tasks) as soon as it knows it: the link reads it from the task, so a task that never
got that far computes an empty link without asking Airflow for an XCom that is not there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: XCom key under which the sensor and the operators publish the execution they work on.
EXECUTION_ID_XCOM_KEY = "execution_id"
#: Attribute of the running task that holds the execution id for the link.
LINKED_EXECUTION_ATTRIBUTE = "cerebelum_linked_execution_id"


class CerebelumExecutionLink(BaseOperatorLink):
    """Link to the execution: the connection's ``ui_url`` with ``{execution_id}`` filled in, or, when
    it sets none, the execution's page in Airflow's UI (under ``[api] base_url``).

    Returns "" when the task recorded no execution id. The operator must have a
    ``cerebelum_conn_id`` attribute.
    """

    name = "Cerebelum execution"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The URL, or "" when there is nothing to link to."""
        execution_id = getattr(operator, LINKED_EXECUTION_ATTRIBUTE, None)
        conn_id = getattr(operator, "cerebelum_conn_id", None)
        if not execution_id or not conn_id:
            return ""
        from cerebelum_provider.hooks.cerebelum import CerebelumHook
        from cerebelum_provider.plugins.cerebelum import execution_page_url

        core_ui = CerebelumHook(conn_id).execution_url(str(execution_id))
        return core_ui or execution_page_url(str(conn_id), str(execution_id))


def publish_execution_id(task: Any, context: Any, execution_id: str) -> None:
    """Record ``execution_id`` on ``task`` for the link, and push it to XCom (key ``execution_id``)
    for downstream tasks."""
    setattr(task, LINKED_EXECUTION_ATTRIBUTE, execution_id)
    context["ti"].xcom_push(key=EXECUTION_ID_XCOM_KEY, value=execution_id)


def remember_execution_id(task: Any, event: object) -> None:
    """Record, for the link, the execution a trigger event is about: a task resumed after a deferral
    is a new object that published nothing."""
    execution_id = event.get("execution_id") if isinstance(event, dict) else None
    if isinstance(execution_id, str) and execution_id:
        setattr(task, LINKED_EXECUTION_ATTRIBUTE, execution_id)
