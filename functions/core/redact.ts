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
