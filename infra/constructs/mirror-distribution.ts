import { Annotations, Duration } from 'aws-cdk-lib';
import type * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { ITEMS_ORIGIN_PATH, KEY_PATTERNS } from '../bucket-access.ts';
import { METADATA_DEFAULT_TTL_SECONDS, METADATA_MAX_TTL_SECONDS } from '../edge-cache.ts';
import { API_FILES, API_PREFIXES, CHANNELS_PREFIX, STATUS_PAGE_PATH } from './mirror-api.ts';

/** What the edge checks (EdgeAccessControl provides it). */
export interface EdgeAccess {
  /** The viewer-request function. @default none */
  readonly viewerRequestFunction?: cloudfront.IFunction;
  /** The `/channels/*` item behavior's viewer-request function: the same checks, then the item's own path. */
  readonly channelItemsFunction: cloudfront.IFunction;
  /** Serve HTTPS only: CloudFront answers plain HTTP with 403, never a redirect. */
  readonly requiresHttps: boolean;
}

export interface MirrorDistributionProps {
  /** Holds item bytes under `items/`. */
  readonly bucket: s3.IBucket;
  /** The metadata API and the headers that let CloudFront (and only CloudFront) in. */
  readonly api: { readonly api: apigateway.RestApi; readonly originHeaders: Readonly<Record<string, string>> };
  /** Receives CloudFront's standard access logs (must allow ACLs). @default no access logs */
  readonly logBucket?: s3.IBucket;
  /** @default the distribution's own *.cloudfront.net name */
  readonly customDomain?: { readonly domainName: string; readonly certificateArn: string };
  /** Checked on every viewer request of every behavior. @default none: anyone, over HTTP or HTTPS */
  readonly accessControl?: EdgeAccess;
  /** @default cloudfront.PriceClass.PRICE_CLASS_100 */
  readonly priceClass?: cloudfront.PriceClass;
  /** How long item bytes stay cached when the origin says nothing; items never change under a path. @default Duration.days(30) */
  readonly itemCacheTtl?: Duration;
}

/**
 * The mirror's single base URL: item bytes straight from S3 through origin
 * access control (origin path `/items`, so `/<mirror path>` is
 * `items/<mirror path>`), `/streams/*`, `/api/*` and the status page at `/`
 * from the API, which only accepts CloudFront's key. Channels:
 * `/channels/NAME/streams/*` from the API, `/channels/NAME/<item>` the item's
 * bytes from S3. HTTP and HTTPS are both served as-is, except that
 * credentials require HTTPS (plain HTTP then gets 403): MAAS never follows a
 * redirect.
 */
export class MirrorDistribution extends Construct {
  public readonly distribution: cloudfront.Distribution;
  /** `https://<domain>/`, what MAAS is pointed at. */
  public readonly baseUrl: string;
  /** True without a custom domain: the *.cloudfront.net certificate, which allows only the TLSv1 security policy. */
  public readonly usesDefaultCertificate: boolean;

