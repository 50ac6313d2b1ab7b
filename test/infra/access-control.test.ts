import { createHash, createHmac } from 'node:crypto';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCidr, viewerRequestCode } from '../../infra/constructs/edge-access-control.ts';
import { flattenIntrinsics, synthMirror, type SynthesizedMirror } from './synth.ts';

// One synth for the file, without bundling the Lambda code: every optional feature switched on, in us-east-1.
let mirror: SynthesizedMirror;
let template: Template;

beforeAll(async () => {
  mirror = await synthMirror(
    {
      accessControl: { allowedCidrs: ['203.0.113.0/24', '2001:db8::/32'], basicAuth: true },
      alarms: { email: 'ops@example.com', topicArn: 'arn:aws:sns:us-east-1:123456789012:pager', staleAfterChecks: 12 },
      customDomain: { domainName: 'images.example.com', certificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/abc-123' },
      scheduleMinutes: 10,
      copyConcurrency: 32,
    },
    { account: '123456789012', region: 'us-east-1' },
    { bundle: false },
  );
  template = mirror.template;
});

afterAll(() => mirror?.dispose());

const distributionConfig = () =>
  (Object.values(template.findResources('AWS::CloudFront::Distribution'))[0] as { Properties: { DistributionConfig: Record<string, any> } })
    .Properties.DistributionConfig;

const PEPPER = 'per-deployment secret key';
const SALT = '5a1f0e9d8c7b6a59';
/** The value an operator stores for a user (docs/deploy.md, "Access control"). */
const storedCredential = (user: string, password: string, salt = SALT) =>
  `${salt}:${createHmac('sha256', PEPPER).update(`${salt}:${user}:${password}`).digest('hex')}`;

/** Runs viewer-request function code with stand-ins for its runtime's `cloudfront` and `crypto` modules. */
function evaluate(code: string, store: Record<string, string>): (event: unknown) => Promise<any> {
  const body = code.replace(/^import .*$/gm, '');
  const cf = {
    kvs: () => ({
      get: async (key: string) => {
        if (!(key in store)) throw new Error(`key ${key} not found`);
        return store[key];
      },
    }),
  };
  return new Function('cf', 'crypto', 'Buffer', `${body}\nreturn handler;`)(cf, { createHash, createHmac }, Buffer);
}

/** A deployed function's code, as the template holds it: every behavior's, or the channel items behavior's. */
function viewerRequestHandler(store: Record<string, string>, channelItems = false): (event: unknown) => Promise<any> {
  const functions = Object.values(template.findResources('AWS::CloudFront::Function')) as { Properties: { FunctionCode: string } }[];
  const fn = functions.find((candidate) => candidate.Properties.FunctionCode.includes(`"channelItems":${channelItems}`));
  return evaluate(fn?.Properties.FunctionCode ?? '', store);
}

const users = () => ({ 'skystreams:pepper': PEPPER, maas: storedCredential('maas', 's3cret:with:colons') });

const viewerRequest = (options: { authorization?: string; ip?: string; proto?: 'http' | 'https' } = {}) => ({
  viewer: { ip: options.ip ?? '203.0.113.7' },
  request: {
    uri: '/streams/v1/index.sjson',
    headers: {
      ...(options.authorization && { authorization: { value: options.authorization } }),
      ...(options.proto && { 'cloudfront-forwarded-proto': { value: options.proto } }),
    },
  },
});
const basic = (credentials: string) => `Basic ${Buffer.from(credentials).toString('base64')}`;
const maas = basic('maas:s3cret:with:colons');

describe('Stack: MirrorStack (access control, custom domain, alarm targets)', () => {
  it('reports no unacknowledged cdk-nag finding', () => {
    const findings = mirror.nag.violations.map((violation) => violation.ruleName);

    expect(findings).toEqual([]);
  });

  describe('Construct: EdgeAccessControl', () => {
    it('checks every behavior at viewer request, each function bound to the users key value store', () => {
      const config = distributionConfig();
      template.resourceCountIs('AWS::CloudFront::KeyValueStore', 1);
      template.resourceCountIs('AWS::WAFv2::WebACL', 0);
      template.resourceCountIs('AWS::CloudFront::Function', 2);
      template.allResourcesProperties('AWS::CloudFront::Function', {
        FunctionConfig: Match.objectLike({ Runtime: 'cloudfront-js-2.0', KeyValueStoreAssociations: [Match.objectLike({ KeyValueStoreARN: Match.anyValue() })] }),
      });

      for (const behavior of [config.DefaultCacheBehavior, ...config.CacheBehaviors]) {
        expect(behavior.FunctionAssociations).toEqual([{ EventType: 'viewer-request', FunctionARN: expect.anything() }]);
      }
    });

    it('turns a channel\'s item path into the item\'s own, after the same checks, on the /channels/* behavior only', async () => {
      // Prepare
      const handler = viewerRequestHandler(users(), true);
      const at = (uri: string, authorization?: string) => ({ ...viewerRequest({ authorization }), request: { ...viewerRequest({ authorization }).request, uri } });

      // Act
      const item = await handler(at('/channels/candidate/noble/amd64/20250709/squashfs', maas));
      const unauthenticated = await handler(at('/channels/candidate/noble/amd64/20250709/squashfs'));
      const notAChannel = await handler(at('/channels/Bad_Name/noble/squashfs', maas));
      const plain = await viewerRequestHandler(users())(at('/channels/candidate/noble/squashfs', maas));

      // Assess
      expect(item.uri).toBe('/noble/amd64/20250709/squashfs');
      expect(unauthenticated.statusCode).toBe(401);
      expect(notAChannel.statusCode).toBe(404);
      expect(plain.uri).toBe('/channels/candidate/noble/squashfs');
    });

    it('serves HTTPS only when basic auth is on: plain HTTP is answered 403 by CloudFront, never redirected', () => {
      const config = distributionConfig();

      for (const behavior of [config.DefaultCacheBehavior, ...config.CacheBehaviors]) {
        expect(behavior.ViewerProtocolPolicy).toBe('https-only');
      }
    });

    it('keeps neither a password, a digest nor the key in the template', () => {
      const code = JSON.stringify(template.findResources('AWS::CloudFront::Function'));

      expect(code).not.toContain(PEPPER);
      expect(code).toContain("'skystreams:pepper'");
    });

    describe('Function: viewer request', () => {
      it('lets an allowed IPv4, IPv6 or IPv4-mapped viewer with the right password through', async () => {
        // Prepare
        const handler = viewerRequestHandler(users());
        const ips = ['203.0.113.7', '2001:db8::1', '2001:DB8:ffff:0:0:0:0:1', '::ffff:203.0.113.200'];

        // Act
        const results = await Promise.all(ips.map((ip) => handler(viewerRequest({ authorization: maas, ip }))));

        // Assess
        for (const [i, result] of results.entries()) expect(result).toEqual(viewerRequest({ authorization: maas, ip: ips[i] }).request);
      });

      it('answers 403 with the reason to a viewer outside the allowed networks, IPv4 or IPv6, whatever its credentials', async () => {
        // Prepare
        const handler = viewerRequestHandler(users());

        // Act
        const results = await Promise.all(
          ['198.51.100.7', '2001:db9::1', '2001:db7:ffff::1', '::ffff:198.51.100.7', 'not-an-address', ''].map((ip) =>
            handler(viewerRequest({ authorization: maas, ip })),
          ),
        );

        // Assess
        for (const denied of results) {
          expect(denied.statusCode).toBe(403);
          expect(denied.body.data).toMatch(/network may not use the mirror/);
          expect(denied.headers).not.toHaveProperty('location');
        }
      });

      it('refuses credentials sent over plain HTTP with 403 and the reason, never a redirect', async () => {
        // Prepare
        const handler = viewerRequestHandler(users());

        // Act
        const overHttp = await handler(viewerRequest({ authorization: maas, proto: 'http' }));
        const overHttps = await handler(viewerRequest({ authorization: maas, proto: 'https' }));

        // Assess
        expect(overHttp.statusCode).toBe(403);
        expect(overHttp.body.data).toMatch(/needs HTTPS/);
        expect(overHttp.headers).not.toHaveProperty('location');
        expect(overHttps).toEqual(viewerRequest({ authorization: maas, proto: 'https' }).request);
      });

      it('answers 401 with a challenge to a wrong password, an unknown user, no or other credentials, or a store without the key', async () => {
        // Prepare
        const handler = viewerRequestHandler(users());
        const unkeyed = viewerRequestHandler({ maas: storedCredential('maas', 's3cret:with:colons') });

        // Act
        const results = await Promise.all([
          handler(viewerRequest({ authorization: basic('maas:guess') })),
          handler(viewerRequest({ authorization: basic('maas:s3cret:with:colonz') })),
          handler(viewerRequest({ authorization: basic('eve:s3cret:with:colons') })),
          handler(viewerRequest({ authorization: basic('skystreams:pepper') })),
          handler(viewerRequest()),
          handler(viewerRequest({ authorization: 'Bearer abc' })),
          unkeyed(viewerRequest({ authorization: maas })),
        ]);

        // Assess
        for (const denied of results) {
          expect(denied.statusCode).toBe(401);
          expect(denied.headers['www-authenticate'].value).toMatch(/^Basic realm="skystreams"/);
          expect(denied.headers).not.toHaveProperty('location');
        }
      });

      it('salts each credential: the same password stored with another salt is another value, and both work', async () => {
        // Prepare
        const other = storedCredential('maas', 's3cret:with:colons', '00112233445566778899aabbccddeeff');
        const handler = viewerRequestHandler({ ...users(), maas: other });

        // Act
        const result = await handler(viewerRequest({ authorization: maas }));

        // Assess
        expect(other).not.toBe(users().maas);
        expect(result).toEqual(viewerRequest({ authorization: maas }).request);
      });

      it('compares digests in constant time: every character is read wherever the first difference is', async () => {
        // Prepare
        const stored = users().maas;
        const digest = stored.slice(stored.indexOf(':') + 1);
        const flip = (text: string, at: number) => text.slice(0, at) + (text[at] === '0' ? '1' : '0') + text.slice(at + 1);
        const reads = async (storedDigest: string) => {
          const handler = viewerRequestHandler({ ...users(), maas: `${SALT}:${storedDigest}` });
          const charCodeAt = String.prototype.charCodeAt;
          let count = 0;
          String.prototype.charCodeAt = function (this: string, index: number) {
            count += 1;
            return charCodeAt.call(this, index);
          };
          try {
            const result = await handler(viewerRequest({ authorization: maas }));
            return { count, allowed: result.statusCode === undefined };
          } finally {
            String.prototype.charCodeAt = charCodeAt;
          }
        };

        // Act
        // One at a time: each run patches String.prototype.
        const equal = await reads(digest);
        const firstDiffers = await reads(flip(digest, 0));
        const lastDiffers = await reads(flip(digest, 63));

        // Assess
        expect([equal.allowed, firstDiffers.allowed, lastDiffers.allowed]).toEqual([true, false, false]);
        expect(firstDiffers.count).toBe(equal.count);
        expect(lastDiffers.count).toBe(equal.count);
        expect(equal.count).toBeGreaterThanOrEqual(2 * 64);
      });

      it('with only IPv4 networks listed, refuses IPv6 viewers: an allowed site must list its IPv6 networks too', async () => {
        // Prepare
        const code = viewerRequestCode({ realm: 'skystreams', basicAuth: false, networks: [parseCidr('203.0.113.0/24')!] });
        const handler = evaluate(code, {});

        // Act
        const overIpv4 = await handler(viewerRequest({ ip: '203.0.113.7' }));
        const overIpv6 = await handler(viewerRequest({ ip: '2001:db8::7' }));

        // Assess
        expect(overIpv4).toEqual(viewerRequest({ ip: '203.0.113.7' }).request);
        expect(overIpv6.statusCode).toBe(403);
      });
    });

    it('outputs where operators add users', () => {
      expect(Object.keys(template.findOutputs('*'))).toContain('BasicAuthUsersArn');
    });
  });

  describe('Construct: MirrorDistribution', () => {
    it('serves the custom domain with its ACM certificate and TLS 1.2 at least', () => {
      const config = distributionConfig();

      expect(config.Aliases).toEqual(['images.example.com']);
      expect(config.ViewerCertificate).toEqual({
        AcmCertificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/abc-123',
        MinimumProtocolVersion: 'TLSv1.2_2021',
        SslSupportMethod: 'sni-only',
      });
    });

    it('prints the custom domain as the base URL and in the MAAS command', () => {
      const outputs = template.findOutputs('*') as Record<string, { Value: unknown }>;

      expect(flattenIntrinsics(outputs.BaseUrl?.Value)).toBe('https://images.example.com/');
      expect(flattenIntrinsics(outputs.MaasUpdateBootSource?.Value)).toContain('url=https://images.example.com/ ');
    });
  });

  describe('Construct: SyncPipeline and Operations', () => {
    it('follows the configured schedule, copy concurrency and staleness window', () => {
      template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(10 minutes)' });
      expect(flattenIntrinsics((Object.values(template.findResources('AWS::StepFunctions::StateMachine'))[0] as any).Properties.DefinitionString)).toContain(
        '"MaxConcurrency":32',
      );
      template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'UpstreamAhead', Period: 600, EvaluationPeriods: 12 });
    });

    it('subscribes the e-mail address and notifies the extra topic as well', () => {
      template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
      const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')) as { Properties: { AlarmActions: unknown[] } }[];

      for (const alarm of alarms) {
        expect(alarm.Properties.AlarmActions).toContain('arn:aws:sns:us-east-1:123456789012:pager');
        expect(alarm.Properties.AlarmActions).toHaveLength(2);
      }
    });
  });
});
