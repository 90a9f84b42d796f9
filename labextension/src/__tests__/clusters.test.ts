/** A server of two clusters: the form's cluster select, and `?cluster=` on every per-environment request. */
import * as React from 'react';

import { EnvmgrApi, IEnvironment, IInfo, IResponse, ITransport } from '../api';
import { initialForm, namespacesOf, SpecForm, toSpec, withCluster } from '../createForm';
import { clusterOf, EnvironmentsModel, envKey } from '../model';

// react-dom comes with JupyterLab (no type package here): the one function used, typed
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { renderToStaticMarkup } = require('react-dom/server') as { renderToStaticMarkup: (element: React.ReactElement) => string };

const info: IInfo = {
  version: '0.1.0', backend: 'kubernetes', managers: ['pip'], python_versions: ['3.12'], namespaces: ['team-a', 'shared-a', 'team-b'],
  clusters: [{ name: 'east', namespaces: ['team-a', 'shared-a'] }, { name: 'west', namespaces: ['team-b'] }], default_python: '3.12',
  storages: [{ name: 'default', path: '/envs', access_mode: 'ReadWriteMany' }], presets: [], base_packages: { pip: ['ipykernel'] }, limits: {}
};
const single: IInfo = { ...info, namespaces: ['team-a', 'team-b'], clusters: [{ name: 'local', namespaces: ['team-a', 'team-b'] }] };

function env(name: string, fields: Partial<IEnvironment> = {}): IEnvironment {
  return {
    name, manager: 'pip', python: '3.12', packages: '', index_urls: [], description: '', labels: {}, annotations: {}, env_vars: {},
    gpu: 0, storage: 'default', namespace: 'team-a', cluster: 'east', status: 'ready', message: '', progress: 1, revision: 1,
    ready_revision: 1, created: '', updated: '', owner: '', kernel_name: `envmgr-${name}`, prefix: '', base_packages: [], ...fields
  };
}

/** The server at the fetch layer: records "METHOD url body" and answers `/info`, the list and one record. */
function server(serverInfo: IInfo, records: IEnvironment[] = []) {
  const seen: string[] = [];
  const transport: ITransport = async (method, path, body) => {
    seen.push(`${method} ${path}${body === undefined ? '' : ' ' + JSON.stringify(body)}`);
    const ok = (json: unknown): IResponse => ({ status: 200, text: '', json });
    if (path === 'envmgr/api/info') {
      return ok(serverInfo);
    }
    if (path.startsWith('envmgr/api/environments?')) {
      return ok({ environments: records });
    }
    if (/\/(packages)\?/.test(path)) {
      return ok({ packages: [] });
    }
    if (/\/(revisions)\?/.test(path)) {
      return ok({ revisions: [] });
    }
    return ok(records[0] ?? {});
  };
  return { seen, transport };
}

describe('the cluster select of the form', () => {
  const render = (i: IInfo, namespace: string) => {
    const model = new EnvironmentsModel(new EnvmgrApi(async () => ({ status: 200, text: '', json: {} }), namespace));
    model.info = i;
    return renderToStaticMarkup(React.createElement(SpecForm, { model, onDone: () => undefined, onCancel: () => undefined }));
  };

  it('is there, before the namespace, only when the server has several clusters', () => {
    const html = render(info, 'team-a');
    expect(html).toContain('<select id="envmgr-cluster"');
    expect(html.indexOf('id="envmgr-cluster"')).toBeLessThan(html.indexOf('id="envmgr-namespace"'));
    expect(html).toMatch(/<option[^>]*>east<\/option><option[^>]*>west<\/option>/);
    // the namespaces offered are the chosen cluster's, not every namespace of the server
    expect(html).toMatch(/id="envmgr-namespace"[^>]*><option[^>]*>team-a<\/option><option[^>]*>shared-a<\/option><\/select>/);
    expect(render(single, 'team-a')).not.toContain('envmgr-cluster');
  });

  it("starts on the cluster of the list's namespace (the first cluster for the first namespace)", () => {
    expect(initialForm(info, 'team-a')).toMatchObject({ cluster: 'east', namespace: 'team-a' });
    expect(initialForm(info, 'team-b')).toMatchObject({ cluster: 'west', namespace: 'team-b' });
    expect(initialForm(info, 'nowhere')).toMatchObject({ cluster: 'east', namespace: 'team-a' });
    expect(initialForm(single, 'team-b')).toMatchObject({ cluster: 'local', namespace: 'team-b' });
    // a record (an edit) or a prefill keeps its own cluster
    expect(initialForm(info, 'team-a', { name: 'x', cluster: 'west', namespace: 'team-b' })).toMatchObject({ cluster: 'west', namespace: 'team-b' });
  });

  it("switching it offers that cluster's namespaces and picks its first", () => {
    const form = initialForm(info, 'shared-a');
    const west = withCluster(info, form, 'west');
    expect(west).toMatchObject({ cluster: 'west', namespace: 'team-b' });
    expect(namespacesOf(info, 'west')).toEqual(['team-b']);
    expect(withCluster(info, west, 'east')).toMatchObject({ cluster: 'east', namespace: 'team-a' });
    expect(namespacesOf({ ...info, clusters: undefined }, '')).toEqual(info.namespaces);
    expect(toSpec(west)).toMatchObject({ cluster: 'west', namespace: 'team-b' });
  });
});

