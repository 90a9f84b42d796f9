import { ApiError, EnvmgrApi, IEnvironment, ITransport, parseEventStream } from '../api';
import {
  boundedInterval, compareVersions, diffLocks, EnvironmentsModel, fixedPackages, matches, mergePackages, notice, oneLine,
  requestedNames, shownStatus, statusWords, labelTerms, sortEnvironments, usageSentence, isNamespaceRefusal
} from '../model';

function env(name: string, fields: Partial<IEnvironment> = {}): IEnvironment {
  return {
    name, manager: 'pip', python: '3.11', packages: '', index_urls: [], description: '', labels: {},
    annotations: {}, env_vars: {}, gpu: 0, storage: 'default', namespace: 'default', status: 'ready',
    message: '', progress: 1, revision: 1, ready_revision: 1, created: '', updated: '', owner: '',
    kernel_name: `envmgr-${name}`, prefix: '', base_packages: ['ipykernel'], ...fields
  };
}

/** A server stand-in at the transport level: records each request, answers the list from a variable. */
class FakeServer {
  seen: string[] = [];
  environments: IEnvironment[] = [];
  info = { namespaces: ['default', 'team'] };

  transport: ITransport = async (method, path) => {
    this.seen.push(`${method} ${path}`);
    if (path === 'envmgr/api/info') {
      return { status: 200, text: '', json: this.info };
    }
    if (path.startsWith('envmgr/api/environments?')) {
      return { status: 200, text: '', json: { environments: this.environments } };
    }
    return { status: 404, text: '', json: { message: 'no environment named x', reason: 'not_found' } };
  };
}

describe('filters', () => {
  const a = env('alpha', { labels: { team: 'a' }, description: 'vision' });
  const b = env('beta', { labels: { team: 'b' }, status: 'failed', ready_revision: null, kernel_name: null });
  const none = { text: '', label: '', status: '' };

  it('match text in name, description or packages, case-insensitively', () => {
    expect(matches(a, none)).toBe(true);
    expect(matches(a, { ...none, text: 'VISION' })).toBe(true);
    expect(matches(b, { ...none, text: 'vision' })).toBe(false);
  });

  it('match a label key, or key=value', () => {
    expect(matches(a, { ...none, label: 'team' })).toBe(true);
    expect(matches(a, { ...none, label: 'team=a' })).toBe(true);
    expect(matches(b, { ...none, label: 'team=a' })).toBe(false);
    expect(matches(a, { ...none, label: 'owner' })).toBe(false);
  });

  it('match several labels joined by commas, whatever the case', () => {
    const c = env('gamma', { labels: { team: 'Vision', tier: 'gold' } });
    expect(labelTerms('team=vision, tier=gold')).toEqual([['team', 'vision'], ['tier', 'gold']]);
    expect(matches(c, { ...none, label: 'team=vision,tier=gold' })).toBe(true);
    expect(matches(c, { ...none, label: 'TEAM=VISION' })).toBe(true);
    expect(matches(c, { ...none, label: 'team=vision,tier=silver' })).toBe(false);
    expect(matches(c, { ...none, label: 'tier' })).toBe(true);
  });

  it('match a status', () => {
    expect(matches(b, { ...none, status: 'failed' })).toBe(true);
    expect(matches(a, { ...none, status: 'failed' })).toBe(false);
  });
});

