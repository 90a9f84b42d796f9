/**
 * The typed client of the REST contract (API.md): every call of the panel goes through `request`.
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
  init_script?: string;
}

export interface IEnvironment extends Required<Omit<ISpec, 'init_script'>> {
  init_script?: string;
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

export interface IInfo {
  version: string;
  backend: string;
  managers: Manager[];
  python_versions: string[];
  namespaces: string[];
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
  source?: string;
}

/** A refusal of the server: its message says what to fix; `field` is the field it names, if any. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason: string
  ) {
    super(message);
  }

  /** The field a message such as "name: ..." or "packages: line 2 ..." is about (a taken name is about the name). */
  get field(): string | null {
    const match = /^([a-z_]+): /.exec(this.message);
    return match ? match[1] : this.reason === 'name_taken' ? 'name' : null;
  }
}

/** How requests reach the server: injected, so the model can be tested without a browser. */
export interface ITransport {
  (method: string, path: string, body?: unknown): Promise<{ status: number; text: string; json: unknown }>;
}

export class EnvmgrApi {
  constructor(
    private readonly transport: ITransport,
    public namespace: string = ''
  ) {}

  async request<T>(method: string, path: string, body?: unknown, query: Record<string, string> = {}): Promise<T> {
    const params = new URLSearchParams(query);
    if (this.namespace && !params.has('namespace') && path !== 'info') {
      params.set('namespace', this.namespace);
    }
    const search = params.toString();
    const response = await this.transport(method, `envmgr/api/${path}${search ? '?' + search : ''}`, body);
    if (response.status >= 400) {
      const data = (response.json ?? {}) as { message?: string; reason?: string };
      throw new ApiError(response.status, data.message || `HTTP ${response.status}`, data.reason || '');
    }
    return (response.json ?? response.text) as T;
  }

  info(): Promise<IInfo> {
    return this.request('GET', 'info');
  }

  async list(): Promise<IEnvironment[]> {
    return (await this.request<{ environments: IEnvironment[] }>('GET', 'environments')).environments;
  }

  get(name: string): Promise<IEnvironment> {
    return this.request('GET', `environments/${name}`);
  }

  /** Create in the spec's namespace when it names one (the form may pick another than the list shows). */
  create(spec: ISpec): Promise<IEnvironment> {
    return this.request('POST', 'environments', spec, spec.namespace ? { namespace: spec.namespace } : {});
  }

  update(name: string, fields: Partial<ISpec>): Promise<IEnvironment> {
    return this.request('PATCH', `environments/${name}`, fields);
  }

  remove(name: string): Promise<void> {
    return this.request('DELETE', `environments/${name}`);
  }

  action(name: string, action: 'rebuild' | 'cancel' | 'rollback', revision?: number): Promise<IEnvironment> {
    return this.request('POST', `environments/${name}/actions`, revision === undefined ? { action } : { action, revision });
  }

  log(name: string, revision?: number): Promise<string> {
    return this.request('GET', `environments/${name}/log`, undefined, revision ? { revision: String(revision) } : {});
  }

  async packages(name: string): Promise<IPackage[]> {
    return (await this.request<{ packages: IPackage[] }>('GET', `environments/${name}/packages`)).packages;
  }

  async revisions(name: string): Promise<IRevision[]> {
    return (await this.request<{ revisions: IRevision[] }>('GET', `environments/${name}/revisions`)).revisions;
  }

  async exportText(name: string, format: 'requirements' | 'spec'): Promise<string> {
    const data = await this.request<unknown>('GET', `environments/${name}/export`, undefined, { format });
    return typeof data === 'string' ? data : JSON.stringify(data, null, 2) + '\n';
  }
}
