/**
 * Upstream requests through an HTTP proxy, configured the way operators
 * configure curl: `https_proxy`, `http_proxy` and `no_proxy`, or their
 * upper-case forms (a lower-case variable that is set wins). HTTPS goes
 * through a CONNECT tunnel, then TLS to the origin, whose certificate is
 * checked against the origin's name; plain HTTP is sent to the proxy with the
 * whole URL in the request line. Each request (each redirect hop) is routed
 * on its own URL, so a hop to a `no_proxy` host goes direct.
 */
import { Agent as HttpAgent, request as httpRequest, type ClientRequestArgs, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { BlockList, connect as netConnect, isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { ConfigError } from '../../core/errors.ts';
import { redactUrl, splitCredentials } from '../../core/redact.ts';

/** The variables of a process environment this module reads; the rest are ignored. */
export type ProxyEnvironment = Readonly<Record<string, string | undefined>>;

export interface Proxy {
  /** `http://host:port`, with `***@` when the URL carried credentials: what messages show. */
  readonly shown: string;
  /** Without IPv6 brackets. */
  readonly hostname: string;
  readonly port: number;
  /** `Basic …` from the URL's `user:password@`, sent as Proxy-Authorization. */
  readonly authorization?: string;
}

/** A connection through a proxy that failed: names the proxy (credentials redacted), never the secret. */
export class ProxyError extends Error {
  readonly proxy: string;
  constructor(proxy: Proxy, problem: string, options?: { cause?: unknown }) {
    super(`proxy ${proxy.shown} ${problem}`, options);
    this.name = 'ProxyError';
    this.proxy = proxy.shown;
  }
}

export interface ProxySettings {
  readonly https?: Proxy;
  readonly http?: Proxy;
  readonly noProxy: NoProxy;
}

/** The proxy settings `env` describes; ConfigError for a proxy that is not an http:// URL. */
export function proxySettings(env: ProxyEnvironment): ProxySettings {
  const https = variable(env, 'https_proxy');
  const http = variable(env, 'http_proxy');
  return {
    ...(https && { https: parseProxy(https.name, https.value) }),
    ...(http && { http: parseProxy(http.name, http.value) }),
    noProxy: parseNoProxy(variable(env, 'no_proxy')?.value ?? ''),
  };
}

/** The proxy a request for `url` goes through under `env`; undefined: it goes direct. */
export function proxyFor(url: URL | string, env: ProxyEnvironment): Proxy | undefined {
  return chooseProxy(typeof url === 'string' ? new URL(url) : url, proxySettings(env));
}

function chooseProxy(target: URL, settings: ProxySettings): Proxy | undefined {
  const proxy = target.protocol === 'https:' ? settings.https : target.protocol === 'http:' ? settings.http : undefined;
  if (!proxy || bypasses(settings.noProxy, target)) return undefined;
  return proxy;
}

/** How one request reaches its origin: merged into its options and headers. */
export interface Route {
  readonly options: Pick<ClientRequestArgs, 'agent' | 'path'> & Pick<ConnectionOptions, 'ca'>;
  readonly headers: Record<string, string>;
  /** A proxy's own refusal of a request it was to forward (a 407), as a message naming the proxy; undefined otherwise. */
  refusal(response: IncomingMessage): string | undefined;
}

export interface RoutesOptions {
  /** Certificate authorities trusted for HTTPS origins instead of Node's bundled ones. */
  ca?: ConnectionOptions['ca'];
  /** How long reaching a proxy and, for HTTPS, its answer to CONNECT may take. */
  connectTimeoutMs: number;
}

/** Routes requests as the proxy settings read once from an environment say; keeps one connection pool per proxy. */
export class ProxyRoutes {
  readonly settings: ProxySettings;
  private readonly options: RoutesOptions;
  private readonly agents = new Map<string, HttpAgent>();

  constructor(env: ProxyEnvironment, options: RoutesOptions) {
    this.settings = proxySettings(env);
    this.options = options;
  }

  route(target: URL): Route {
    const tls = this.options.ca === undefined ? {} : { ca: this.options.ca };
    const proxy = chooseProxy(target, this.settings);
    if (!proxy) return { options: tls, headers: {}, refusal: () => undefined };
    if (target.protocol === 'https:') {
      return { options: { ...tls, agent: this.agent(proxy, 'tunnel') }, headers: {}, refusal: () => undefined };
    }
    return {
      options: { agent: this.agent(proxy, 'forward'), path: target.href },
      headers: proxy.authorization ? { 'proxy-authorization': proxy.authorization } : {},
      refusal: (response) => response.statusCode === 407
        ? `proxy ${proxy.shown} refused GET ${redactUrl(target.href)}: 407 ${response.statusMessage ?? ''}`.trimEnd()
        : undefined,
    };
  }

  private agent(proxy: Proxy, kind: 'tunnel' | 'forward'): HttpAgent {
    const key = `${kind} ${proxy.hostname} ${proxy.port} ${proxy.authorization ?? ''}`;
    let agent = this.agents.get(key);
    if (!agent) {
      agent = kind === 'tunnel' ? new TunnelAgent(proxy, this.options.connectTimeoutMs) : new ForwardingAgent(proxy, this.options.connectTimeoutMs);
      this.agents.set(key, agent);
    }
    return agent;
  }
}

/**
 * As Node's global agents pool: an idle connection closes after 5 s, before a
 * proxy's own keep-alive timeout can close it under a request that reuses it.
 */
const POOL = { keepAlive: true, scheduling: 'lifo', timeout: 5_000 } as const;

type ConnectionCallback = (error: Error | null, stream: Duplex) => void;

/** Plain HTTP: every connection goes to the proxy, which reads the origin from the request line. */
class ForwardingAgent extends HttpAgent {
  private readonly proxy: Proxy;
  private readonly timeoutMs: number;

  constructor(proxy: Proxy, timeoutMs: number) {
    super(POOL);
    this.proxy = proxy;
    this.timeoutMs = timeoutMs;
  }

  override createConnection(_options: ClientRequestArgs, callback?: ConnectionCallback): undefined {
    const done = once(callback!);
    const socket: Socket = netConnect({ host: this.proxy.hostname, port: this.proxy.port });
    const timer = setTimeout(() => {
      socket.destroy();
      done(new ProxyError(this.proxy, `could not be reached within ${this.timeoutMs} ms`));
    }, this.timeoutMs);
    socket.once('error', (error) => {
      clearTimeout(timer);
      done(new ProxyError(this.proxy, 'could not be reached', { cause: error }));
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      done(null, socket);
    });
    return undefined;
  }
}

/** HTTPS: a CONNECT tunnel to the origin through the proxy, then TLS with the origin over it. */
class TunnelAgent extends HttpsAgent {
  private readonly proxy: Proxy;
  private readonly timeoutMs: number;

  constructor(proxy: Proxy, timeoutMs: number) {
    super(POOL);
    this.proxy = proxy;
    this.timeoutMs = timeoutMs;
  }

  override createConnection(options: ClientRequestArgs, callback?: ConnectionCallback): undefined {
    const done = once(callback!);
    const authority = hostPort(options.host ?? options.hostname ?? 'localhost', Number(options.port ?? 443));
    const headers: Record<string, string> = { host: authority };
    if (this.proxy.authorization) headers['proxy-authorization'] = this.proxy.authorization;
    const connect = httpRequest({ host: this.proxy.hostname, port: this.proxy.port, method: 'CONNECT', path: authority, headers, agent: false });
    const timer = setTimeout(() => {
      connect.destroy();
      done(new ProxyError(this.proxy, `did not answer CONNECT to ${authority} within ${this.timeoutMs} ms`));
    }, this.timeoutMs);
    connect.once('error', (error) => {
      clearTimeout(timer);
      done(new ProxyError(this.proxy, `could not be reached for CONNECT to ${authority}`, { cause: error }));
    });
    connect.once('connect', (response: IncomingMessage, socket: Socket, head: Buffer) => {
      clearTimeout(timer);
      const status = response.statusCode ?? 0;
      if (status < 200 || status > 299) {
        socket.destroy();
        done(new ProxyError(this.proxy, `refused CONNECT to ${authority}: ${status} ${response.statusMessage ?? ''}`.trimEnd()));
        return;
      }
      if (head.byteLength > 0) socket.unshift(head);
      // The agent's options carry the origin's host and servername: the certificate is checked against those.
      done(null, tlsConnect({ ...(options as ConnectionOptions), socket }));
    });
    connect.end();
    return undefined;
  }
}

function once(callback: ConnectionCallback): (error: Error | null, stream?: Duplex) => void {
  let called = false;
  return (error, stream) => {
    if (called) return;
    called = true;
    callback(error, stream!);
  };
}

function hostPort(host: string, port: number): string {
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  return isIP(bare) === 6 ? `[${bare}]:${port}` : `${bare}:${port}`;
}

/** `name` or, when that is unset or empty, its upper-case form. */
function variable(env: ProxyEnvironment, name: string): { name: string; value: string } | undefined {
  for (const candidate of [name, name.toUpperCase()]) {
    const value = env[candidate]?.trim();
    if (value) return { name: candidate, value };
  }
  return undefined;
}

function parseProxy(name: string, value: string): Proxy {
  // curl takes `host:port` to mean an http:// proxy.
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  const { url: bare, credentials } = splitCredentials(text);
  let url: URL;
  try {
    url = new URL(bare);
  } catch {
    throw new ConfigError(`${name} ${JSON.stringify(redactUrl(text))} is not a URL`);
  }
  if (url.protocol !== 'http:') {
    throw new ConfigError(`${name} ${JSON.stringify(redactUrl(text))}: only http:// proxies are supported, not ${url.protocol}//`);
  }
  const authorization = credentials
    ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`
    : undefined;
  return {
    shown: `http://${credentials ? '***@' : ''}${url.host}`,
    hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
    port: url.port === '' ? 80 : Number(url.port),
    ...(authorization && { authorization }),
  };
}

/** What `no_proxy` exempts: everything (`*`), or hosts, domains and addresses, each perhaps for one port. */
export interface NoProxy {
  readonly all: boolean;
  readonly entries: readonly NoProxyEntry[];
}

interface NoProxyEntry {
  /** A host name or domain (lower case, no leading or trailing dot), or an address or subnet. */
  readonly host: string;
  readonly port?: number;
  /** For an address or subnet entry. */
  readonly addresses?: BlockList;
}

function parseNoProxy(value: string): NoProxy {
  const entries: NoProxyEntry[] = [];
  let all = false;
  for (const raw of value.split(/[\s,]+/)) {
    const text = raw.toLowerCase();
    if (text === '') continue;
    if (text === '*') {
      all = true;
      continue;
    }
    const entry = parseNoProxyEntry(text);
    if (entry) entries.push(entry);
  }
  return { all, entries };
}

function parseNoProxyEntry(text: string): NoProxyEntry | undefined {
  let host = text;
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const withPort = /^([^:]+):(\d+)$/.exec(text);
  if (bracketed) [host, port] = [bracketed[1]!, bracketed[2] === undefined ? undefined : Number(bracketed[2])];
  else if (withPort) [host, port] = [withPort[1]!, Number(withPort[2])];
  const subnet = /^(.+)\/(\d+)$/.exec(host);
  const address = subnet ? subnet[1]! : host;
  const family = isIP(address);
  if (family !== 0) {
    const addresses = new BlockList();
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (subnet) addresses.addSubnet(address, Number(subnet[2]), type);
    else addresses.addAddress(address, type);
    return { host: address, addresses, ...(port !== undefined && { port }) };
  }
  const name = host.replace(/^\.+/, '').replace(/\.+$/, '');
  return name === '' ? undefined : { host: name, ...(port !== undefined && { port }) };
}

function bypasses(noProxy: NoProxy, target: URL): boolean {
  if (noProxy.all) return true;
  const bracketed = target.hostname.startsWith('[');
  const host = (bracketed ? target.hostname.slice(1, -1) : target.hostname).toLowerCase().replace(/\.+$/, '');
  const port = target.port === '' ? (target.protocol === 'https:' ? 443 : 80) : Number(target.port);
  const family = isIP(host);
  return noProxy.entries.some((entry) => {
    if (entry.port !== undefined && entry.port !== port) return false;
    if (entry.addresses) return family !== 0 && entry.addresses.check(host, family === 6 ? 'ipv6' : 'ipv4');
    return host === entry.host || host.endsWith(`.${entry.host}`);
  });
}
