/**
 * The panel's state: server info, the environments of a namespace fed by `GET /events` (one list
 * when the stream (re)connects, polling only for a server without it), filters, honest status,
 * deletes under way and audit findings.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, EnvmgrApi, IAudit, IChange, IEnvironment, IEnvRequest, IEnvUsage, IInfo, ISpec, IUsage, Manager, RequestAction } from './api';

export interface IFilter {
  text: string;
  label: string; // "key" or "key=value"
  status: string; // '' for any; matched against the shown status
}

export const MIN_INTERVAL = 1;
export const MAX_INTERVAL = 60;

/** Keep a user's interval setting within what is polite to the server and still feels live. */
export function boundedInterval(seconds: number): number {
  if (!Number.isFinite(seconds)) {
    return 3;
  }
  return Math.min(MAX_INTERVAL, Math.max(MIN_INTERVAL, seconds));
}

/**
 * What a user can do with an environment now: one with a serving revision is `ready` whatever
 * happens to its next revision (a failed, cancelled or running update is a notice beside it).
 */
export function shownStatus(env: IEnvironment): string {
  return env.ready_revision !== null && env.kernel_name ? 'ready' : env.status;
}

/** The one-line notice beside a usable environment whose latest revision is not the one serving. */
export function notice(env: IEnvironment): string {
  if (shownStatus(env) !== 'ready' || env.status === 'ready') {
    return '';
  }
  const what = env.status === 'warming' || env.status === 'pending' ? `building (${env.status})` : env.status;
  return `update ${env.revision} ${what}${env.message ? ': ' + oneLine(env.message) : ''}`;
}

/**
 * The status in words, the same everywhere (list, view, table, as the CLI and magics say it): "ready",
 * "ready · update 3 failed", "ready · update 3 building", or the status of one with no serving revision.
 */
export function statusWords(env: IEnvironment): string {
  const shown = shownStatus(env);
  if (shown !== 'ready' || env.status === 'ready' || env.revision === env.ready_revision) {
    return shown;
  }
  const what = env.status === 'warming' || env.status === 'pending' ? 'building' : env.status;
  return `ready · update ${env.revision} ${what}`;
}

/** Whether the latest revision failed, serving or not (the "failed" filter finds both). */
export function latestFailed(env: IEnvironment): boolean {
  return env.status === 'failed';
}

/** The label filter's terms: `key`, `key=value`, several joined by commas (all must match); case-insensitive. */
export function labelTerms(text: string): [string, string | undefined][] {
  return text
    .split(',')
    .map(t => t.trim())
    .filter(Boolean)
    .map(t => {
      const at = t.indexOf('=');
      return (at < 0 ? [t.toLowerCase(), undefined] : [t.slice(0, at).trim().toLowerCase(), t.slice(at + 1).trim().toLowerCase()]) as [string, string | undefined];
    });
}

export type SortKey = 'name' | 'status' | 'owner' | 'python' | 'size' | 'last_used' | 'updated';

/** The order of the list and the table: by `key`, then by name; `sizes` and `lastUsed` come from `/usage`. */
export function sortEnvironments(
  environments: IEnvironment[],
  key: SortKey,
  descending = false,
  extra: { sizes?: Map<string, number>; lastUsed?: Map<string, string | null>; owner?: (o: string) => string } = {}
): IEnvironment[] {
  const value = (e: IEnvironment): string | number => {
    switch (key) {
      case 'status':
        return statusWords(e);
      case 'owner':
        return (extra.owner ? extra.owner(e.owner) : e.owner).toLowerCase();
      case 'python':
        return e.python;
      case 'size':
        return extra.sizes?.get(e.name) ?? -1;
      case 'last_used':
        return extra.lastUsed?.get(e.name) ?? '';
      case 'updated':
        return e.updated || '';
      default:
        return e.name;
    }
  };
  const out = [...environments].sort((a, b) => {
    const x = value(a);
    const y = value(b);
    const c = key === 'python' ? compareVersions(String(x), String(y)) : typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return c || a.name.localeCompare(b.name);
  });
  return descending ? out.reverse() : out;
}

