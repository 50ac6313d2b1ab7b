/**
 * The mirror's HTTP contract, OpenAPI 3.1, served at `/api/v1/openapi.json`.
 * Data, not generated: test/e2e/api-contract.test.ts fetches every path here
 * from a synced mirror and checks each real response against its schema, and
 * checks that every route the app answers is listed.
 */
import { ERROR_CODES } from './reply.ts';

const ISO_TIME = { type: 'string', description: 'ISO 8601 UTC time' } as const;
const COUNT = { type: 'integer', minimum: 0 } as const;

/** The fields naming one version of one mirrored image (core/packages.ts ImageVersion). */
const IMAGE_VERSION = {
  product: { type: 'string' },
  version: { type: 'string' },
  os: { type: 'string' },
  release: { type: 'string' },
  arch: { type: 'string' },
  subarch: { type: 'string' },
  label: { type: 'string' },
} as const;


const jsonContent = (ref: string) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } });
const errorResponse = (description: string) => ({ description, content: jsonContent('Error') });
const serverErrors = {
  '500': errorResponse('Internal error; the detail is in the server log under `requestId`.'),
  '503': errorResponse('The store is throttling or unreachable; retry later.'),
};

/** A metadata file's answers; `notFound` says when it is 404. */
const metadataResponses = (notFound: string) => ({
  '200': {
    description: 'The file; `.sjson` files are OpenPGP clear-signed JSON',
    content: { 'application/json': { schema: { type: 'object' } }, 'text/plain': { schema: { type: 'string' } } },
  },
  '206': { description: 'The requested byte range' },
  '304': { description: 'Not modified (If-None-Match, If-Modified-Since)' },
  '404': errorResponse(notFound),
  '416': { description: 'Range not satisfiable' },
  ...serverErrors,
});

/** An item's answers, at its path and under any channel's. */
const ITEM_RESPONSES = {
  '200': { description: 'The bytes', content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } } },
  '206': { description: 'The requested byte range' },
  '304': { description: 'Not modified' },
  '400': errorResponse('A path no mirror file can have (bad percent-encoding, a dot segment)'),
  '404': errorResponse('Not published here'),
  '405': errorResponse('Any method but GET and HEAD'),
  '416': { description: 'Range not satisfiable' },
  ...serverErrors,
};
const readMethods = (get: object) => ({ get, head: { ...get, operationId: `${(get as { operationId: string }).operationId}Head`, summary: 'Headers only' } });

