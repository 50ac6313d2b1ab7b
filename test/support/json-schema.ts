/**
 * The JSON Schema (2020-12) subset the mirror's OpenAPI document uses, enough
 * to check real responses against it: type (one or several), properties,
 * required, additionalProperties, items, enum, pattern, minimum, oneOf and
 * local `$ref`s. Any other keyword is refused, so the document cannot use one
 * that this checker would silently ignore. Returns every problem, each with
 * its JSON path.
 */
type Schema = Record<string, unknown>;

const KNOWN = new Set([
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'enum',
  'pattern',
  'minimum',
  'oneOf',
  '$ref',
  // Annotations: no effect on validity.
  'description',
  'example',
  'contentMediaType',
]);

export function validate(value: unknown, schema: Schema, root: Schema, path = '$'): string[] {
  for (const keyword of Object.keys(schema)) {
    if (!KNOWN.has(keyword)) return [`${path}: the schema uses "${keyword}", which this checker does not implement`];
  }
  if (typeof schema.$ref === 'string') return validate(value, resolveRef(schema.$ref, root), root, path);
  if (Array.isArray(schema.oneOf)) {
    const matching = (schema.oneOf as Schema[]).filter((option) => validate(value, option, root, path).length === 0);
    return matching.length === 1 ? [] : [`${path}: matches ${matching.length} of the oneOf schemas, not exactly 1`];
  }
  const problems: string[] = [];
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some((type) => hasType(value, type))) return [`${path}: expected ${types.join(' or ')}, got ${describe(value)}`];
  }
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) problems.push(`${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if (typeof schema.pattern === 'string' && typeof value === 'string' && !new RegExp(schema.pattern, 'u').test(value)) {
    problems.push(`${path}: ${JSON.stringify(value)} does not match ${schema.pattern}`);
  }
  if (typeof schema.minimum === 'number' && typeof value === 'number' && value < schema.minimum) problems.push(`${path}: ${value} < ${schema.minimum}`);
  if (Array.isArray(value) && schema.items) {
    value.forEach((element, index) => problems.push(...validate(element, schema.items as Schema, root, `${path}[${index}]`)));
  }
  if (isObject(value)) {
    const properties = (schema.properties ?? {}) as Record<string, Schema>;
    for (const name of (schema.required ?? []) as string[]) if (!(name in value)) problems.push(`${path}: missing required "${name}"`);
    for (const [name, element] of Object.entries(value)) {
      const property = properties[name];
      if (property) problems.push(...validate(element, property, root, `${path}.${name}`));
      else if (schema.additionalProperties === false) problems.push(`${path}: "${name}" is not in the schema`);
      else if (isObject(schema.additionalProperties)) problems.push(...validate(element, schema.additionalProperties, root, `${path}.${name}`));
    }
  }
  return problems;
}

function resolveRef(ref: string, root: Schema): Schema {
  if (!ref.startsWith('#/')) throw new Error(`only local $refs are supported: ${ref}`);
  let target: unknown = root;
  for (const part of ref.slice(2).split('/')) target = isObject(target) ? target[part] : undefined;
  if (!isObject(target)) throw new Error(`$ref ${ref} points at nothing`);
  return target;
}

function hasType(value: unknown, type: string): boolean {
  switch (type) {
    case 'null':
      return value === null;
    case 'array':
      return Array.isArray(value);
    case 'object':
      return isObject(value);
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number';
    case 'string':
    case 'boolean':
      return typeof value === type;
    default:
      throw new Error(`unknown type ${type}`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
}
