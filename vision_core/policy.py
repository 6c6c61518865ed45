"""What one class may use of a shared server: run budgets, queue limits, save quotas and the teacher's password.

Defaults suit a 2-core laptop CPU and one GPU. A teacher changes them in one place, a TOML file: ``class.toml`` at
the repository's root (copy ``class.example.toml``), or the file named by ``VISION_EXPLORER_CONFIG``. No code changes.

>>> load_policy().queue.max_active_per_owner
3
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = ROOT / "class.toml"
MB = 2**20


class PolicyError(ValueError):
    """The class configuration file cannot be used; the message names the file and the setting."""


@dataclass(frozen=True)
class Budget:
    """What one run may use on one kind of device. Checked before a run is queued (an estimate from its config) and
    enforced while it runs (the operating system's memory limit on the worker process, a wall clock)."""

    memory_mb: int  # the worker process's data segment (RLIMIT_DATA): torch itself takes about 800 MB of it
    wall_seconds: int  # a run still going after this is stopped
    gflops_per_second: float  # what this device sustains training small CNNs: turns a run's FLOPs into seconds
    threads: int = 0  # CPU threads for a run's torch (0: all the cores; the run is niced, so the class still wins)
    gpu_memory_fraction: float = 0.9  # CUDA: torch.cuda.set_per_process_memory_fraction


@dataclass(frozen=True)
class QueueLimits:
    max_active_per_owner: int = 3  # waiting or running runs of one browser (a sweep counts as its runs)
    max_active_total: int = 40
    max_jobs_kept: int = 200  # finished runs remembered (their events and weights) before the oldest go


@dataclass(frozen=True)
class SaveQuota:
    max_runs_per_owner: int = 10
    max_total_mb: int = 2_000  # every saved run's files together
    min_free_disk_mb: int = 1_000  # a save never leaves less than this free on the disk


@dataclass(frozen=True)
class Policy:
    cpu: Budget = Budget(memory_mb=3_000, wall_seconds=900, gflops_per_second=25.0)
    cuda: Budget = Budget(memory_mb=6_000, wall_seconds=1_800, gflops_per_second=5_000.0)
    queue: QueueLimits = QueueLimits()
    saves: SaveQuota = SaveQuota()
    teacher_password: str = ""  # empty: no teacher role
    teacher_password_sha256: str = ""  # or its SHA-256 in hex, so the file need not hold the password itself
    source: str = "built-in defaults"

    def budget(self, device_type: str) -> Budget:
        return self.cuda if device_type == "cuda" else self.cpu

    def is_teacher_password(self, password: str) -> bool:
        """Constant-time comparison; always False when no teacher password is configured."""
        if self.teacher_password_sha256:
            digest = hashlib.sha256(password.encode()).hexdigest()
            return hmac.compare_digest(digest, self.teacher_password_sha256.lower())
        return bool(self.teacher_password) and hmac.compare_digest(password.encode(), self.teacher_password.encode())

    @property
    def has_teacher(self) -> bool:
        return bool(self.teacher_password or self.teacher_password_sha256)


def _section(default: Any, values: Any, where: str) -> Any:
    """``default`` (a Budget, QueueLimits or SaveQuota) with the file's ``values``, each checked."""
    if not isinstance(values, dict):
        raise PolicyError(f"{where} must be a table")
    known = {f.name: f for f in dataclasses.fields(default)}
    if unknown := sorted(set(values) - set(known)):
        raise PolicyError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for key, value in values.items():
        whole = known[key].type in ("int", int)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (whole and not isinstance(value, int)):  # fmt: skip
            raise PolicyError(f"{where}.{key} must be a {'whole number' if whole else 'number'} >= 0")
    return dataclasses.replace(default, **values)


def load_policy(path: str | Path | None = None) -> Policy:
    """The class policy from ``path`` (default: ``$VISION_EXPLORER_CONFIG``, else ``class.toml`` if present)."""
    path = Path(path or os.environ.get("VISION_EXPLORER_CONFIG") or CONFIG_FILE)
    if not path.is_file():
        if path != CONFIG_FILE:  # named explicitly: a missing file is a mistake, not a default
            raise PolicyError(f"no class configuration at {path}")
        return Policy()
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PolicyError(f"{path} is not valid TOML: {error}") from None
    runs, teacher = values.pop("runs", {}), values.pop("teacher", {})
    values.pop("lecture", None)  # the lecturer's scenes file: read by ui/scenes.py
    if values:
        raise PolicyError(f"{path}: unknown table(s) {', '.join(values)}; known: runs, teacher, lecture")
    defaults = Policy()
    sections = {"cpu": defaults.cpu, "cuda": defaults.cuda, "queue": defaults.queue, "saves": defaults.saves}
    if unknown := sorted(set(runs) - set(sections)):
        raise PolicyError(f"{path}: unknown table(s) runs.{', runs.'.join(unknown)}")
    chosen = {key: _section(default, runs[key], f"runs.{key}") for key, default in sections.items() if key in runs}
    if unknown := sorted(set(teacher) - {"password", "password_sha256"}):
        raise PolicyError(f"{path}: unknown setting(s) teacher.{', teacher.'.join(unknown)}")
    return Policy(
        **chosen,
        teacher_password=str(teacher.get("password", "")),
        teacher_password_sha256=str(teacher.get("password_sha256", "")),
        source=str(path),
    )