/** A message as one line (the list shows one line; the full text stays in the view and the log). */
export function oneLine(text: string): string {
  return text.split('\n').find(line => line.trim())?.trim() ?? '';
}

export function matches(env: IEnvironment, filter: IFilter): boolean {
  const text = filter.text.trim().toLowerCase();
  if (text && !`${env.name} ${env.description} ${env.packages}`.toLowerCase().includes(text)) {
    return false;
  }
  if (filter.status && shownStatus(env) !== filter.status && !(filter.status === 'failed' && latestFailed(env))) {
    return false;
  }
  const labels = new Map(Object.entries(env.labels).map(([k, v]) => [k.toLowerCase(), v.toLowerCase()]));
  for (const [key, value] of labelTerms(filter.label)) {
    if (!labels.has(key) || (value !== undefined && labels.get(key) !== value)) {
      return false;
    }
  }
  return true;
}

/**
 * The cluster that offers `namespace` (a namespace belongs to one cluster of a server), else the first;
 * '' when the server lists no clusters.
 */
export function clusterOf(info: IInfo, namespace: string): string {
  const clusters = info.clusters || [];
  return (clusters.find(c => c.namespaces.includes(namespace)) ?? clusters[0])?.name ?? '';
}

/** What names one environment on a server: its cluster, namespace and name (one name may be taken in two places). */
export function envKey(env: { cluster?: string; namespace: string; name: string }): string {
  return `${env.cluster ?? ''}/${env.namespace}/${env.name}`;
}

function requirementName(line: string): string {
  const match = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(line.split('#')[0]);
  return match ? match[1].toLowerCase().replace(/[-_.]+/g, '-') : '';
}

/** The normalized names a requirements text asks for (PEP 503), to mark requested packages. */
export function requestedNames(manager: Manager, text: string): Set<string> {
  const lines = manager === 'conda'
    ? text.split('\n').filter(l => /^\s*-\s/.test(l) && !l.trim().endsWith(':')).map(l => l.replace(/^\s*-\s*/, ''))
    : text.split('\n');
  return new Set(lines.filter(l => !l.trim().startsWith('-')).map(requirementName).filter(Boolean));
}

/** Add a preset's lines to packages text without repeating a name (the request's own line wins). */
export function mergePackages(manager: Manager, text: string, extra: string): string {
  if (manager === 'conda') {
    const specName = (s: string) => s.replace(/^-\s*/, '').split(/[=<>!~ ]/)[0].trim();
    const have = new Set(text.split('\n').filter(l => l.trim().startsWith('- ')).map(l => specName(l.trim())));
    const added = extra
      .split('\n')
      .map(l => l.trim())
      .filter(l => l.startsWith('- ') && !have.has(specName(l)))
      .map(l => `  ${l}`);
    if (!added.length) {
      return text;
    }
    const lines = text.trim() ? text.replace(/\n+$/, '').split('\n') : [];
    let at = lines.findIndex(l => l.startsWith('dependencies:'));
    if (at < 0) {
      lines.push('dependencies:');
      at = lines.length - 1;
    }
    let end = at + 1;
    while (end < lines.length && /^\s+-/.test(lines[end]) && !lines[end].trim().startsWith('- pip:')) {
      end++;
    }
    lines.splice(end, 0, ...added);
    return lines.join('\n') + '\n';
  }
  const have = new Set(text.split('\n').map(requirementName).filter(Boolean));
  const added = extra
    .split('\n')
    .map(l => l.trim())
    .filter(l => l && !have.has(requirementName(l)));
  if (!added.length) {
    return text;
  }
  return (text.trim() ? text.replace(/\n*$/, '\n') : '') + added.join('\n') + '\n';
}

