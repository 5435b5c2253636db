"""The machine a command runs on: which torch device, and how much memory a new allocation can get.

Every layer that places tensors or refuses work that cannot fit reads these (the trainers, the encoder,
the samplers, the readers of untrusted files), so they live here, below all of them. torch is imported
inside the functions: the readers and `hybridmem --help` do not pay for it.

    device = resolve_device("auto")              # cuda:0 when CUDA is there, else cpu
    check_memory(needed_bytes, "decoding clip.mp4", "pass a smaller video", device)
"""

from __future__ import annotations

import math
import os

from hybridmem.errors import ConfigError


def resolve_device(name: str, local_rank: int = 0):
    """'auto' -> cuda:local_rank when available, else cpu; explicit names are checked. A torch.device."""
    import torch

    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available; use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"--device '{name}' is unknown; valid: auto, cpu, cuda, cuda:N")
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


def format_bytes(count: float) -> str:
    """'1.5 GiB': powers of 1024, so the units are the binary ones."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(count) < 1024 or unit == "PiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} PiB"


def available_memory(device=None) -> int | None:
    """Bytes a new allocation can get. On a CUDA device: its free memory (other processes' and this one's
    allocations taken) plus what this process's caching allocator holds unused; not the total, which a
    second job on the GPU or weights already moved there would overstate. Else the RAM available (Linux
    MemAvailable; physical RAM elsewhere), bounded by the room under `ulimit -v`. None when unknown (then
    nothing is refused)."""
    device_text = str(device) if device is not None else "cpu"
    if device_text.startswith("cuda"):
        try:
            import torch

            gpu = torch.device(device_text)
            free, _ = torch.cuda.mem_get_info(gpu)
            cached = torch.cuda.memory_reserved(gpu) - torch.cuda.memory_allocated(gpu)
            return int(free + cached)
        except Exception:  # noqa: BLE001 (no CUDA here: the device error comes later, from the command)
            return None
    ram = None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    ram = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if ram is None:
        try:
            ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            pass
    room = address_space_room()  # under `ulimit -v`, what this process may still map
    if room is not None:
        return room if ram is None else min(ram, room)
    return ram


def address_space_limit() -> int | None:
    """This process's address-space limit in bytes (`ulimit -v`, RLIMIT_AS), None when there is none."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


def address_space_room() -> int | None:
    """Bytes this process may still map under its address-space limit (the limit less its VmSize), None
    without a limit. A process with torch loaded maps gigabytes it never touches, so a `ulimit -v` binds
    long before the RAM does (a 1080p video passed MemAvailable and failed to decode)."""
    limit = address_space_limit()
    if limit is None:
        return None
    mapped = 0
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmSize:"):
                    mapped = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return max(0, limit - mapped)


def _limit_note() -> str:
    limit = address_space_limit()
    return f" under the address-space limit of {format_bytes(limit)} (ulimit -v)" if limit is not None else ""


def describe_memory_fault(error: BaseException | None) -> str | None:
    """One line for an exception that is the machine running out of memory (itself or what it was raised
    from): MemoryError, or a library that could not be mapped (ImportError 'failed to map segment', ENOMEM),
    naming the limit; None for any other exception. For the CLI to print with exit status 1."""
    import errno

    while error is not None:
        text = str(error)
        if isinstance(error, MemoryError) or (
            isinstance(error, (ImportError, OSError))
            and (
                "failed to map segment" in text
                or "Cannot allocate memory" in text
                or getattr(error, "errno", None) == errno.ENOMEM
            )
        ):
            first = text.splitlines()[0] if text.strip() else type(error).__name__
            return (
                f"out of memory{_limit_note()} ({first}); raise the limit or free memory, or lower the "
                "sizes (--batch-size, --workers, the video's size), then rerun"
            )
        error = error.__cause__ or error.__context__
    return None


def check_memory(needed: float, what: str, fix: str, device=None, estimated: bool = False) -> str:
    """Refuse `what` when `needed` bytes exceed what a new allocation can get on `device`
    (available_memory); the message says what to lower (`fix`). Returns the comparison as one line for the
    command's log ('1.2 GiB of the 7.8 GiB of memory available').

    `needed` is a lower bound of what the work allocates (the trainers' and readers' counts of inputs
    and the activations a step must keep), so this refuses only what cannot fit; estimated=True says it is
    an estimate instead (the samplers' peak models), and the message says so.

    The error is a ConfigError, exit status 2 like any bad flag: every `fix` is a smaller setting or input
    (--batch-size, --size, a shorter video). MachineError (status 1) is for a machine that fails work
    which would fit (a missing tool, an allocation refused under a limit)."""
    available = available_memory(device)
    on_gpu = device is not None and str(device).startswith("cuda")
    where = f"free on {device}" if on_gpu else "of memory available"
    if available is None:
        return f"{format_bytes(needed)} ({where} unknown)"
    if needed > available or not math.isfinite(needed):
        amount = "an estimated" if estimated else "at least"
        raise ConfigError(
            f"{what} needs {amount} {format_bytes(needed)}, more than the {format_bytes(available)} "
            f"{where}; {fix}"
        )
    return f"{format_bytes(needed)} of the {format_bytes(available)} {where}"
