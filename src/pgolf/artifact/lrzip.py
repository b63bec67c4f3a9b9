"""The `lrzip` codec's runner: the Debian tool as a subprocess on files in a private temporary folder.

`pgolf.artifact.codecs` registers the codec and imports this module on its first use, so a run whose
codec cannot be lrzip (neither `lrzip` nor `auto`) does not ship it.
"""

from __future__ import annotations

import subprocess
import tempfile

from pgolf.artifact.codecs import LRZIP, LrzipError
from pgolf.errors import ArtifactError


def run_lrzip(args: list[str], data: bytes, suffix: str) -> bytes:
    """Run `lrzip args -o out in` on `data` in a private temporary folder; return out's bytes."""
    with tempfile.TemporaryDirectory(prefix="pgolf-lrzip-") as folder:
        source, target = f"{folder}/in{suffix}", f"{folder}/out"
        with open(source, "wb") as handle:
            handle.write(data)
        try:
            subprocess.run([LRZIP, *args, "-q", "-f", "-o", target, source], check=True, capture_output=True)
        except FileNotFoundError:
            raise ArtifactError("codec lrzip needs the lrzip tool, which is not installed: apt-get install lrzip, "
                                "or use another codec (auto picks among the installed ones)") from None
        except subprocess.CalledProcessError as exc:
            raise LrzipError(exc.stderr.decode("utf-8", "replace").strip() or f"exit status {exc.returncode}") \
                from None
        with open(target, "rb") as handle:
            return handle.read()