/** The vulnerable pins of an audit replaced by their lowest fixed version: the PATCH "update to fixed versions" proposes. */
export function fixedPackages(manager: Manager, packages: string, audit: IAudit): string {
  const fixes = new Map<string, string>();
  for (const v of audit.vulnerabilities) {
    const fixed = [...v.fixed_in].sort(compareVersions)[0];
    const key = requirementName(v.package);
    if (fixed && (!fixes.has(key) || compareVersions(fixes.get(key) as string, fixed) < 0)) {
      fixes.set(key, fixed); // the highest of the lowest fixes: one version that fixes every finding
    }
  }
  const lines = packages.replace(/\n+$/, '').split('\n').filter(l => l.trim() !== '' || packages.trim() !== '');
  const seen = new Set<string>();
  const out = lines.map(line => {
    const body = manager === 'conda' ? line.replace(/^(\s*-\s*)/, '') : line;
    const indent = manager === 'conda' ? line.slice(0, line.length - body.length) : '';
    const key = requirementName(body);
    if (!key || !fixes.has(key) || (manager === 'conda' && !indent)) {
      return line;
    }
    seen.add(key);
    const name = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?)/.exec(body)?.[1] ?? key;
    return `${indent}${name}>=${fixes.get(key)}`;
  });
  if (manager === 'pip') {
    for (const [key, version] of fixes) {
      if (!seen.has(key)) {
        out.push(`${key}>=${version}`); // a dependency: constrain it by naming it
      }
    }
  }
  return out.filter((l, i) => l.trim() || i < out.length - 1).join('\n') + '\n';
}

/** Compare dotted versions numerically where they are numbers ("1.10" > "1.9"). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+-]/);
  const pb = b.split(/[.+-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '0';
    const y = pb[i] ?? '0';
    const nx = Number(x);
    const ny = Number(y);
    const c = Number.isNaN(nx) || Number.isNaN(ny) ? x.localeCompare(y) : nx - ny;
    if (c) {
      return c;
    }
  }
  return 0;
}

/** Bytes on disk of every kept revision (what `/usage` says the environment holds). */
export function usageBytes(usage: IEnvUsage): number {
  return usage.revisions.reduce((sum, r) => sum + (r.bytes || 0), 0);
}

/** Whether a 403 is the namespace's write permission (a request may be granted) and not a policy's refusal of a field. */
export function isNamespaceRefusal(error: { status?: number; reason?: string; field?: string | null; message: string }): boolean {
  return error.reason === 'forbidden' && (!error.field || error.field === 'namespace') && /may not (write|read) environments in namespace/.test(error.message);
}

/** "used by N notebooks of M users in the last 7 days; K kernels run now", from `/usage` (`recent`, `kernels`). */
export function usageSentence(usage: IEnvUsage, days = 7, now = Date.now()): string {
  const since = now - days * 86400_000;
  const recent = (usage.recent || []).filter(u => Date.parse(u.started) >= since);
  const notebooks = new Set(recent.map(u => `${u.user}\u0000${u.notebook}`)).size;
  const users = new Set(recent.map(u => u.user)).size;
  const running = usage.kernels ? usage.kernels.length : usage.running_kernels;
  const n = (count: number, word: string) => `${count} ${word}${count === 1 ? '' : 's'}`;
  const run = `${n(running, 'kernel')} ${running === 1 ? 'runs' : 'run'} now`;
  return usage.recent ? `used by ${n(notebooks, 'notebook')} of ${n(users, 'user')} in the last ${days} days; ${run}` : run;
}

/** Open requests a user may decide: someone else's (the server shows others' requests only to writers of their namespace). */
export function decidable(requests: IEnvRequest[], username: string | undefined): IEnvRequest[] {
  return requests.filter(r => r.status === 'requested' && r.requester !== username);
}

/** Requests are not in `/events`: their count is re-read this often while the panel follows the server. */
export const REQUESTS_INTERVAL = 30;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>(resolve => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });

export class EnvironmentsModel {
  constructor(readonly api: EnvmgrApi) {}

