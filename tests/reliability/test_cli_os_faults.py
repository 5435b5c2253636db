"""The CLI's top-level handler (hybridmem.cli): operating-system faults end in one line naming the path, exit
status 1; user errors keep exit 2; any other exception (a bug) keeps its traceback."""

from __future__ import annotations

import errno

import pytest

from hybridmem import cli
from hybridmem.errors import ConfigError

from .helpers import run_cli


def _command_raising(monkeypatch, error: BaseException):
    """`hybridmem world preview CLIP --out OUT` whose work raises `error`."""

    def build_parser():
        parser = real_build_parser()
        preview = parser._subparsers._group_actions[0].choices["world"]._subparsers._group_actions[0]
        preview.choices["preview"].set_defaults(func=lambda args: (_ for _ in ()).throw(error))
        return parser

    real_build_parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", build_parser)


@pytest.mark.parametrize(
    ("code", "name", "words"),
    [
        (errno.ENOSPC, "ENOSPC", "No space left on device"),
        (errno.EROFS, "EROFS", "Read-only file system"),
        (errno.EACCES, "EACCES", "Permission denied"),
        (errno.ENAMETOOLONG, "ENAMETOOLONG", "File name too long"),
        (errno.ENOTDIR, "ENOTDIR", "Not a directory"),
        (errno.EDQUOT, "EDQUOT", "Disk quota exceeded"),
    ],
)
def test_os_faults_end_in_one_line_naming_the_path(monkeypatch, tmp_path, code, name, words):
    _command_raising(monkeypatch, OSError(code, words, "/data/out/x.png"))
    status, err = run_cli(["world", "preview", tmp_path / "clip", "--out", tmp_path / "p.png"])
    assert status == 1 and err.startswith(f"hybridmem: error: /data/out/x.png: {words} ({name}); "), err
    assert err.count("\n") == 1


def test_a_fault_without_a_path_names_the_output_flag(monkeypatch, tmp_path):
    _command_raising(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    status, err = run_cli(["world", "preview", tmp_path / "clip", "--out", tmp_path / "p.png"])
    assert status == 1 and f"--out {tmp_path / 'p.png'}: No space left on device" in err, err


def test_a_library_error_raised_from_a_fault_is_the_fault(monkeypatch, tmp_path):
    try:
        raise OSError(errno.EROFS, "Read-only file system", "/ro/x")
    except OSError as fault:
        wrapped = RuntimeError("the writer failed")
        wrapped.__cause__ = fault
    _command_raising(monkeypatch, wrapped)
    status, err = run_cli(["world", "preview", tmp_path / "clip", "--out", tmp_path / "p.png"])
    assert status == 1 and "/ro/x: Read-only file system (EROFS)" in err, err


@pytest.mark.parametrize(
    "bug", [ValueError("a bug"), KeyError("field"), OSError(errno.ECONNRESET, "Connection reset by peer")]
)
def test_other_exceptions_keep_their_traceback(monkeypatch, tmp_path, bug):
    _command_raising(monkeypatch, bug)
    with pytest.raises(type(bug)):
        cli.main(["world", "preview", str(tmp_path / "clip"), "--out", str(tmp_path / "p.png")])


def test_user_errors_keep_exit_2(monkeypatch, tmp_path):
    _command_raising(monkeypatch, ConfigError("--out p.png: exists"))
    assert run_cli(["world", "preview", tmp_path / "clip", "--out", tmp_path / "p.png"]) == (
        2,
        "hybridmem: error: --out p.png: exists\n",
    )


def test_an_output_path_through_a_file_is_enotdir(tmp_path):
    from hybridmem import publish

    (tmp_path / "notes.txt").write_text("keep")
    for folder in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "sub"):
        with pytest.raises(OSError) as caught:
            publish.check_output_folder(folder)
        assert caught.value.errno == errno.ENOTDIR
        with pytest.raises(OSError) as caught:
            publish.write_json(folder / "a.json", {})
        assert caught.value.errno == errno.ENOTDIR and caught.value.filename == str(folder / "a.json")
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_a_lock_path_that_is_a_folder_is_a_user_error(tmp_path):
    """Issue 19: a lock path that is a folder ended in a traceback."""
    from hybridmem import runlock

    (tmp_path / ".hybridmem.lock").mkdir()
    with pytest.raises(ConfigError, match="is a folder where the lock file goes"):
        runlock.acquire(tmp_path, "eval")
