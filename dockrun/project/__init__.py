"""The project and its inputs: where the code comes from (folders, Git), what the MLproject says,
which parameters it takes and how its command is rendered, and remote inputs to download."""
