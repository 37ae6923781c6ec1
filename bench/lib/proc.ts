/**
 * Processes for the bench: spawn in an own process group, stop the whole group,
 * and read what /proc knows about the group (workerd pids, RSS, CPU, listening ports).
 * Linux only (the bench reads /proc).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer } from "node:net";

export interface Proc {
  name: string;
  proc: ChildProcess;
  /** Last lines of stdout + stderr (bounded). */
  lines: string[];
  exited: Promise<number | null>;
}

const MAX_LINES = 400;

export function startGroup(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Proc {
  const proc = spawn(cmd, args, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  const take = (chunk: Buffer) => {
    for (const line of chunk.toString("utf8").split("\n")) {
      if (line.trim() === "") continue;
      lines.push(line);
      if (lines.length > MAX_LINES) lines.splice(0, lines.length - MAX_LINES);
    }
  };
  proc.stdout!.on("data", take);
  proc.stderr!.on("data", take);
  const exited = new Promise<number | null>((resolve) => {
    proc.once("error", () => resolve(-1));
    proc.once("exit", (code) => resolve(code));
  });
  return { name, proc, lines, exited };
}

function signalGroup(p: Proc, signal: NodeJS.Signals): void {
  if (p.proc.pid === undefined) return;
  try {
    process.kill(-p.proc.pid, signal);
  } catch {
    // the group is gone
  }
}

/** SIGTERM the group, wait up to graceMs, then SIGKILL whatever is left in it. */
export async function stopGroup(p: Proc | undefined, graceMs = 5_000): Promise<void> {
  if (!p || p.proc.pid === undefined) return;
  signalGroup(p, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && groupPids(p.proc.pid).length > 0) await sleep(100);
  signalGroup(p, "SIGKILL");
  const hard = Date.now() + 2_000;
  while (Date.now() < hard && groupPids(p.proc.pid).length > 0) await sleep(50);
}

/** SIGKILL the group at once (a crash, not a shutdown) and wait until it is gone. */
export async function killGroup(p: Proc | undefined): Promise<void> {
  if (!p || p.proc.pid === undefined) return;
  signalGroup(p, "SIGKILL");
  const hard = Date.now() + 5_000;
  while (Date.now() < hard && groupPids(p.proc.pid).length > 0) await sleep(50);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Stat {
  pid: number;
  comm: string;
  ppid: number;
  pgrp: number;
  /** utime + stime, clock ticks. */
  ticks: number;
}

function readStat(pid: number): Stat | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const close = s.lastIndexOf(")");
    const comm = s.slice(s.indexOf("(") + 1, close);
    const rest = s.slice(close + 2).split(" ");
    return { pid, comm, ppid: Number(rest[1]), pgrp: Number(rest[2]), ticks: Number(rest[11]) + Number(rest[12]) };
  } catch {
    return null;
  }
}

function allPids(): number[] {
  return readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(Number);
}

/** Processes of a process group. */
export function groupPids(pgid: number): Stat[] {
  const out: Stat[] = [];
  for (const pid of allPids()) {
    const st = readStat(pid);
    if (st && st.pgrp === pgid) out.push(st);
  }
  return out;
}

/** A process and all its descendants (by parent pid), itself first; [] once it is gone. */
export function treePids(root: number): number[] {
  const children = new Map<number, number[]>();
  let alive = false;
  for (const pid of allPids()) {
    const st = readStat(pid);
    if (!st) continue;
    if (pid === root) alive = true;
    const list = children.get(st.ppid);
    if (list) list.push(pid);
    else children.set(st.ppid, [pid]);
  }
  if (!alive) return [];
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]!) ?? []));
  return out;
}

/** The command name (/proc/<pid>/comm) of a process, or null when it is gone. */
export function commOf(pid: number): string | null {
  return readStat(pid)?.comm ?? null;
}

/** workerd processes of the group (wrangler dev runs two: its proxy and the user worker's runtime). */
export function workerdPids(pgid: number): number[] {
  return groupPids(pgid)
    .filter((s) => s.comm === "workerd")
    .map((s) => s.pid);
}

export function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** CPU time (utime + stime) of the processes, in ms (USER_HZ is 100 on Linux). */
export function cpuMs(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) ticks += readStat(pid)?.ticks ?? 0;
  return ticks * 10;
}

/** Busy and total jiffies of the whole machine (/proc/stat), to see CPU used by other processes. */
export function machineCpu(): { busyMs: number; totalMs: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busyMs: (total - idle) * 10, totalMs: total * 10 };
}

/** TCP ports (IPv4) a process listens on. */
export function listeningPorts(pid: number): number[] {
  const inodes = socketInodes(pid);
  const ports: number[] = [];
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== "0A") continue; // 0A = LISTEN
    if (inodes.has(f[9]!)) ports.push(parseInt(f[1]!.split(":")[1]!, 16));
  }
  return ports;
}

/** Inodes of a process's sockets. */
function socketInodes(pid: number | "self"): Set<string> {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        // fd closed meanwhile
      }
    }
  } catch {
    // gone
  }
  return inodes;
}

/**
 * Established TCP connections (IPv4) to 127.0.0.1:port whose client end is
 * neither a socket of this process nor of `family` (the target's own processes,
 * e.g. wrangler's proxy keeping a connection to the runtime): someone else's
 * traffic on a target under measurement.
 */
export function foreignConnections(port: number, family: number[] = []): number {
  const mine = socketInodes("self");
  for (const pid of family) for (const inode of socketInodes(pid)) mine.add(inode);
  const lines = readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1).map((l) => l.trim().split(/\s+/));
  const portOf = (addr: string) => parseInt(addr.split(":")[1] ?? "", 16);
  const ownPorts = new Set<number>();
  for (const f of lines) if (f.length >= 10 && f[3] === "01" && mine.has(f[9]!)) ownPorts.add(portOf(f[1]!));
  let n = 0;
  for (const f of lines) if (f.length >= 10 && f[3] === "01" && portOf(f[1]!) === port && !ownPorts.has(portOf(f[2]!))) n++;
  return n;
}

export function exePath(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return null;
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/** GET url until it answers 2xx (or the process exits, or the deadline passes). */
export async function waitHealthy(url: string, p: Proc, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (p.proc.exitCode !== null || p.proc.signalCode !== null) {
      throw new Error(`${p.name} exited early (${p.proc.exitCode ?? p.proc.signalCode}):\n  ${p.lines.slice(-30).join("\n  ")}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (res.ok) return;
    } catch {
      // not up yet
    }
    await sleep(250);
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms:\n  ${p.lines.slice(-30).join("\n  ")}`);
}
