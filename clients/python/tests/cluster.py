"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary
directory, a Unix socket only (listen_addresses = ''), a port of its own,
tool_audit preloaded and created. Needs the PostgreSQL 15 binaries
(PG_BINDIR, or `pg_config --bindir` with PG_CONFIG) and the extension
installed there; run as a user initdb accepts (scripts/test.sh runs the
tests as postgres when it is root)."""

import os
import shutil
import socket
import subprocess
import tempfile


def _bindir():
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    pg_config = os.environ.get("PG_CONFIG", "pg_config")
    return subprocess.check_output([pg_config, "--bindir"], text=True).strip()


def _free_port():
    # a TCP port nobody has bound on the loopback: the socket file's name
    # is all that uses it, but keep clear of other clusters' numbers too
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self):
        if os.geteuid() == 0:
            raise RuntimeError("initdb refuses root: run the tests as another user "
                               "(scripts/test.sh runs them as postgres)")
        self.bindir = _bindir()
        self.dir = tempfile.mkdtemp(prefix="ta_client_")
        self.data = os.path.join(self.dir, "data")
        self.port = _free_port()
        subprocess.run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres",
                        "-A", "trust", "--no-sync", "--no-instructions"],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"port = {self.port}\nlisten_addresses = ''\n"
                    f"unix_socket_directories = '{self.dir}'\n"
                    "shared_preload_libraries = 'tool_audit'\nfsync = off\n")
        self.start()
        self.psql("CREATE EXTENSION tool_audit")

    @property
    def conninfo(self):
        return f"host={self.dir} port={self.port} user=postgres dbname=postgres"

    def pg_ctl(self, *args):
        subprocess.run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data,
                        "-l", os.path.join(self.dir, "server.log"), *args],
                       check=True, stdout=subprocess.DEVNULL)

    def start(self):
        self.pg_ctl("-w", "start")

    def kill(self):
        """pg_ctl stop -m immediate: the server goes without a checkpoint,
        as in a crash; what was committed is replayed at the next start."""
        self.pg_ctl("-m", "immediate", "stop")

    def psql(self, sql):
        return subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-At", "-v",
                               "ON_ERROR_STOP=1", "-d", self.conninfo, "-c", sql],
                              check=True, capture_output=True, text=True).stdout

    def destroy(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self.pg_ctl("-m", "immediate", "stop")
            except subprocess.CalledProcessError:
                pass
        if not os.environ.get("TA_KEEP_WORK"):
            shutil.rmtree(self.dir, ignore_errors=True)
