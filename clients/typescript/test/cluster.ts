// A throwaway PostgreSQL cluster for the tests: initdb in a temporary
// directory, a Unix socket only (listen_addresses = ''), a port of its own,
// tool_audit preloaded and created. Needs PostgreSQL 15's binaries
// (PG_BINDIR, or `pg_config --bindir` with PG_CONFIG) with the extension
// installed, and a user initdb accepts (scripts/test.sh runs the tests as
// postgres when it is root).
import { execFileSync } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

function bindir(): string {
  if (process.env.PG_BINDIR) return process.env.PG_BINDIR;
  return execFileSync(process.env.PG_CONFIG ?? "pg_config", ["--bindir"], { encoding: "utf8" }).trim();
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export class Cluster {
  readonly bin = bindir();
  readonly dir = mkdtempSync(join(tmpdir(), "ta_client_ts_"));
  readonly data = join(this.dir, "data");
  port = 0;

  static async create(): Promise<Cluster> {
    if (process.getuid?.() === 0) throw new Error("initdb refuses root: run the tests as another user");
    const c = new Cluster();
    c.port = await freePort();
    execFileSync(join(c.bin, "initdb"), ["-D", c.data, "-U", "postgres", "-A", "trust", "--no-sync",
                                         "--no-instructions"], { stdio: "ignore" });
    appendFileSync(join(c.data, "postgresql.conf"),
      `port = ${c.port}\nlisten_addresses = ''\nunix_socket_directories = '${c.dir}'\n` +
      "shared_preload_libraries = 'tool_audit'\nfsync = off\n");
    c.start();
    c.psql("CREATE EXTENSION tool_audit");
    return c;
  }

  /** node-postgres connection settings (host: the socket directory) */
  get config() { return { host: this.dir, port: this.port, user: "postgres", database: "postgres" }; }
  get connectionString() { return `postgresql://postgres@${encodeURIComponent(this.dir)}:${this.port}/postgres`; }

  private pgCtl(...args: string[]) {
    execFileSync(join(this.bin, "pg_ctl"), ["-D", this.data, "-l", join(this.dir, "server.log"), ...args],
                 { stdio: "ignore" });
  }

  start() { this.pgCtl("-w", "start"); }

  /** pg_ctl stop -m immediate: the server goes as in a crash. */
  kill() { this.pgCtl("-m", "immediate", "stop"); }

  psql(sql: string): string {
    return execFileSync(join(this.bin, "psql"),
      ["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", this.dir, "-p", String(this.port), "-U", "postgres",
       "-d", "postgres", "-c", sql], { encoding: "utf8", maxBuffer: 64 << 20 });
  }

  destroy() {
    if (existsSync(join(this.data, "postmaster.pid"))) {
      try { this.kill(); } catch { /* already gone */ }
    }
    if (!process.env.TA_KEEP_WORK) rmSync(this.dir, { recursive: true, force: true });
  }
}
