"""Run folders: one writer at a time, and a record of the inputs that made the results.

Every command that writes a run folder (world generate, encode, train vae/world, eval, demo, recipe, sample)
goes through this module:

    with hold(out, "train world"):          # refuses a second writer while the first lives
        check_inputs(out, {"cache_vae": ...}, overwrite=args.overwrite)   # refuses results of other inputs
        ...

The lock. `FOLDER/.hybridmem.lock` (or `.hybridmem-NAME.lock`, so shards of one dataset lock separately) is
held with flock(2): the kernel drops it when its process dies, however it dies (kill -9 included), so a
stale lock is taken over by the next run without a race. The file also records the holder's pid, host and
process start time, shown in the refusal; and when flock is taken but that record names a process that is
still alive on this host (a filesystem that ignores flock), the lock is refused all the same.
A process may take the same lock again (the recipe runs its stages in-process); it is released when the
outermost holder lets go. A lock beside a user's file (`hybridmem sample --out DIR/NAME.mp4` locks
`DIR/.hybridmem-sample-NAME.mp4.lock`) is `ephemeral`: removed when released. Removing a flock file is safe
because every taker checks, once it holds the flock, that the path still names the file it locked, and
starts over when it does not.

The identity record. `FOLDER/run.json` holds the command and the inputs (data, checkpoint content hashes,
VAE, seed, steps ...) of the results in the folder. A rerun with the same inputs resumes; with other
inputs it is refused with each differing input named, unless `--overwrite`, which recomputes them.
Hashes are of file contents (sha256), so a checkpoint retrained in place is a different input.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import socket
from pathlib import Path

from hybridmem.errors import ConfigError, HybridmemError
from hybridmem.publish import process_alive, process_start_time

RECORD_FILE = "run.json"
OVERWRITE_HELP = "replace results already in --out that were made from other inputs (default: refuse)"


class RunLockedError(HybridmemError):
    """Another live process is writing this run folder."""


def _holder_record(command: str) -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start_time": process_start_time(os.getpid()),
        "command": command,
        "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _describe(holder: dict) -> str:
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command') or 'a hybridmem command'}, "
        f"since {holder.get('since', '?')})"
    )


# --- the lock ------------------------------------------------------------------------------------------


def check_out_folder(folder: str | os.PathLike, flag: str = "--out") -> Path:
    """`folder` as a Path, refused when it names an existing file (the common slip of passing FILE.mp4)."""
    from hybridmem.publish import refuse_dangling_link

    folder = Path(folder)
    refuse_dangling_link(folder, flag)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{flag} {folder}: exists and is a file, not a folder; pass a folder path")
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {folder}: {parent} is a file, not a folder")
            break
    return folder


def lock_path(folder: str | os.PathLike, name: str = "") -> Path:
    return Path(folder) / (f".hybridmem-{name}.lock" if name else ".hybridmem.lock")


_HELD: dict[Path, list] = {}  # lock path -> [fd, depth] of the locks this process holds


class RunLock:
    """A held lock on a run folder; `release()` (or leaving `hold`'s with-block) lets it go."""

    def __init__(self, path: Path, ephemeral: bool = False):
        self.path = path
        self.ephemeral = ephemeral
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        entry = _HELD.get(self.path)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self.path]
            fd = entry[0]
            with contextlib.suppress(OSError):
                if self.ephemeral:
                    os.unlink(self.path)  # while still held: a taker that opened it starts over
                else:
                    os.ftruncate(fd, 0)  # a free lock holds no record
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 65536).decode("utf-8", errors="replace")
        holder = json.loads(text) if text.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def acquire(
    folder: str | os.PathLike, command: str, name: str = "", flag: str = "--out", ephemeral: bool = False
) -> RunLock:
    """Lock `folder` (created) for `command`; RunLockedError naming the holder when another process has it.

    ephemeral: remove the lock file on release (a lock beside a user's output rather than in a run folder).
    """
    folder = check_out_folder(folder, flag)
    folder.mkdir(parents=True, exist_ok=True)
    path = lock_path(folder, name).resolve()
    if path in _HELD:  # this process holds it already (the recipe running a stage): re-entrant
        _HELD[path][1] += 1
        return RunLock(path, ephemeral)
    for _ in range(100):  # a holder removing an ephemeral lock between our open and flock: open again
        fd = _lock_fd(path, folder, name, command, flag)
        if fd is not None:
            _HELD[path] = [fd, 1]
            return RunLock(path, ephemeral)
    raise RunLockedError(f"{flag} {folder}: {path.name} keeps being replaced; is another run starting?")


