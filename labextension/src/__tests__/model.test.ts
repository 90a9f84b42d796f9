import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import { ApiError, EnvmgrApi, IEnvironment, ITransport } from '../api';
import { boundedInterval, EnvironmentsModel, matches, mergePackages } from '../model';

function env(name: string, fields: Partial<IEnvironment> = {}): IEnvironment {
  return {
    name, manager: 'pip', python: '3.11', packages: '', index_urls: [], description: '', labels: {},
    annotations: {}, env_vars: {}, gpu: 0, storage: 'default', namespace: 'default', status: 'ready',
    message: '', progress: 1, revision: 1, ready_revision: 1, created: '', updated: '', owner: '',
    kernel_name: `envmgr-${name}`, prefix: '', base_packages: ['ipykernel'], ...fields
  };
}

/** A server stand-in at the transport level: records requests, answers from a table. */
function fakeServer(answers: Record<string, unknown>, seen: string[] = []): ITransport {
  return async (method, path) => {
    seen.push(`${method} ${path}`);
    const key = Object.keys(answers).find(k => `${method} ${path}`.startsWith(k));
    if (key === undefined) {
      return { status: 404, text: '', json: { message: 'no environment named x', reason: 'not_found' } };
    }
    return { status: 200, text: '', json: answers[key] };
  };
}

test('filters by text, label and status', () => {
  const a = env('alpha', { labels: { team: 'a' }, description: 'vision' });
  const b = env('beta', { labels: { team: 'b' }, status: 'failed' });
  const none = { text: '', label: '', status: '' };
  assert.ok(matches(a, none));
  assert.ok(matches(a, { ...none, text: 'VISION' }));
  assert.ok(!matches(b, { ...none, text: 'vision' }));
  assert.ok(matches(a, { ...none, label: 'team' }) && matches(a, { ...none, label: 'team=a' }));
  assert.ok(!matches(b, { ...none, label: 'team=a' }));
  assert.ok(matches(b, { ...none, status: 'failed' }) && !matches(a, { ...none, status: 'failed' }));
});

test('polling interval stays within 1-60 seconds', () => {
  assert.equal(boundedInterval(0), 1);
  assert.equal(boundedInterval(3), 3);
  assert.equal(boundedInterval(3600), 60);
  assert.equal(boundedInterval(NaN), 3);
});

test('presets merge without duplicate names', () => {
  assert.equal(mergePackages('pip', 'numpy==2\nPandas\n', 'pandas\nmatplotlib\nnumpy\n'), 'numpy==2\nPandas\nmatplotlib\n');
  assert.equal(mergePackages('pip', '', 'six\n'), 'six\n');
  assert.equal(
    mergePackages('conda', 'dependencies:\n  - numpy\n  - pip:\n    - six\n', 'dependencies:\n  - numpy\n  - pandas\n'),
    'dependencies:\n  - numpy\n  - pandas\n  - pip:\n    - six\n'
  );
});

test('refresh loads info, picks the first namespace, and reports kernel changes', async () => {
  const seen: string[] = [];
  let list = [env('one', { kernel_name: null, ready_revision: null, status: 'warming' })];
  const transport = fakeServer({ 'GET envmgr/api/info': { namespaces: ['default', 'team'] } }, seen);
  const model = new EnvironmentsModel(
    new EnvmgrApi(async (m, p, b) => (p.startsWith('envmgr/api/environments') ? { status: 200, text: '', json: { environments: list } } : transport(m, p, b)))
  );
  let kernelSignals = 0;
  model.kernelsChanged.connect(() => kernelSignals++);
  await model.refresh();
  assert.equal(model.namespace, 'default');
  assert.equal(model.environments.length, 1);
  assert.equal(kernelSignals, 0);
  list = [env('one')];
  await model.refresh();
  assert.equal(kernelSignals, 1); // turned ready: the kernel picker must refresh
  await model.refresh();
  assert.equal(kernelSignals, 1);
  list = [];
  await model.refresh();
  assert.equal(kernelSignals, 2); // deleted: gone from the picker
  assert.ok(seen.includes('GET envmgr/api/info'));
});

test('server errors become ApiError naming the field', async () => {
  const api = new EnvmgrApi(async () => ({ status: 422, text: '', json: { message: 'name: use lowercase', reason: 'invalid_field' } }), 'team');
  await assert.rejects(api.create({ name: 'Bad' }), (e: ApiError) => e.status === 422 && e.field === 'name');
  const seen: string[] = [];
  await new EnvmgrApi(fakeServer({ 'GET envmgr/api/environments': { environments: [] } }, seen), 'team').list();
  assert.deepEqual(seen, ['GET envmgr/api/environments?namespace=team']);
});
