import { createHash } from 'node:crypto';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flattenIntrinsics, logicalIdOf, synthMirror, type SynthesizedMirror } from './synth.ts';

// One synth for the file: every optional feature switched on, in us-east-1 (WAF for CloudFront lives there).
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
  );
  template = mirror.template;
});

afterAll(() => mirror?.dispose());

const distributionConfig = () =>
  (Object.values(template.findResources('AWS::CloudFront::Distribution'))[0] as { Properties: { DistributionConfig: Record<string, any> } })
    .Properties.DistributionConfig;

/** The basic-auth CloudFront Function's code, run with stand-ins for its runtime's `cloudfront` and `crypto` modules. */
function basicAuthHandler(users: Record<string, string>): (event: unknown) => Promise<any> {
  const [fn] = Object.values(template.findResources('AWS::CloudFront::Function')) as { Properties: { FunctionCode: string } }[];
  const body = (fn?.Properties.FunctionCode ?? '').replace(/^import .*$/gm, '');
  const cf = {
    kvs: () => ({
      get: async (key: string) => {
        if (!(key in users)) throw new Error(`key ${key} not found`);
        return users[key];
      },
    }),
  };
  const crypto = { createHash };
  return new Function('cf', 'crypto', 'Buffer', `${body}\nreturn handler;`)(cf, crypto, Buffer);
}

const viewerRequest = (authorization?: string) => ({
  request: { uri: '/streams/v1/index.sjson', headers: authorization ? { authorization: { value: authorization } } : {} },
});
const basic = (credentials: string) => `Basic ${Buffer.from(credentials).toString('base64')}`;
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('Stack: MirrorStack (access control, custom domain, alarm targets)', () => {
  it('reports no unacknowledged cdk-nag finding', () => {
    const findings = mirror.nag.violations.map((violation) => violation.ruleName);

    expect(findings).toEqual([]);
  });

  describe('Construct: EdgeAccessControl', () => {
    it('blocks every network but the allowed IPv4 and IPv6 ranges with a CloudFront-scoped WAF web ACL', () => {
      template.hasResourceProperties('AWS::WAFv2::IPSet', { Scope: 'CLOUDFRONT', IPAddressVersion: 'IPV4', Addresses: ['203.0.113.0/24'] });
      template.hasResourceProperties('AWS::WAFv2::IPSet', { Scope: 'CLOUDFRONT', IPAddressVersion: 'IPV6', Addresses: ['2001:db8::/32'] });
      template.hasResourceProperties('AWS::WAFv2::WebACL', {
        Scope: 'CLOUDFRONT',
        DefaultAction: { Block: {} },
        Rules: [Match.objectLike({ Action: { Allow: {} }, Statement: { OrStatement: { Statements: Match.arrayWith([Match.objectLike({ IPSetReferenceStatement: Match.anyValue() })]) } } })],
      });
      const webAclId = logicalIdOf(mirror.stack, mirror.stack.accessControl.webAcl!);

      expect(distributionConfig().WebACLId).toEqual({ 'Fn::GetAtt': [webAclId, 'Arn'] });
    });

    it('checks basic auth on every behavior at viewer request, against a key value store', () => {
      const config = distributionConfig();
      template.resourceCountIs('AWS::CloudFront::KeyValueStore', 1);
      template.hasResourceProperties('AWS::CloudFront::Function', {
        FunctionConfig: Match.objectLike({ Runtime: 'cloudfront-js-2.0', KeyValueStoreAssociations: [Match.objectLike({ KeyValueStoreARN: Match.anyValue() })] }),
      });

      for (const behavior of [config.DefaultCacheBehavior, ...config.CacheBehaviors]) {
        expect(behavior.FunctionAssociations).toEqual([{ EventType: 'viewer-request', FunctionARN: expect.anything() }]);
      }
    });

    it('lets a known user with the right password through and answers 401 with a challenge otherwise', async () => {
      // Prepare
      const handler = basicAuthHandler({ maas: sha256('maas:s3cret:with:colons') });

      // Act
      const allowed = await handler(viewerRequest(basic('maas:s3cret:with:colons')));
      const wrongPassword = await handler(viewerRequest(basic('maas:guess')));
      const unknownUser = await handler(viewerRequest(basic('eve:s3cret:with:colons')));
      const anonymous = await handler(viewerRequest());
      const notBasic = await handler(viewerRequest('Bearer abc'));

      // Assess
      expect(allowed).toEqual(viewerRequest(basic('maas:s3cret:with:colons')).request);
      for (const denied of [wrongPassword, unknownUser, anonymous, notBasic]) {
        expect(denied.statusCode).toBe(401);
        expect(denied.headers['www-authenticate'].value).toMatch(/^Basic realm="skystreams"/);
      }
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
