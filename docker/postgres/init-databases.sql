-- One PostgreSQL server, one role and one database per component: Airflow's metadata, MLflow's tracking and
-- registry store, and the platform's campaign tables. Each role owns its database (and so, from PostgreSQL 15 on,
-- may create tables in its public schema); no role can connect to another's database.
--
-- Run once by the postgres image on an empty data volume (mounted into /docker-entrypoint-initdb.d/), as the
-- superuser, with psql -v ON_ERROR_STOP=1. The passwords come from the container's environment (\getenv needs
-- psql 15 or newer); changing them in .env later does not change the roles: see docker/README.md.

\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv mlflow_password MLFLOW_DB_PASSWORD
\getenv campaigns_password CAMPAIGNS_DB_PASSWORD

\if :{?airflow_password}
\else
  \warn 'AIRFLOW_DB_PASSWORD is not set in the postgres container'
  SELECT 1/0 AS airflow_db_password_missing;
\endif
\if :{?mlflow_password}
\else
  \warn 'MLFLOW_DB_PASSWORD is not set in the postgres container'
  SELECT 1/0 AS mlflow_db_password_missing;
\endif
\if :{?campaigns_password}
\else
  \warn 'CAMPAIGNS_DB_PASSWORD is not set in the postgres container'
  SELECT 1/0 AS campaigns_db_password_missing;
\endif

CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE ROLE campaigns LOGIN PASSWORD :'campaigns_password';

CREATE DATABASE airflow OWNER airflow ENCODING 'UTF8';
CREATE DATABASE mlflow OWNER mlflow ENCODING 'UTF8';
CREATE DATABASE campaigns OWNER campaigns ENCODING 'UTF8';

-- Every role may connect to every database by default (CONNECT is granted to PUBLIC): take it away, so that a
-- leaked campaigns password does not open Airflow's connections and variables or the model registry. The owners
-- keep their own access; the superuser's maintenance database is closed too.
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
REVOKE ALL ON DATABASE campaigns FROM PUBLIC;
REVOKE ALL ON DATABASE postgres FROM PUBLIC;
