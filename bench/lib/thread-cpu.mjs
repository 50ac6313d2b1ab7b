// Preload (node --import): at exit, writes to stderr the CPU seconds (user + sys)
// each thread of this process used, summed by kind: `THREADS main=… gc=… libuv=… other=…`.
// The main thread's CPU is a floor under a run's wall time on any machine; the
// other threads' CPU is what competes with it for the remaining cores.
// Threads that ended before the exit are not counted.
import { readdirSync, readFileSync } from 'node:fs';

const KINDS = [
  ['gc', /^V8Worker/],
  ['libuv', /^libuv-worker/],
];

process.on('exit', () => {
  const seconds = { main: 0, gc: 0, libuv: 0, other: 0 };
  const ticksPerSecond = 100; // USER_HZ on Linux
  for (const tid of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpu = (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
    const kind = tid === String(process.pid) ? 'main' : (KINDS.find(([, pattern]) => pattern.test(name))?.[0] ?? 'other');
    seconds[kind] += cpu;
  }
  process.stderr.write(`THREADS ${Object.entries(seconds).map(([kind, s]) => `${kind}=${s.toFixed(2)}`).join(' ')}\n`);
});
