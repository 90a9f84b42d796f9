/**
 * The panel's state: server info, the environments of a namespace, filters, and polling that
 * follows changes made elsewhere (the CLI, a magic, another tab) with a bounded interval.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { EnvmgrApi, IEnvironment, IInfo, Manager } from './api';

export interface IFilter {
  text: string;
  label: string; // "key" or "key=value"
  status: string; // '' for any
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

export function matches(env: IEnvironment, filter: IFilter): boolean {
  const text = filter.text.trim().toLowerCase();
  if (text && !`${env.name} ${env.description} ${env.packages}`.toLowerCase().includes(text)) {
    return false;
  }
  if (filter.status && env.status !== filter.status) {
    return false;
  }
  if (filter.label.trim()) {
    const [key, value] = filter.label.trim().split('=', 2);
    if (!(key in env.labels) || (value !== undefined && env.labels[key] !== value)) {
      return false;
    }
  }
  return true;
}

function requirementName(line: string): string {
  const match = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(line.split('#')[0]);
  return match ? match[1].toLowerCase().replace(/[-_.]+/g, '-') : '';
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

export class EnvironmentsModel {
  constructor(readonly api: EnvmgrApi) {}

  info: IInfo | null = null;
  environments: IEnvironment[] = [];
  error = '';
  filter: IFilter = { text: '', label: '', status: '' };
  /** How many lists have been taken: what follows the server (the log of a build) re-reads on it. */
  refreshes = 0;

  get namespace(): string {
    return this.api.namespace;
  }

  get visible(): IEnvironment[] {
    return this.environments.filter(env => matches(env, this.filter));
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
    this.environments = [];
    this._known.clear();
    await this.refresh();
  }

  async refresh(): Promise<void> {
    try {
      if (!this.info) {
        this.info = await this.api.info();
        if (!this.api.namespace && this.info.namespaces.length) {
          this.api.namespace = this.info.namespaces[0];
        }
      }
      const namespace = this.api.namespace;
      const environments = await this.api.list();
      if (namespace !== this.api.namespace) {
        return; // the user switched namespaces meanwhile: this answer is about the old one
      }
      this.observe(environments);
      this.error = '';
      this.refreshes++;
    } catch (e) {
      this.error = (e as Error).message;
    }
    this._changed.emit();
  }

  /** Take a fresh list; tell listeners when kernels appeared or disappeared. */
  observe(environments: IEnvironment[]): void {
    const readyNow = new Map(environments.filter(e => e.kernel_name).map(e => [e.name, e.ready_revision]));
    let kernels = readyNow.size !== this._known.size;
    for (const [name, revision] of readyNow) {
      kernels = kernels || this._known.get(name) !== revision;
    }
    this.environments = environments;
    this._known = readyNow;
    if (kernels) {
      this._kernelsChanged.emit();
    }
  }

  /** Poll every `seconds` (bounded) until `stop()`; faster while something builds. */
  start(seconds: number): void {
    this.stop();
    const interval = boundedInterval(seconds);
    const run = this._run;
    const tick = async () => {
      await this.refresh();
      if (run !== this._run) {
        return; // stopped or restarted while this refresh was in flight: one loop only
      }
      this._timer = setTimeout(tick, (this.busy ? Math.min(interval, 1) : interval) * 1000);
    };
    void tick();
  }

  stop(): void {
    this._run++;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  /** Something builds: the list is worth following closely. */
  get busy(): boolean {
    return this.environments.some(e => e.status === 'pending' || e.status === 'warming');
  }

  private _run = 0;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _known = new Map<string, number | null>();
  private _changed = new Signal<this, void>(this);
  private _kernelsChanged = new Signal<this, void>(this);
}
