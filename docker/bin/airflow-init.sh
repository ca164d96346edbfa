#!/usr/bin/env bash
# One-shot init of the Airflow side, run by the airflow-init service through the image's entrypoint (which first
# waits for the metadata database): checks that the shared volumes (data, logs, campaign specs) are writable,
# creates the lake and run folders, and migrates Airflow's metadata database. Every other Airflow service starts
# only after it exits 0.
set -euo pipefail

data_dir="${PM_DATA_DIR:?PM_DATA_DIR is not set}"
logs_dir="${AIRFLOW_HOME:?AIRFLOW_HOME is not set}/logs"
campaigns_dir="${PM_CAMPAIGNS_DIR:?PM_CAMPAIGNS_DIR is not set}"  # the staff app's campaign builder writes here

for dir in "${data_dir}" "${logs_dir}" "${campaigns_dir}"; do
    if [[ ! -w "${dir}" ]]; then
        echo "airflow-init: ${dir} is missing or not writable by uid $(id -u) gid $(id -g); the volume mounted there must be" \
            "writable by AIRFLOW_UID with group 0 (docker/README.md, 'Volumes')" >&2
        exit 1
    fi
done
mkdir -p "${data_dir}/lake" "${data_dir}/runs"
echo "airflow-init: ${data_dir} (lake/, runs/), ${logs_dir} and ${campaigns_dir} are writable"

airflow db migrate
echo "airflow-init: metadata database migrated (executor: ${AIRFLOW__CORE__EXECUTOR:-LocalExecutor})"
