// Test support: real refstored processes on short /tmp sockets (and loopback TCP), and the C++
// programs (refctl, tests/rs_helper) the JavaScript client exchanges values with.
//
// Binaries come from $REFSTORED, $REFCTL and $RS_HELPER (the Bazel test sets them from its
// runfiles), else from the repository's bazel-bin/ (after `bazel build //server:refstored
// //tools/refctl //tests:rs_helper`), so `npm test` works by hand too.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after } from "node:test";
import { fileURLToPath } from "node:url";

// dist/test/harness.js -> the package directory -> the repository.
const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const repository = resolve(packageDir, "..", "..");

function binary(variable: string, bazelPath: string): string {
  const path = process.env[variable] ?? join(repository, "bazel-bin", bazelPath);
  if (!existsSync(path)) {
    throw new Error(`${path} not found: set $${variable} or bazel build //${dirname(bazelPath)}`);
  }
  return path;
}

export const refstored = () => binary("REFSTORED", "server/refstored");
export const refctlPath = () => binary("REFCTL", "tools/refctl/refctl");
export const rsHelper = () => binary("RS_HELPER", "tests/rs_helper");
export const examplesDir = join(packageDir, "dist", "examples");
export const fixturesDir = join(packageDir, "dist", "test", "fixtures");

/** A fresh directory for this test process's files. */
export function workDir(): string {
  const base = process.env.TEST_TMPDIR ?? tmpdir();
  mkdirSync(base, { recursive: true });
  return mkdtempSync(join(base, "js-"));
}

export interface DaemonOptions {
  memory?: string;
  tcp?: boolean;
  /** Require this cluster secret on TCP (implies tcp). */
  secret?: string;
  extraArgs?: string[];
}

export class Daemon {
  private constructor(
    readonly process: ChildProcess,
    readonly socket: string,
    readonly port: number | undefined,
    private readonly stderr: string[],
  ) {}

  /** Starts refstored and waits until it accepts connections. */
  static async start(options: DaemonOptions = {}): Promise<Daemon> {
    const work = workDir();
    // Random, short (Unix socket paths are limited to 107 bytes), directly under /tmp.
    const socket = `/tmp/rsjs-${randomBytes(6).toString("hex")}.sock`;
    const args = ["--socket", socket, "--memory", options.memory ?? "256M",
                  "--spill-dir", join(work, "spill")];
    if (options.tcp || options.secret) args.push("--tcp", "127.0.0.1:0");
    if (options.secret) {
      const file = join(work, "secret");
      writeFileSync(file, options.secret + "\n");
      args.push("--secret-file", file);
    }
    args.push(...(options.extraArgs ?? []));
    const child = spawn(refstored(), args, { stdio: ["ignore", "ignore", "pipe"] });
    const stderr: string[] = [];
    let port: number | undefined;
    await new Promise<void>((resolve, reject) => {
      const failed = () => reject(new Error(`refstored did not start:\n${stderr.join("\n")}`));
      const timer = setTimeout(failed, 20000);
      const lines = createInterface({ input: child.stderr! });
      lines.on("line", (line) => {
        stderr.push(line);
        const tcp = / listening on tcp:\S+ port (\d+)/.exec(line);
        if (tcp) port = Number(tcp[1]);
        if (line.includes(" listening on unix:")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`refstored exited with ${code}:\n${stderr.join("\n")}`));
      });
    });
    return new Daemon(child, socket, port, stderr);
  }

  log(): string {
    return this.stderr.join("\n");
  }

  /** SIGTERM, then the exit code (0 when it shut down cleanly). */
  async stop(): Promise<number | null> {
    if (this.process.exitCode !== null) return this.process.exitCode;
    const exited = new Promise<number | null>((resolve) => this.process.once("exit", resolve));
    this.process.kill("SIGTERM");
    return exited;
  }

  /** SIGKILL: the daemon dies without closing anything. */
  async kill(): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = new Promise((resolve) => this.process.once("exit", resolve));
    this.process.kill("SIGKILL");
    await exited;
  }
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion (never throws for a non-zero exit: the test checks `code`). */
export function run(
  program: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Result> {
  const environment = { ...process.env, ...env };
  const options = { env: environment, maxBuffer: 64 << 20, encoding: "utf8" as const };
  return new Promise((resolve) => {
    execFile(program, args, options, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** refctl against `socket` (a path, or tcp:host:port). */
export function refctl(socket: string, ...args: string[]): Promise<Result> {
  return run(refctlPath(), ["--socket", socket, ...args]);
}

// Helpers still running when a test file ends (a failed assertion skipped its kill) are killed,
// so that a failure fails the run instead of keeping it waiting for them.
const running = new Set<Helper>();
after(async () => {
  await Promise.all([...running].map((helper) => helper.kill()));
});

/** A running helper process whose stdout is read line by line. */
export class Helper {
  readonly child: ChildProcess;
  private readonly lines: string[] = [];
  private waiting?: (line: string | undefined) => void;
  private ended = false;
  readonly exited: Promise<number | null>;

  constructor(program: string, args: string[]) {
    this.child = spawn(program, args, { stdio: ["ignore", "pipe", "inherit"] });
    running.add(this);
    this.exited = new Promise((resolve) =>
      this.child.once("exit", (code) => {
        running.delete(this);
        resolve(code);
      }),
    );
    const reader = createInterface({ input: this.child.stdout! });
    reader.on("line", (line) => {
      if (this.waiting) {
        const waiting = this.waiting;
        this.waiting = undefined;
        waiting(line);
      } else {
        this.lines.push(line);
      }
    });
    reader.on("close", () => {
      this.ended = true;
      this.waiting?.(undefined);
    });
  }

  /** The next line of output; undefined at its end. */
  nextLine(): Promise<string | undefined> {
    const line = this.lines.shift();
    if (line !== undefined || this.ended) return Promise.resolve(line);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
  }
}

/** A JavaScript fixture (test/fixtures/NAME.ts) as a separate Node.js process. */
export function nodeFixture(name: string, args: string[]): Helper {
  return new Helper(process.execPath, [join(fixturesDir, `${name}.js`), ...args]);
}

/** Polls `condition` every 10 ms until it holds or `seconds` pass; returns its last value. For
 *  asynchronous effects (a killed client's disconnect), never as a timing assertion. */
export async function eventually(
  condition: () => Promise<boolean>,
  seconds = 20,
): Promise<boolean> {
  const deadline = Date.now() + seconds * 1000;
  while (!(await condition())) {
    if (Date.now() > deadline) return condition();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

/** Writes `bytes` to a new file in `dir` and returns its path. */
export function fileWith(dir: string, name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

export function readFile(path: string): Buffer {
  return readFileSync(path);
}
