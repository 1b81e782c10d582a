"""Upload memory: how much the server's resident memory grows while a large tus upload streams in.

Starts a real ``craftreel serve`` (SQLite in a temporary var dir, in-process jobs), signs up,
then for each size creates a tus upload of kind video and sends pseudo-random bytes in PATCH
requests, never holding the file in the client's memory either. A thread reads the server's
VmRSS from /proc every ~20 ms; the kernel's high-water mark (VmHWM, reset before each upload)
catches any peak between samples. Processing then refuses the random bytes by content
(``not_media``), which is expected: this benchmark is about the upload.

Target (issue 3): growth at most 64 MiB, and no growth with size.

    .venv/bin/python bench/upload_memory.py                 # 256 MiB and 2 GiB
    .venv/bin/python bench/upload_memory.py --sizes 256 1024 --patch-mib 16
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

import report
from craftreel.config import Settings

MIB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
PASSWORD = "correct horse battery staple"  # noqa: S105 - a throwaway account
TARGET_GROWTH_MIB = 64
#: How much more a larger upload may grow the server than a smaller one and still count as
#: "no growth with size" (allocator and sampling noise).
SIZE_TOLERANCE_MIB = 8
#: Free disk an upload needs: its parts, plus the joined source written beside them.
DISK_FACTOR = 3
PROC_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")


def proc_status(pid: int) -> dict[str, int]:
    """Memory lines of /proc/<pid>/status, in bytes."""
    figures: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in PROC_FIELDS:
                figures[name] = int(rest.split()[0]) * 1024  # the kernel reports kB
    return figures


def reset_peak(pid: int) -> bool:
    """Reset the kernel's VmHWM for `pid` to its current RSS (Linux ≥ 4.0, own processes)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


class RssSampler(threading.Thread):
    """Reads the server's memory every `interval` seconds until stopped, keeping the peaks."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples = 0
        self.peak: dict[str, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for name, value in proc_status(self.pid).items():
                self.peak[name] = max(value, self.peak.get(name, 0))
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> dict[str, int]:
        self._halt.set()
        self.join()
        return self.peak


def pseudo_random_body(length: int, seed: int) -> Iterator[bytes]:
    """`length` incompressible bytes, 1 MiB at a time: one random block, rotated differently
    for every block so that no two are alike, at memory-copy speed (random.randbytes would
    cost the client a whole core at these rates, on a machine it shares with the server)."""
    rng = random.Random(seed)
    block = rng.randbytes(MIB)
    sent = 0
    while sent < length:
        turn = rng.randrange(MIB)
        chunk = (block[turn:] + block[:turn])[: min(MIB, length - sent)]
        sent += len(chunk)
        yield chunk


def tus_metadata(**values: str) -> str:
    """A tus Upload-Metadata header: comma-separated ``key base64(value)`` pairs."""
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``craftreel serve`` in its own process, on a fresh SQLite database in `var_dir`."""

    def __init__(self, var_dir: Path, part_mib: int | None) -> None:
        self.var_dir = var_dir
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = var_dir.parent / "server.log"
        self.env = {
            **os.environ,
            "CRAFTREEL_DEMO_MODE": "true",
            "CRAFTREEL_VAR_DIR": str(var_dir),
            "CRAFTREEL_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'craftreel.db'}",
            "CRAFTREEL_JOBS_BACKEND": "inprocess",
            "CRAFTREEL_LOG_LEVEL": "WARNING",
        }
        if part_mib is not None:
            self.env["CRAFTREEL_UPLOAD_PART_MIB"] = str(part_mib)
        self.process: subprocess.Popen[bytes] | None = None
        #: More `craftreel serve` arguments (e.g. ``["--workers", "2"]``).
        self.serve_args: list[str] = []

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "craftreel.cli_main", *args]

    def start(self) -> None:
        # Migrated beforehand, so the server process never imports alembic.
        subprocess.run(self._command("migrate"), env=self.env, check=True, capture_output=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self._command("serve", "--port", str(self.port), *self.serve_args),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.log}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"the server did not answer within 60 s; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def sign_up(client: httpx.Client) -> dict[str, str]:
    """A new account's bearer header."""
    email = "bench@example.org"
    signup = client.post(
        "/api/v1/auth/signup", json={"email": email, "handle": "bench", "password": PASSWORD}
    )
    signup.raise_for_status()
    tokens = client.post("/api/v1/auth/signin", json={"email": email, "password": PASSWORD})
    tokens.raise_for_status()
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


