"""The Airflow plugin: Cerebelum's pages in Airflow's UI (``cerebelum.CerebelumPlugin``)."""
