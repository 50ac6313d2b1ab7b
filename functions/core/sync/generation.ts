/**
 * What a new generation holds, made from the sources a plan read: upstream's
 * metadata verbatim (one source), or the mirror's own, re-signed, over every
 * source merged; and the refusal of any plan that would change bytes a
 * retained generation serves.
 */
import { declaredDigests } from '../checksum.ts';
import { uploadedProducts } from '../custom-images.ts';
import { ConfigError, PublishedContentError } from '../errors.ts';
import { servedIndexUpdated } from '../metadata.ts';
import { clearsign } from '../pgp.ts';
import { planSync, selectItems, type CopyTask, type SyncPlan } from '../planner.ts';
import { PRIMARY_SOURCE, UPLOADS_SOURCE, type Publication, type Publications, type StateStore, type StoredObject } from '../ports.ts';
import { buildPublishedStream, curateProducts, keyringFiles, nextUpdated, serializePublishedStream } from '../publish-metadata.ts';
import { upstreamCopyPrefix } from '../published-files.ts';
import { openSigningKeys } from '../signing-keys.ts';
import { parseUpdated, type ProductsDocument } from '../simplestreams.ts';
import { mergeSources, type SelectedProducts, type SourceConflict } from '../sources.ts';
import type { VerifiedSource } from '../sync-sources.ts';
import { latestUpload, listUploadRecords } from '../uploads.ts';
import type { PhaseContext, SyncContext } from './types.ts';

/** What a plan stages and the generation it describes. */
export interface PlannedGeneration {
  plan: SyncPlan;
  /** Metadata files of the generation, by path. */
  staged: Map<string, Uint8Array>;
  conflicts: SourceConflict[];
}

/** The one source's metadata published as it is, listing what its selection keeps. */
export function verbatimGeneration(
  reads: readonly VerifiedSource[],
  stored: ReadonlyMap<string, StoredObject>,
  pinned: ReadonlySet<string>,
): PlannedGeneration {
  const [read, ...others] = reads;
  if (!read || others.length > 0) throw new ConfigError('several sources can only be merged in re-signed mode');
  const { source, metadata } = read;
  const plan = planSync({
    products: metadata.products,
    selection: { ...source.selection, pinned },
    stored,
    metadataFiles: [...metadata.files.keys()],
  });
  return { plan, staged: metadata.files, conflicts: [] };
}

/**
 * A re-signed generation: each source's products cut down to what its
 * own selection keeps, merged (conflicts resolved by priority), planned as
 * one; its metadata lists exactly those items (all verified and stored
 * before `publish` switches to them), signed now with the active key,
 * with the keyring that verifies them and, unserved, the upstream files
 * each source's part was made from.
 */
export async function resignedGeneration(
  context: Pick<PhaseContext<StateStore>, 'objects' | 'settings' | 'now' | 'signingKeys' | 'catalog'>,
  reads: readonly VerifiedSource[],
  uploaded: readonly { file: string; doc: ProductsDocument }[],
  stored: ReadonlyMap<string, StoredObject>,
  pinned: ReadonlySet<string>,
  current: Publication | undefined,
): Promise<PlannedGeneration> {
  const store = context.signingKeys;
  if (!store) throw new ConfigError('re-signed mode needs the mirror\'s signing key store');
  const sources: SelectedProducts[] = reads.map(({ source, metadata }) => ({
    source: source.name,
    priority: source.priority,
    index: metadata.index,
    products: metadata.products.flatMap(({ file, doc }) => {
      const selected = new Set(
        selectItems(file, doc, { ...source.selection, pinned }).map((item) => itemKey(item.contentId, item.productName, item.versionName, item.itemName)),
      );
      const curated = curateProducts(doc, (product, version, item) => selected.has(itemKey(doc.content_id, product, version, item)));
      return curated ? [{ file, doc: curated }] : [];
    }),
  }));
  // The site's own images: every uploaded version, above every source (their product ids are the mirror's own).
  if (uploaded.length > 0) sources.push({ source: UPLOADS_SOURCE, priority: Number.MAX_SAFE_INTEGER, products: uploaded });
  const merged = mergeSources(sources);
  const planned = planSync({
    products: merged.products.map(({ base, doc }) => ({ file: base, doc })),
    selection: { filters: [] },
    stored,
  });
  const fromSource = (task: CopyTask): CopyTask => ({ ...task, source: merged.sourceOfPath.get(task.path) ?? PRIMARY_SOURCE });
  const plan = { ...planned, objects: planned.objects.map(fromSource), copy: planned.copy.map(fromSource) };

  const now = context.now();
  const signing = await openSigningKeys(store, now, context.catalog);
  const previous = current && (await servedIndexUpdated(context.objects, current, context.settings.limits));
  const stream = buildPublishedStream({ products: merged.products, updated: nextUpdated(now, previous), ...(merged.index && { sourceIndex: merged.index }) });
  const staged = await serializePublishedStream(stream, (text) => clearsign(text, signing.signer, now));
  for (const [file, bytes] of keyringFiles(signing.published)) staged.set(file, bytes);
  for (const { source, metadata } of reads) {
    for (const [file, bytes] of metadata.files) staged.set(`${upstreamCopyPrefix(source.name)}${file}`, bytes);
  }
  return { plan, staged, conflicts: merged.conflicts };
}

/**
 * The custom images `skystreams upload` stored, as products to plan beside
 * upstream's: every version, whatever the filters and max (re-signed mode
 * only: verbatim mode publishes upstream's signed files unchanged). With
 * the newest upload they include, read first, so none is missed by both
 * this run and the next check.
 */
export async function uploadedImages(
  context: Pick<SyncContext, 'objects' | 'settings'> & { catalog: StateStore },
): Promise<{ products: { file: string; doc: ProductsDocument }[]; latest: string }> {
  if (!context.settings.resign) return { products: [], latest: '' };
  const latest = await latestUpload(context.catalog);
  return { products: uploadedProducts(await listUploadRecords(context.objects)), latest };
}

/**
 * Fails (before a byte is copied) when upstream now promises other content
 * at a path a retained generation lists: those bytes are being served and
 * never change. Names the paths.
 */
export async function refuseChangesToPublishedContent(catalog: Publications, tasks: readonly CopyTask[]): Promise<void> {
  const promised = new Map<string, { size: number; sha256: string; generation: number }>();
  for (const publication of await catalog.listPublications()) {
    for await (const entry of catalog.listEntries(publication.generation)) {
      promised.set(entry.path, { size: entry.size, sha256: entry.sha256, generation: publication.generation });
    }
  }
  const changed: string[] = [];
  for (const task of tasks) {
    const published = promised.get(task.path);
    if (!published) continue;
    const sha256 = declaredDigests(task).sha256;
    if (published.size !== task.size || (sha256 !== undefined && sha256 !== published.sha256)) {
      changed.push(`${task.path} (generation ${published.generation})`);
    }
  }
  if (changed.length > 0) throw new PublishedContentError(changed);
}

/** The newest `updated` of the sources' indexes: what the generation says upstream last published. */
export function newestUpdated(reads: readonly VerifiedSource[]): string {
  const dated = reads.map(({ metadata }) => ({ updated: metadata.updated, at: parseUpdated(metadata.indexFile, '$.updated', metadata.updated) }));
  return dated.reduce((newest, next) => (next.at > newest.at ? next : newest)).updated;
}

function itemKey(contentId: string, product: string, version: string, item: string): string {
  return JSON.stringify([contentId, product, version, item]);
}
