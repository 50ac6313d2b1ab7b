/**
 * Names of the files a re-signed publication holds besides its simplestreams
 * metadata. Apart from publish-metadata.ts so that the HTTP app can route
 * them without loading OpenPGP.
 */

import { PRIMARY_SOURCE } from './ports.ts';

/** The served public keyring: binary (gpgv, MAAS's keyring_filename) and ASCII-armored. */
export const PUBLISHED_KEYRING = 'keyring.gpg';
export const PUBLISHED_KEYRING_ARMORED = 'keyring.asc';

/**
 * Where a re-signed generation keeps the upstream metadata it was made from,
 * verbatim and verified: the freshness checks of the next run compare
 * upstream with upstream, not with the mirror's own dates. Never served.
 */
export const UPSTREAM_COPY_PREFIX = 'upstream/';

/** The same for one of several merged sources. */
export function upstreamCopyPrefix(source: string): string {
  return source === PRIMARY_SOURCE ? UPSTREAM_COPY_PREFIX : `sources/${source}/`;
}
