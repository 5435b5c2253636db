"""Publishing output files: every file a command writes reaches its final name through here.

    publish.write_json(path, record)                      # also write_text, write_bytes
    publish.write_video(path, frames, fps)                # H.264 mp4 through ffmpeg
    publish.write_gif(path, frames, fps)
    with publish.staged(path, check=publish.check_safetensors) as temp:   # any other writer
        save_file(state, temp)
    video = publish.stage_video(out, frames, fps)         # two files published together: both written and
    side = publish.stage_video(side_path, strip, fps)     # checked first, then renamed
    publish.publish_together([video, side])

The one path. (1) The writer writes a unique temp name in the destination folder (`.tmp-PID-RANDOM-NAME`:
hidden, created exclusively, ending like NAME for writers that infer the format from it). (2) Its status is
checked: an exception, ffmpeg's exit code. (3) The result is checked: not empty, and per format its structure
(an mp4's boxes tile the file and its video track holds the frame count written, read by hybridmem.mp4; a
safetensors file has the size its header declares; a zip, GIF or PNG ends where it should). (4) Only then is
it renamed onto the final name. On any failure the temp file is removed and the file already at the final name
is untouched. With `overwrite=False` the rename is a link(2), which fails rather than replace a file that
appeared meanwhile. Files are not fsync'ed: a killed process leaves the old or the new file, a machine that
loses power may not.

Folders (a checkpoint, an export) are built in `staged_folder` and swapped in by `publish_folder`.

Faults of the machine surface as OSError with its errno and the path, which the CLI turns into one line
(hybridmem.cli): a writer that fails on a full file system with its own error (torch's, ffmpeg's) is
reported as ENOSPC; a writer or check failing otherwise raises OutputError. `check_output_folder` finds a
read-only, full or missing folder and over-long names before a command does its heavy work, and
`check_not_inside` refuses an output inside one of the command's inputs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from hybridmem import mp4
from hybridmem.errors import ConfigError, MachineError

TEMP_PREFIX = ".tmp-"
# a writer that failed while less than this was free failed for lack of space
FULL_BYTES = 1 << 20
# errno values ffmpeg reports in words on stderr (it exits with its own status, not the errno)
_FFMPEG_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG)
_NAME_MAX_DEFAULT = 255


class OutputError(OSError):
    """A writer failed, or what it wrote failed its check; nothing was published."""

    def __init__(self, path: str | os.PathLike, message: str):
        super().__init__(errno.EIO, message, str(path))


# --- low-level pieces (tests inject faults here) ------------------------------------------------------


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _create_temp(folder: Path, prefix: str, suffix: str) -> Path:
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(handle)
    return Path(name)


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return _NAME_MAX_DEFAULT


def _file_mode() -> int:
    """0o666 less the umask: what open(2) would give a new file (mkstemp makes 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def temp_name(path: Path) -> tuple[str, str]:
    """(prefix, suffix) of the temp names of `path`: `.tmp-PID-` + 8 random characters (mkstemp) + `-NAME`,
    the name cut from the front to fit NAME_MAX; it ends like the final name, so writers that infer the
    format from the extension see the right one."""
    prefix = f"{TEMP_PREFIX}{os.getpid()}-"
    room = _NAME_MAX_DEFAULT - len(prefix) - 8 - 1
    name = path.name
    while len(name.encode()) > room:
        name = name[1:]
    return prefix, f"-{name}"


def remove_dead_temps(path: Path) -> list[Path]:
    """Remove the temp files and folders of `path` left by writers that died (kill -9 mid-publish), so the
    next run of the same command cleans up after it; returns what was removed.

    A temp name carries its writer's pid (temp_name); one whose process is gone on this host is stale. A
    live writer's temp (another process publishing the same name, which the run locks refuse anyway) and
    a folder moved aside by publish_folder (`.old`: it may hold the only copy) are left alone.
    """
    import re

    _, suffix = temp_name(path)
    pattern = re.compile(rf"{re.escape(TEMP_PREFIX)}(\d+)-[a-z0-9_]{{8}}{re.escape(suffix)}")
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed  # no folder yet (created by the caller) or unreadable (the caller's error names it)
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or int(match.group(1)) == os.getpid() or process_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def process_start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux /proc), None where it cannot be read.

    With the pid it identifies a process: a pid reused by a later process has another start time.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of stat(5), counted from field 3


