import { readFileSync } from 'node:fs';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import { Construct } from 'constructs';
import { ConfigError } from '../../functions/core/errors.ts';

export interface EdgeAccessControlProps {
  /**
   * Only viewers from these IPv4/IPv6 CIDRs may use the mirror; everyone else
   * is answered 403. An IPv4 viewer reaching the dual-stack distribution over
   * IPv6 needs its IPv6 network listed too.
   * @default [] (no IP restriction)
   */
  readonly allowedCidrs?: readonly string[];
  /**
   * HTTP basic auth, over HTTPS only, checked at the edge against users kept
   * in a CloudFront KeyValueStore (docs/deploy.md, "Access control").
   * MAAS up to 3.7 sends `user:pass@` URLs as basic auth.
   * @default false
   */
  readonly basicAuth?: boolean;
  /** @default 'skystreams' */
  readonly realm?: string;
}

/** The CloudFront Functions limit on a function's code. */
const MAX_FUNCTION_CODE_BYTES = 10_240;
const FUNCTION_SOURCE = new URL('../edge-functions/viewer-request.js', import.meta.url);

/**
 * Optional access control in front of the whole mirror, in one
 * viewer-request CloudFront Function (a behavior takes only one): an IPv4
 * and IPv6 allow-list on the viewer's address and/or basic auth. The
 * `/channels/*` item behavior always has a function of its own: the same
 * checks, then the channel's item path turned into the item's.
 */
export class EdgeAccessControl extends Construct {
  /** For every behavior's viewer-request association but channel items'; none when nothing is checked. */
  public readonly viewerRequestFunction?: cloudfront.Function;
  /** For the `/channels/*` item behavior. */
  public readonly channelItemsFunction: cloudfront.Function;
  /** Where operators add users and the deployment's secret key. */
  public readonly users?: cloudfront.KeyValueStore;
  /** True with basic auth: credentials must never cross the network in clear, so viewers must use HTTPS. */
  public readonly requiresHttps: boolean;

  constructor(scope: Construct, id: string, props: EdgeAccessControlProps) {
    super(scope, id);
    const allowedCidrs = props.allowedCidrs ?? [];
    const basicAuth = props.basicAuth ?? false;
    const realm = props.realm ?? 'skystreams';
    if (!/^[\w .-]+$/.test(realm)) throw new Error(`EdgeAccessControl: realm ${JSON.stringify(realm)} must be plain text`);
    const networks = allowedCidrs.map((cidr, i) => {
      const network = parseCidr(cidr);
      if (!network) throw new ConfigError(`accessControl.allowedCidrs[${i}]: ${JSON.stringify(cidr)} is not an IPv4 or IPv6 CIDR`);
      return network;
    });
    this.requiresHttps = basicAuth;
    if (basicAuth) {
      this.users = new cloudfront.KeyValueStore(this, 'Users', {
        comment: 'skystreams basic auth: key = user, value = "<salt>:<HMAC-SHA256 hex>"; key skystreams:pepper = the HMAC key',
      });
    }
    const checks = { realm, basicAuth, networks: networks.length > 0 ? networks : null };
    const edgeFunction = (id: string, comment: string, channelItems: boolean) => {
      const code = viewerRequestCode({ ...checks, channelItems });
      if (Buffer.byteLength(code) > MAX_FUNCTION_CODE_BYTES) {
        throw new ConfigError(
          `accessControl.allowedCidrs: ${allowedCidrs.length} networks make the edge function larger than CloudFront's ${MAX_FUNCTION_CODE_BYTES} bytes; list fewer, wider networks`,
        );
      }
      return new cloudfront.Function(this, id, {
        comment,
        runtime: cloudfront.FunctionRuntime.JS_2_0,
        ...(this.users && { keyValueStore: this.users }),
        code: cloudfront.FunctionCode.fromInline(code),
      });
    };
    this.channelItemsFunction = edgeFunction('ChannelItems', 'skystreams: access checks, then /channels/NAME/<item> to /<item>', true);
    if (networks.length === 0 && !basicAuth) return;
    this.viewerRequestFunction = edgeFunction('ViewerRequest', 'skystreams: IP allow-list and/or basic auth at viewer request', false);
  }
}

interface ViewerRequestSettings {
  readonly realm: string;
  readonly basicAuth: boolean;
  /** Each network: the eight 16-bit words of its (IPv4-mapped) IPv6 address, then its prefix length. */
  readonly networks: readonly number[][] | null;
  /** Turn `/channels/<name>/<item path>` into `/<item path>` (the `/channels/*` item behavior). @default false */
  readonly channelItems?: boolean;
}

/** The function's source (infra/edge-functions/viewer-request.js) with its settings filled in. */
export function viewerRequestCode(settings: ViewerRequestSettings): string {
  return readFileSync(FUNCTION_SOURCE, 'utf8').replace('__SETTINGS__', JSON.stringify(settings));
}

/** A CIDR as the function compares it: IPv4 as its IPv4-mapped IPv6 network (::ffff:a.b.c.d/96+n). */
export function parseCidr(cidr: string): number[] | undefined {
  const [address = '', prefix, ...rest] = cidr.split('/');
  if (prefix === undefined || rest.length > 0 || !/^\d{1,3}$/.test(prefix)) return undefined;
  const bits = Number(prefix);
  if (!address.includes(':')) {
    const octets = address.split('.');
    if (bits > 32 || octets.length !== 4 || !octets.every((octet) => /^\d{1,3}$/.test(octet) && Number(octet) <= 255)) return undefined;
    const [a, b, c, d] = octets.map(Number) as [number, number, number, number];
    return [0, 0, 0, 0, 0, 0xffff, (a << 8) | b, (c << 8) | d, 96 + bits];
  }
  if (bits > 128) return undefined;
  const halves = address.split('::');
  if (halves.length > 2) return undefined;
  const left = halves[0] ? halves[0].split(':') : [];
  const right = halves[1] ? halves[1].split(':') : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...left, ...Array<string>(missing).fill('0'), ...right];
  if (!groups.every((group) => /^[0-9a-f]{1,4}$/i.test(group))) return undefined;
  return [...groups.map((group) => parseInt(group, 16)), bits];
}
