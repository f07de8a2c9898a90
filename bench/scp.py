"""SSH file transfer: `scp` of one file from an OpenSSH server, directly and through an OpenSSH
jump host (`scp -J`), the baseline an SSH-speaking node will be compared with.

Two Debian `sshd` processes on free loopback ports (the target, and the jump host that only
forwards), key authentication, default ciphers; `scp` downloads a file of random bytes and the
figure is its size over the wall time of the whole `scp` command (handshakes included), with
MB = 10^6 bytes. The node has no SSH listener yet: its leg is recorded as such, with no figure.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness.processes import Process, free_port, port_open, wait_until

NODE_LEG_STATUS = "node has no SSH listener yet"


def node_leg_placeholder() -> dict[str, str]:
    """What the node's leg records until the node speaks SSH: a status, never a figure."""
    return {"status": NODE_LEG_STATUS}


def sshd_binary() -> str:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else "")
    if not found:
        raise FileNotFoundError("sshd not found; run `make system-deps`")
    return found


def version() -> str:
    try:
        return subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    except OSError:
        return "not found"


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


class Sshd:
    """One OpenSSH server on a loopback port that accepts `client_key` for the current user."""

    def __init__(self, name: str, home: Path, client_public_key: str) -> None:
        self.name = name
        self.dir = home / name
        self.dir.mkdir(mode=0o700)
        self.port = free_port()
        _keygen(self.dir / "host_key")
        (self.dir / "authorized_keys").write_text(client_public_key)
        (self.dir / "sshd_config").write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.dir / 'host_key'}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "AllowTcpForwarding yes\n"
            "Subsystem sftp internal-sftp\n"
        )
        self.process: Process | None = None

    def start(self) -> Sshd:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        self.process = Process(
            f"sshd-{self.name}-{self.port}",
            [sshd_binary(), "-D", "-e", "-f", str(self.dir / "sshd_config")],
            self.dir,
        ).start()
        try:
            wait_until(lambda: port_open(self.port), 15, f"sshd {self.name}")
        except BaseException as exc:
            log = self.process.log()
            self.stop()
            raise RuntimeError(f"sshd did not start:\n{log}") from exc
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class SshPair:
    """A target sshd, a jump-host sshd and an ssh client configuration naming both."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="lg-bench-ssh-"))
        key = self.home / "client_key"
        _keygen(key)
        public = (self.home / "client_key.pub").read_text()
        self.target = Sshd("target", self.home, public)
        self.jump = Sshd("jump", self.home, public)
        self.config = self.home / "ssh_config"
        self.config.write_text(
            f"Host target\n  HostName 127.0.0.1\n  Port {self.target.port}\n"
            f"Host jump\n  HostName 127.0.0.1\n  Port {self.jump.port}\n"
            "Host *\n"
            f"  User {getpass.getuser()}\n"
            f"  IdentityFile {key}\n"
            "  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n"
            "  BatchMode yes\n"
            "  LogLevel ERROR\n"
        )

    def start(self) -> SshPair:
        try:
            self.target.start()
            self.jump.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.target.stop()
        self.jump.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def scp(self, remote: Path, local: Path, jump: bool) -> float:
        """Seconds for one `scp target:remote local`, through the jump host when asked."""
        argv = ["scp", "-q", "-F", str(self.config), *(["-J", "jump"] if jump else [])]
        began = time.perf_counter()
        result = subprocess.run(
            [*argv, f"target:{remote}", str(local)], capture_output=True, text=True, timeout=600
        )
        seconds = time.perf_counter() - began
        if result.returncode != 0:
            logs = "\n".join(s.process.log() for s in (self.target, self.jump) if s.process)
            raise RuntimeError(f"scp failed: {result.stderr[-2000:]}\n{logs[-2000:]}")
        return seconds


def write_file(path: Path, size: int) -> None:
    chunk = 1 << 20
    with path.open("wb") as f:
        for offset in range(0, size, chunk):
            f.write(os.urandom(min(chunk, size - offset)))


def run(pair: SshPair, size: int) -> dict[str, Any]:
    """MB/s of one download of `size` random bytes per leg; the node leg is a placeholder."""
    remote = pair.home / "payload.bin"
    write_file(remote, size)
    figures: dict[str, Any] = {}
    for leg, jump in (("direct", False), ("jump", True)):
        local = pair.home / f"received-{leg}.bin"
        seconds = pair.scp(remote, local, jump)
        if local.stat().st_size != size:
            raise RuntimeError(f"{leg}: received {local.stat().st_size} of {size} bytes")
        local.unlink()
        figures[f"{leg}_mb_per_s"] = size / 1e6 / seconds
    remote.unlink()
    return figures
