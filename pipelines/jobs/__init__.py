"""The platform's jobs as steps, one module per flow: ``common`` (run date, source-data gate, gated wide table,
campaign specs, permanent errors), ``campaigns`` (campaign scoring), ``training`` (churn and value training),
``campaign_models`` (campaign history, response and uplift models) and ``readouts`` (campaign readouts).

DAG tasks and CLI commands call these steps; import the flow's module (``from pipelines.jobs import campaigns``).
"""
