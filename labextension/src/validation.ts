/**
 * The field syntax of API.md that never depends on a policy, as one table: it answers at once while
 * the server's dry run (`?dry_run=1`, debounced) judges everything, policy included.
 */
import type { Manager } from './api';

export type Check = (value: string) => string | null;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const YAML_KEY = /^\s*(dependencies|channels|name|variables)\s*:/m;

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
  // Option lines, local paths and URLs are the administrator's policy: only the server's dry run judges them.
  pipPackages: text => (YAML_KEY.test(text) ? 'this is an environment.yaml: choose CONDA, or write one requirement per line' : null),
  condaPackages: text => (!text.trim() || YAML_KEY.test(text) ? null : 'an environment.yaml needs a "dependencies:" list')
};

/** Which rule checks the packages text: it follows the manager. */
export const PACKAGES_RULE: Record<Manager, Check> = { pip: RULES.pipPackages, conda: RULES.condaPackages };

export interface IFormState {
  name: string;
  manager: Manager;
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
  put('packages', PACKAGES_RULE[form.manager](form.packages));
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

/**
 * Which row a message about a field of rows is about: the row whose key (or URL) the message quotes,
 * or names before a colon. -1 when none is named (the message then belongs to the whole group).
 */
export function rowOf(message: string, keys: string[]): number {
  return keys.findIndex(
    key => !!key && (message.includes(`'${key}'`) || message.includes(`"${key}"`) || message.startsWith(`${key}: `) || message.includes(`: ${key}: `))
  );
}
