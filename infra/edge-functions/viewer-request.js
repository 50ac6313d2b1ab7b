// The mirror's viewer-request function (CloudFront Functions, cloudfront-js-2.0):
// an IPv4/IPv6 allow-list on the viewer's address, then HTTP basic auth
// against users kept in the associated KeyValueStore; on the /channels/*
// behavior, an item path under a channel is then turned into the item's own
// path (items are the same bytes in every channel). The construct
// (infra/constructs/edge-access-control.ts) fills in SETTINGS at synth.
// No response here redirects: MAAS does not follow redirects.
import cf from 'cloudfront';
import crypto from 'crypto';

/** { realm, basicAuth, networks: [[16-bit words of the IPv6 (or IPv4-mapped) address]..., prefix bits] | null, channelItems } */
const SETTINGS = __SETTINGS__;
const users = SETTINGS.basicAuth ? cf.kvs() : null;
/** Holds the deployment's secret HMAC key. A colon never occurs in a basic-auth user id, so no user can shadow it. */
const PEPPER_KEY = 'skystreams:pepper';

/** `/channels/<name>/<item path>`, as the app names channels (functions/core/ports.ts CHANNEL_NAME). */
const CHANNEL_ITEM = /^\/channels\/[a-z][a-z0-9-]{0,31}\/(.+)$/;

async function handler(event) {
  const request = event.request;
  const refusal = await refusalOf(event);
  if (refusal) return refusal;
  if (!SETTINGS.channelItems) return request;
  const match = CHANNEL_ITEM.exec(request.uri);
  if (!match) return refuse(404, 'Not Found', 'not a channel item path: /channels/<channel>/<item path>');
  request.uri = '/' + match[1];
  return request;
}

/** The response that refuses this viewer, or null when it may go on. */
async function refusalOf(event) {
  const request = event.request;
  if (SETTINGS.networks && !allowed(parseAddress(event.viewer && event.viewer.ip))) {
    return refuse(403, 'Forbidden', 'this network may not use the mirror');
  }
  if (!SETTINGS.basicAuth) return null;
  // The distribution serves HTTPS only with basic auth; a request that still says it came over HTTP is refused, not redirected.
  const scheme = request.headers['cloudfront-forwarded-proto'];
  if (scheme && scheme.value === 'http') {
    return refuse(403, 'Forbidden', 'basic auth needs HTTPS: use the https:// URL of the mirror');
  }
  return (await authenticated(request.headers.authorization)) ? null : challenge();
}

async function authenticated(authorization) {
  if (!authorization || authorization.value.slice(0, 6).toLowerCase() !== 'basic ') return false;
  const credentials = Buffer.from(authorization.value.slice(6).trim(), 'base64').toString('utf8');
  const colon = credentials.indexOf(':');
  if (colon < 1) return false;
  const user = credentials.slice(0, colon);
  let stored;
  let pepper;
  try {
    pepper = await users.get(PEPPER_KEY);
    stored = await users.get(user);
  } catch (missing) {
    return false;
  }
  // Stored value: "<salt hex>:<HMAC-SHA256(pepper, salt:user:password) hex>".
  const separator = stored.indexOf(':');
  if (separator < 1 || !pepper) return false;
  const salt = stored.slice(0, separator);
  const actual = crypto.createHmac('sha256', pepper).update(salt + ':' + credentials).digest('hex');
  return equalInConstantTime(actual, stored.slice(separator + 1));
}

/** Looks at every character whatever differs first, so the time taken says nothing about the stored digest. */
function equalInConstantTime(actual, expected) {
  let difference = actual.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) difference |= actual.charCodeAt(i) ^ expected.charCodeAt(i);
  return difference === 0;
}

function allowed(address) {
  if (!address) return false;
  for (let n = 0; n < SETTINGS.networks.length; n++) {
    const network = SETTINGS.networks[n];
    const bits = network[8];
    let matches = true;
    for (let w = 0; w < 8 && matches && w * 16 < bits; w++) {
      const keep = Math.min(16, bits - w * 16);
      const mask = (0xffff << (16 - keep)) & 0xffff;
      matches = (address[w] & mask) === (network[w] & mask);
    }
    if (matches) return true;
  }
  return false;
}

/** An IPv4 address as its IPv4-mapped IPv6 form (::ffff:a.b.c.d), so one comparison serves both; null when unreadable. */
function parseAddress(text) {
  if (typeof text !== 'string' || text.length === 0) return null;
  let ip = text.split('%')[0];
  if (ip.indexOf(':') < 0) {
    const v4 = parseIpv4(ip);
    return v4 ? [0, 0, 0, 0, 0, 0xffff, v4[0], v4[1]] : null;
  }
  const lastColon = ip.lastIndexOf(':');
  if (ip.indexOf('.', lastColon) > 0) {
    const v4 = parseIpv4(ip.slice(lastColon + 1));
    if (!v4) return null;
    ip = ip.slice(0, lastColon + 1) + v4[0].toString(16) + ':' + v4[1].toString(16);
  }
  const halves = ip.split('::');
  if (halves.length > 2) return null;
  const left = halves[0] === '' ? [] : halves[0].split(':');
  const right = halves.length === 2 && halves[1] !== '' ? halves[1].split(':') : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const parts = left.slice();
  for (let i = 0; i < missing; i++) parts.push('0');
  const words = [];
  const all = parts.concat(right);
  for (let i = 0; i < all.length; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(all[i])) return null;
    words.push(parseInt(all[i], 16));
  }
  return words;
}

function parseIpv4(text) {
  const octets = text.split('.');
  if (octets.length !== 4) return null;
  const bytes = [];
  for (let i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(octets[i]) || Number(octets[i]) > 255) return null;
    bytes.push(Number(octets[i]));
  }
  return [(bytes[0] << 8) | bytes[1], (bytes[2] << 8) | bytes[3]];
}

function challenge() {
  const response = refuse(401, 'Unauthorized', 'a user name and password are needed');
  response.headers['www-authenticate'] = { value: 'Basic realm="' + SETTINGS.realm + '", charset="UTF-8"' };
  return response;
}

function refuse(statusCode, statusDescription, reason) {
  return {
    statusCode,
    statusDescription,
    headers: { 'content-type': { value: 'text/plain; charset=utf-8' }, 'cache-control': { value: 'no-store' } },
    body: { encoding: 'text', data: statusCode + ' ' + statusDescription + ': ' + reason + '\n' },
  };
}