describe('requests of a server with two clusters', () => {
  it('create and its dry run carry the chosen cluster in the query and the body', async () => {
    const { seen, transport } = server(info);
    const model = new EnvironmentsModel(new EnvmgrApi(transport));
    await model.loadInfo();
    const spec = toSpec({ ...withCluster(info, initialForm(info, model.namespace), 'west'), name: 'x' });
    await model.api.create(spec, true);
    await model.api.create(spec);
    expect(seen.slice(1).map(s => s.split(' ').slice(0, 2).join(' '))).toEqual([
      'POST envmgr/api/environments?namespace=team-b&cluster=west&dry_run=1',
      'POST envmgr/api/environments?namespace=team-b&cluster=west'
    ]);
    expect(JSON.parse(seen[2].split(' ').slice(2).join(' '))).toMatchObject({ name: 'x', namespace: 'team-b', cluster: 'west' });
  });

  it('every per-environment call names the cluster of the namespace shown', async () => {
    const { seen, transport } = server(info, [env('b1', { namespace: 'team-b', cluster: 'west' })]);
    const model = new EnvironmentsModel(new EnvmgrApi(transport));
    await model.refresh();
    expect(model.cluster).toBe('east');
    await model.setNamespace('team-b');
    expect(model.cluster).toBe('west');
    seen.length = 0;
    const api = model.api;
    await api.get('b1');
    await api.update('b1', { description: 'd' });
    await api.log('b1', 2);
    await api.packages('b1');
    await api.revisions('b1');
    await api.action('b1', 'rebuild');
    await api.clone('b1', 'b2');
    await api.exportText('b1', 'spec');
    await api.usage('b1');
    await api.audit('b1');
    await api.list();
    await model.remove('b1');
    const urls = seen.map(s => s.split(' ').slice(0, 2).join(' '));
    expect(urls).toEqual([
      'GET envmgr/api/environments/b1?namespace=team-b&cluster=west',
      'PATCH envmgr/api/environments/b1?namespace=team-b&cluster=west',
      'GET envmgr/api/environments/b1/log?revision=2&namespace=team-b&cluster=west',
      'GET envmgr/api/environments/b1/packages?namespace=team-b&cluster=west',
      'GET envmgr/api/environments/b1/revisions?namespace=team-b&cluster=west',
      'POST envmgr/api/environments/b1/actions?namespace=team-b&cluster=west',
      'POST envmgr/api/environments/b1/actions?namespace=team-b&cluster=west',
      'GET envmgr/api/environments/b1/export?format=spec&namespace=team-b&cluster=west',
      'GET envmgr/api/environments/b1/pod-spec?namespace=team-b&cluster=west',
      'GET envmgr/api/environments/b1/audit?namespace=team-b&cluster=west',
      'GET envmgr/api/environments?namespace=team-b&cluster=west',
      'DELETE envmgr/api/environments/b1?namespace=team-b&cluster=west'
    ]);
    expect(seen[6]).toBe('POST envmgr/api/environments/b1/actions?namespace=team-b&cluster=west {"action":"clone","name":"b2"}');
    // /info and /requests are about the whole server
    await api.info();
    await api.requests();
    expect(seen.slice(-2).map(s => s.split(' ')[1])).toEqual(['envmgr/api/info', 'envmgr/api/requests']);
  });

  it('the events stream names the cluster too', async () => {
    const { transport } = server(info);
    const paths: string[] = [];
    transport.stream = async (path: string) => {
      paths.push(path);
      return 200;
    };
    const model = new EnvironmentsModel(new EnvmgrApi(transport));
    await model.loadInfo();
    await model.setNamespace('team-b');
    await model.api.events(() => undefined, new AbortController().signal);
    await model.api.followLog('b1', 1, () => undefined, new AbortController().signal);
    expect(paths).toEqual(['envmgr/api/events?namespace=team-b&cluster=west', 'envmgr/api/environments/b1/log?revision=1&follow=1&namespace=team-b&cluster=west']);
  });

  it('a server of one cluster gets no ?cluster= (its records all belong to it)', async () => {
    const { seen, transport } = server(single, [env('a1', { cluster: 'local' })]);
    const model = new EnvironmentsModel(new EnvmgrApi(transport));
    await model.refresh();
    await model.api.get('a1');
    await model.api.create(toSpec({ ...initialForm(single, model.namespace), name: 'y' }), true);
    expect(seen.filter(s => s.includes('cluster=')).length).toBe(0);
    expect(model.clustered).toBe(false);
  });
});

describe('records of two clusters in the model', () => {
  it('are keyed by cluster, namespace and name', () => {
    expect(envKey(env('x'))).toBe('east/team-a/x');
    expect(envKey(env('x', { cluster: 'west' }))).not.toBe(envKey(env('x')));
    expect(clusterOf(info, 'team-b')).toBe('west');
    expect(clusterOf(info, 'unknown')).toBe('east');
    expect(clusterOf({ ...info, clusters: undefined }, 'team-a')).toBe('');
  });

  it("take /events changes of the cluster shown only, even for a namespace and name alike", async () => {
    const { transport } = server(info, [env('x')]);
    const model = new EnvironmentsModel(new EnvmgrApi(transport));
    await model.refresh();
    expect(model.environments.map(envKey)).toEqual(['east/team-a/x']);
    model.apply({ type: 'upsert', environment: env('x', { cluster: 'west', description: 'elsewhere' }) });
    model.apply({ type: 'upsert', environment: env('y', { cluster: 'west' }) });
    expect(model.environments.map(e => `${envKey(e)} ${e.description}`)).toEqual(['east/team-a/x ']);
    model.apply({ type: 'delete', namespace: 'team-a', name: 'x', cluster: 'west' });
    expect(model.environments.length).toBe(1);
    model.apply({ type: 'upsert', environment: env('x', { description: 'here' }) });
    expect(model.environments.map(e => e.description)).toEqual(['here']);
    model.apply({ type: 'delete', namespace: 'team-a', name: 'x' }); // a delete event that names no cluster: the shown one's
    expect(model.environments.length).toBe(0);
  });
});