  info: IInfo | null = null;
  environments: IEnvironment[] = [];
  error = '';
  filter: IFilter = { text: '', label: '', status: '' };
  /** Who is signed in (the identity provider's username and display name), to show owners by name. */
  user: { username: string; display_name: string } | null = null;
  /** Names being deleted: the delete takes seconds (a build to cancel, files to move). */
  deleting = new Set<string>();
  /** Audit answers by environment name; `auditUnavailable` once the server says it has no database. */
  audits = new Map<string, IAudit>();
  auditUnavailable = false;
  /** Whether the list follows `/events` right now (else it polls). */
  live = false;
  /** Requests the user may see (theirs, and those of namespaces they may write), newest first. */
  requests: IEnvRequest[] = [];
  /** False once the server answers that it has no `/requests` (a server that predates them). */
  requestsAvailable = true;

  /** Open requests the signed-in user may approve or reject. */
  get toDecide(): IEnvRequest[] {
    return decidable(this.requests, this.user?.username);
  }

  get namespace(): string {
    return this.api.namespace;
  }

  /** The cluster of the namespace the list shows ('' before `/info` is read, or when it lists none). */
  get cluster(): string {
    return this.info ? clusterOf(this.info, this.api.namespace) : '';
  }

  /** Whether the server has several clusters (then requests name one, and the views show it). */
  get clustered(): boolean {
    return (this.info?.clusters?.length ?? 0) > 1;
  }

  /** Whether a record or a deletion is about what the list shows (its namespace, and its cluster when it says one). */
  private shown(place: { namespace: string; cluster?: string }): boolean {
    return place.namespace === this.namespace && (!place.cluster || !this.cluster || place.cluster === this.cluster);
  }

  private setCluster(): void {
    this.api.cluster = this.clustered ? this.cluster : '';
  }

  get visible(): IEnvironment[] {
    return sortEnvironments(this.environments.filter(env => matches(env, this.filter)), this.sort.key, this.sort.descending, {
      sizes: new Map([...this.usages].map(([k, u]) => [k, usageBytes(u)])),
      lastUsed: new Map([...this.usages].map(([k, u]) => [k, u.last_used])),
      owner: o => this.ownerName(o)
    });
  }

  /** The order of the list and the table (one choice for both). */
  sort: { key: SortKey; descending: boolean } = { key: 'name', descending: false };

  setSort(key: SortKey, descending?: boolean): void {
    this.sort = { key, descending: descending ?? (this.sort.key === key ? !this.sort.descending : false) };
    if ((key === 'size' || key === 'last_used') && !this.usages.size) {
      void this.loadUsages();
    }
    this._changed.emit();
  }

  /** `/usage` answers by environment name: sizes, last use, kernels (the table reads them). */
  usages = new Map<string, IEnvUsage>();

  async loadUsages(): Promise<void> {
    const names = this.environments.map(e => e.name);
    await Promise.all(names.map(async name => {
      try {
        this.usages.set(name, await this.api.envUsage(name));
      } catch {
        this.usages.delete(name); // gone meanwhile, or a server without /usage
      }
    }));
    this._changed.emit();
  }

  /**
   * Whether the user may write the namespace the list shows (null: not known yet), asked once per
   * namespace with a create that writes nothing (`?dry_run=1`): only a refusal of the namespace itself
   * (403 with no field) says no.
   */
  writable = new Map<string, boolean>();

  async checkWritable(): Promise<void> {
    const namespace = this.namespace;
    if (!this.api.dryRuns || this.writable.has(namespace)) {
      return;
    }
    try {
      await this.api.create({ name: 'envmgr-write-check', packages: '', namespace }, true);
      this.writable.set(namespace, true);
    } catch (e) {
      const error = e as ApiError;
      this.writable.set(namespace, !(error.status === 403 && isNamespaceRefusal(error)));
    }
    this._changed.emit();
  }

  /** What a form held when it was closed without saving ('create', or 'edit:<namespace>/<name>'): reopening starts from it. */
  drafts = new Map<string, unknown>();

  /** A server message with the signed-in user's raw id replaced by their display name. */
  withNames(message: string): string {
    const user = this.user;
    return user && user.display_name && user.username && user.display_name !== user.username ? message.split(user.username).join(user.display_name) : message;
  }

  find(name: string): IEnvironment | undefined {
    return this.environments.find(e => e.name === name);
  }

