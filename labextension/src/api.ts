/**
 * The typed client of the REST contract (API.md): every call of the panel goes through `request`
 * (or `stream`, for the routes that answer a little at a time: `/events` and a followed build log).
 */

export type Status = 'pending' | 'warming' | 'ready' | 'failed' | 'cancelled';
export type Manager = 'pip' | 'conda';

export interface ISpec {
  name: string;
  manager?: Manager;
  python?: string;
  packages?: string;
  index_urls?: string[];
  description?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  env_vars?: Record<string, string>;
  gpu?: number;
  storage?: string;
  namespace?: string;
  cluster?: string;
  init_script?: string;
}

export interface IEnvironment extends Required<Omit<ISpec, 'init_script' | 'cluster'>> {
  init_script?: string;
  cluster?: string;
  status: Status;
  message: string;
  progress: number;
  revision: number;
  ready_revision: number | null;
  created: string;
  updated: string;
  owner: string;
  kernel_name: string | null;
  prefix: string;
  base_packages: string[];
}

export interface IPreset {
  name: string;
  manager: Manager;
  packages: string;
}

export interface ICluster {
  name: string;
  namespaces: string[];
}

export interface IInfo {
  version: string;
  backend: string;
  managers: Manager[];
  python_versions: string[];
  namespaces: string[];
  clusters?: ICluster[];
  default_python?: string;
  storages: { name: string; path: string; access_mode: string }[];
  presets: IPreset[];
  base_packages: Record<string, string[]>;
  limits: Record<string, number>;
}

export interface IRevision {
  revision: number;
  status: Status;
  message: string;
  created: string;
  finished: string | null;
  current: boolean;
  inputs: Record<string, unknown>;
  lock: string;
}

export interface IPackage {
  name: string;
  version: string;
  /** What the spec's packages name (the server's mark; older servers leave it out). */
  requested?: boolean;
  /** Always installed besides the packages (`/info` `base_packages`). */
  base?: boolean;
  /** The installed packages that depend on this one, from the revision's own metadata. */
  required_by?: string[];
  /** The requirement the spec wrote for it (`numpy==2.1.*`), when the server says. */
  specifier?: string;
  source?: string;
}

/** One kernel start on an environment (`GET .../usage` `kernels` and `recent`). */
export interface IKernelUse {
  user: string;
  notebook: string;
  revision: number;
  started: string;
  last_activity: string;
}

/** `GET .../usage`: disk per revision and who uses the environment. */
export interface IEnvUsage {
  revisions: { revision: number; bytes: number; unique_bytes: number; files: number }[];
  last_used: string | null;
  running_kernels: number;
  kernels?: IKernelUse[];
  recent?: IKernelUse[];
}

/** One package's change in a dry run's `changes` (API.md "Changes before they happen"). */
export interface IPackageChange {
  name: string;
  from: string | null;
  to: string | null;
  change: 'added' | 'removed' | 'upgraded' | 'downgraded';
  major: boolean;
  requested: boolean;
}

export interface IChanges {
  python: { from: string; to: string } | null;
  packages: IPackageChange[];
}

/** What a dry run of a PATCH, `rebuild` or `pin` answers: the record, and `changes` where the server resolves them. */
export type IDryRun = IEnvironment & { changes?: IChanges };

/** One distribution the configured index offers (`GET /package-search`). */
export interface IPackageHit {
  name: string;
  versions: string[];
}

export interface IVulnerability {
  package: string;
  version: string;
  id: string;
  aliases: string[];
  summary: string;
  fixed_in: string[];
}

export interface IAudit {
  revision: number;
  checked: string;
  database: string;
  vulnerabilities: IVulnerability[];
}

export interface ISuggestion {
  manager: Manager;
  packages: string;
  python: string | null;
  unresolved: string[];
}

/** What it takes to use an environment outside a notebook (GET .../pod-spec): the `run` line and the pod fragment. */
export interface IUsage {
  namespace: string;
  name: string;
  revision: number;
  python: string;
  env: Record<string, string>;
  run: string;
  pod_spec: Record<string, unknown>;
  yaml: string;
}

export type RequestStatus = 'requested' | 'approved' | 'rejected' | 'withdrawn';

/** A request for an environment by someone who may not create it (`/requests`). */
export interface IEnvRequest {
  id: string;
  namespace: string;
  name: string;
  spec: ISpec;
  requester: string;
  status: RequestStatus;
  created: string;
  updated?: string;
  message?: string;
  decided_by?: string | null;
  /** The environment's name, once approved. */
  environment?: string;
}

export type RequestAction = 'approve' | 'reject' | 'withdraw';

/** One change of `/events`. */
export type IChange =
  | { type: 'upsert'; environment: IEnvironment }
  | { type: 'delete'; namespace: string; name: string; cluster?: string };

