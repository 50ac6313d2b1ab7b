/**
 * The catalog table's key schema, as plain data: `initCloudResources` creates
 * (and checks) the table from it, and the CDK stack defines the very same
 * table from it. No SDK import here, so infra code can use it freely.
 *
 * Single-table design (docs/cloud-backend.md has the full item shapes):
 *
 * | item                | PK                    | SK                                       | GSI1PK | GSI1SK             |
 * |---------------------|-----------------------|------------------------------------------|--------|--------------------|
 * | stored object       | `OBJECT`              | `<path>`                                 |        |                    |
 * | publication         | `PUBLICATION`         | `<generation, 16 digits>`                |        |                    |
 * | current pointer     | `CURRENT`             | `CURRENT`                                |        |                    |
 * | catalog entry       | `ENTRIES#<generation>`| `<contentId>#<product>#<version>#<item>` |        |                    |
 * | sync run            | `RUN`                 | `<run id>`                               | `RUN`  | `<startedAt>#<id>` |
 * | lock lease          | `LOCK`                | `<lock name>`                            |        |                    |
 * | state value         | `STATE`               | `<key>`                                  |        |                    |
 * | package manifest    | `MANIFEST#<sha256>`   | `<part, 4 digits>`                       |        |                    |
 */

export type KeyAttributeType = 'S' | 'N' | 'B';

export interface KeyAttribute {
  readonly name: string;
  readonly type: KeyAttributeType;
}

export interface IndexDesign {
  readonly indexName: string;
  readonly partitionKey: KeyAttribute;
  readonly sortKey: KeyAttribute;
  /** Every index projects all attributes. */
  readonly projectionType: 'ALL';
}

export interface TableDesign {
  readonly partitionKey: KeyAttribute;
  readonly sortKey: KeyAttribute;
  readonly globalSecondaryIndexes: readonly IndexDesign[];
  readonly billingMode: 'PAY_PER_REQUEST';
}

/** GSI1 holds only sync runs (a sparse index): runs newest first. */
export const RUNS_BY_TIME_INDEX = 'GSI1';

/**
 * Key schema and GSIs of the catalog table. A CDK table must declare the GSI
 * too (`table.addGlobalSecondaryIndex`), or `listRuns` fails.
 */
export const TABLE_KEY_SCHEMA: TableDesign = {
  partitionKey: { name: 'PK', type: 'S' },
  sortKey: { name: 'SK', type: 'S' },
  globalSecondaryIndexes: [
    {
      indexName: RUNS_BY_TIME_INDEX,
      partitionKey: { name: 'GSI1PK', type: 'S' },
      sortKey: { name: 'GSI1SK', type: 'S' },
      projectionType: 'ALL',
    },
  ],
  billingMode: 'PAY_PER_REQUEST',
};
