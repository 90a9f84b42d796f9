import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import { pairsToObject, RULES, validateForm } from '../validation';

const form = {
  name: 'good-name',
  manager: 'pip',
  packages: 'six\n',
  indexUrls: [''],
  labels: [['', '']] as [string, string][],
  annotations: [] as [string, string][],
  envVars: [] as [string, string][],
  gpu: '0'
};

test('names follow the DNS-1123 label rule of the server', () => {
  for (const good of ['ab', 'torch-cpu', 'a1', 'x'.repeat(63)]) {
    assert.equal(RULES.name(good), null, good);
  }
  for (const bad of ['', 'a', 'Bad', 'bad_name', '-x', 'x-', 'x'.repeat(64), 'a.b']) {
    assert.ok(RULES.name(bad), bad);
  }
});

test('label keys and values use the Kubernetes syntax', () => {
  assert.equal(RULES.labelKey('team'), null);
  assert.equal(RULES.labelKey('example.com/team'), null);
  assert.ok(RULES.labelKey('bad key'));
  assert.ok(RULES.labelKey('Bad_Prefix/k'));
  assert.equal(RULES.labelValue(''), null);
  assert.ok(RULES.labelValue('bad value!'));
});

test('a valid form has no errors; each bad field is reported under the API field name', () => {
  assert.deepEqual(validateForm(form), {});
  const errors = validateForm({
    ...form,
    name: 'Bad',
    packages: 'six\n-r other.txt\n',
    indexUrls: ['ftp://x'],
    labels: [['bad key', 'v']],
    envVars: [['1X', 'v']],
    gpu: '-1'
  });
  assert.deepEqual(Object.keys(errors).sort(), ['env_vars', 'gpu', 'index_urls', 'labels', 'name', 'packages']);
  assert.match(errors.packages, /line 2/);
});

test('conda packages need an environment.yaml shape', () => {
  assert.ok(validateForm({ ...form, manager: 'conda', packages: 'numpy\n' }).packages);
  assert.equal(validateForm({ ...form, manager: 'conda', packages: 'dependencies:\n  - numpy\n' }).packages, undefined);
});

test('key/value rows become objects without empty rows', () => {
  assert.deepEqual(pairsToObject([['a', '1'], ['', ''], ['b', '']]), { a: '1', b: '' });
});