def process_alive(pid: int, start_time: int | None = None) -> bool:
    """Whether process `pid` (with that start time, when given) is running on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    if start_time is not None:
        now = process_start_time(pid)
        if now is not None and now != start_time:
            return False  # the pid was reused
    return True


def as_os_fault(error: BaseException, path: Path, temp: Path | None = None) -> BaseException:
    """The exception to raise for a writer's failure at `path` (written under the name `temp`).

    An OSError with an errno keeps it, naming `path` where it named nothing or the temp file (a write() on
    a file object names nothing, ffmpeg was given the temp name). Any other failure (torch's RuntimeError,
    an OutputError from a check that found a short file) on a file system with less than FULL_BYTES free
    is ENOSPC; otherwise the failure itself, an OutputError renamed to `path`.
    """
    if not isinstance(error, Exception):
        return error  # KeyboardInterrupt, SystemExit: not the writer's
    unnamed = isinstance(error, OSError) and error.filename in (None, str(temp))
    if isinstance(error, OSError) and error.errno is not None and not isinstance(error, OutputError):
        if not unnamed:
            return error
        return OSError(error.errno, error.strerror or os.strerror(error.errno), str(path))
    try:
        free = _free_bytes(path.parent)
    except OSError:
        free = None
    if free is not None and free < FULL_BYTES:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    if isinstance(error, OutputError) and unnamed:
        return OutputError(path, error.strerror)
    return error


# --- files ---------------------------------------------------------------------------------------------


class Staged:
    """A file written under a temp name beside `path` and checked, not yet published.

    `publish()` renames it onto `path`; `discard()` removes it. Use `staged(...)` or the write_* helpers
    unless several files must be published together (`publish_together`).
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = True):
        self.path = Path(path)
        self.overwrite = overwrite
        prefix, suffix = temp_name(self.path)
        remove_dead_temps(self.path)  # a killed earlier publish of this file left its temp
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.temp = _create_temp(self.path.parent, prefix, suffix)
        except OSError as error:  # name the output, not a temp name the user never chose
            raise OSError(*_path_fault(error), str(self.path)) from error
        self.done = False

    def verify(self, check: Callable[[Path], None] | None, allow_empty: bool = False) -> None:
        """Refuse an empty result (unless `allow_empty`), then run `check(temp)` (OutputError if bad)."""
        if not allow_empty and self.temp.stat().st_size == 0:
            raise OutputError(self.path, "the writer produced an empty file")
        if check is not None:
            check(self.temp)

    def publish(self) -> Path:
        os.chmod(self.temp, _file_mode())
        if self.overwrite:
            os.replace(self.temp, self.path)
        else:
            _publish_new(self.temp, self.path)
        self.done = True
        return self.path

    def discard(self) -> None:
        if not self.done:
            with contextlib.suppress(FileNotFoundError):
                self.temp.unlink()
            self.done = True


def _path_fault(error: OSError) -> tuple[int, str]:
    """(errno, message) of a failure to create a file's folder or the file: mkdir's EEXIST there means a
    part of the path is a file (ENOTDIR)."""
    if error.errno == errno.EEXIST:
        return errno.ENOTDIR, f"{os.strerror(errno.ENOTDIR)} (a part of the path is a file)"
    return error.errno, error.strerror


