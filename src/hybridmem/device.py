"""The machine a command runs on: which torch device, and how much memory a new allocation can get.

Every layer that places tensors or refuses work that cannot fit reads these (the trainers, the encoder,
the samplers, the readers of untrusted files), so they live here, below all of them. torch is imported
inside the functions: the readers and `hybridmem --help` do not pay for it.

    device = resolve_device("auto")              # cuda:0 when CUDA is there, else cpu
    check_memory(needed_bytes, "decoding clip.mp4", "pass a smaller video", device)
"""

from __future__ import annotations

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
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(count) < 1024 or unit == "PB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} PB"


def available_memory(device=None) -> int | None:
    """Bytes a new allocation can get: the GPU's total memory for a CUDA device, else the RAM available
    (Linux MemAvailable; physical RAM elsewhere). None when unknown (then nothing is refused)."""
    device_text = str(device) if device is not None else "cpu"
    if device_text.startswith("cuda"):
        try:
            import torch

            return int(torch.cuda.get_device_properties(torch.device(device_text)).total_memory)
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


def check_memory(needed: float, what: str, fix: str, device=None) -> None:
    """ConfigError when the lower bound `needed` (bytes) exceeds what the device has; says what to lower.

    Estimates are lower bounds of what a step allocates (inputs plus the activations it must keep), so
    this refuses only what cannot fit, never what might."""
    available = available_memory(device)
    if available is not None and needed > available:
        on_gpu = device is not None and str(device).startswith("cuda")
        where = f"on {device}" if on_gpu else "of memory available"
        raise ConfigError(
            f"{what} needs at least {format_bytes(needed)}, more than the {format_bytes(available)} "
            f"{where}; {fix}"
        )
