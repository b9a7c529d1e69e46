"""Remote mode: forward a run to Databricks (Jobs API 2.1 runs/submit, DBFS API 2.0). backend.py
is the seam, config.py checks settings, submit.py builds the archive and the request, client.py
talks REST, run.py follows a submitted run, launcher.py runs on the cluster."""