def _lock_fd(path: Path, folder: Path, name: str, command: str, flag: str) -> int | None:
    """The flocked descriptor of `path` with our record written; None when the file was removed or
    replaced by its holder meanwhile (the caller opens it again)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except IsADirectoryError:
        raise ConfigError(
            f"{flag} {folder}: {path} is a folder where the lock file goes; remove it, or choose "
            f"another {flag}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = _read_holder(fd)
            raise RunLockedError(
                f"{flag} {folder}: another run is writing it: {_describe(holder)}; wait for it to finish, "
                f"or choose another {flag}"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:  # an ephemeral lock's holder removed it after our open: this inode is nobody's lock
            os.close(fd)
            return None
        # 2. flock is ours. A record naming a live process here means flock is not honoured (some network
        # filesystems): refuse rather than write beside it. A dead holder's record is a stale lock: ours now.
        holder = _read_holder(fd)
        if (
            holder.get("host") == socket.gethostname()
            and isinstance(holder.get("pid"), int)
            and holder["pid"] != os.getpid()
            and process_alive(holder["pid"], holder.get("start_time"))
        ):
            raise RunLockedError(
                f"{flag} {folder}: {lock_path(folder, name).name} names a live process, "
                f"{_describe(holder)}, although its lock is free (a filesystem without flock?); wait for it, "
                f"or choose another {flag}"
            )
        record = json.dumps(_holder_record(command)).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def hold(
    folder: str | os.PathLike, command: str, name: str = "", flag: str = "--out", ephemeral: bool = False
):
    lock = acquire(folder, command, name, flag, ephemeral)
    try:
        yield lock
    finally:
        lock.release()


def live_writers(folder: str | os.PathLike) -> list[dict]:
    """The holders of the locks in `folder` (each `.hybridmem*.lock`) that are alive, other than this
    process: the commands writing it now. A free lock holds no record; a killed holder's record names a
    dead process; a holder on another host is asked through flock (a shared lock it would block)."""
    import fcntl

    writers = []
    folder = Path(folder)
    try:
        paths = sorted(folder.glob(".hybridmem*.lock"))
    except OSError:
        return writers
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            holder = _read_holder(fd)
            if not holder or holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                continue
            if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
                alive = process_alive(holder["pid"], holder.get("start_time"))
            else:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    alive = False
                except OSError:
                    alive = True
            if alive:
                writers.append(holder)
        finally:
            os.close(fd)  # drops a probe's shared lock too
    return writers


def refuse_being_written(folder: str | os.PathLike, flag: str, fix: str) -> None:
    """RunLockedError when a live command is writing `folder`, an input of this one (encode reading data
    that `world generate` is still writing; eval reading a run that is still training)."""
    writers = live_writers(folder)
    if writers:
        raise RunLockedError(f"{flag} {folder}: still being written by {_describe(writers[0])}; {fix}")


def locked(command: str, folder_argument: str, flag: str = "--out"):
    """Decorator: hold the lock on the folder passed as `folder_argument` for the whole call."""
    import functools
    import inspect

    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            folder = signature.bind(*args, **kwargs).arguments[folder_argument]
            with hold(folder, command, flag=flag):
                return function(*args, **kwargs)

        return wrapper

    return decorate


# --- content identity ----------------------------------------------------------------------------------

_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> sha256, so a file is hashed once a run


def file_sha256(path: str | os.PathLike) -> str:
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def folder_sha256(folder: str | os.PathLike, names: list[str] | None = None) -> str:
    """One hash of the files of a folder (`names`, or every regular non-hidden file), names included."""
    folder = Path(folder)
    if names is None:
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + file_sha256(folder / name).encode() + b"\n")
    return digest.hexdigest()


def model_sha256(folder: str | os.PathLike) -> str:
    """Content hash of a model folder (models.checkpoint: config.json + model.safetensors)."""
    return folder_sha256(folder, ["config.json", "model.safetensors"])


def normalised(value):
    """The JSON form of a value (tuples -> lists, keys sorted): what a record read back from disk holds."""
    return json.loads(json.dumps(value, sort_keys=True))


# --- the identity record -------------------------------------------------------------------------------


def read_record(folder: str | os.PathLike) -> dict | None:
    from hybridmem import jsonio

    path = Path(folder) / RECORD_FILE
    if not path.exists() and not path.is_symlink():
        return None
    fix = "an unreadable identity record; delete it and rerun with --overwrite"
    record = jsonio.read_json(path, expect=None, error=ConfigError, fix=fix)
    if not isinstance(record, dict) or not isinstance(record.get("inputs"), dict):
        raise ConfigError(
            f"{path}: field 'inputs' missing or not an object; delete it and rerun with --overwrite"
        )
    return record


def write_record(folder: str | os.PathLike, command: str, inputs: dict) -> None:
    from hybridmem import __version__, publish

    record = {"command": command, "hybridmem_version": __version__, "inputs": normalised(inputs)}
    publish.write_json(Path(folder) / RECORD_FILE, record, indent=1, sort_keys=True)


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'key: OLD there, NEW now' for every key whose value differs; nested objects are compared key by key
    (`methods.hydra.sha256: ...`), and a long value is cut in its middle, so two paths that differ only
    at their end still read apart (eval named two checkpoints '.../hydra/fina...' and '.../hydra/fina...')."""

    def short(value) -> str:
        text = json.dumps(value)
        return text if len(text) <= 80 else text[:30] + "..." + text[-47:]

    found = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            found += differences(before, after, f"{prefix}{key}.")
        elif before != after:
            found.append(f"{prefix}{key}: {short(before)} there, {short(after)} now")
    return found


