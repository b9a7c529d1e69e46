"""`-A` options: every repeat applies, every key is honoured or refused, flags can be turned off.
The container is planned as data, so these need no engine."""
from __future__ import annotations

from pathlib import Path

import pytest

from dockrun.backends.local.container import RunContext, container_spec
from dockrun.errors import ConfigError
from dockrun.project.params import RenderedCommand


def spec(docker_args, tmp_path: Path):  # noqa: ANN001, ANN201
    ctx = RunContext(run_id="r1", project="p", image="img", outputs=tmp_path / "out",
                     rendered=RenderedCommand("true", {}, ()), docker_args=docker_args)
    return container_spec(ctx, environ={"FROM_HOST": "h"})


def test_repeated_keys_all_apply(tmp_path: Path) -> None:
    s = spec(["e=A=1", "e=B=2", "env=FROM_HOST", f"v={tmp_path}:/a:ro", f"volume={tmp_path}:/b",
              "cap-add=SYS_PTRACE", "cap-add=NET_ADMIN", "add-host=a:10.0.0.1", "add-host=b:10.0.0.2"], tmp_path)
    assert {k: s.environment[k] for k in ("A", "B", "FROM_HOST")} == {"A": "1", "B": "2", "FROM_HOST": "h"}
    assert (str(tmp_path), "/a", "ro") in s.mounts and (str(tmp_path), "/b", "rw") in s.mounts
    assert s.options["cap_add"] == ["SYS_PTRACE", "NET_ADMIN"]
    assert s.options["extra_hosts"] == {"a": "10.0.0.1", "b": "10.0.0.2"}


def test_api_mapping_lists_repeat_and_false_turns_a_flag_off(tmp_path: Path) -> None:
    s = spec({"privileged": False, "e": ["A=1", "B=2"], "read-only": True}, tmp_path)
    assert "privileged" not in s.options and s.options["read_only"] is True
    assert (s.environment["A"], s.environment["B"]) == ("1", "2")
    assert "privileged" not in spec(["privileged=false"], tmp_path).options
    assert spec(["privileged"], tmp_path).options["privileged"] is True


def test_label_workdir_and_rm_are_honoured(tmp_path: Path) -> None:
    s = spec(["label=team=ml", "l=dockrun.run-id=forged", "workdir=/project/src", "rm"], tmp_path)
    assert s.labels == {"team": "ml", "dockrun.run-id": "r1", "dockrun.project": "p"}  # dockrun's own win
    assert s.working_dir == "/project/src"


@pytest.mark.parametrize("arg, message", [
    ("name=x", "--docker-args name: not accepted: dockrun names containers"),
    ("entrypoint=/bin/sh", "--docker-args entrypoint: not accepted"),
    ("nope=1", "--docker-args nope: unknown Docker option"),
    ("privileged=maybe", "--docker-args privileged=maybe: expected true or false"),
    ("add-host=nocolon", "--docker-args add-host=nocolon: expected HOST:ADDRESS"),
])
def test_refused_options_name_themselves(tmp_path: Path, arg: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec([arg], tmp_path)
