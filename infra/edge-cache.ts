/**
 * How long CloudFront may keep what it serves, in one place: the distribution
 * builds its cache policies from these, and the config derives the shortest
 * safe prune grace from them, so the two cannot disagree.
 */

/**
 * The longest a `/streams/*` (or `/api/*`) response lives at an edge: the
 * metadata cache policy's max TTL. The API's own `Cache-Control` wins below it.
 */
export const METADATA_MAX_TTL_SECONDS = 5 * 60;

/** Metadata TTL when the API sends no `Cache-Control`. */
export const METADATA_DEFAULT_TTL_SECONDS = 60;
