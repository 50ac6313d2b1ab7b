/** `skystreams serve`: the current publication and the status page over HTTP. */
import type { Command } from 'commander';
import type { Backend } from '../../core/ports.ts';
import { createApp } from '../../http/app.ts';
import { openBackend, type BackendFlags } from '../options.ts';
import { startServer, startWorkers } from '../server.ts';
import { backendOptions, integerFlag, portFlag, untilSignal, withExamples } from './support.ts';

/** Server processes sharing one port: more than the cores of any one machine is a typo. */
const WORKERS_RANGE = [1, 1_024] as const;

export function addServeCommand(program: Command): void {
  withExamples(backendOptions(program.command('serve').description('serve the current publication and the status page (/) over HTTP')), [
    'skystreams serve                                   # http://127.0.0.1:8080/',
    'skystreams serve --host 0.0.0.0 --port 80 --workers 2 --data-dir /srv/skystreams',
  ])
    .option('--port <port>', 'TCP port', '8080')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--workers <n>', 'server processes sharing the port (node:cluster), for more than one core', '1')
    .action(async (flags: BackendFlags & { port: string; host: string; workers: string }) => {
      const port = portFlag(flags.port);
      const workers = integerFlag('--workers', flags.workers, WORKERS_RANGE);
      // Serving only reads the mirror (without writing a byte, so a full disk still serves): a data dir that holds none is refused here, before any worker starts.
      await (await openBackend(flags, { readOnly: true })).close();
      // With --workers above 1, each worker opens the backend; this process only supervises them.
      let backend: Backend | undefined;
      const server = await startWorkers(workers, async () => {
        backend = await openBackend(flags, { readOnly: true });
        return startServer(createApp(backend), { port, host: flags.host });
      });
      console.log(`serving ${backend?.description ?? `with ${flags.workers} workers`} at ${server.url}`);
      await untilSignal();
      await server.close();
      await backend?.close();
    });
}
