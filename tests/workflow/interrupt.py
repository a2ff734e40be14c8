"""Kill a workflow's jobs while it runs: the helper of the interruption tests (issue 31)."""

import os
import random
import signal
import subprocess
import threading
import time

import psutil


def job_processes(root_pid: int, rule: str) -> list:
    """The running processes of a rule's job under a Snakemake process: Snakemake runs a script rule as
    ``python .../.snakemake/scripts/tmpXXXX.<rule>.py`` (the shell that starts it carries the name too)."""
    try:
        kids = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for kid in kids:
        try:
            if any(arg.endswith(f".{rule}.py") for arg in kid.cmdline()):
                found.append(kid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return found


class Killer(threading.Thread):
    """Watches a Snakemake run and kills the jobs of chosen rules: the ``n``-th attempt of ``rule``'s job
    receives ``plan[rule][n]`` (a signal) after a random delay of up to ``max_delay_s[rule]`` seconds, or,
    when ``ready[rule][n]`` is given, once that function returns true and then up to a second later.
    ``kills`` records (rule, attempt, signal name, seconds after the job started)."""

    def __init__(self, proc: subprocess.Popen, plan: dict, ready: dict | None = None, seed: int = 0,
                 max_delay_s: dict | None = None):
        super().__init__(daemon=True)
        self.proc, self.plan, self.ready = proc, plan, ready or {}
        self.rng = random.Random(seed)
        self.max_delay_s = max_delay_s or {}
        self.kills: list = []
        self.seen = {rule: [] for rule in plan}

    def run(self):
        while self.proc.poll() is None:
            for rule, signals in self.plan.items():
                procs = job_processes(self.proc.pid, rule)
                pids = {p.pid for p in procs}
                if not procs or pids & set(self.seen[rule]):
                    continue
                attempt = len(self.seen[rule])
                self.seen[rule] += list(pids)
                if attempt < len(signals):
                    self._kill(rule, attempt, signals[attempt], procs)
            time.sleep(0.05)

    def _kill(self, rule, attempt, sig, procs):
        start = time.time()
        ready = (self.ready.get(rule) or [None] * (attempt + 1))[attempt]
        while ready is not None and not ready() and all(p.is_running() for p in procs):
            time.sleep(0.05)
        time.sleep(self.rng.uniform(0.1, 1.0 if ready else max(0.2, self.max_delay_s.get(rule, 2.0))))
        alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return  # it finished first: not recorded, so the test sees that the kill did not happen
        for p in alive:
            with _suppress():
                os.kill(p.pid, sig)
        self.kills.append((rule, attempt, signal.Signals(sig).name, round(time.time() - start, 2)))


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, ProcessLookupError)
