"""Remote mode: forward a run to Databricks (Jobs API 2.1 runs/submit, DBFS API 2.0). backend.py
is the seam, config.py checks the cluster spec, submit.py builds the archive and the request, run.py
follows a submitted run, launcher.py runs on the cluster; REST and credentials are `databricks_api`."""