describe('following the server', () => {
  afterEach(() => jest.useRealTimers());

  it('keeps a user interval within 1-60 seconds', () => {
    expect(boundedInterval(0)).toBe(1);
    expect(boundedInterval(3)).toBe(3);
    expect(boundedInterval(3600)).toBe(60);
    expect(boundedInterval(NaN)).toBe(3);
  });

  it('lists once, then applies /events changes without listing again', async () => {
    const server = new FakeServer();
    server.environments = [env('one')];
    let push: (text: string) => void = () => undefined;
    const transport: ITransport = server.transport;
    transport.stream = (path, onText, signal) => {
      server.seen.push(`STREAM ${path}`);
      push = onText;
      return new Promise(resolve => signal.addEventListener('abort', () => resolve(200)));
    };
    const model = new EnvironmentsModel(new EnvmgrApi(transport));
    model.start(3);
    await new Promise(r => setTimeout(r, 10));
    expect(model.environments.map(e => e.name)).toEqual(['one']);
    push(': keep-alive\n\ndata: {"type": "upsert", "environment": ' + JSON.stringify(env('two', { status: 'warming', ready_revision: null, kernel_name: null })) + '}\n\n');
    push('data: {"type": "delete", "namespace": "default", "name": "one"}\n');
    expect(model.environments.map(e => e.name)).toEqual(['one', 'two']); // the delete is not complete yet
    push('\n');
    expect(model.environments.map(e => e.name)).toEqual(['two']);
    push('data: {"type": "delete", "namespace": "team", "name": "two"}\n\n');
    expect(model.environments.map(e => e.name)).toEqual(['two']); // another namespace's change
    expect(server.seen.filter(r => r.startsWith('GET envmgr/api/environments?')).length).toBe(1);
    expect(server.seen).toContain('STREAM envmgr/api/events?namespace=default');
    model.stop();
  });

  it('polls at the interval (every second while something builds) when the server has no /events, and stops', async () => {
    jest.useFakeTimers();
    const server = new FakeServer();
    const transport: ITransport = server.transport;
    transport.stream = async () => 404;
    const model = new EnvironmentsModel(new EnvmgrApi(transport));
    const lists = () => server.seen.filter(r => r.startsWith('GET envmgr/api/environments?')).length;
    model.start(10);
    await jest.advanceTimersByTimeAsync(0);
    expect(lists()).toBe(1);
    await jest.advanceTimersByTimeAsync(9000);
    expect(lists()).toBe(1);
    server.environments = [env('one', { status: 'warming' })];
    await jest.advanceTimersByTimeAsync(1000);
    expect(lists()).toBe(2);
    await jest.advanceTimersByTimeAsync(3000);
    expect(lists()).toBe(5);
    model.stop();
    await jest.advanceTimersByTimeAsync(60000);
    expect(lists()).toBe(5);
  });

  it('reconnects a stream that ends, with one list each time, and one loop only across restarts', async () => {
    jest.useFakeTimers();
    const server = new FakeServer();
    const transport: ITransport = server.transport;
    let streams = 0;
    transport.stream = async () => {
      streams++;
      return 200; // ends at once (a proxy timeout)
    };
    const model = new EnvironmentsModel(new EnvmgrApi(transport));
    const lists = () => server.seen.filter(r => r.startsWith('GET envmgr/api/environments?')).length;
    model.start(5);
    model.start(5);
    await jest.advanceTimersByTimeAsync(0);
    expect(streams).toBe(1);
    await jest.advanceTimersByTimeAsync(1000);
    expect(streams).toBe(2);
    expect(lists()).toBe(streams); // one list per connection; the first start ended before it listed
    model.stop();
  });
});

describe('honest status', () => {
  it('shows an environment with a serving revision as ready, its failed or running update as a notice', () => {
    const failed = env('a', { status: 'failed', revision: 2, ready_revision: 1, message: 'no matching distribution for envmgr-nope\nuv said more' });
    expect(shownStatus(failed)).toBe('ready');
    expect(notice(failed)).toBe('update 2 failed: no matching distribution for envmgr-nope');
    expect(shownStatus(env('b', { status: 'cancelled', revision: 3 }))).toBe('ready');
    expect(notice(env('c', { status: 'warming', revision: 2 }))).toMatch(/^update 2 building/);
    expect(notice(env('d'))).toBe('');
    const first = env('e', { status: 'failed', ready_revision: null, kernel_name: null, message: 'x' });
    expect(shownStatus(first)).toBe('failed');
    expect(notice(first)).toBe('');
  });

  it('filters by the shown status', () => {
    const none = { text: '', label: '', status: '' };
    const updateFailed = env('a', { status: 'failed', revision: 2 });
    expect(matches(updateFailed, { ...none, status: 'ready' })).toBe(true);
    expect(matches(updateFailed, { ...none, status: 'failed' })).toBe(true); // "failed" finds a failed update too
    expect(matches(env('b'), { ...none, status: 'failed' })).toBe(false);
  });

  it('says ready with the update beside it, the same words as the CLI', () => {
    expect(statusWords(env('a', { status: 'failed', revision: 3 }))).toBe('ready · update 3 failed');
    expect(statusWords(env('b', { status: 'warming', revision: 2 }))).toBe('ready · update 2 building');
    expect(statusWords(env('c'))).toBe('ready');
    expect(statusWords(env('d', { status: 'failed', ready_revision: null, kernel_name: null }))).toBe('failed');
  });

  it('cuts messages to their first line', () => {
    expect(oneLine('\n  first\nsecond')).toBe('first');
  });
});