  constructor(scope: Construct, id: string, props: MirrorDistributionProps) {
    super(scope, id);
    const viewerRequest = props.accessControl?.viewerRequestFunction;
    const functionAssociations = viewerRequest ? [{ function: viewerRequest, eventType: cloudfront.FunctionEventType.VIEWER_REQUEST }] : undefined;
    const viewerProtocolPolicy = props.accessControl?.requiresHttps
      ? cloudfront.ViewerProtocolPolicy.HTTPS_ONLY
      : cloudfront.ViewerProtocolPolicy.ALLOW_ALL;

    Annotations.of(this).acknowledgeWarning(
      '@aws-cdk/aws-cloudfront-origins:listBucketSecurityRisk',
      'the origin path /items means no viewer request reaches the bucket root, so LIST can never list the bucket',
    );
    const items = origins.S3BucketOrigin.withOriginAccessControl(props.bucket, {
      originPath: ITEMS_ORIGIN_PATH,
      // LIST lets S3 answer 404 (not 403) for a missing item; CloudFront itself only ever GETs objects.
      originAccessLevels: [cloudfront.AccessLevel.READ, cloudfront.AccessLevel.LIST],
    });
    const itemsCache = new cloudfront.CachePolicy(this, 'ItemsCache', {
      comment: 'skystreams items: immutable under their path',
      defaultTtl: props.itemCacheTtl ?? Duration.days(30),
      maxTtl: Duration.days(365),
      minTtl: Duration.seconds(0),
      queryStringBehavior: cloudfront.CacheQueryStringBehavior.none(),
      headerBehavior: cloudfront.CacheHeaderBehavior.none(),
      cookieBehavior: cloudfront.CacheCookieBehavior.none(),
    });

    const api = new origins.RestApiOrigin(props.api.api, { customHeaders: { ...props.api.originHeaders } });
    // Not a prop: the config's minimum prune grace (infra/config.ts) is derived from the same constant.
    // No query string, header or cookie in the key: `?x=random` is the same cached object, never a way past the cache.
    const metadataCache = new cloudfront.CachePolicy(this, 'MetadataCache', {
      comment: 'skystreams metadata: changes with each published generation',
      defaultTtl: Duration.seconds(METADATA_DEFAULT_TTL_SECONDS),
      maxTtl: Duration.seconds(METADATA_MAX_TTL_SECONDS),
      minTtl: Duration.seconds(0),
      queryStringBehavior: cloudfront.CacheQueryStringBehavior.none(),
      headerBehavior: cloudfront.CacheHeaderBehavior.none(),
      cookieBehavior: cloudfront.CacheCookieBehavior.none(),
      enableAcceptEncodingGzip: true,
      enableAcceptEncodingBrotli: true,
    });
    // No origin request policy: the API gets the path and the origin's own headers, never the viewer's
    // query string, Host (API Gateway needs its own) or Authorization.
    const apiBehavior: cloudfront.BehaviorOptions = {
      origin: api,
      viewerProtocolPolicy,
      allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD,
      cachedMethods: cloudfront.CachedMethods.CACHE_GET_HEAD,
      cachePolicy: metadataCache,
      compress: true,
      functionAssociations,
    };

    const itemBehavior: cloudfront.BehaviorOptions = {
      origin: items,
      viewerProtocolPolicy,
      allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD,
      cachedMethods: cloudfront.CachedMethods.CACHE_GET_HEAD,
      cachePolicy: itemsCache,
      // Images are already compressed (squashfs, gzip'd kernels).
      compress: false,
    };

    this.distribution = new cloudfront.Distribution(this, 'Distribution', {
      comment: 'skystreams MAAS image mirror',
      defaultBehavior: { ...itemBehavior, functionAssociations },
      // Listed most specific first: CloudFront takes the first pattern that matches.
      // `/` alone (no wildcard) is the status page; any other path without an API prefix is an item.
      additionalBehaviors: {
        [STATUS_PAGE_PATH]: apiBehavior,
        ...Object.fromEntries(API_PREFIXES.map((prefix) => [`/${prefix}/*`, apiBehavior])),
        ...Object.fromEntries(API_FILES.map((file) => [`/${file}`, apiBehavior])),
        [`/${CHANNELS_PREFIX}/*/streams/*`]: apiBehavior,
        ...Object.fromEntries(API_FILES.map((file) => [`/${CHANNELS_PREFIX}/*/${file}`, apiBehavior])),
        ...(props.accessControl && {
          // Keyed on the rewritten path: a channel's item and the same item at / share one cached object.
          [`/${CHANNELS_PREFIX}/*`]: {
            ...itemBehavior,
            functionAssociations: [
              { function: props.accessControl.channelItemsFunction, eventType: cloudfront.FunctionEventType.VIEWER_REQUEST },
            ],
          },
        }),
      },
      httpVersion: cloudfront.HttpVersion.HTTP2_AND_3,
      enableIpv6: true,
      priceClass: props.priceClass ?? cloudfront.PriceClass.PRICE_CLASS_100,
      ...(props.logBucket && { enableLogging: true, logBucket: props.logBucket, logFilePrefix: 'cloudfront/' }),
      ...(props.customDomain && {
        domainNames: [props.customDomain.domainName],
        certificate: acm.Certificate.fromCertificateArn(this, 'Certificate', props.customDomain.certificateArn),
        minimumProtocolVersion: cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
      }),
    });

    // Origin access control is granted the whole bucket; only item bytes are CloudFront's to read.
    props.bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudFrontReadsItemsOnly',
        effect: iam.Effect.DENY,
        principals: [new iam.ServicePrincipal('cloudfront.amazonaws.com')],
        actions: ['s3:GetObject'],
        notResources: [props.bucket.arnForObjects(KEY_PATTERNS.items)],
      }),
    );

    this.usesDefaultCertificate = props.customDomain === undefined;
    const domain = props.customDomain?.domainName ?? this.distribution.distributionDomainName;
    this.baseUrl = `https://${domain}/`;
  }
}
