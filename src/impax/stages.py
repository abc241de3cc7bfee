"""Resumable multi-stage jobs (``impax demo`` and friends).

A job is a list of named stages run in order inside one output folder. A finished stage leaves a
marker ``OUT/.stages/NAME.json`` holding its summary (written atomically, last), so running the
job again skips every finished stage and reuses its summary; an interrupted stage simply runs
again (training stages continue from their own checkpoints). Changing a stage's ``key`` (for
example its configuration) invalidates its marker.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[], dict[str, Any] | None]
    key: str = ""  # anything that must match for a cached result to be reused
    title: str = ""


class StageRunner:
    def __init__(self, out: str | Path, log: Callable[[str], None] | None = None) -> None:
        self.out = Path(out)
        self.marker_dir = self.out / ".stages"
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.summaries: dict[str, dict[str, Any]] = {}
        self.reused: list[str] = []

    def _marker(self, name: str) -> Path:
        return self.marker_dir / f"{name}.json"

    def done(self, stage: Stage) -> dict[str, Any] | None:
        m = self._marker(stage.name)
        if not m.is_file():
            return None
        try:
            data = json.loads(m.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if data.get("key") != stage.key:
            return None
        return data.get("summary", {})

    def run(self, stages: list[Stage]) -> dict[str, dict[str, Any]]:
        n = len(stages)
        for i, st in enumerate(stages, 1):
            cached = self.done(st)
            label = f"[{i}/{n}] {st.title or st.name}"
            if cached is not None:
                self.log(f"{label}: done earlier, reusing")
                self.summaries[st.name] = cached
                self.reused.append(st.name)
                continue
            self.log(f"{label} ...")
            t0 = time.perf_counter()
            summary = dict(st.run() or {})
            summary.setdefault("seconds", round(time.perf_counter() - t0, 2))
            self.summaries[st.name] = summary
            tmp = self._marker(st.name).with_suffix(".tmp")
            tmp.write_text(json.dumps({"key": st.key, "summary": summary}, indent=2, default=str))
            os.replace(tmp, self._marker(st.name))
            self.log(f"{label}: finished in {summary['seconds']:.1f}s")
        return self.summaries
