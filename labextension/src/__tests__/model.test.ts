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
  const b = env('beta', { labels: { team: 'b' }, status: 'failed' });
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

  it('match a status', () => {
    expect(matches(b, { ...none, status: 'failed' })).toBe(true);
    expect(matches(a, { ...none, status: 'failed' })).toBe(false);
  });
});

describe('polling', () => {
  afterEach(() => jest.useRealTimers());

  it('keeps a user interval within 1-60 seconds', () => {
    expect(boundedInterval(0)).toBe(1);
    expect(boundedInterval(3)).toBe(3);
    expect(boundedInterval(3600)).toBe(60);
    expect(boundedInterval(NaN)).toBe(3);
  });

  it('polls at the interval, every second while something builds, and stops', async () => {
    jest.useFakeTimers();
    const server = new FakeServer();
    const model = new EnvironmentsModel(new EnvmgrApi(server.transport));
    const lists = () => server.seen.filter(r => r.startsWith('GET envmgr/api/environments')).length;
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

  it('runs one loop only when restarted while a refresh is in flight (a settings change)', async () => {
    jest.useFakeTimers();
    const server = new FakeServer();
    const model = new EnvironmentsModel(new EnvmgrApi(server.transport));
    const lists = () => server.seen.filter(r => r.startsWith('GET envmgr/api/environments')).length;
    model.start(5);
    model.start(5); // the first tick has not answered yet
    await jest.advanceTimersByTimeAsync(0);
    const first = lists();
    await jest.advanceTimersByTimeAsync(5000);
    expect(lists()).toBe(first + 1);
    model.stop();
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
  it('loads info, picks the first namespace, and asks for it', async () => {
    const server = new FakeServer();
    const model = new EnvironmentsModel(new EnvmgrApi(server.transport));
    await model.refresh();
    expect(model.namespace).toBe('default');
    expect(server.seen).toEqual(['GET envmgr/api/info', 'GET envmgr/api/environments?namespace=default']);
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
