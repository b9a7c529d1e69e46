from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
setup(
    name="dockrun",
    version="0.1.0",
    description="Run MLflow Projects in Docker containers: reproducibly, fast, with an image cache.",
    long_description=(here / "README.md").read_text(encoding="utf-8") if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    # The top-level templates/ folder ships inside the package as dockrun/_templates.
    packages=find_packages(include=["dockrun", "dockrun.*"]) + ["dockrun._templates"],
    package_dir={"dockrun": "dockrun", "dockrun._templates": "templates"},
    package_data={"dockrun._templates": ["*.j2"]},
    install_requires=[
        "docker>=6.1",
        "jinja2>=3.0",
        "PyYAML>=5.4",
        "boto3>=1.26",
        "tenacity>=8.0",
        "click>=8.0",
        "packaging>=21",
    ],
    extras_require={
        # mlflow-skinny has MLflow's client and stores but not SQLAlchemy/Alembic, which sqlite:
        # stores need; the full `mlflow` would add numpy, pandas, scipy, Flask and more.
        "mlflow": ["mlflow-skinny>=2.9", "sqlalchemy>=1.4", "alembic>=1.7"],
        # The field's own clients: kubeconfig/in-cluster auth as kubectl does it; Databricks unified auth.
        "kubernetes": ["kubernetes>=28"],
        "databricks": ["databricks-sdk>=0.30"],
        "ssh": ["paramiko>=2.4"],  # DOCKER_HOST=ssh://... (docker-py needs it to accept the URL)
        "test": ["pytest>=7", "hypothesis>=6", "moto[server]>=5", "ruff>=0.4",
                 "mlflow-skinny>=2.9", "sqlalchemy>=1.4", "alembic>=1.7",
                 # the conda path's tests: a real channel (rattler-build) and MatchSpec as the oracle
                 "py-rattler>=0.28", "py-rattler-build>=0.73",
                 "kubernetes>=28", "databricks-sdk>=0.30",
                 # docker-py imports paramiko for ssh:// engines (it connects through the ssh command)
                 "paramiko>=2.4"],
    },
    entry_points={"console_scripts": ["dockrun=dockrun.warmstart.client:main"]},
)
