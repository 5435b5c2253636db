"""Training logs: a long-format CSV (step, metric, value), TensorBoard, and a tqdm bar with loss and it/s.

Only rank 0 builds an enabled logger; other ranks get a disabled one whose methods do nothing, so the
training loop has no `if rank == 0` around every log call. On resume, CSV rows after the resumed step are
dropped so the file holds one continuous curve.
"""

from __future__ import annotations

import csv
from pathlib import Path

from hybridmem.errors import DataError

CSV_NAME = "metrics.csv"
CSV_FIELDS = ("step", "metric", "value")


def read_metrics(run_dir: str | Path, metric: str | None = None) -> list[tuple[int, str, float]]:
    """Rows (step, metric, value) of a run's CSV, optionally one metric only.

    A last line without its line end is a row cut short by a kill and is dropped (the resumed run writes
    it again); any other malformed row raises DataError naming the file and the line.
    """
    path = Path(run_dir) / CSV_NAME
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error}); delete it (the curve restarts)") from error
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines = lines[:-1]
    if not lines:
        return []
    reader = csv.reader(lines)
    header = next(reader)
    if tuple(header) != CSV_FIELDS:
        raise DataError(f"{path}: line 1 is {header}, expected the header {list(CSV_FIELDS)}")
    rows = []
    for number, fields in enumerate(reader, start=2):
        try:
            step, name, value = fields
            rows.append((int(step), name, float(value)))
        except ValueError:
            raise DataError(
                f"{path}: line {number} is {fields}, expected step (int), metric, value (number); fix or "
                "delete that line"
            ) from None
    return [row for row in rows if metric is None or row[1] == metric]


def truncate_metrics(run_dir: str | Path, after_step: int) -> None:
    """Drop CSV rows with step > after_step (atomically), so a resumed run continues one curve."""
    path = Path(run_dir) / CSV_NAME
    if not path.exists():
        return
    from hybridmem import publish

    rows = [row for row in read_metrics(run_dir) if row[0] <= after_step]
    with publish.staged(path) as temp, open(temp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        writer.writerows((step, metric, repr(value)) for step, metric, value in rows)


class TrainingLogger:
    def __init__(
        self,
        run_dir: str | Path,
        total_steps: int,
        start_step: int = 0,
        enabled: bool = True,
        tensorboard: bool = True,
        progress: bool = True,
    ):
        self.enabled = enabled
        self._bar = None
        self._writer = None
        self._csv = None
        if not enabled:
            return
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        truncate_metrics(run_dir, start_step)
        new_file = not (run_dir / CSV_NAME).exists()
        self._csv_handle = open(run_dir / CSV_NAME, "a", newline="")
        self._csv = csv.writer(self._csv_handle)
        if new_file:
            self._csv.writerow(CSV_FIELDS)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start_step + 1)
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_steps, initial=start_step, desc="train", unit="it", dynamic_ncols=True
            )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in metrics.items():
            self._csv.writerow((step, name, repr(float(value))))
            if self._writer is not None:
                self._writer.add_scalar(name, float(value), step)
        self._csv_handle.flush()

    def advance(self, steps: int = 1, loss: float | None = None) -> None:
        """Move the progress bar; tqdm shows it/s, we add the latest loss."""
        if self._bar is None:
            return
        self._bar.update(steps)
        if loss is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()
        self._csv_handle.close()
