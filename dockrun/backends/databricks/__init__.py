"""Remote mode: forward a run to Databricks (Jobs API 2.1 runs/submit; code through DBFS API 2.0 or,
in a Unity Catalog volume, the Files API). backend.py is the seam, config.py checks -c (cluster,
serverless, volume), submit.py builds the archive and the request, run.py follows a submitted run,
launcher.py runs on the cluster; REST and credentials are `databricks_api`."""
