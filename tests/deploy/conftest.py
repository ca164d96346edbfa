"""Deployment tests start real servers (Airflow's components, the MLflow server, ...) bound to 127.0.0.1 on free
ports and stop them also on failure. Fixtures used by one test module live in that module; this file stays
minimal so the deployment tests do not step on each other."""