@dataclass
class UploadRun:
    size_mib: int
    patch_mib: int
    seconds: float
    throughput_mib_s: float
    baseline_rss_mib: float
    peak_rss_mib: float
    growth_mib: float
    peak_sampled_mib: float
    peak_hwm_mib: float | None
    growth_anon_mib: float
    growth_file_mib: float
    after_rss_mib: float
    samples: int
    outcome: str
    #: How long we waited for other work on the machine to stop first, and its load then.
    quiet_wait_s: float
    foreign_cores_before: float
    warmup: bool = False
    patch_seconds: list[float] = field(default_factory=list)


def _mib(value: float) -> float:
    return round(value / MIB, 1)


def _settled_baseline(pid: int, seconds: float = 0.5) -> dict[str, int]:
    """Median of the server's memory figures over a short idle spell."""
    readings = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        readings.append(proc_status(pid))
        time.sleep(0.02)
    return {name: int(statistics.median(r[name] for r in readings)) for name in readings[0]}


def _wait_for_processing(client: httpx.Client, auth: dict[str, str], media_id: str) -> str:
    """Wait until the server has dealt with the finished upload; its status (and code)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        media = client.get(f"/api/v1/media/{media_id}", headers=auth).json()
        if media["status"] in ("ready", "failed"):
            failure = media.get("failure") or {}
            return f"{media['status']} {failure.get('code', '')}".strip()
        time.sleep(0.2)
    return "still processing after 120 s"


def _remove_upload_files(var_dir: Path, media_id: str) -> None:
    """Whatever of this upload is still on disk (processing deletes a refused source itself)."""
    shutil.rmtree(var_dir / "uploads" / media_id, ignore_errors=True)
    shutil.rmtree(var_dir / "media" / "media" / media_id, ignore_errors=True)
    for work in (var_dir / "work").glob(f"{media_id}-*"):
        shutil.rmtree(work, ignore_errors=True)


def upload_once(
    server: Server,
    client: httpx.Client,
    auth: dict[str, str],
    size: int,
    patch: int,
    quiet_wait: float,
    warmup: bool = False,
) -> UploadRun:
    """One tus upload of `size` bytes in PATCHes of `patch` bytes, measured."""
    created = client.post(
        "/api/v1/uploads",
        headers={
            **TUS,
            **auth,
            "Upload-Length": str(size),
            "Upload-Metadata": tus_metadata(kind="video", filename="bench.mp4"),
        },
    )
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    media_id = url.rsplit("/", 1)[1]

    # Someone else's CPU-heavy work would slow the upload down (memory is not affected).
    quiet_wait_s, foreign_cores = report.wait_for_quiet(quiet_wait)
    baseline = _settled_baseline(server.pid)
    hwm_reset = reset_peak(server.pid)
    sampler = RssSampler(server.pid)
    sampler.start()
    patch_seconds = []
    started = time.perf_counter()
    for offset in range(0, size, patch):
        length = min(patch, size - offset)
        began = time.perf_counter()
        response = client.patch(
            url,
            content=pseudo_random_body(length, seed=offset),
            headers={
                **TUS,
                **auth,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(length),
            },
        )
        patch_seconds.append(round(time.perf_counter() - began, 3))
        assert response.status_code == 204, response.text
        assert int(response.headers["Upload-Offset"]) == offset + length
    seconds = time.perf_counter() - started
    hwm = proc_status(server.pid)["VmHWM"] if hwm_reset else None
    peak = sampler.stop()

    outcome = _wait_for_processing(client, auth, media_id)
    after = proc_status(server.pid)["VmRSS"]
    _remove_upload_files(server.var_dir, media_id)

    peak_rss = max(peak["VmRSS"], hwm or 0)
    return UploadRun(
        size_mib=size // MIB,
        patch_mib=patch // MIB,
        seconds=round(seconds, 2),
        throughput_mib_s=round(size / MIB / seconds, 1),
        baseline_rss_mib=_mib(baseline["VmRSS"]),
        peak_rss_mib=_mib(peak_rss),
        growth_mib=_mib(peak_rss - baseline["VmRSS"]),
        peak_sampled_mib=_mib(peak["VmRSS"]),
        peak_hwm_mib=_mib(hwm) if hwm is not None else None,
        growth_anon_mib=_mib(peak["RssAnon"] - baseline["RssAnon"]),
        growth_file_mib=_mib(peak["RssFile"] - baseline["RssFile"]),
        after_rss_mib=_mib(after),
        samples=sampler.samples,
        outcome=outcome,
        quiet_wait_s=quiet_wait_s,
        foreign_cores_before=foreign_cores,
        warmup=warmup,
        patch_seconds=patch_seconds,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[256, 2048], help="upload sizes in MiB"
    )
    parser.add_argument("--patch-mib", type=int, default=64, help="bytes per PATCH request")
    parser.add_argument(
        "--part-mib", type=int, help="CRAFTREEL_UPLOAD_PART_MIB for the server (default: its own)"
    )
    parser.add_argument("--warmup-mib", type=int, default=24, help="an unmeasured upload first")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60,
        help="at most this many seconds to wait, before each upload, for other load to stop",
    )
    parser.add_argument("--tmp", type=Path, help="where the server's var dir goes")
    parser.add_argument("--keep", action="store_true", help="keep the var dir and server log")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="craftreel-bench-upload-", dir=args.tmp))
    server = Server(root / "var", args.part_mib)
    runs: list[UploadRun] = []
    skipped: list[str] = []
    try:
        server.start()
        with httpx.Client(base_url=server.base, timeout=httpx.Timeout(600, connect=10)) as client:
            auth = sign_up(client)
            if args.warmup_mib:
                # Lazy imports, first connections and allocator arenas are not upload memory.
                runs.append(
                    upload_once(
                        server,
                        client,
                        auth,
                        args.warmup_mib * MIB,
                        args.patch_mib * MIB,
                        quiet_wait=0,
                        warmup=True,
                    )
                )
            for size_mib in args.sizes:
                size = size_mib * MIB
                free = shutil.disk_usage(root).free
                if free < DISK_FACTOR * size:
                    message = (
                        f"skipped the {size_mib} MiB upload: {free / 1024**3:.1f} GiB free "
                        f"where it needs {DISK_FACTOR * size / 1024**3:.1f} GiB"
                    )
                    print(message, file=sys.stderr)
                    skipped.append(message)
                    continue
                runs.append(
                    upload_once(server, client, auth, size, args.patch_mib * MIB, args.quiet_wait)
                )
                print(f"  {size_mib} MiB done: {runs[-1].growth_mib} MiB growth", file=sys.stderr)
    finally:
        server.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    measured = [run for run in runs if not run.warmup]
    worst = max((run.growth_mib for run in measured), default=0.0)
    by_size = sorted(measured, key=lambda run: run.size_mib)
    size_effect = by_size[-1].growth_mib - by_size[0].growth_mib if len(by_size) > 1 else 0.0
    met = (
        bool(measured)
        and worst <= TARGET_GROWTH_MIB
        and size_effect <= SIZE_TOLERANCE_MIB
        and not skipped
    )
    path = report.write(
        "upload_memory",
        {
            "target": {
                "growth_mib_at_most": TARGET_GROWTH_MIB,
                "size_effect_mib_at_most": SIZE_TOLERANCE_MIB,
            },
            "settings": {
                "patch_mib": args.patch_mib,
                "upload_part_mib": args.part_mib
                or Settings.model_fields["upload_part_mib"].default,
                "sample_interval_s": 0.02,
            },
            "runs": [asdict(run) for run in runs],
            "skipped": skipped,
            "worst_growth_mib": worst,
            "size_effect_mib": round(size_effect, 1),
            "target_met": met,
        },
    )
    print(
        report.table(
            [
                "upload",
                "MiB/s",
                "last PATCH s",
                "baseline MiB",
                "peak MiB",
                "growth MiB",
                "anon",
                "file",
                "after",
            ],
            [
                [
                    f"{run.size_mib} MiB" + (" (warm-up)" if run.warmup else ""),
                    run.throughput_mib_s,
                    run.patch_seconds[-1],
                    run.baseline_rss_mib,
                    run.peak_rss_mib,
                    run.growth_mib,
                    run.growth_anon_mib,
                    run.growth_file_mib,
                    run.after_rss_mib,
                ]
                for run in runs
            ],
        )
    )
    print(
        f"\nworst growth {worst} MiB (target ≤ {TARGET_GROWTH_MIB}); "
        f"largest minus smallest {size_effect:.1f} MiB (target ≤ {SIZE_TOLERANCE_MIB}): "
        f"{'met' if met else 'MISSED'}"
    )
    for message in skipped:
        print(message)
    print(f"written to {path}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
