/**
 * The package index's routes: `GET /api/v1/packages/{name}` (which mirrored
 * images ship which version of a package) and
 * `GET /api/v1/diff/{product}/{from}/{to}` (what changed between two versions
 * of an image). Errors are domain errors, which the app turns into replies:
 * an unknown product or version is a 404 naming it.
 */
import { ManifestUnavailableError, NotFoundError } from '../core/errors.ts';
import { isPackageName } from '../core/manifests.ts';
import { diffImages, packagesNamed } from '../core/packages.ts';
import type { Catalog } from '../core/ports.ts';
import { badRequest, errorBody, json, type Reply } from './reply.ts';

const PACKAGES_ROUTE = 'api/v1/packages/';
const DIFF_ROUTE = 'api/v1/diff/';

/** The reply for a package-index route; undefined when `path` (decoded, without the leading `/`) is not one. */
export async function packageRouteReply(catalog: Catalog, path: string, method: string): Promise<Reply | undefined> {
  if (path.startsWith(PACKAGES_ROUTE)) {
    const name = path.slice(PACKAGES_ROUTE.length);
    if (name.includes('/')) return badRequest(`expected /${PACKAGES_ROUTE}{name}, not /${path}`);
    // Checked here, so a ConfigError from the catalog below is never mistaken for the client's.
    if (!isPackageName(name)) return badRequest(`${JSON.stringify(name)} is not a package name`);
    return json(await packagesNamed(catalog, name), 200, {}, method);
  }
  if (path.startsWith(DIFF_ROUTE)) {
    const parts = path.slice(DIFF_ROUTE.length).split('/');
    if (parts.length !== 3) return badRequest(`expected /${DIFF_ROUTE}{product}/{from}/{to}, not /${path}`);
    const [product, from, to] = parts as [string, string, string];
    try {
      return json(await diffImages(catalog, product, from, to), 200, {}, method);
    } catch (error) {
      // What the published catalog lacks is the request's answer; any other failure is the app's 500.
      if (error instanceof NotFoundError || error instanceof ManifestUnavailableError) return json(errorBody(error.statusCode, error.message), error.statusCode, {}, method);
      throw error;
    }
  }
  return undefined;
}
