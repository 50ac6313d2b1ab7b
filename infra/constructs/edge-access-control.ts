import { Stack, Token } from 'aws-cdk-lib';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { ConfigError } from '../../functions/core/errors.ts';

export interface EdgeAccessControlProps {
  /** Only these IPv4/IPv6 CIDRs may download (WAF web ACL). @default [] (no IP restriction, no WAF) */
  readonly allowedCidrs?: readonly string[];
  /**
   * HTTP basic auth checked at the edge by a CloudFront Function against
   * users kept in a CloudFront KeyValueStore (key: user name, value: hex
   * SHA-256 of `user:password`). MAAS up to 3.7 sends `user:pass@` URLs as
   * basic auth.
   * @default false
   */
  readonly basicAuth?: boolean;
  /** @default 'skystreams' */
  readonly realm?: string;
}

/**
 * Optional access control in front of the whole mirror: a WAF IP allow-list
 * and/or edge basic auth. Nothing is created when neither is asked for.
 */
export class EdgeAccessControl extends Construct {
  /** For the distribution's `webAclId`. */
  public readonly webAcl?: wafv2.CfnWebACL;
  /** For every behavior's viewer-request association. */
  public readonly basicAuthFunction?: cloudfront.Function;
  /** Where operators add users. */
  public readonly users?: cloudfront.KeyValueStore;

  constructor(scope: Construct, id: string, props: EdgeAccessControlProps) {
    super(scope, id);
    const allowedCidrs = props.allowedCidrs ?? [];
    if (allowedCidrs.length > 0) this.webAcl = this.ipAllowList(allowedCidrs);
    if (props.basicAuth) {
      const realm = props.realm ?? 'skystreams';
      if (!/^[\w .-]+$/.test(realm)) throw new Error(`EdgeAccessControl: realm ${JSON.stringify(realm)} must be plain text`);
      this.users = new cloudfront.KeyValueStore(this, 'Users', {
        comment: 'skystreams basic-auth users: key = user name, value = hex SHA-256 of "user:password"',
      });
      this.basicAuthFunction = new cloudfront.Function(this, 'BasicAuth', {
        comment: 'skystreams: HTTP basic auth against the users key value store',
        runtime: cloudfront.FunctionRuntime.JS_2_0,
        keyValueStore: this.users,
        code: cloudfront.FunctionCode.fromInline(basicAuthCode(realm)),
      });
    }
  }

  private ipAllowList(cidrs: readonly string[]): wafv2.CfnWebACL {
    const region = Stack.of(this).region;
    if (Token.isUnresolved(region) || region !== 'us-east-1') {
      throw new ConfigError(
        'accessControl.allowedCidrs: a WAF web ACL for CloudFront must be created in us-east-1; deploy the stack with env.region us-east-1 (CDK_DEFAULT_REGION) or drop the allow-list',
      );
    }
    const ipv4 = cidrs.filter((cidr) => !cidr.includes(':'));
    const ipv6 = cidrs.filter((cidr) => cidr.includes(':'));
    const sets = [
      ...(ipv4.length ? [new wafv2.CfnIPSet(this, 'AllowedIpv4', { scope: 'CLOUDFRONT', ipAddressVersion: 'IPV4', addresses: ipv4 })] : []),
      ...(ipv6.length ? [new wafv2.CfnIPSet(this, 'AllowedIpv6', { scope: 'CLOUDFRONT', ipAddressVersion: 'IPV6', addresses: ipv6 })] : []),
    ];
    const statements = sets.map((set) => ({ ipSetReferenceStatement: { arn: set.attrArn } }));
    const [only] = statements;
    return new wafv2.CfnWebACL(this, 'AllowList', {
      scope: 'CLOUDFRONT',
      description: 'skystreams: only the configured networks may use the mirror',
      defaultAction: { block: {} },
      visibilityConfig: { cloudWatchMetricsEnabled: true, metricName: 'skystreams-allow-list', sampledRequestsEnabled: true },
      rules: [
        {
          name: 'AllowConfiguredNetworks',
          priority: 0,
          action: { allow: {} },
          statement: statements.length === 1 && only ? only : { orStatement: { statements } },
          visibilityConfig: { cloudWatchMetricsEnabled: true, metricName: 'skystreams-allowed', sampledRequestsEnabled: true },
        },
      ],
    });
  }
}

/**
 * The viewer-request function (cloudfront-js-2.0). Compares digests rather
 * than passwords so the store never holds a password; every failure is the
 * same 401, which never redirects.
 */
function basicAuthCode(realm: string): string {
  return `import cf from 'cloudfront';
import crypto from 'crypto';
const users = cf.kvs();
const denied = {
  statusCode: 401,
  statusDescription: 'Unauthorized',
  headers: { 'www-authenticate': { value: 'Basic realm="${realm}", charset="UTF-8"' } },
};
async function handler(event) {
  const request = event.request;
  const authorization = request.headers.authorization;
  if (!authorization || authorization.value.slice(0, 6).toLowerCase() !== 'basic ') return denied;
  const credentials = Buffer.from(authorization.value.slice(6).trim(), 'base64').toString('utf8');
  const colon = credentials.indexOf(':');
  if (colon < 1) return denied;
  let expected;
  try {
    expected = await users.get(credentials.slice(0, colon));
  } catch (unknownUser) {
    return denied;
  }
  const actual = crypto.createHash('sha256').update(credentials).digest('hex');
  return actual === expected ? request : denied;
}
`;
}