  ownerName(owner: string): string {
    return this.user && owner === this.user.username ? this.user.display_name || owner : owner;
  }

  /** Emitted on every change of state the view shows. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Emitted when the set of ready kernels may have changed (an environment turned ready, or went). */
  get kernelsChanged(): ISignal<this, void> {
    return this._kernelsChanged;
  }

  setFilter(filter: Partial<IFilter>): void {
    this.filter = { ...this.filter, ...filter };
    this._changed.emit();
  }

  async setNamespace(namespace: string): Promise<void> {
    this.api.namespace = namespace;
    this.setCluster();
    this.environments = [];
    this._known.clear();
    this.audits.clear();
    if (this._seconds !== null) {
      this.start(this._seconds); // the stream is per namespace
    } else {
      await this.refresh();
    }
  }

  async loadInfo(): Promise<IInfo> {
    if (!this.info) {
      const info = await this.api.info();
      if (!this.api.namespace && info.namespaces.length) {
        this.api.namespace = info.namespaces[0];
      }
      this.api.dryRuns = info.clusters !== undefined; // the same server release brought both
      this.info = info;
      this.setCluster();
    }
    return this.info;
  }

  async refresh(): Promise<void> {
    try {
      await this.loadInfo();
      const namespace = this.api.namespace;
      const environments = await this.api.list();
      if (namespace !== this.api.namespace) {
        return; // the user switched namespaces meanwhile: this answer is about the old one
      }
      if (environments) {
        this.observe(environments); // else unchanged since the last list (304)
      }
      this.error = '';
      void this.loadRequests();
    } catch (e) {
      this.error = (e as Error).message;
    }
    this._changed.emit();
  }

  /** Apply one change of `/events` (changes of another namespace or cluster are not ours). */
  apply(change: IChange): void {
    if (change.type === 'delete') {
      if (this.shown(change)) {
        this.deleting.delete(change.name);
        this.observe(this.environments.filter(e => e.name !== change.name));
      }
    } else if (this.shown(change.environment)) {
      const env = change.environment;
      const at = this.environments.findIndex(e => envKey(e) === envKey(env));
      const next = [...this.environments];
      if (at >= 0) {
        next[at] = env;
      } else {
        next.push(env);
        next.sort((a, b) => a.name.localeCompare(b.name));
      }
      this.observe(next);
    }
    this._changed.emit();
  }

  /** Take a fresh list; tell listeners when kernels appeared or disappeared; audit what newly serves. */
  observe(environments: IEnvironment[]): void {
    const readyNow = new Map(environments.filter(e => e.kernel_name).map(e => [e.name, e.ready_revision]));
    let kernels = readyNow.size !== this._known.size;
    for (const [name, revision] of readyNow) {
      if (this._known.get(name) !== revision) {
        kernels = true;
        void this.loadAudit(name);
      }
    }
    this.environments = environments;
    this._known = readyNow;
    if (kernels) {
      this._kernelsChanged.emit();
    }
  }

  /** The audit of the serving revision (a server without an advisory database says 503 once, then is not asked). */
  async loadAudit(name: string): Promise<void> {
    if (this.auditUnavailable) {
      return;
    }
    try {
      this.audits.set(name, await this.api.audit(name));
      this._changed.emit();
    } catch (e) {
      // 503: no advisory database is configured or reachable; anything else is about this one environment
      this.auditUnavailable = (e as ApiError).status === 503;
    }
  }

  async loadRequests(): Promise<void> {
    if (!this.requestsAvailable) {
      return;
    }
    try {
      const requests = await this.api.requests();
      this.requests = [...requests].sort((a, b) => b.created.localeCompare(a.created));
    } catch (e) {
      const status = (e as ApiError).status;
      this.requestsAvailable = !(status === 404 || status === 405);
    }
    this._changed.emit();
  }

  /** Act on a request, then read the list again (someone else may have decided it meanwhile); a refusal is thrown. */
  async decide(id: string, action: RequestAction, message?: string): Promise<IEnvRequest> {
    try {
      return await this.api.decide(id, action, message);
    } finally {
      await this.loadRequests();
    }
  }

