"""apiphant.runtime.monkey.patch_all: gevent's patch_all with each entry-point group read once.

Each case runs in a fresh interpreter (patching is for the whole process), with a plugin
installed as gevent's documentation says: a distribution whose entry point is in a
``gevent.plugins.monkey.*`` group.
"""

import json
import subprocess
import sys
from pathlib import Path

PLUGIN = """\
CALLS = []


def will_patch_all(event):
    CALLS.append(type(event).__name__)
"""

PROBE = """\
import collections, importlib.metadata, json, sys
original = importlib.metadata.entry_points
reads = collections.Counter()


def counting(**params):
    reads[repr(sorted(params.items()))] += 1
    return original(**params)


importlib.metadata.entry_points = counting
from gevent import monkey

if sys.argv[1] == "fail":
    def broken(*args, **kwargs):
        raise RuntimeError("patch failed")

    monkey.patch_all = broken
from apiphant.runtime import monkey as ours

try:
    ours.patch_all()
    error = ""
except RuntimeError as e:
    error = str(e)
import probe_plugin

print(json.dumps({
    "error": error,
    "plugin": probe_plugin.CALLS,
    "reads": reads,
    "restored": importlib.metadata.entry_points is counting,
    "socket": monkey.is_module_patched("socket"),
    "ssl": monkey.is_module_patched("ssl"),
}))
"""


def probe(tmp_path: Path, mode: str) -> dict:
    (tmp_path / "probe_plugin.py").write_text(PLUGIN)
    info = tmp_path / "probe_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[gevent.plugins.monkey.will_patch_all]\nprobe = probe_plugin:will_patch_all\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n{PROBE}",
         mode], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_patches_everything_calls_plugins_and_reads_each_group_once(tmp_path: Path) -> None:
    got = probe(tmp_path, "ok")
    assert got["error"] == ""
    assert got["socket"] and got["ssl"]
    # The plugin installed like any other got gevent's event, as with gevent's own call.
    assert got["plugin"] == ["GeventWillPatchAllEvent"]
    # gevent asks for several groups, 25 times in all; each reached the metadata once.
    assert len(got["reads"]) >= 3, got["reads"]
    assert set(got["reads"].values()) == {1}, got["reads"]
    assert got["restored"]


def test_an_error_while_patching_puts_entry_points_back(tmp_path: Path) -> None:
    got = probe(tmp_path, "fail")
    assert got["error"] == "patch failed"
    assert got["restored"]
