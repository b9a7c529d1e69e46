"""MLflow tracking: where a run is tracked (decided from the request, pure), the tags it gets, and
the adapters that create MLflow runs and report their end: REST for a server or Databricks,
MLflow's own client for a local store."""