def _publish_new(temp: Path, path: Path) -> None:
    """Rename `temp` to `path` unless `path` exists (also one created a moment ago): link(2) is atomic."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise ConfigError(
            f"{path}: exists (written by another process while this one ran); pass --overwrite to replace "
            "it, or choose another name"
        ) from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
            raise
        # a file system without hard links: check, then rename (not atomic against another writer)
        if path.exists():
            raise ConfigError(
                f"{path}: exists; pass --overwrite to replace it, or choose another name"
            ) from None
        os.rename(temp, path)
        return
    temp.unlink()


def stage(
    path: str | os.PathLike,
    write: Callable[[Path], None],
    check: Callable[[Path], None] | None = None,
    overwrite: bool = True,
    allow_empty: bool = False,
) -> Staged:
    """`write(temp)`, then the checks: a Staged file ready to publish; on failure nothing is left."""
    staged_file = Staged(path, overwrite)
    try:
        write(staged_file.temp)
        staged_file.verify(check, allow_empty)
    except BaseException as error:
        _discard_and_raise(staged_file, error)
    return staged_file


def _discard_and_raise(staged_file: Staged, error: BaseException):
    """Remove the temp file and raise `error`, as the OS fault it stands for when it is one."""
    staged_file.discard()
    fault = as_os_fault(error, staged_file.path, staged_file.temp)
    if fault is error:
        raise error
    raise fault from error


@contextlib.contextmanager
def staged(path: str | os.PathLike, check: Callable[[Path], None] | None = None, overwrite: bool = True):
    """`with staged(path) as temp:` write temp; on leaving, check and publish it (or remove it on error)."""
    staged_file = Staged(path, overwrite)
    try:
        yield staged_file.temp
        staged_file.verify(check)
    except BaseException as error:
        _discard_and_raise(staged_file, error)
    try:
        staged_file.publish()
    finally:
        staged_file.discard()


def publish_together(files: Iterable[Staged]) -> list[Path]:
    """Publish staged files in order; whatever is not published (an error on one) is removed."""
    files = list(files)
    try:
        return [staged_file.publish() for staged_file in files]
    finally:
        for staged_file in files:
            staged_file.discard()


def write_bytes(path: str | os.PathLike, payload: bytes, overwrite: bool = True) -> Path:
    size = len(payload)

    def write(temp: Path) -> None:
        with open(temp, "wb") as handle:
            handle.write(payload)

    def check(temp: Path) -> None:
        if temp.stat().st_size != size:
            raise OutputError(path, f"wrote {temp.stat().st_size} of {size} bytes")

    # an empty payload is a valid output (an empty caption list): only the size is checked
    return stage(path, write, check, overwrite, allow_empty=size == 0).publish()


def write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    return write_bytes(path, text.encode("utf-8"), overwrite)


def write_json(
    path: str | os.PathLike,
    record,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    overwrite: bool = True,
) -> Path:
    """JSON with a final newline. NaN and infinity are refused (ValueError): they are not JSON, and a reader
    that follows the standard cannot read them back."""
    text = json.dumps(record, indent=indent, sort_keys=sort_keys, allow_nan=False)
    return write_text(path, text + "\n", overwrite)


def copy_file(source: str | os.PathLike, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """A copy of `source` at `path`, checked to be as long as the source (and, for .safetensors, whole)."""
    size = Path(source).stat().st_size

    def check(temp: Path) -> None:
        if temp.stat().st_size != size:
            raise OutputError(path, f"copied {temp.stat().st_size} of the {size} bytes of {source}")
        if temp.name.endswith(".safetensors"):
            check_safetensors(temp)

    return stage(path, lambda temp: shutil.copyfile(source, temp), check, overwrite, size == 0).publish()


def torch_save(path: str | os.PathLike, obj, overwrite: bool = True) -> Path:
    """torch.save, checked as a zip (torch reports a full disk as a RuntimeError: see as_os_fault)."""
    import torch

    return stage(path, lambda temp: torch.save(obj, temp), check_zip, overwrite).publish()


# --- checks of a written file ---------------------------------------------------------------------------


def check_zip(path: Path) -> None:
    """A zip archive (torch.save, .npz) whose end-of-central-directory record is where it should be."""
    if not zipfile.is_zipfile(path):
        raise OutputError(path, "not a complete zip archive (cut short?)")


def check_safetensors(path: Path) -> None:
    """The file is exactly as long as its header says: 8 bytes of header length, the header, the data."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise OutputError(path, f"safetensors file of {size} bytes has no header")
        (length,) = struct.unpack("<Q", head)
        if 8 + length > size:
            raise OutputError(path, f"safetensors header claims {length} bytes, the file has {size}")
        try:
            header = json.loads(handle.read(length))
        except ValueError as error:
            raise OutputError(path, f"safetensors header is not JSON ({error})") from None
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        raise OutputError(path, f"safetensors file has {size} bytes, its header describes {expected}")


def check_png(path: Path) -> None:
    with open(path, "rb") as handle:
        start = handle.read(8)
        handle.seek(-12, os.SEEK_END)
        end = handle.read(12)
    if start != b"\x89PNG\r\n\x1a\n" or end[4:8] != b"IEND":
        raise OutputError(path, "not a complete PNG image (no IEND chunk at the end)")


def gif_check(max_frames: int) -> Callable[[Path], None]:
    """A GIF that ends in its trailer byte and holds 1..max_frames frames (the encoder may merge frames
    that repeat, so fewer is allowed)."""

    def check(path: Path) -> None:
        from PIL import Image

        with open(path, "rb") as handle:
            start = handle.read(6)
            handle.seek(-1, os.SEEK_END)
            end = handle.read(1)
        if start not in (b"GIF87a", b"GIF89a") or end != b";":
            raise OutputError(path, "not a complete GIF (no trailer at the end)")
        try:
            with Image.open(path) as image:
                frames = image.n_frames
        except (OSError, ValueError) as error:
            raise OutputError(path, f"unreadable GIF ({error})") from None
        if not 1 <= frames <= max_frames:
            raise OutputError(path, f"GIF holds {frames} frames, expected 1..{max_frames}")

    return check