/** A refusal of the server: its message says what to fix; `field` is the request field at fault, if one is. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason: string,
    field: string | null = null
  ) {
    super(message);
    this._field = field;
  }

  /** The field the server names (`"field"`); else read from a message such as "packages: line 2 ..." (a taken name is about the name). */
  get field(): string | null {
    if (this._field) {
      return this._field;
    }
    const match = /^([a-z_]+): /.exec(this.message);
    return match ? match[1] : this.reason === 'name_taken' ? 'name' : null;
  }

  private readonly _field: string | null;
}

export interface IResponse {
  status: number;
  text: string;
  json: unknown;
  /** The `ETag` of a GET that has one. */
  etag?: string | null;
}

/** How requests reach the server: injected, so the model can be tested without a browser. */
export interface ITransport {
  (method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<IResponse>;
  /** GET a route that answers a little at a time: `onText` gets each piece until the end or `signal` aborts; resolves to the status. */
  stream?: (path: string, onText: (text: string) => void, signal: AbortSignal) => Promise<number>;
}

/**
 * Cut a `text/event-stream` into the data of its events; `rest` is the incomplete tail to prepend to
 * the next piece. Comment lines (`: keep-alive`) and fields other than `data` are skipped.
 */
export function parseEventStream(text: string): { data: string[]; rest: string } {
  const blocks = text.replace(/\r\n?/g, '\n').split('\n\n');
  const rest = blocks.pop() as string;
  const data = blocks
    .map(block =>
      block
        .split('\n')
        .filter(line => line.startsWith('data:'))
        .map(line => line.slice(5).replace(/^ /, ''))
        .join('\n')
    )
    .filter(Boolean);
  return { data, rest };
}

/** The error a failed response stands for. */
export function apiError(response: IResponse): ApiError {
  const data = (response.json ?? {}) as { message?: string; reason?: string; field?: string };
  return new ApiError(response.status, data.message || `HTTP ${response.status}`, data.reason || '', data.field || null);
}

export class EnvmgrApi {
  constructor(
    private readonly transport: ITransport,
    public namespace: string = ''
  ) {}

  /**
   * The cluster of `namespace`, sent as `?cluster=` on every per-environment route, on a server of
   * several clusters; '' on a server of one (its records all belong to it: nothing to say).
   */
  cluster = '';

  /** Whether `?dry_run=1` may be sent: a server that predates it would ignore it and really create. */
  dryRuns = false;

  private url(path: string, query: Record<string, string>): string {
    const params = new URLSearchParams(query);
    const global = path === 'info' || path === 'suggestions' || path === 'package-search' || path.startsWith('requests');
    if (this.namespace && !params.has('namespace') && !global) {
      params.set('namespace', this.namespace);
    }
    if (this.cluster && !params.has('cluster') && !global) {
      params.set('cluster', this.cluster);
    }
    const search = params.toString();
    return `envmgr/api/${path}${search ? '?' + search : ''}`;
  }

  async request<T>(method: string, path: string, body?: unknown, query: Record<string, string> = {}): Promise<T> {
    const response = await this.transport(method, this.url(path, query), body);
    if (response.status >= 400) {
      throw apiError(response);
    }
    return (response.json ?? response.text) as T;
  }

  /** Follow a streaming route; resolves with its status when it ends (a status >= 400 is thrown). */
  async stream(path: string, query: Record<string, string>, onText: (text: string) => void, signal: AbortSignal): Promise<number> {
    if (!this.transport.stream) {
      throw new ApiError(501, 'this client cannot stream', 'not_implemented');
    }
    const status = await this.transport.stream(this.url(path, query), onText, signal);
    if (status >= 400) {
      throw new ApiError(status, `${path}: HTTP ${status}`, status === 404 ? 'not_found' : 'error');
    }
    return status;
  }

  info(): Promise<IInfo> {
    return this.request('GET', 'info');
  }

  /**
   * The namespace's environments; `null` when they have not changed since the last list (the server
   * answered 304 to the `ETag` of that list).
   */
  async list(): Promise<IEnvironment[] | null> {
    const url = this.url('environments', {});
    const tag = this._etag.url === url ? this._etag.tag : ''; // only the list the caller holds: the last one
    const response = await this.transport('GET', url, undefined, tag ? { 'If-None-Match': tag } : undefined);
    if (response.status === 304) {
      return null;
    }
    if (response.status >= 400) {
      throw apiError(response);
    }
    this._etag = { url, tag: response.etag || '' };
    return (response.json as { environments: IEnvironment[] }).environments;
  }

  private _etag = { url: '', tag: '' };

  get(name: string): Promise<IEnvironment> {
    return this.request('GET', `environments/${name}`);
  }