def refuse_foreign(folder: str | os.PathLike, outputs: tuple[str, ...], overwrite: bool = False) -> list[str]:
    """ConfigError when `folder` holds any of `outputs` but no identity record (results made by something
    else, or before records existed), unless `overwrite`; returns those outputs."""
    folder = Path(folder)
    if (folder / RECORD_FILE).is_file():
        return []
    foreign = [name for name in outputs if (folder / name).exists()]
    if foreign and not overwrite:
        raise ConfigError(
            f"--out {folder}: already holds {', '.join(foreign)} with no record of what made them; pass "
            "--overwrite to replace them, or choose another --out"
        )
    return foreign


def check_inputs(
    folder: str | os.PathLike,
    command: str,
    inputs: dict,
    *,
    overwrite: bool = False,
    outputs: tuple[str, ...] = (),
) -> bool:
    """Compare `inputs` with the folder's record; write the record; return True when results must be redone.

    - no record and none of `outputs` present: a fresh folder (False)
    - same inputs: resume (False)
    - other inputs, or `outputs` present without a record (made by something else): ConfigError naming the
      differences, unless `overwrite`, which returns True (the caller recomputes) and records the new inputs
    """
    folder = Path(folder)
    new = normalised(inputs)
    record = read_record(folder)
    if record is None:
        foreign = refuse_foreign(folder, outputs, overwrite)
        write_record(folder, command, new)
        return bool(foreign)
    changed = differences(record["inputs"], new)
    if record.get("command") != command:
        changed.insert(0, f"command: {record.get('command')!r} there, {command!r} now")
    if changed and not overwrite:
        raise ConfigError(
            f"--out {folder}: holds results made from other inputs ({'; '.join(changed)}); rerun with the "
            "same inputs to resume, pass --overwrite to recompute them, or choose another --out"
        )
    write_record(folder, command, new)
    return bool(changed)


def model_identity(path: str | os.PathLike | None, ema: bool = True) -> dict | None:
    """{"path", "sha256"} of the model folder a run, checkpoint or model path resolves to (as the samplers
    resolve it); sha256 None when there is no model there (a stand-in in tests). None for no path."""
    if path is None:
        return None
    from hybridmem.errors import CheckpointError
    from hybridmem.runfolder import resolve_model_folder

    try:
        folder = Path(resolve_model_folder(path, ema=ema))
        digest = model_sha256(folder)
    except (CheckpointError, OSError):
        return {"path": str(Path(path).resolve()), "sha256": None}
    return {"path": str(folder.resolve()), "sha256": digest}


def clip_sha256(folder: str | os.PathLike) -> str | None:
    """Content hash of a clip folder (every file), None when it is not a folder."""
    folder = Path(folder)
    return folder_sha256(folder) if folder.is_dir() else None
