/**
 * Source URLs may carry credentials (`https://user:secret@host/…`). Anything
 * that prints, logs or stores a URL for people to read goes through
 * redactUrl, so the secret stays in the request and nowhere else.
 */

// The authority runs from `//` to the first `/`, `?` or `#`; its userinfo ends
// at the last `@` in it (WHATWG URL), hence the greedy match.
const USERINFO = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/?#]*@/;

/** `url` with any user name and password replaced by `***`; otherwise unchanged, character for character. */
export function redactUrl(url: string): string {
  return url.replace(USERINFO, '$1***@');
}

export interface SplitCredentials {
  /** `url` without its userinfo, otherwise character for character. */
  url: string;
  /** Percent-decoded; present when the URL named a user or a password. */
  credentials?: { username: string; password: string };
}

/** Separates the credentials of `url` from it, for a client that sends them in a header instead. */
export function splitCredentials(url: string): SplitCredentials {
  const match = USERINFO.exec(url);
  if (!match) return { url };
  const userinfo = url.slice(match[1]!.length, match[0].length - 1);
  const rest = match[1]! + url.slice(match[0].length);
  if (userinfo === '') return { url: rest };
  const colon = userinfo.indexOf(':');
  const [username, password] = colon < 0 ? [userinfo, ''] : [userinfo.slice(0, colon), userinfo.slice(colon + 1)];
  return {
    url: rest,
    credentials: { username: decodeLenient(username), password: decodeLenient(password) },
  };
}

function decodeLenient(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/*
 * A run's error as anyone who can load the status page may see it: the kind
 * of failure and the mirror paths involved, never where the mirror keeps
 * things (local paths, bucket and table names, object keys, ARNs). The
 * operator's own terminal (`skystreams status`) keeps the full detail.
 */

/** Each pattern, and what stands in for it. Order matters: URLs and ARNs before bare paths. */
const REDACTIONS: readonly (readonly [RegExp, string])[] = [
  // s3://bucket/key, and the virtual-hosted form an SDK message may carry.
  [/\bs3:\/\/[^\s'"`),]+/g, 's3://…'],
  [/\b[\w.-]+\.s3[\w.-]*\.amazonaws\.com\b[^\s'"`),]*/g, 'S3 bucket'],
  [/\barn:aws[\w-]*:[^\s'"`),]+/g, 'arn:…'],
  // `dynamodb:TABLE` as the DynamoDB adapter names its table.
  [/\bdynamodb:[\w.-]+/g, 'the catalog table'],
  [/\b(bucket|table)\s+["'`]?[\w.-]+["'`]?/gi, '$1 …'],
  // The mirror's own object keys: a generation's metadata and stored items.
  [/\bmeta\/\d+-[\w.-]+\/[^\s'"`),]*/g, 'meta/…'],
  [/\bitems\/[^\s'"`),]+/g, 'items/…'],
  // Absolute local paths (not the path part of a URL: that follows a host name).
  [/(^|[\s'"`(=])\/(?:[^\s'"`/),:]+\/)*[^\s'"`/),:]+\/?/g, '$1…'],
];

/** `text` without local paths, bucket, table and key names. */
export function redactForClients(text: string): string {
  let redacted = text;
  for (const [pattern, replacement] of REDACTIONS) redacted = redacted.replace(pattern, replacement);
  return redacted;
}

/** A run as clients may see it: its error and warnings redacted, the rest unchanged. */
export function redactRun<R extends { error?: string | null | undefined; warnings?: readonly string[] | undefined }>(run: R): R {
  return {
    ...run,
    ...(typeof run.error === 'string' && { error: redactForClients(run.error) }),
    ...(run.warnings && { warnings: run.warnings.map(redactForClients) }),
  };
}