describe('locks and audits', () => {
  it('diffs two locks by package', () => {
    const a = 'six==1.16.0 \\\n    --hash=sha256:abc\nnumpy==2.0.0\n# via x\nold==1\n';
    const b = 'six==1.17.0\nnumpy==2.0.0\nnew-pkg==0.1 ; python_version >= "3"\n';
    expect(diffLocks(a, b)).toEqual([
      { name: 'new-pkg', change: 'added', to: '0.1' },
      { name: 'old', change: 'removed', from: '1' },
      { name: 'six', change: 'changed', from: '1.16.0', to: '1.17.0' }
    ]);
    expect(diffLocks(a, a)).toEqual([]);
  });

  it('proposes the fixed versions: requested pins raised, dependencies constrained', () => {
    const audit = {
      revision: 1, checked: '', database: 'osv',
      vulnerabilities: [
        { package: 'urllib3', version: '1.26.0', id: 'GHSA-1', aliases: [], summary: '', fixed_in: ['1.26.5', '2.0.1'] },
        { package: 'urllib3', version: '1.26.0', id: 'GHSA-2', aliases: [], summary: '', fixed_in: ['1.26.18'] },
        { package: 'Jinja2', version: '2.0', id: 'GHSA-3', aliases: [], summary: '', fixed_in: ['2.11.3'] },
        { package: 'nofix', version: '1', id: 'GHSA-4', aliases: [], summary: '', fixed_in: [] }
      ]
    };
    expect(fixedPackages('pip', 'urllib3==1.26.0\nrequests[socks]\n# keep\n', audit)).toBe('urllib3>=1.26.18\nrequests[socks]\n# keep\njinja2>=2.11.3\n');
    expect(fixedPackages('conda', 'dependencies:\n  - jinja2=2.0\n', audit)).toBe('dependencies:\n  - jinja2>=2.11.3\n');
    expect(compareVersions('1.10', '1.9')).toBeGreaterThan(0);
  });

  it('marks what the packages text asks for, by normalized name', () => {
    expect([...requestedNames('pip', 'Scikit_Learn>=1\n-e ./x\n# c\nsix\n')]).toEqual(['scikit-learn', 'six']);
    expect([...requestedNames('conda', 'dependencies:\n  - numpy=2\n  - pip:\n    - six\n')]).toEqual(['numpy', 'six']);
  });
});

describe('presets', () => {
  it('merge requirements without repeating a name (the existing line wins)', () => {
    expect(mergePackages('pip', 'numpy==2\nPandas\n', 'pandas\nmatplotlib\nnumpy\n')).toBe('numpy==2\nPandas\nmatplotlib\n');
    expect(mergePackages('pip', '', 'six\n')).toBe('six\n');
    expect(mergePackages('pip', 'six', 'six\n')).toBe('six');
    expect(mergePackages('pip', 'scikit_learn\n', 'scikit-learn\n')).toBe('scikit_learn\n');
  });

  it('merge into the dependencies of an environment.yaml, before its pip list', () => {
    expect(mergePackages('conda', 'dependencies:\n  - numpy\n  - pip:\n    - six\n', 'dependencies:\n  - numpy\n  - pandas\n')).toBe(
      'dependencies:\n  - numpy\n  - pandas\n  - pip:\n    - six\n'
    );
    expect(mergePackages('conda', '', 'dependencies:\n  - pandas\n')).toBe('dependencies:\n  - pandas\n');
  });
});

