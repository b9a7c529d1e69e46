"""MLflow tracking: where a run is tracked (decided from the request, pure) and the REST adapter
that creates MLflow runs and reports their end."""