def mp4_check(frames: int) -> Callable[[Path], None]:
    """The written mp4 is whole (its boxes tile it, hybridmem.mp4) and its video track holds `frames`."""

    def check(path: Path) -> None:
        try:
            found = mp4.frame_count(path)
        except mp4.Mp4Error as error:
            raise OutputError(path, error.reason) from None
        if found != frames:
            raise OutputError(path, f"mp4 holds {found} frames, {frames} were written")

    return check


# --- videos and images ------------------------------------------------------------------------------------


def pad_to_even(frames: "T H W C") -> "T H2 W2 C":
    """Repeat the last row/column so height and width are even (H.264 in yuv420p needs it)."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def ffmpeg_exe() -> str:
    """The ffmpeg that imageio runs (IMAGEIO_FFMPEG_EXE, or imageio-ffmpeg's own binary); MachineError in one
    line when there is none or it is not an executable file (a traceback, or an error blaming the input
    video's header, before)."""
    import imageio_ffmpeg

    configured = os.environ.get("IMAGEIO_FFMPEG_EXE")
    fix = (
        "install ffmpeg (or the imageio-ffmpeg package), or point IMAGEIO_FFMPEG_EXE at an ffmpeg executable"
    )
    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as error:
        raise MachineError(f"ffmpeg not found ({str(error).splitlines()[0]}); {fix}") from None
    found = exe if os.path.dirname(exe) else shutil.which(exe)
    if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
        where = f"IMAGEIO_FFMPEG_EXE={configured}" if configured else exe
        raise MachineError(f"ffmpeg not found: {where} is not an executable file; {fix}")
    return found


def _run_ffmpeg(command: list[str], payload: bytes, path: Path) -> None:
    """Run ffmpeg with `payload` on stdin; its failure as OSError (errno from its message) or OutputError."""
    result = subprocess.run(command, input=payload, capture_output=True)
    if result.returncode == 0:
        return
    message = result.stderr.decode(errors="replace").strip()
    for code in _FFMPEG_ERRNOS:
        if os.strerror(code) in message:
            raise OSError(code, os.strerror(code), str(path))
    last = message.splitlines()[-1] if message else "no message"
    raise OutputError(path, f"ffmpeg exited with status {result.returncode}: {last}")


def stage_video(
    path: str | os.PathLike,
    frames: "T H W 3",
    fps: float,
    *,
    crf: int = 18,
    threads: int | None = None,
    overwrite: bool = True,
) -> Staged:
    """An H.264 mp4 (yuv420p) of uint8 RGB frames, written and checked, not yet published. Odd sizes are
    padded by repeating the last row/column.

    ffmpeg reads raw RGB through a pipe (imageio's writer polls with sleeps when it closes: ~50 ms a
    video); `threads` caps its encoder threads (1 keeps the bytes independent of the machine).
    """
    exe = ffmpeg_exe()
    frames = pad_to_even(np.ascontiguousarray(frames, dtype=np.uint8))
    count, height, width = frames.shape[:3]
    if count < 1:
        raise ValueError(f"{path}: a video needs at least one frame")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"{path}: fps {fps} must be a positive finite number")

    def write(temp: Path) -> None:
        command = [
            exe, "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
            "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(int(crf)),
            *(["-threads", str(int(threads))] if threads is not None else []),
            "-frames:v", str(count), "-f", "mp4", str(temp),
        ]  # fmt: skip
        _run_ffmpeg(command, frames.tobytes(), temp)

    return stage(path, write, mp4_check(count), overwrite)


def write_video(path: str | os.PathLike, frames: "T H W 3", fps: float, **options) -> Path:
    """stage_video, then publish: the checked mp4 at `path`."""
    return stage_video(path, frames, fps, **options).publish()


def stage_gif(path: str | os.PathLike, frames: "T H W 3", fps: float, overwrite: bool = True) -> Staged:
    """An animated GIF (looping) of uint8 RGB frames, written and checked, not yet published."""
    import imageio.v2 as imageio

    frames = np.asarray(frames, dtype=np.uint8)

    def write(temp: Path) -> None:
        imageio.mimsave(temp, list(frames), format="GIF", duration=1.0 / fps, loop=0)

    return stage(path, write, gif_check(len(frames)), overwrite)


def write_gif(path: str | os.PathLike, frames: "T H W 3", fps: float, overwrite: bool = True) -> Path:
    return stage_gif(path, frames, fps, overwrite).publish()


# --- folders ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def staged_folder(final: str | os.PathLike):
    """`with staged_folder(final) as temp:` a fresh hidden folder beside `final` (removed on error); pass
    it to publish_folder inside the block."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = temp_name(final)
    remove_dead_temps(final)  # a killed earlier build of this folder left its temp folder
    temp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=final.parent))
    try:
        yield temp
    except BaseException as error:
        shutil.rmtree(temp, ignore_errors=True)
        fault = as_os_fault(error, final)
        if fault is error:
            raise
        raise fault from error
    shutil.rmtree(temp, ignore_errors=True)  # published: gone already; otherwise unused


def publish_folder(temp: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Rename the complete folder `temp` to `final`; an existing `final` is moved aside first and removed
    after, so a crash leaves one complete folder (the old one aside, or the new one)."""
    temp, final = Path(temp), Path(final)
    if not final.exists():
        temp.rename(final)
        return final
    prefix, _ = temp_name(final)
    aside = Path(tempfile.mkdtemp(prefix=prefix, suffix=".old", dir=final.parent))
    final.rename(aside / "folder")
    temp.rename(final)
    shutil.rmtree(aside, ignore_errors=True)
    return final


# --- where outputs may go -----------------------------------------------------------------------------


def _resolved(path: str | os.PathLike, flag: str) -> Path:
    """The absolute path `path` names; ConfigError naming `flag` for a loop of symbolic links (Python
    raises RuntimeError for one before 3.13, OSError ELOOP after)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as error:
        raise ConfigError(f"{flag} {path}: cannot be resolved ({error}); fix the symbolic links") from None


def check_not_inside(output: str | os.PathLike, inputs: dict, what: str = "--out") -> None:
    """ConfigError when `output` is one of `inputs` ({flag: path or list of paths}) or inside one: a
    command must not write into what it reads."""
    out = _resolved(output, what)
    for flag, paths in inputs.items():
        for path in paths if isinstance(paths, list | tuple) else [paths]:
            if path is None:
                continue
            source = _resolved(path, flag)
            if out == source:
                raise ConfigError(f"{what} {output}: is the {flag} input itself; choose another {what}")
            if source in out.parents:
                raise ConfigError(
                    f"{what} {output}: is inside the {flag} input {path}; choose a {what} outside it"
                )


def refuse_dangling_link(path: str | os.PathLike, what: str = "--out") -> None:
    """ConfigError when `path` is a symbolic link to nothing: the output cannot go through it, and creating
    a file there fails only once the work is done ("written by another process")."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ConfigError(
            f"{what} {path}: is a symbolic link to {os.readlink(path)}, which does not exist; remove the "
            f"link, create what it points to, or choose another {what}"
        )