describe('refresh', () => {
  it('loads info, picks the first namespace, and asks for it (and for the requests, of every namespace)', async () => {
    const server = new FakeServer();
    const model = new EnvironmentsModel(new EnvmgrApi(server.transport));
    await model.refresh();
    expect(model.namespace).toBe('default');
    expect(server.seen).toEqual(['GET envmgr/api/info', 'GET envmgr/api/environments?namespace=default', 'GET envmgr/api/requests']);
  });

  it('tells when kernels appear or go, not on every poll', async () => {
    const server = new FakeServer();
    const model = new EnvironmentsModel(new EnvmgrApi(server.transport));
    let signals = 0;
    model.kernelsChanged.connect(() => signals++);
    server.environments = [env('one', { kernel_name: null, ready_revision: null, status: 'warming' })];
    await model.refresh();
    expect(signals).toBe(0);
    server.environments = [env('one')];
    await model.refresh();
    expect(signals).toBe(1); // turned ready: the launcher and kernel picker must refresh
    await model.refresh();
    expect(signals).toBe(1);
    server.environments = [env('one', { status: 'failed', revision: 2 })];
    await model.refresh();
    expect(signals).toBe(1); // a failed update: revision 1 still serves, nothing changes for kernels
    server.environments = [];
    await model.refresh();
    expect(signals).toBe(2); // deleted: gone from the picker
  });

  it('drops a list that answers for a namespace the user has left', async () => {
    const server = new FakeServer();
    let release: () => void = () => undefined;
    let hold = false;
    const slow: ITransport = async (method, path, body) => {
      if (hold && path.endsWith('namespace=default')) {
        await new Promise<void>(resolve => (release = resolve));
      }
      return server.transport(method, path, body);
    };
    const model = new EnvironmentsModel(new EnvmgrApi(slow));
    await model.refresh();
    hold = true;
    server.environments = [env('old')];
    const stale = model.refresh();
    await Promise.resolve();
    server.environments = [env('new', { namespace: 'team' })];
    const switched = model.setNamespace('team');
    await switched;
    release();
    await stale;
    expect(model.environments.map(e => e.name)).toEqual(['new']);
  });

  it('shows the server message when the server cannot be reached, and recovers', async () => {
    const server = new FakeServer();
    let down = true;
    const model = new EnvironmentsModel(
      new EnvmgrApi(async (m, p, b) =>
        down ? { status: 503, text: '', json: { message: 'the Kubernetes API is unreachable', reason: 'unavailable' } } : server.transport(m, p, b)
      )
    );
    await model.refresh();
    expect(model.error).toBe('the Kubernetes API is unreachable');
    down = false;
    await model.refresh();
    expect(model.error).toBe('');
  });
});

describe('api client', () => {
  it('takes the field from the error body', async () => {
    const api = new EnvmgrApi(async () => ({ status: 403, text: '', json: { message: "index_urls: 'https://x/simple' is not allowed", reason: 'forbidden', field: 'index_urls' } }));
    await expect(api.create({ name: 'x' }, true)).rejects.toMatchObject({ status: 403, field: 'index_urls' });
  });

  it('asks for a dry run with ?dry_run=1 and reads SSE data lines', async () => {
    const server = new FakeServer();
    const api = new EnvmgrApi(server.transport, 'team');
    await api.create({ name: 'x', namespace: 'team' }, true).catch(() => undefined);
    await api.update('x', { description: 'd' }, true).catch(() => undefined);
    expect(server.seen).toEqual(['POST envmgr/api/environments?namespace=team&dry_run=1', 'PATCH envmgr/api/environments/x?dry_run=1&namespace=team']);
    expect(parseEventStream('data: {"a":1}\r\n\r\n: ping\n\ndata: {"b"')).toEqual({ data: ['{"a":1}'], rest: 'data: {"b"' });
  });

  it('turns refusals into ApiError naming the field', async () => {
    const api = new EnvmgrApi(async () => ({ status: 422, text: '', json: { message: 'name: use lowercase', reason: 'invalid_field' } }));
    await expect(api.create({ name: 'Bad' })).rejects.toMatchObject({ status: 422, reason: 'invalid_field', field: 'name' });
  });

  it('relates a taken name to the name field', () => {
    expect(new ApiError(409, "an environment named 'x' already exists", 'name_taken').field).toBe('name');
    expect(new ApiError(409, "'x' has no build to cancel", 'not_building').field).toBeNull();
  });

  it('survives an error without a JSON body', async () => {
    const api = new EnvmgrApi(async () => ({ status: 502, text: 'Bad Gateway', json: null }));
    await expect(api.info()).rejects.toMatchObject({ status: 502, message: 'HTTP 502', reason: '' });
  });

  it('puts the namespace on every environment route but not on /info', async () => {
    const server = new FakeServer();
    const api = new EnvmgrApi(server.transport, 'team');
    await api.list();
    await api.info();
    await api.log('x', 2).catch(() => undefined);
    expect(server.seen).toEqual([
      'GET envmgr/api/environments?namespace=team',
      'GET envmgr/api/info',
      'GET envmgr/api/environments/x/log?revision=2&namespace=team'
    ]);
  });
});

