"""The Databricks REST API as dockrun uses it: the workspace and its credentials (workspace.py) and
the REST adapter (client.py). Below both the Databricks backend and `dbfs:/` path inputs."""