  /** Ask for an environment the user may not create (the create form's "Request it"). */
  async requestEnvironment(spec: ISpec): Promise<IEnvRequest> {
    const request = await this.api.submitRequest(spec);
    await this.loadRequests();
    return request;
  }

  /** How to use an environment elsewhere; `null` while it has no ready revision (409 `not_ready`). */
  async usage(name: string): Promise<IUsage | null> {
    try {
      return await this.api.usage(name);
    } catch (e) {
      if ((e as ApiError).status === 409) {
        return null;
      }
      throw e;
    }
  }

  async remove(name: string): Promise<void> {
    this.deleting.add(name);
    this._changed.emit();
    try {
      await this.api.remove(name);
      this.apply({ type: 'delete', namespace: this.namespace, name, cluster: this.cluster });
    } finally {
      this.deleting.delete(name);
      this._changed.emit();
    }
  }

  /**
   * Follow the server until `stop()`: `/events` with one list per (re)connection; a server without
   * the stream is polled every `seconds` (bounded), every second while something builds.
   */
  start(seconds: number): void {
    this.stop();
    this._seconds = seconds;
    const interval = boundedInterval(seconds);
    const controller = new AbortController();
    this._abort = controller;
    const signal = controller.signal;
    const requests = setInterval(() => void this.loadRequests(), REQUESTS_INTERVAL * 1000);
    signal.addEventListener('abort', () => clearInterval(requests));
    void (async () => {
      let streams = true;
      let backoff = 1;
      await this.loadInfo().catch(() => undefined); // the namespace the stream is about
      while (!signal.aborted) {
        const listed = this.refresh();
        if (streams) {
          this.live = true;
          try {
            await this.api.events(change => this.apply(change), signal);
            backoff = 1; // it ran and ended (a server restart, a proxy's timeout): reconnect soon
          } catch (e) {
            const status = (e as ApiError).status;
            streams = !(status === 404 || status === 405 || status === 501);
            backoff = Math.min(interval, backoff * 2);
          }
          this.live = false;
        }
        await listed;
        await sleep((streams ? backoff : this.busy ? Math.min(interval, 1) : interval) * 1000, signal);
      }
    })();
  }

  stop(): void {
    this._abort?.abort();
    this._abort = null;
  }

  /** Something builds: a polled list is worth following closely. */
  get busy(): boolean {
    return this.environments.some(e => e.status === 'pending' || e.status === 'warming');
  }

  private _seconds: number | null = null;
  private _abort: AbortController | null = null;
  private _known = new Map<string, number | null>();
  private _changed = new Signal<this, void>(this);
  private _kernelsChanged = new Signal<this, void>(this);
}

export interface ILockChange {
  name: string;
  change: 'added' | 'removed' | 'changed';
  from?: string;
  to?: string;
}

/** name → version of a lock: `name==version` lines (pip, uv) or `name=version=build` (conda); comments and options skipped. */
export function parseLock(lock: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of lock.split('\n')) {
    const line = raw.split('#')[0].split(';')[0].split(' \\')[0].trim();
    const match = /^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:===?|@)\s*([^\s=]+)/.exec(line);
    if (match) {
      out.set(match[1].toLowerCase().replace(/[-_.]+/g, '-'), match[2]);
    }
  }
  return out;
}

/** What changed between two locks, by package, sorted by name. */
export function diffLocks(before: string, after: string): ILockChange[] {
  const a = parseLock(before);
  const b = parseLock(after);
  const out: ILockChange[] = [];
  for (const name of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    const from = a.get(name);
    const to = b.get(name);
    if (from === undefined) {
      out.push({ name, change: 'added', to });
    } else if (to === undefined) {
      out.push({ name, change: 'removed', from });
    } else if (from !== to) {
      out.push({ name, change: 'changed', from, to });
    }
  }
  return out;
}

/** A name for an environment made from a notebook: its file name as a DNS label. */
export function nameFromPath(path: string): string {
  const stem = (path.split('/').pop() || '').replace(/\.[^.]*$/, '');
  return stem.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '') || 'from-notebook';
}