describe('conditional lists', () => {
  it("sends the last list's ETag and keeps the list on 304", async () => {
    const seen: (string | undefined)[] = [];
    let environments = [env('one')];
    const transport: ITransport = async (method, path, body, headers) => {
      if (path === 'envmgr/api/info') {
        return { status: 200, text: '', json: { namespaces: ['default'] } };
      }
      if (path.startsWith('envmgr/api/environments?')) {
        seen.push(headers?.['If-None-Match']);
        const tag = `"${environments.length}"`;
        return headers?.['If-None-Match'] === tag
          ? { status: 304, text: '', json: null }
          : { status: 200, text: '', json: { environments }, etag: tag };
      }
      return { status: 404, text: '', json: null };
    };
    const model = new EnvironmentsModel(new EnvmgrApi(transport));
    await model.refresh();
    await model.refresh();
    expect(model.environments.map(e => e.name)).toEqual(['one']);
    environments = [env('one'), env('two')];
    await model.refresh();
    expect(model.environments.map(e => e.name)).toEqual(['one', 'two']);
    expect(seen).toEqual([undefined, '"1"', '"1"']);
  });

  it('lists a namespace afresh when the user comes back to it', async () => {
    const server = new FakeServer();
    server.environments = [env('one')];
    const transport: ITransport = async (method, path, body, headers) => {
      const response = await server.transport(method, path, body);
      if (path.startsWith('envmgr/api/environments?')) {
        return headers?.['If-None-Match'] === '"x"' ? { status: 304, text: '', json: null } : { ...response, etag: '"x"' };
      }
      return response;
    };
    const model = new EnvironmentsModel(new EnvmgrApi(transport));
    await model.refresh();
    await model.setNamespace('team');
    await model.setNamespace('default');
    expect(model.environments.map(e => e.name)).toEqual(['one']);
  });
});

describe('delete', () => {
  it('shows the delete under way until the server answers, then drops the environment', async () => {
    const server = new FakeServer();
    server.environments = [env('one'), env('two')];
    let answer: () => void = () => undefined;
    const transport: ITransport = async (method, path, body) => {
      if (method === 'DELETE') {
        await new Promise<void>(resolve => (answer = resolve));
        return { status: 204, text: '', json: null };
      }
      return server.transport(method, path, body);
    };
    const model = new EnvironmentsModel(new EnvmgrApi(transport));
    await model.refresh();
    const removing = model.remove('one');
    expect(model.deleting.has('one')).toBe(true);
    await Promise.resolve();
    answer();
    await removing;
    expect(model.deleting.has('one')).toBe(false);
    expect(model.environments.map(e => e.name)).toEqual(['two']);
  });
});

describe('sorting and usage', () => {
  it('sorts by a column, then by name, either way', () => {
    const list = [env('b', { python: '3.10' }), env('a', { python: '3.9' }), env('c', { python: '3.10' })];
    expect(sortEnvironments(list, 'name').map(e => e.name)).toEqual(['a', 'b', 'c']);
    expect(sortEnvironments(list, 'python').map(e => e.name)).toEqual(['a', 'b', 'c']); // 3.9 < 3.10
    expect(sortEnvironments(list, 'python', true).map(e => e.name)).toEqual(['c', 'b', 'a']);
    const sizes = new Map([['a', 10], ['b', 30], ['c', 20]]);
    expect(sortEnvironments(list, 'size', true, { sizes }).map(e => e.name)).toEqual(['b', 'c', 'a']);
  });

  it('says who used an environment lately and what runs now', () => {
    const now = Date.parse('2026-01-10T00:00:00Z');
    const use = (user: string, notebook: string, started: string) => ({ user, notebook, revision: 1, started, last_activity: started });
    const usage = {
      revisions: [], last_used: null, running_kernels: 1,
      kernels: [use('ann', 'a.ipynb', '2026-01-09T00:00:00Z')],
      recent: [use('ann', 'a.ipynb', '2026-01-09T00:00:00Z'), use('ann', 'a.ipynb', '2026-01-08T00:00:00Z'),
        use('bob', 'b.ipynb', '2026-01-05T00:00:00Z'), use('cid', 'old.ipynb', '2025-12-01T00:00:00Z')]
    };
    expect(usageSentence(usage, 7, now)).toBe('used by 2 notebooks of 2 users in the last 7 days; 1 kernel runs now');
    expect(usageSentence({ revisions: [], last_used: null, running_kernels: 2 }, 7, now)).toBe('2 kernels run now');
  });

  it('tells a namespace refusal from a policy refusal', () => {
    expect(isNamespaceRefusal({ reason: 'forbidden', field: null, message: "rita may not write environments in namespace 'default'; ask an administrator for access" })).toBe(true);
    expect(isNamespaceRefusal({ reason: 'forbidden', field: 'index_urls', message: 'index_urls: https://x/simple is not allowed' })).toBe(false);
    expect(isNamespaceRefusal({ reason: 'forbidden', field: 'packages', message: 'packages: line 1: --index-url is not allowed' })).toBe(false);
  });
});
