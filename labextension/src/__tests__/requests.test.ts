import { EnvmgrApi, IEnvRequest, IResponse, ITransport } from '../api';
import { decidable, EnvironmentsModel } from '../model';

function req(id: string, fields: Partial<IEnvRequest> = {}): IEnvRequest {
  return { id, namespace: 'team', name: `env-${id}`, spec: { name: `env-${id}` }, requester: 'rita', status: 'requested',
    created: `2026-01-0${id}T00:00:00Z`, ...fields };
}

/** A server stand-in at the transport level: records each request with its body, answers from a table. */
class Server {
  seen: { method: string; path: string; body?: unknown }[] = [];
  requests: IEnvRequest[] = [];
  answers: Record<string, IResponse> = {};

  transport: ITransport = async (method, path, body) => {
    this.seen.push({ method, path, body });
    const key = `${method} ${path}`;
    if (key in this.answers) {
      return this.answers[key];
    }
    if (key === 'GET envmgr/api/requests') {
      return { status: 200, text: '', json: { requests: this.requests } };
    }
    return { status: 404, text: '', json: { message: 'not here', reason: 'not_found' } };
  };
}

describe('the requests client', () => {
  it('lists, submits and acts on the routes of API.md; the list is of every namespace', async () => {
    const server = new Server();
    const api = new EnvmgrApi(server.transport, 'default');
    server.answers['POST envmgr/api/requests?namespace=team'] = { status: 202, text: '', json: req('1') };
    server.answers['POST envmgr/api/requests/1/actions'] = { status: 200, text: '', json: req('1', { status: 'rejected', message: 'too big' }) };
    server.answers['GET envmgr/api/requests?status=requested'] = { status: 200, text: '', json: { requests: [req('1')] } };
    await api.requests();
    expect((await api.requests('requested')).map(r => r.id)).toEqual(['1']);
    expect((await api.submitRequest({ name: 'env-1', namespace: 'team', packages: 'six\n' })).status).toBe('requested');
    await api.decide('1', 'approve');
    await api.decide('1', 'reject', 'too big');
    await api.decide('1', 'withdraw');
    expect(server.seen.map(s => `${s.method} ${s.path} ${JSON.stringify(s.body ?? null)}`)).toEqual([
      'GET envmgr/api/requests null',
      'GET envmgr/api/requests?status=requested null',
      'POST envmgr/api/requests?namespace=team {"name":"env-1","namespace":"team","packages":"six\\n"}',
      'POST envmgr/api/requests/1/actions {"action":"approve"}',
      'POST envmgr/api/requests/1/actions {"action":"reject","message":"too big"}',
      'POST envmgr/api/requests/1/actions {"action":"withdraw"}'
    ]);
  });

  it('asks in the listed namespace when the spec names none', async () => {
    const server = new Server();
    await new EnvmgrApi(server.transport, 'default').submitRequest({ name: 'x' }).catch(() => undefined);
    expect(server.seen[0].path).toBe('envmgr/api/requests?namespace=default');
  });
});

describe('requests in the model', () => {
  it('counts the open requests of others as the ones to decide', () => {
    const all = [req('1'), req('2', { requester: 'walt' }), req('3', { status: 'approved' }), req('4', { status: 'rejected' })];
    expect(decidable(all, 'walt').map(r => r.id)).toEqual(['1']);
    expect(decidable(all, 'rita').map(r => r.id)).toEqual(['2']);
  });

  it('loads them newest first, and reads them again after an action, also a refused one', async () => {
    const server = new Server();
    const model = new EnvironmentsModel(new EnvmgrApi(server.transport, 'team'));
    model.user = { username: 'walt', display_name: 'Walt' };
    server.requests = [req('1'), req('2')];
    await model.loadRequests();
    expect(model.requests.map(r => r.id)).toEqual(['2', '1']);
    expect(model.toDecide).toHaveLength(2);

    server.answers['POST envmgr/api/requests/2/actions'] = { status: 200, text: '', json: req('2', { status: 'approved' }) };
    server.requests = [req('1'), req('2', { status: 'approved', environment: 'env-2' })];
    expect((await model.decide('2', 'approve')).status).toBe('approved');
    expect(model.toDecide.map(r => r.id)).toEqual(['1']);

    // Someone else decided it first: the refusal reaches the caller, and the list is current anyway.
    server.answers['POST envmgr/api/requests/1/actions'] = { status: 409, text: '', json: { message: 'request 1 is already rejected', reason: 'conflict' } };
    server.requests = [req('1', { status: 'rejected', message: 'no' }), req('2', { status: 'approved' })];
    await expect(model.decide('1', 'approve')).rejects.toThrow('already rejected');
    expect(model.toDecide).toEqual([]);
    expect(model.requests.find(r => r.id === '1')?.message).toBe('no');
  });

  it('a reject without a message is the server\'s to refuse (422, its field named)', async () => {
    const server = new Server();
    const model = new EnvironmentsModel(new EnvmgrApi(server.transport, 'team'));
    server.answers['POST envmgr/api/requests/1/actions'] = { status: 422, text: '', json: { message: 'message: say why', reason: 'invalid_field', field: 'message' } };
    await expect(model.decide('1', 'reject', '')).rejects.toMatchObject({ status: 422, field: 'message' });
  });

  it('stops asking a server that has no /requests', async () => {
    const server = new Server();
    server.answers['GET envmgr/api/requests'] = { status: 404, text: '', json: null };
    const model = new EnvironmentsModel(new EnvmgrApi(server.transport, 'team'));
    await model.loadRequests();
    await model.loadRequests();
    expect(model.requestsAvailable).toBe(false);
    expect(server.seen).toHaveLength(1);
  });

  it('submits a request and then lists it', async () => {
    const server = new Server();
    server.answers['POST envmgr/api/requests?namespace=team'] = { status: 202, text: '', json: req('5') };
    const model = new EnvironmentsModel(new EnvmgrApi(server.transport, 'team'));
    model.user = { username: 'rita', display_name: 'Rita' };
    server.requests = [req('5')];
    await model.requestEnvironment({ name: 'env-5', namespace: 'team' });
    expect(model.requests.map(r => r.id)).toEqual(['5']);
    expect(model.toDecide).toEqual([]); // one's own request is not one's to decide
  });
});

describe('use elsewhere', () => {
  it('reads the run line and fragment; nothing (null) before a revision is ready; other errors thrown', async () => {
    const server = new Server();
    const usage = { namespace: 'team', name: 'a', revision: 2, python: '3.12', env: {}, run: 'jupyter envmgr run a -- CMD', pod_spec: {}, yaml: 'volumes: []\n' };
    server.answers['GET envmgr/api/environments/a/pod-spec?namespace=team'] = { status: 200, text: '', json: usage };
    server.answers['GET envmgr/api/environments/b/pod-spec?namespace=team'] = { status: 409, text: '', json: { message: "'b' has no ready revision", reason: 'not_ready' } };
    const model = new EnvironmentsModel(new EnvmgrApi(server.transport, 'team'));
    expect(await model.usage('a')).toEqual(usage);
    expect(await model.usage('b')).toBeNull();
    await expect(model.usage('c')).rejects.toMatchObject({ status: 404 });
  });
});