def check_output_folder(
    folder: str | os.PathLike, need_bytes: int = 0, names: Iterable[str] = (), what: str = "--out"
) -> Path:
    """Before the heavy work: `folder` exists or is created, a file can be created in it (a probe: root
    ignores permission bits, a read-only mount does not), each of `names` fits the file system's name
    limit, and about `need_bytes` are free. Faults are OSError naming the path (the CLI prints them)."""
    folder = Path(folder)
    refuse_dangling_link(folder, what)
    for name in names:
        refuse_dangling_link(folder / name, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(*_path_fault(error), str(folder)) from error
    probe = _create_temp(folder, f"{TEMP_PREFIX}{os.getpid()}-", "-probe")
    probe.unlink()
    limit = _name_max(folder)
    for name in names:
        if len(os.fsencode(name)) > limit:
            raise OSError(errno.ENAMETOOLONG, f"{os.strerror(errno.ENAMETOOLONG)} (limit {limit} bytes)",
                          str(folder / name))  # fmt: skip
    free = _free_bytes(folder)
    if free < need_bytes:
        raise OSError(
            errno.ENOSPC,
            f"{os.strerror(errno.ENOSPC)}: {free / 2**20:.1f} MiB free, {what} needs about "
            f"{need_bytes / 2**20:.1f} MiB",
            str(folder),
        )
    return folder
