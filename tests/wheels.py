"""Pure-Python wheels written by hand, for tests that serve an attacker's packages to a build."""
from __future__ import annotations

import base64
import hashlib
import os
import zipfile


def pure_wheel(folder, name, version, files):  # noqa: ANN001, ANN201 - its source is also a build backend's
    """A pure-Python wheel of ``files`` (path -> text) in ``folder``; its file name. Plain enough to be
    copied, by source, into a source distribution's in-tree build backend."""
    dist = f"{name}-{version}"
    entries = dict(files)
    entries[f"{dist}.dist-info/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    entries[f"{dist}.dist-info/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: dockrun-tests\n"
                                         "Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = []
    for path, text in entries.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    entries[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    name = f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(folder, name), "w") as z:
        for path, text in entries.items():
            z.writestr(path, text)
    return name
