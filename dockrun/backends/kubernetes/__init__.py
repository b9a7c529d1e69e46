"""The Kubernetes backend: a run as a batch/v1 Job, with MLflow's kubernetes_config.json and Job
template."""
