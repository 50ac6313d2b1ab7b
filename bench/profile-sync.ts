/**
 * `npm run bench:profile-sync`: where the wall time of a durable 2 GB sync
 * goes, for skystreams, sstream-mirror + sync and `dd conv=fsync`, on the
 * tree and nginx upstream of bench/sync-peers.ts.
 *
 * For each command, BENCH_PROFILE_REPEATS runs (default 3, medians) under
 * /usr/bin/time while /proc/meminfo (Dirty, Writeback) and /proc/diskstats
 * (sectors written, milliseconds the disk was busy) are sampled every 100 ms
 * and, for skystreams, each thread's CPU is read at exit (bench/lib/thread-cpu.mjs:
 * the main thread's CPU is a floor under the wall time);
 * the same with the destination on tmpfs (/dev/shm: no disk at all); then
 * one run each under `strace -c -f -w` (wall time per syscall, all threads),
 * one `node --cpu-prof` of ours (main thread, self time by function) and one
 * `perf record` of each (kernel and user symbols of the command), when
 * strace and perf are installed.
 *
 * BENCH_BASELINE_CLI names another checkout's bin/skystreams.mjs to measure
 * beside this one (e.g. the commit before a change). Prints markdown.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildTree, serveDirectory, SSTREAM, type Tree } from './sync-peers.ts';

const run = promisify(execFile);
const MiB = 2 ** 20;
const CLI = fileURLToPath(new URL('../bin/skystreams.mjs', import.meta.url));
const SAMPLE_MS = 100;
const THREAD_CPU = fileURLToPath(new URL('./lib/thread-cpu.mjs', import.meta.url));

interface Contender {
  name: string;
  /** The command, given the destination directory (created empty, removed after). */
  argv: (dest: string, url: string, tree: Tree) => string[];
}

interface Sampled {
  wall: number;
  user: number;
  sys: number;
  maxRssMiB: number;
  diskBusyMs: number;
  diskWrittenMiB: number;
  peakDirtyMiB: number;
  peakWritebackMiB: number;
  /** CPU seconds of the main thread and of V8's GC threads, for node commands run with the thread-cpu preload. */
  threads?: { main: number; gc: number };
}

const oursWith = (cli: string): Contender['argv'] => (dest, url, tree) => [
  process.execPath, '--import', THREAD_CPU, cli, 'sync', '--data-dir', dest, '--source', url, '--keyring', tree.keyring, '--filter', 'arch=amd64', '--max', '1',
];

