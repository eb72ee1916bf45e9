"""Redis with a password and TLS (rediss://), as a managed Redis is usually run."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis
from jobs_core.config import Settings
from jobs_core.model import JobStatus
from jobs_core.store import JobStore
from support.redis_server import free_port

OPENSSL = shutil.which("openssl")
REDIS_SERVER = shutil.which("redis-server")


def _certs(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""
    assert OPENSSL
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt"))
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *a: subprocess.run([OPENSSL, *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "1", "-subj", "/CN=jobs-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "1", "-extfile", str(ext))
    return ca, cert, key


def test_rediss_with_password(tmp_path: Path) -> None:
    # scripts/bootstrap.sh installs both; without them this must fail, not skip
    assert OPENSSL and REDIS_SERVER, "openssl and redis-server are needed (make install adds them)"
    ca, cert, key = _certs(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
         "--tls-auth-clients", "no", "--requirepass", "s3cret", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"rediss://127.0.0.1:{port}/0"
        settings = Settings.from_env({"REDIS_URL": url, "REDIS_PASSWORD": "s3cret",
                                      "REDIS_TLS_CA_FILE": str(ca), "JOBS_KEY_PREFIX": "tls"})
        store = JobStore.from_settings(settings)
        deadline = time.monotonic() + 10
        while True:
            try:
                store.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        job, _ = store.enqueue("echo", {"over": "tls"})
        (claimed,) = store.claim("w", 1)
        assert claimed.id == job.id and store.get(job.id).status is JobStatus.RUNNING
        # without the password, or without trusting the CA, the same server refuses us
        with pytest.raises(redis.AuthenticationError):
            JobStore.from_settings(settings.replace(redis_password=None)).ping()
        with pytest.raises(redis.ConnectionError):
            JobStore.from_settings(settings.replace(redis_tls_ca_file=None)).ping()
    finally:
        proc.kill()
        proc.wait(10)
