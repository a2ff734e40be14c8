"""A one-node SLURM cluster on localhost, for testing the SLURM profile against a real scheduler.

Everything lives in one folder (configuration, munge key and socket, state, spool, logs); the
daemons run in the foreground as children of this process and are stopped by their process ids.
Nothing is started through systemd and nothing outside the folder is touched, apart from installing
Debian's ``slurm-wlm`` and ``munge`` when they are missing (which needs root).

The node declares one fake GPU (``gres.conf``: ``Name=gpu Type=fake File=/dev/null``), so a job that
asks ``--gpus=1`` is scheduled as on a GPU node; it then sees ``CUDA_VISIBLE_DEVICES`` but no device,
and our code runs on the CPU.

Jobs find ``srun`` through a wrapper in ``<folder>/bin`` that sets ``SLURM_CONF``: Snakemake's
jobstep plugin drops every ``SLURM_*`` variable before it calls ``srun`` in a job, and only a
cluster with its configuration in the default place (``/etc/slurm``) manages without it.

    python tests/workflow/minislurm.py start DIR    # prints the export line (SLURM_CONF, PATH)
    python tests/workflow/minislurm.py stop DIR
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
PARTITIONS = ("cpu", "gpu")  # the partition names of profiles/slurm/config.yaml


class Unavailable(RuntimeError):
    """This machine cannot run the cluster (not root, no apt, install failed): a reason to skip."""


def _program(name):
    return shutil.which(name) or str(Path("/usr/sbin", name))


def missing_programs():
    return [p for p in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue") if not Path(_program(p)).exists()]


def install():
    """Install slurm-wlm and munge with apt when missing. Raises Unavailable when that cannot be done."""
    if not missing_programs():
        return
    if os.geteuid() != 0:
        raise Unavailable(f"SLURM programs missing ({', '.join(missing_programs())}) and not root to install them")
    if shutil.which("apt-get") is None:
        raise Unavailable("SLURM programs missing and no apt-get to install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise Unavailable(f"{' '.join(cmd)} failed: {res.stderr.strip()[-500:]}")
    if missing_programs():
        raise Unavailable(f"still missing after apt-get install: {', '.join(missing_programs())}")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MiniSlurm:
    """A one-node SLURM cluster in ``folder``. Use as a context manager, or call start() and stop()."""

    def __init__(self, folder, cpus=None, mem_mb=None):
        self.dir = Path(folder).resolve()
        self.cpus = cpus or os.cpu_count()
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        self.mem_mb = mem_mb or int(total * 0.9)
        self.node = socket.gethostname().split(".")[0]
        self.procs = {}

    # --- files -------------------------------------------------------------------------------
    @property
    def conf(self):
        return self.dir / "etc" / "slurm.conf"

    @property
    def env(self):
        """The environment for SLURM's client commands (sbatch, squeue) and for Snakemake."""
        path = f"{self.dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        return dict(os.environ, SLURM_CONF=str(self.conf), PATH=path)

    def log(self, name):
        return self.dir / "log" / f"{name}.log"

    def write_config(self):
        for sub in ("etc", "munge", "state", "spool", "log", "run", "bin"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        # munged checks that its folders are not writable by others and can be reached by its user
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir / "munge", "munge", "munge")
        os.chmod(self.dir / "munge", 0o755)  # clients need to reach the socket; the key stays 0600
        key = self.dir / "munge" / "munge.key"
        if not key.exists():
            subprocess.run(["runuser", "-u", "munge", "--", _program("mungekey"), "--create", f"--keyfile={key}"],
                           check=True, capture_output=True)
        d = self.dir
        lines = [
            "ClusterName=landmarkflow-ci",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={d / 'munge' / 'munge.socket'}",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log('slurmctld')}",
            f"SlurmdLogFile={self.log('slurmd')}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "GresTypes=gpu",
            "MpiDefault=none",
            "ReturnToService=2",
            "SlurmctldTimeout=60",
            "SlurmdTimeout=300",
            "InactiveLimit=0",
            "KillWait=10",
            "MinJobAge=3600",  # finished jobs stay visible (squeue, scontrol) for an hour
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb} Gres=gpu:fake:1 State=UNKNOWN",
        ]
        lines += [f"PartitionName={p} Nodes=ALL Default={'YES' if i == 0 else 'NO'} MaxTime=INFINITE State=UP"
                  for i, p in enumerate(PARTITIONS)]
        self.conf.write_text("\n".join(lines) + "\n")
        # Snakemake's jobstep plugin removes every SLURM_* variable, SLURM_CONF included, before it
        # calls srun inside a job; a real cluster has its slurm.conf where srun looks by default
        # (/etc/slurm), this one does not, so the jobs find an srun that knows where it is.
        (self.dir / "bin").mkdir(exist_ok=True)
        wrapper = self.dir / "bin" / "srun"
        wrapper.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which("srun") or "/usr/bin/srun"} "$@"\n')
        wrapper.chmod(0o755)
        (self.dir / "etc" / "gres.conf").write_text(f"NodeName={self.node} Name=gpu Type=fake File=/dev/null\n")

    # --- daemons ------------------------------------------------------------------------------
    def _spawn(self, name, cmd):
        out = open(self.log(f"{name}.stdout"), "w")
        self.procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)

    def start(self, timeout=60):
        if os.geteuid() != 0:
            raise Unavailable("the SLURM daemons must be started as root")
        install()
        self.write_config()
        m = self.dir / "munge"
        self._spawn("munged", ["runuser", "-u", "munge", "--", _program("munged"), "--foreground",
                               f"--socket={m / 'munge.socket'}", f"--key-file={m / 'munge.key'}",
                               f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
                               f"--seed-file={m / 'munged.seed'}"])
        self._wait(lambda: (m / "munge.socket").exists(), timeout, "munged")
        self._spawn("slurmctld", [_program("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self._run(["squeue"]).returncode == 0, timeout, "slurmctld")
        self._spawn("slurmd", [_program("slurmd"), "-D", "-f", str(self.conf), "-N", self.node])
        self._wait(self.node_idle, timeout, "slurmd")
        return self

    def _run(self, cmd):
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env)

    def node_idle(self):
        res = self._run(["sinfo", "-h", "-N", "-o", "%t"])
        return res.returncode == 0 and res.stdout.split()[:1] == ["idle"]

    def _wait(self, ready, timeout, name):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            proc = self.procs[name]
            if proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.dir / 'log'}:\n{self.tail(name)}")
            if ready():
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{name} not ready after {timeout} s; see {self.dir / 'log'}:\n{self.tail(name)}")

    def tail(self, name, n=3000):
        texts = []
        for p in (self.log(name), self.log(f"{name}.stdout"), self.dir / "munge" / "munged.log"):
            if p.exists() and (name == "munged" or p.parent.name == "log"):
                texts.append(f"--- {p.name}\n{p.read_text(errors='replace')[-n:]}")
        return "\n".join(texts)

    def stop(self):
        """Stop the daemons this object started (slurmd, slurmctld, munged), by their process ids."""
        for name in reversed(DAEMONS):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        sys.exit(__doc__)
    folder = Path(argv[2])
    if argv[1] == "start":
        cluster = MiniSlurm(folder).start()
        pids = {n: p.pid for n, p in cluster.procs.items()}
        (folder / "run" / "pids").write_text("\n".join(f"{n} {pid}" for n, pid in pids.items()) + "\n")
        print(f"export SLURM_CONF={cluster.conf} PATH={cluster.dir / 'bin'}:$PATH")
        os._exit(0)  # leave the daemons running
    for line in reversed((folder / "run" / "pids").read_text().splitlines()):
        name, pid = line.split()
        try:
            os.killpg(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass


if __name__ == "__main__":
    main(sys.argv)