export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'skystreams mirror',
    version: '1',
    summary: 'A verified mirror of MAAS boot images (simplestreams): the metadata and items MAAS reads, a status page and a JSON API.',
    license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
  },
  paths: {
    '/': readMethods({
      operationId: 'statusPage',
      summary: 'The status page: catalog, freshness, sync runs and the MAAS command',
      responses: {
        '200': { description: 'An HTML page, no external resources.', content: { 'text/html': { schema: { type: 'string' } } } },
        ...serverErrors,
      },
    }),
    '/api/v1/status': readMethods({
      operationId: 'status',
      summary: 'The current publication and the last sync runs, newest first',
      responses: { '200': { description: 'Status', content: jsonContent('StatusReport') }, ...serverErrors },
    }),
    '/api/v1/images': readMethods({
      operationId: 'images',
      summary: 'Every image of the current publication, with its versions and files',
      responses: { '200': { description: 'Catalog', content: jsonContent('CatalogReport') }, ...serverErrors },
    }),
    '/api/v1/packages/{name}': readMethods({
      operationId: 'packages',
      summary: 'Which images of the current publication ship package {name}, and which version (from their manifests)',
      parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' }, example: 'openssl', description: '`libc6` also finds `libc6:amd64`' }],
      responses: {
        '200': { description: 'Matches; empty lists for an unknown package. `unread` names manifests the answer could not look into', content: jsonContent('PackageReport') },
        '400': errorResponse('Not a package name'),
        ...serverErrors,
      },
    }),
    '/api/v1/diff/{product}/{from}/{to}': readMethods({
      operationId: 'diff',
      summary: 'Packages added, removed and changed from version {from} to version {to} of image {product}',
      parameters: [
        { name: 'product', in: 'path', required: true, schema: { type: 'string' }, example: 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04' },
        { name: 'from', in: 'path', required: true, schema: { type: 'string' }, example: '20250618' },
        { name: 'to', in: 'path', required: true, schema: { type: 'string' }, example: '20250709' },
      ],
      responses: {
        '200': { description: 'The difference', content: jsonContent('ImageDiff') },
        '400': errorResponse('A malformed path'),
        '404': errorResponse('The product or a version is not published, or lists no manifest'),
        '409': errorResponse('A manifest could not be parsed, or is not indexed yet'),
        ...serverErrors,
      },
    }),
    '/api/v1/openapi.json': readMethods({
      operationId: 'openapi',
      summary: 'This document',
      responses: { '200': { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object', required: ['openapi', 'paths'] } } } } },
    }),
    '/api/v1/uploads': {
      post: {
        operationId: 'upload',
        summary: 'Add a custom image whose files are already in the bucket under incoming/ (AWS only; re-signed mode)',
        description:
          'Called on the API stage URL (the stack output UploadsUrl), SigV4-signed by a principal allowed execute-api:Invoke on it: ' +
          'CloudFront passes only GET and HEAD. Copy each file to incoming/ first (aws s3 cp); each is verified against the size and ' +
          'sha256 given here while it is stored, then removed from incoming/. The next scheduled check publishes the image. ' +
          'Formats MAAS cannot take from a stream (dd disk images) are refused with the `maas $PROFILE boot-resources create` command ' +
          'that uploads them directly. docs/custom-images.md has the whole flow.',
        security: [{ sigv4: [] }],
        requestBody: { required: true, content: jsonContent('UploadRequest') },
        responses: {
          '202': { description: 'Stored; published by the next sync', content: jsonContent('UploadAccepted') },
          '400': errorResponse('A missing, extra or invalid field (named), an incoming object that is not there, or a format MAAS cannot take from a stream'),
          '403': { description: 'API Gateway: the request is not SigV4-signed by a principal allowed to invoke the route' },
          '405': errorResponse('Any method but POST'),
          '409': errorResponse('The mirror does not publish re-signed, so it cannot publish custom images; nothing was stored'),
          '422': errorResponse('An incoming object\'s size or sha256 is not what the request says, or its leading bytes are not what its ftype must be (named); nothing was stored'),
          ...serverErrors,
        },
      },
    },
    '/streams/v1/{file}': readMethods({
      operationId: 'metadata',
      summary: 'A simplestreams metadata file of the current publication, as upstream signed it',
      parameters: [
        {
          name: 'file',
          in: 'path',
          required: true,
          schema: { type: 'string' },
          example: 'index.sjson',
          description: '`index.sjson`, `index.json` or a products file the index lists',
        },
      ],
      responses: metadataResponses('Not in the current publication'),
    }),
    '/channels/{channel}/streams/v1/{file}': readMethods({
      operationId: 'channelMetadata',
      summary: 'A simplestreams metadata file of a channel\'s publication (the default channel is also at /streams/v1/)',
      parameters: [
        { name: 'channel', in: 'path', required: true, schema: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,31}$' }, example: 'candidate' },
        { name: 'file', in: 'path', required: true, schema: { type: 'string' }, example: 'index.sjson' },
      ],
      responses: metadataResponses('No such channel, or not in its publication'),
    }),
    '/channels/{channel}/{itemPath}': readMethods({
      operationId: 'channelItem',
      summary: 'An item under a channel\'s URL: the same bytes as at /{itemPath}',
      parameters: [
        { name: 'channel', in: 'path', required: true, schema: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,31}$' } },
        { name: 'itemPath', in: 'path', required: true, schema: { type: 'string' } },
      ],
      responses: ITEM_RESPONSES,
    }),
    '/{itemPath}': readMethods({
      operationId: 'item',
      summary: 'An item (kernel, initrd, squashfs, …) a retained publication lists; never changes under its path',
      parameters: [
        {
          name: 'itemPath',
          in: 'path',
          required: true,
          schema: { type: 'string' },
          description: 'The item\'s `path` from the products metadata; it spans several segments (`server/releases/noble/…`)',
        },
      ],
      responses: ITEM_RESPONSES,
    }),
  },
  components: {
    securitySchemes: {
      sigv4: {
        type: 'apiKey',
        in: 'header',
        name: 'Authorization',
        description: 'AWS Signature Version 4 (API Gateway AWS_IAM authorization): e.g. `curl --aws-sigv4 "aws:amz:REGION:execute-api"`',
      },
    },
    schemas: {
      UploadRequest: {
        type: 'object',
        required: ['os', 'release', 'arch', 'subarch', 'title', 'files'],
        additionalProperties: false,
        properties: {
          os: { type: 'string', pattern: '^[a-z0-9][a-z0-9._+-]{0,63}$', example: 'centos' },
          release: { type: 'string', pattern: '^[a-z0-9][a-z0-9._+-]{0,63}$', example: 'mycentos9' },
          arch: { type: 'string', pattern: '^[a-z0-9]{1,16}$', example: 'amd64' },
          subarch: { type: 'string', example: 'generic' },
          title: { type: 'string', description: 'What MAAS shows', example: 'CentOS 9 (site)' },
          label: { type: 'string', description: 'Default stable' },
          kflavor: { type: 'string', description: 'Kernel flavour of an image with its own kernel; default generic' },
          subarches: { type: 'string', description: 'Comma-separated; default the subarch' },
          releaseVersion: { type: 'string', description: 'MAAS\'s `version` of the release; default the release' },
          supportEol: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$' },
          files: {
            type: 'array',
            description: 'boot-kernel + boot-initrd + squashfs (or root-image.gz) + manifest, or root-tgz + manifest',
            items: {
              type: 'object',
              required: ['ftype', 'key', 'sha256', 'size'],
              additionalProperties: false,
              properties: {
                ftype: { type: 'string', example: 'root-tgz' },
                key: { type: 'string', pattern: '^incoming/', example: 'incoming/mycentos9/image.tgz' },
                sha256: { type: 'string', pattern: '^[0-9a-fA-F]{64}$' },
                size: COUNT,
              },
            },
          },
        },
      },
      UploadAccepted: {
        type: 'object',
        required: ['product', 'version', 'items', 'published'],
        additionalProperties: false,
        properties: {
          product: { type: 'string', example: 'com.skystreams.custom:v3:centos:mycentos9:amd64:generic' },
          version: { type: 'string', pattern: '^\\d{8}(\\.\\d{2})?$', example: '20261202' },
          items: {
            type: 'array',
            items: {
              type: 'object',
              required: ['item', 'path', 'size', 'sha256'],
              additionalProperties: false,
              properties: { item: { type: 'string' }, path: { type: 'string' }, size: COUNT, sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
            },
          },
          published: { type: 'string', description: 'When it will be served' },
        },
      },
      PackageReport: {
        type: 'object',
        required: ['package', 'generation', 'images', 'unread'],
        additionalProperties: false,
        properties: {
          package: { type: 'string' },
          generation: { oneOf: [COUNT, { type: 'null' }] },
          images: {
            type: 'array',
            items: {
              type: 'object',
              required: ['product', 'version', 'package', 'packageVersion', 'manifest'],
              additionalProperties: false,
              properties: { ...IMAGE_VERSION, package: { type: 'string' }, packageVersion: { type: 'string' }, manifest: { type: 'string' } },
            },
          },
          unread: {
            type: 'array',
            items: {
              type: 'object',
              required: ['product', 'version', 'manifest', 'reason'],
              additionalProperties: false,
              properties: { ...IMAGE_VERSION, manifest: { type: 'string' }, reason: { type: 'string' } },
            },
          },
        },
      },
      ImageDiff: {
        type: 'object',
        required: ['product', 'generation', 'from', 'to', 'added', 'removed', 'changed', 'unchanged'],
        additionalProperties: false,
        properties: {
          product: { type: 'string' },
          generation: COUNT,
          from: { type: 'object', required: ['version', 'manifest'], additionalProperties: false, properties: { version: { type: 'string' }, manifest: { type: 'string' } } },
          to: { type: 'object', required: ['version', 'manifest'], additionalProperties: false, properties: { version: { type: 'string' }, manifest: { type: 'string' } } },
          added: { type: 'array', items: { $ref: '#/components/schemas/PackageVersion' } },
          removed: { type: 'array', items: { $ref: '#/components/schemas/PackageVersion' } },
          changed: {
            type: 'array',
            items: {
              type: 'object',
              required: ['package', 'from', 'to'],
              additionalProperties: false,
              properties: { package: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' } },
            },
          },
          unchanged: COUNT,
        },
      },
      PackageVersion: {
        type: 'object',
        required: ['package', 'version'],
        additionalProperties: false,
        properties: { package: { type: 'string' }, version: { type: 'string' } },
      },
      Error: {
        type: 'object',
        description: 'Every 4xx and 5xx answer. A 5xx also carries `requestId` (and the `x-request-id` header): the server log has the detail under it.',
        required: ['error'],
        additionalProperties: false,
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            additionalProperties: false,
            properties: {
              code: { type: 'string', enum: [...new Set(Object.values(ERROR_CODES))] },
              message: { type: 'string' },
              requestId: { type: 'string' },
            },
          },
        },
      },
      Publication: {
        type: 'object',
        required: ['generation', 'upstreamUpdated', 'publishedAt', 'runId', 'itemCount', 'totalBytes'],
        additionalProperties: false,
        properties: {
          generation: { type: 'integer', minimum: 1, description: 'Strictly increasing' },
          upstreamUpdated: { type: 'string', description: "The upstream index's `updated`, verbatim" },
          publishedAt: ISO_TIME,
          runId: { type: 'string' },
          itemCount: COUNT,
          totalBytes: COUNT,
        },
      },
      SyncRun: {
        type: 'object',
        required: ['id', 'state', 'startedAt', 'itemsCopied', 'bytesCopied', 'itemsPresent'],
        additionalProperties: false,
        properties: {
          id: { type: 'string' },
          state: { type: 'string', enum: ['running', 'succeeded', 'unchanged', 'failed', 'abandoned'] },
          startedAt: ISO_TIME,
          finishedAt: ISO_TIME,
          itemsCopied: COUNT,
          bytesCopied: COUNT,
          itemsPresent: { ...COUNT, description: 'Items the plan found already stored' },
          generation: { type: 'integer', minimum: 1 },
          error: { type: 'string' },
          holder: {
            type: 'object',
            required: ['host', 'pid'],
            additionalProperties: false,
            properties: { host: { type: 'string' }, pid: { type: 'integer' }, startTime: { type: 'integer', description: "The process's start time, as the host's kernel counts it" } },
          },
          warnings: {
            description: 'What the operator should act on that did not fail the run, e.g. a selection with no bootloader for an architecture',
            type: 'array',
            items: { type: 'string' },
          },
          modeSwitch: {
            description: 'Set on the run that changed how the mirror publishes',
            type: 'object',
            required: ['from', 'to'],
            additionalProperties: false,
            properties: { from: { $ref: '#/components/schemas/PublishingMode' }, to: { $ref: '#/components/schemas/PublishingMode' } },
          },
        },
      },
      PublishingMode: { type: 'string', enum: ['verbatim', 're-signed', 'merged'] },
      StatusReport: {
        type: 'object',
        required: ['publication', 'mode', 'channels', 'runs', 'conflicts'],
        additionalProperties: false,
        properties: {
          publication: {
            description: 'The default channel\'s publication (what / serves)',
            oneOf: [{ $ref: '#/components/schemas/Publication' }, { type: 'null' }],
          },
          mode: {
            description:
              '`verbatim`: upstream\'s metadata and signatures, unchanged (MAAS checks them with the upstream\'s keyring); `re-signed`: the mirror\'s own ' +
              'signature over one source\'s metadata, `merged`: over several sources\'; both serve the keyring that checks them at /keyring.gpg. Null before the first publication',
            enum: ['verbatim', 're-signed', 'merged', null],
          },
          channels: {
            description: 'Each served at /channels/{name}/; the default channel (`stable`) also at /',
            type: 'array',
            items: { $ref: '#/components/schemas/Channel' },
          },
          runs: { type: 'array', items: { $ref: '#/components/schemas/SyncRun' } },
          conflicts: {
            description: 'Merged sources (`--config`): product ids or paths two sources offered; the default channel\'s publication has the kept one',
            type: 'array',
            items: { $ref: '#/components/schemas/SourceConflict' },
          },
          stale: {
            description:
              'Present only when the mirror is stale: upstream\'s `updated` is older than the stale-after setting (14 days unless configured; 0 turns the rule off), ' +
              'or, where the mirror syncs on a schedule, no check of upstream has succeeded for 3 intervals. `since` is when the earlier rule started to hold',
            type: 'object',
            required: ['since', 'reason'],
            additionalProperties: false,
            properties: { since: ISO_TIME, reason: { type: 'string' } },
          },
          signing: {
            description: "Re-signed mode only: the mirror's signing keys, each with its phase (absent in verbatim mode)",
            type: 'object',
            required: ['keys'],
            additionalProperties: false,
            properties: { keys: { type: 'array', items: { $ref: '#/components/schemas/SigningKey' } } },
          },
        },
      },
      SigningKey: {
        type: 'object',
        required: ['fingerprint', 'state'],
        additionalProperties: false,
        properties: {
          fingerprint: { type: 'string', pattern: '^[0-9A-F]{40}$' },
          state: {
            description:
              '`pending`: served in /keyring.gpg, not signing yet; `active`: signs the metadata; `previous`: signed before, still served in /keyring.gpg until retired',
            enum: ['pending', 'active', 'previous'],
          },
          since: { ...ISO_TIME, description: 'When the key entered this phase, where known' },
        },
      },
      SourceConflict: {
        type: 'object',
        required: ['product', 'kept', 'dropped', 'reason'],
        additionalProperties: false,
        properties: {
          product: { type: 'string' },
          kept: { $ref: '#/components/schemas/SourceProduct' },
          dropped: { $ref: '#/components/schemas/SourceProduct' },
          reason: {
            description: '`product`: both list this product id; `path`: both list `path` with different bytes; `name`: both offer the image MAAS names `image` (os/release arch/subarch)',
            enum: ['product', 'path', 'name'],
          },
          path: { type: 'string' },
          image: { type: 'string' },
        },
      },
      SourceProduct: {
        type: 'object',
        required: ['source', 'product'],
        additionalProperties: false,
        properties: { source: { type: 'string' }, product: { type: 'string' } },
      },
      Channel: {
        type: 'object',
        required: ['name', 'generation', 'history'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,31}$' },
          generation: COUNT,
          history: { description: 'Generations it pointed at before, newest first: where `skystreams rollback` goes', type: 'array', items: COUNT },
        },
      },
      ImageFile: {
        type: 'object',
        required: ['item', 'path', 'size', 'sha256'],
        additionalProperties: false,
        properties: {
          item: { type: 'string' },
          ftype: { type: 'string' },
          path: { type: 'string' },
          size: COUNT,
          sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
        },
      },
      ImageSummary: {
        type: 'object',
        required: ['contentId', 'product', 'versions', 'totalBytes'],
        additionalProperties: false,
        properties: {
          contentId: { type: 'string' },
          product: { type: 'string' },
          os: { type: 'string' },
          release: { type: 'string' },
          arch: { type: 'string' },
          subarch: { type: 'string' },
          label: { type: 'string' },
          versions: {
            type: 'array',
            description: 'Newest first',
            items: {
              type: 'object',
              required: ['version', 'items'],
              additionalProperties: false,
              properties: { version: { type: 'string' }, items: { type: 'array', items: { $ref: '#/components/schemas/ImageFile' } } },
            },
          },
          totalBytes: COUNT,
        },
      },
      CatalogReport: {
        type: 'object',
        required: ['generation', 'images'],
        additionalProperties: false,
        properties: {
          generation: { type: ['integer', 'null'] },
          images: { type: 'array', items: { $ref: '#/components/schemas/ImageSummary' } },
        },
      },
    },
  },
} as const;