  /** Create in the spec's namespace and cluster when it names them (the form may pick others than the list shows). */
  create(spec: ISpec, dryRun = false): Promise<IEnvironment> {
    return this.request('POST', 'environments', spec, {
      ...(spec.namespace ? { namespace: spec.namespace } : {}),
      ...(spec.cluster && this.cluster ? { cluster: spec.cluster } : {}),
      ...(dryRun ? { dry_run: '1' } : {})
    });
  }

  update(name: string, fields: Partial<ISpec>, dryRun = false): Promise<IDryRun> {
    return this.request('PATCH', `environments/${name}`, fields, dryRun ? { dry_run: '1' } : {});
  }

  remove(name: string): Promise<void> {
    return this.request('DELETE', `environments/${name}`);
  }

  action(name: string, action: 'rebuild' | 'cancel' | 'rollback' | 'pin', revision?: number, dryRun = false): Promise<IDryRun> {
    return this.request('POST', `environments/${name}/actions`, revision === undefined ? { action } : { action, revision }, dryRun ? { dry_run: '1' } : {});
  }

  /** Disk use and who uses an environment (kernels running now, starts of the last days). */
  envUsage(name: string): Promise<IEnvUsage> {
    return this.request('GET', `environments/${name}/usage`);
  }

  /** Names (and their versions) that the configured index offers, starting with `query`. */
  async searchPackages(query: string): Promise<IPackageHit[]> {
    return (await this.request<{ packages: IPackageHit[] }>('GET', 'package-search', undefined, { q: query })).packages;
  }

  /** A new environment with the same inputs, in the source's namespace and cluster (the query names the source). */
  clone(name: string, newName: string): Promise<IEnvironment> {
    return this.request('POST', `environments/${name}/actions`, { action: 'clone', name: newName });
  }

  log(name: string, revision?: number): Promise<string> {
    return this.request('GET', `environments/${name}/log`, undefined, revision ? { revision: String(revision) } : {});
  }

  /** The build log of a revision as it is written: what is there, then each new piece until the build ends. */
  followLog(name: string, revision: number, onText: (text: string) => void, signal: AbortSignal): Promise<number> {
    return this.stream(`environments/${name}/log`, { revision: String(revision), follow: '1' }, onText, signal);
  }

  /** Every change of the namespace's environments, as the server sees them, until `signal` aborts. */
  async events(onChange: (change: IChange) => void, signal: AbortSignal): Promise<number> {
    let rest = '';
    return this.stream(
      'events',
      {},
      text => {
        const parsed = parseEventStream(rest + text);
        rest = parsed.rest;
        for (const data of parsed.data) {
          try {
            onChange(JSON.parse(data) as IChange);
          } catch {
            // a line that is not JSON is not a change
          }
        }
      },
      signal
    );
  }

  async packages(name: string): Promise<IPackage[]> {
    return (await this.request<{ packages: IPackage[] }>('GET', `environments/${name}/packages`)).packages;
  }

  async revisions(name: string): Promise<IRevision[]> {
    return (await this.request<{ revisions: IRevision[] }>('GET', `environments/${name}/revisions`)).revisions;
  }

  audit(name: string): Promise<IAudit> {
    return this.request('GET', `environments/${name}/audit`);
  }

  suggest(source: { notebook: unknown } | { code: string }): Promise<ISuggestion> {
    return this.request('POST', 'suggestions', source);
  }

  /** The `run` line and Kubernetes fragment of the serving revision (409 `not_ready` before one is ready). */
  usage(name: string): Promise<IUsage> {
    return this.request('GET', `environments/${name}/pod-spec`);
  }

  /** Requests the user may see, of every namespace (their own; all of a namespace they may write). */
  async requests(status?: RequestStatus): Promise<IEnvRequest[]> {
    return (await this.request<{ requests: IEnvRequest[] }>('GET', 'requests', undefined, status ? { status } : {})).requests;
  }

  /** Ask for an environment one may not create: a create body, kept as a request (202). */
  submitRequest(spec: ISpec): Promise<IEnvRequest> {
    const namespace = spec.namespace || this.namespace;
    return this.request('POST', 'requests', spec, namespace ? { namespace } : {});
  }

  /** Approve or reject (a writer of the namespace; a rejection says why), or withdraw (the requester). */
  decide(id: string, action: RequestAction, message?: string): Promise<IEnvRequest> {
    return this.request('POST', `requests/${encodeURIComponent(id)}/actions`, action === 'reject' ? { action, message: message ?? '' } : { action });
  }

  async exportText(name: string, format: 'requirements' | 'spec'): Promise<string> {
    const data = await this.request<unknown>('GET', `environments/${name}/export`, undefined, { format });
    return typeof data === 'string' ? data : JSON.stringify(data, null, 2) + '\n';
  }
}
