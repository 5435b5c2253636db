"""One clear line for each failure (issue 26): what differs named to the field and not cut to the same text,
ffmpeg missing, memory limits, zip bombs, audio-only videos, dangling --out symlinks."""

from __future__ import annotations

from hybridmem import runlock


def test_differences_name_the_nested_field_and_keep_where_values_differ():
    """Issue 26: eval rerun after retraining printed both checkpoints cut to the same '.../hydra/fina...'."""
    path = "/work/some/long/folder/of/runs/" + "x" * 40 + "/world/hydra/final"
    old = {"methods": {"hydra": {"path": path, "sha256": "a" * 64}}, "split": "test"}
    new = {"methods": {"hydra": {"path": path, "sha256": "a" * 60 + "bbbb"}}, "split": "test"}
    (line,) = runlock.differences(old, new)
    assert line.startswith("methods.hydra.sha256: ")
    there, now = line.split(": ", 1)[1].split(" there, ")
    assert there != now and there.endswith('aaaa"') and now.endswith('bbbb" now')