async function main(): Promise<void> {
  const repeats = Number(process.env.BENCH_PROFILE_REPEATS ?? 3);
  const targetBytes = Number(process.env.BENCH_SYNC_MB ?? 2048) * MiB;
  const work = await mkdtemp(join(tmpdir(), 'skystreams-profile-'));
  const disk = await diskOf(tmpdir());
  const out: string[] = [];
  try {
    const tree = await buildTree(join(work, 'tree'), targetBytes);
    const server = await serveDirectory(tree.dir, work, out);
    const contenders: Contender[] = [
      { name: 'dd conv=fsync', argv: (dest) => ['dd', 'if=/dev/zero', `of=${join(dest, 'dd.bin')}`, 'bs=4M', `count=${Math.ceil(tree.bytes / (4 * MiB))}`, 'conv=fsync'] },
      { name: 'skystreams sync', argv: oursWith(CLI) },
    ];
    if (process.env.BENCH_BASELINE_CLI) contenders.push({ name: 'skystreams sync (baseline)', argv: oursWith(process.env.BENCH_BASELINE_CLI) });
    if (existsSync(SSTREAM) && process.env.SS_GIT) {
      contenders.push({ name: 'sstream-mirror + sync', argv: (dest, url, t) => ['sh', '-c', `SSM_OUT="$1" "$2" mirror "$3" "$4" arch=amd64 --max=1 >/dev/null && sync`, 'sh', dest, SSTREAM, url, t.keyring] });
    }
    try {
      const gib = tree.bytes / 2 ** 30;
      out.push(`${gib.toFixed(2)} GiB in ${tree.selected.length} files; disk ${disk}; medians of ${repeats} runs; CPU = user + sys of the command and its children.`, '');
      out.push('| command | destination | wall | CPU | CPU per GiB | main thread, GC threads | disk busy | written to disk | peak Dirty | peak Writeback | peak RSS |');
      out.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
      for (const contender of contenders) {
        for (const [where, base] of [[tmpdir(), work], ['/dev/shm (tmpfs)', '/dev/shm']] as const) {
          const runs: Sampled[] = [];
          for (let i = 0; i < repeats; i++) runs.push(await sampledRun(contender, base, server.url, tree, disk));
          const m = (pick: (s: Sampled) => number) => median(runs.map(pick));
          const cpu = m((r) => r.user + r.sys);
          const threads = runs.every((r) => r.threads) ? `${m((r) => r.threads!.main).toFixed(2)} s, ${m((r) => r.threads!.gc).toFixed(2)} s` : '—';
          out.push(
            `| ${contender.name} | ${where} | ${m((r) => r.wall).toFixed(2)} s | ${cpu.toFixed(2)} s (user ${m((r) => r.user).toFixed(2)}, sys ${m((r) => r.sys).toFixed(2)}) | ` +
              `${(cpu / gib).toFixed(2)} s | ${threads} | ${(m((r) => r.diskBusyMs) / 1000).toFixed(2)} s | ${m((r) => r.diskWrittenMiB).toFixed(0)} MiB | ` +
              `${m((r) => r.peakDirtyMiB).toFixed(0)} MiB | ${m((r) => r.peakWritebackMiB).toFixed(0)} MiB | ${m((r) => r.maxRssMiB).toFixed(0)} MiB |`,
          );
          console.error(out.at(-1));
        }
      }
      if (await hasCommand('strace')) {
        for (const contender of contenders.filter((c) => c.name !== 'dd conv=fsync')) {
          out.push('', `strace -c -f -w, ${contender.name} (one run, wall time per syscall summed over threads; tracing slows the run):`, '', '```');
          out.push(await straced(contender, work, server.url, tree));
          out.push('```');
        }
      }
      out.push('', 'node --cpu-prof, skystreams sync (main thread, one run), self time:', '', '```', await cpuProfile(work, server.url, tree), '```');
      if (await hasCommand('perf')) {
        for (const contender of contenders) {
          out.push('', `perf record -g, ${contender.name} (one run, the command and its children, top symbols by samples, [k] kernel):`, '', '```');
          out.push(await perfTop(contender, work, server.url, tree));
          out.push('```');
        }
      }
    } finally {
      await server.close();
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  console.log(out.join('\n'));
}

async function sampledRun(contender: Contender, base: string, url: string, tree: Tree, disk: string): Promise<Sampled> {
  const dest = await mkdtemp(join(base, 'dest-'));
  const before = await diskStats(disk);
  let peakDirty = 0;
  let peakWriteback = 0;
  const sampler = setInterval(() => {
    void memInfo().then((m) => {
      peakDirty = Math.max(peakDirty, m.dirty);
      peakWriteback = Math.max(peakWriteback, m.writeback);
    });
  }, SAMPLE_MS);
  try {
    const { stderr } = await run('/usr/bin/time', ['-f', '%e %U %S %M', ...contender.argv(dest, url, tree)], { maxBuffer: 64 * MiB });
    const after = await diskStats(disk);
    const [wall, user, sys, maxRssKiB] = stderr.trim().split('\n').at(-1)!.split(' ').map(Number);
    const threads = /^THREADS main=([\d.]+) gc=([\d.]+)/m.exec(stderr);
    return {
      ...(threads && { threads: { main: Number(threads[1]), gc: Number(threads[2]) } }),
      wall: wall!,
      user: user!,
      sys: sys!,
      maxRssMiB: maxRssKiB! / 1024,
      diskBusyMs: after.busyMs - before.busyMs,
      diskWrittenMiB: ((after.sectorsWritten - before.sectorsWritten) * 512) / MiB,
      peakDirtyMiB: peakDirty / 1024,
      peakWritebackMiB: peakWriteback / 1024,
    };
  } finally {
    clearInterval(sampler);
    await rm(dest, { recursive: true, force: true });
  }
}

async function straced(contender: Contender, work: string, url: string, tree: Tree): Promise<string> {
  const dest = await mkdtemp(join(work, 'strace-'));
  try {
    const { stderr } = await run('strace', ['-c', '-f', '-w', '-S', 'time', ...contender.argv(dest, url, tree)], { maxBuffer: 64 * MiB });
    const table = stderr.slice(stderr.indexOf('% time'));
    return table.split('\n').slice(0, 12).join('\n');
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
}

async function cpuProfile(work: string, url: string, tree: Tree): Promise<string> {
  const dest = await mkdtemp(join(work, 'prof-'));
  const profiles = await mkdtemp(join(work, 'cpuprofile-'));
  try {
    const [node, ...rest] = oursWith(CLI)(dest, url, tree);
    await run(node!, ['--cpu-prof', '--cpu-prof-dir', profiles, ...rest], { maxBuffer: 64 * MiB });
    const [file] = await readdir(profiles);
    return summarizeCpuProfile(JSON.parse(await readFile(join(profiles, file!), 'utf8')) as CpuProfile);
  } finally {
    await rm(dest, { recursive: true, force: true });
    await rm(profiles, { recursive: true, force: true });
  }
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[];
  startTime: number;
  endTime: number;
  samples: number[];
}

/** Self time per function, largest first; (idle) is the event loop waiting for I/O. */
export function summarizeCpuProfile(profile: CpuProfile): string {
  const totalMs = (profile.endTime - profile.startTime) / 1000;
  const msPerSample = totalMs / Math.max(1, profile.samples.length);
  const byName = new Map<string, number>();
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url ? ` ${basename(url.split('?')[0]!)}:${lineNumber + 1}` : '';
    const name = `${functionName || '(anonymous)'}${where}`;
    byName.set(name, (byName.get(name) ?? 0) + (node.hitCount ?? 0) * msPerSample);
  }
  const top = [...byName].sort((a, b) => b[1] - a[1]).slice(0, 14);
  return [
    `profile ${(totalMs / 1000).toFixed(2)} s, ${profile.samples.length} samples`,
    ...top.map(([name, ms]) => `${((100 * ms) / totalMs).toFixed(1).padStart(5)} %  ${(ms / 1000).toFixed(2).padStart(6)} s  ${name}`),
  ].join('\n');
}

async function perfTop(contender: Contender, work: string, url: string, tree: Tree): Promise<string> {
  const dest = await mkdtemp(join(work, 'perf-'));
  const data = join(work, 'perf.data');
  try {
    // The command and its children only (the machine may be shared); the kernel's flusher threads are not in it.
    await run('perf', ['record', '-g', '-q', '-o', data, '--', ...contender.argv(dest, url, tree)], { maxBuffer: 64 * MiB });
    const { stdout } = await run('perf', ['report', '-i', data, '--no-children', '--sort', 'sym', '--stdio', '-g', 'none', '--percent-limit', '1'], {
      maxBuffer: 64 * MiB,
    });
    return stdout
      .split('\n')
      .filter((line) => /^\s+\d+\.\d+%/.test(line))
      .slice(0, 10)
      .join('\n');
  } finally {
    await rm(dest, { recursive: true, force: true });
    await rm(data, { force: true });
  }
}

/** The block device under `path`, as /proc/diskstats names it (`vda` for /dev/vda). */
async function diskOf(path: string): Promise<string> {
  const { stdout } = await run('df', ['--output=source', path]);
  return basename(stdout.trim().split('\n').at(-1)!);
}

async function diskStats(disk: string): Promise<{ sectorsWritten: number; busyMs: number }> {
  const line = (await readFile('/proc/diskstats', 'utf8')).split('\n').find((l) => l.trim().split(/\s+/)[2] === disk);
  if (!line) return { sectorsWritten: Number.NaN, busyMs: Number.NaN };
  const fields = line.trim().split(/\s+/).map(Number);
  // Fields after the name: reads, merged, sectors, ms, writes, merged, sectors (index 9), ms, in flight, io ms (index 12).
  return { sectorsWritten: fields[9]!, busyMs: fields[12]! };
}

async function memInfo(): Promise<{ dirty: number; writeback: number }> {
  const text = await readFile('/proc/meminfo', 'utf8');
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { dirty: kib('Dirty'), writeback: kib('Writeback') };
}

async function hasCommand(name: string): Promise<boolean> {
  return run('sh', ['-c', `command -v ${name}`]).then(() => true, () => false);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
