/**
 * The server's field rules (API.md), as one table that every field of the form checks against.
 * The server remains the judge; this lets the form say what is wrong while the user types.
 */

export type Check = (value: string) => string | null;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function labelKey(value: string): string | null {
  const slash = value.lastIndexOf('/');
  const prefix = slash >= 0 ? value.slice(0, slash) : null;
  const name = slash >= 0 ? value.slice(slash + 1) : value;
  if (prefix !== null && (!prefix || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return 'the prefix before "/" must be a DNS subdomain such as example.com';
  }
  if (!name || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return 'use 1-63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit';
  }
  return null;
}

/** field → check; a check returns the reason the value is wrong, or null. */
export const RULES: Record<string, Check> = {
  name: v => {
    if (!v) {
      return 'a name is required, e.g. torch-cpu';
    }
    if (v.length < 2 || v.length > 63) {
      return `use 2-63 characters (this has ${v.length})`;
    }
    return DNS_LABEL.test(v) ? null : 'use lowercase letters, digits and "-", starting and ending with a letter or digit';
  },
  labelKey,
  labelValue: v =>
    v === '' || (v.length <= 63 && QUALIFIED_NAME.test(v))
      ? null
      : 'at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit',
  annotationKey: labelKey,
  envName: v => (ENV_NAME.test(v) ? null : 'use letters, digits and "_", not starting with a digit'),
  indexUrl: v => {
    try {
      const url = new URL(v);
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname ? null : 'use an http(s) URL';
    } catch {
      return 'not a URL: use e.g. https://mirror.example/simple';
    }
  },
  gpu: v => (/^\d+$/.test(v) && Number(v) <= 64 ? null : 'a whole number of GPUs, 0-64'),
  requirementLine: v =>
    /^-/.test(v.trim())
      ? 'option lines (-r, -e, --index-url, ...) are not allowed: list packages, put indexes under extra index URLs'
      : null
};

export interface IFormState {
  name: string;
  manager: string;
  packages: string;
  indexUrls: string[];
  labels: [string, string][];
  annotations: [string, string][];
  envVars: [string, string][];
  gpu: string;
}

/** Every problem of a form, keyed by the API field it belongs to (the first problem per field). */
export function validateForm(form: IFormState): Record<string, string> {
  const errors: Record<string, string> = {};
  const put = (field: string, problem: string | null) => {
    if (problem && !errors[field]) {
      errors[field] = problem;
    }
  };
  put('name', RULES.name(form.name));
  form.indexUrls.filter(u => u.trim()).forEach(u => put('index_urls', RULES.indexUrl(u.trim())));
  const pairs: [string, [string, string][], Check, Check | null][] = [
    ['labels', form.labels, RULES.labelKey, RULES.labelValue],
    ['annotations', form.annotations, RULES.annotationKey, null],
    ['env_vars', form.envVars, RULES.envName, null]
  ];
  for (const [field, rows, keyCheck, valueCheck] of pairs) {
    for (const [key, value] of rows) {
      if (!key && !value) {
        continue;
      }
      const problem = keyCheck(key);
      put(field, problem && `${key || '(empty key)'}: ${problem}`);
      const valueProblem = valueCheck ? valueCheck(value) : null;
      put(field, valueProblem && `${key}: ${valueProblem}`);
    }
  }
  put('gpu', RULES.gpu(form.gpu));
  if (form.manager === 'pip') {
    form.packages.split('\n').forEach((line, i) => {
      const problem = RULES.requirementLine(line);
      put('packages', problem && `line ${i + 1}: ${problem}`);
    });
  } else if (form.packages.trim() && !/^\s*(dependencies|channels|name|variables)\s*:/m.test(form.packages)) {
    put('packages', 'an environment.yaml needs a "dependencies:" list');
  }
  return errors;
}

/** Rows of key/value pairs → the object the API takes (empty rows left out). */
export function pairsToObject(rows: [string, string][]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of rows) {
    if (key) {
      out[key] = value;
    }
  }
  return out;
}
