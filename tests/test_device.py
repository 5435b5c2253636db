"""hybridmem.device: the one memory check every layer uses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hybridmem
from hybridmem import device
from hybridmem.errors import ConfigError

PACKAGE = Path(hybridmem.__file__).parent
ONE_HOME = {"available_memory", "check_memory", "resolve_device", "format_bytes"}


def test_the_memory_check_is_defined_once_in_the_package():
    """A second definition (sample/plan.py once had its own, with other semantics) would let two commands
    disagree about what fits; callers import hybridmem.device instead."""
    defined = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in ONE_HOME:
                defined.setdefault(node.name, []).append(str(path.relative_to(PACKAGE)))
    assert defined == {name: ["device.py"] for name in ONE_HOME}


def test_sample_plan_keeps_no_memory_check_of_its_own():
    from hybridmem.sample import plan

    assert not hasattr(plan, "available_bytes")
    assert getattr(plan, "check_memory", device.check_memory) is device.check_memory


def test_check_memory_refuses_what_exceeds_the_room_and_says_the_fix(monkeypatch):
    monkeypatch.setattr(device, "available_memory", lambda device=None: 4 * 2**30)
    line = device.check_memory(3 * 2**30, "a step", "lower --batch-size")
    assert line == "3.0 GiB of the 4.0 GiB of memory available"
    with pytest.raises(ConfigError, match=r"^a step needs at least 5.0 GiB, more than the 4.0 GiB of memory"):
        device.check_memory(5 * 2**30, "a step", "lower --batch-size")
    with pytest.raises(ConfigError, match=r"needs an estimated 5.0 GiB.*; lower --batch-size$"):
        device.check_memory(5 * 2**30, "a step", "lower --batch-size", estimated=True)
    with pytest.raises(ConfigError, match="needs at least nan"):
        device.check_memory(float("nan"), "a step", "lower --batch-size")


def test_check_memory_refuses_nothing_when_the_room_is_unknown(monkeypatch):
    monkeypatch.setattr(device, "available_memory", lambda device=None: None)
    assert (
        device.check_memory(2**60, "a step", "lower --batch-size")
        == "1024.0 PiB (of memory available unknown)"
    )


def test_a_gpu_offers_its_free_memory_and_this_process_cache_not_its_total(monkeypatch):
    """A new allocation on a GPU gets what is free there (another job, or weights already moved there,
    hold the rest) plus what torch's caching allocator holds unused in this process."""
    import torch

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda gpu: (3 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda gpu: 2 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda gpu: 2**30)
    assert device.available_memory("cuda:0") == 4 * 2**30
    with pytest.raises(ConfigError, match=r"5.0 GiB, more than the 4.0 GiB free on cuda:0; lower"):
        device.check_memory(5 * 2**30, "a step", "lower --batch-size", "cuda:0")


def test_no_cuda_means_an_unknown_room_not_a_crash(monkeypatch):
    import torch

    def no_cuda(gpu):
        raise RuntimeError("Found no NVIDIA driver on your system")

    monkeypatch.setattr(torch.cuda, "mem_get_info", no_cuda)
    assert device.available_memory("cuda:0") is None


def test_format_bytes_names_binary_units():
    assert [device.format_bytes(n) for n in (512, 1536, 3 * 2**30)] == ["512 B", "1.5 KiB", "3.0 GiB"]
