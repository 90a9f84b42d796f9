/**
 * One environment in the main area, with room: a header (status, notice, actions) and tabs for the
 * overview (every field, editable where PATCH allows), packages (requested, base and installed, with
 * audit findings), revisions (what each asked for, lock differences, rollback), the build log
 * (followed with `?follow=1`, never re-downloaded) and resources (init script and what it set, and
 * how to use the environment elsewhere: the `run` line and the Kubernetes fragment).
 */
import { Clipboard } from '@jupyterlab/apputils';
import {
  copyIcon,
  deleteIcon,
  downloadIcon,
  notebookIcon,
  ReactWidget,
  refreshIcon,
  stopIcon,
  ToolbarButtonComponent
} from '@jupyterlab/ui-components';
import * as React from 'react';

import { ApiError, IAudit, IEnvironment, IEnvUsage, IPackage, IRevision, ISpec, IUsage } from './api';
import { SpecForm } from './createForm';
import { settleFocus } from './focus';
import { diffLocks, EnvironmentsModel, fixedPackages, oneLine, requestedNames, usageSentence } from './model';
import { useModel } from './panel';
import { AuditBadge, StatusBadge } from './status';

export interface IViewActions {
  openNotebook: (kernelName: string) => void;
  confirmDelete: (name: string) => Promise<boolean>;
  download: (filename: string, text: string) => void;
  /** The variables a kernel of this environment gets (its kernelspec's env), if the kernel is known. */
  kernelEnv: (kernelName: string) => Record<string, string> | null;
  /** Close the view and put the focus back on the environment's item in the side panel. */
  showInList: (name: string) => void;
  /** The environment is gone (deleted here or elsewhere). */
  closed: () => void;
  /** A copy made under a name asked of the user, asked again while the server refuses it (null: they cancelled). */
  cloneWithName: (name: string) => Promise<IEnvironment | null>;
  /** Ask before a rollback, saying who uses the environment. */
  confirmRollback: (name: string, revision: number, serving: number | null) => Promise<boolean>;
  /** Open another environment's view (a copy just made). */
  open: (name: string) => void;
}

export const TABS = ['Overview', 'Packages', 'Revisions', 'Build log', 'Resources'] as const;
export type Tab = (typeof TABS)[number];

function Tabs(props: { tab: Tab; setTab: (tab: Tab) => void; idBase: string }): JSX.Element {
  const refs = React.useRef<(HTMLButtonElement | null)[]>([]);
  const move = (e: React.KeyboardEvent, i: number) => {
    const next = e.key === 'ArrowRight' ? i + 1 : e.key === 'ArrowLeft' ? i - 1 : e.key === 'Home' ? 0 : e.key === 'End' ? TABS.length - 1 : null;
    if (next !== null) {
      e.preventDefault();
      const j = (next + TABS.length) % TABS.length;
      props.setTab(TABS[j]);
      refs.current[j]?.focus();
    }
  };
  return (
    <div className="jp-envmgr-tabs" role="tablist" aria-label="Environment sections">
      {TABS.map((t, i) => (
        <button key={t} role="tab" id={`${props.idBase}-tab-${i}`} aria-selected={t === props.tab} aria-controls={`${props.idBase}-panel`}
          tabIndex={t === props.tab ? 0 : -1} className={`jp-envmgr-tab${t === props.tab ? ' jp-mod-current' : ''}`}
          ref={el => (refs.current[i] = el)} onClick={() => props.setTab(t)} onKeyDown={e => move(e, i)}>
          {t}
        </button>
      ))}
    </div>
  );
}

function Fact(props: { term: string; children: React.ReactNode }): JSX.Element {
  return (
    <>
      <dt>{props.term}</dt>
      <dd>{props.children}</dd>
    </>
  );
}

function Pairs(props: { pairs: Record<string, string> }): JSX.Element {
  const entries = Object.entries(props.pairs);
  return entries.length ? (
    <ul className="jp-envmgr-pairs">
      {entries.map(([k, v]) => (
        <li key={k}><code>{k}</code> = <code>{v}</code></li>
      ))}
    </ul>
  ) : <span className="jp-envmgr-none">none</span>;
}

/** The newest revision there is (after a rollback the record's `revision` is the one rolled back to, not the newest). */
function latestLine(env: IEnvironment, revisions: IRevision[]): string {
  const newest = revisions.reduce<IRevision | null>((a, r) => (!a || r.revision > a.revision ? r : a), null);
  if (newest && newest.revision > env.revision) {
    return `${newest.revision} (${newest.status}); revision ${env.revision} was rolled back to`;
  }
  return `${env.revision} (${env.status})`;
}

export const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

export const when = (stamp: string | null | undefined) => (stamp ? new Date(stamp).toLocaleString() : '—');

/** What editing starts from: the record, but the build inputs of the serving revision when a later one failed or was cancelled. */
function editBase(env: IEnvironment, revisions: IRevision[]): Partial<ISpec> {
  const serving = revisions.find(r => r.revision === env.ready_revision);
  if (serving && (env.status === 'failed' || env.status === 'cancelled')) {
    return { ...env, ...(serving.inputs as Partial<ISpec>) };
  }
  return env;
}

function Overview(props: { model: EnvironmentsModel; env: IEnvironment; revisions: IRevision[]; proposal: Partial<ISpec> | null; clearProposal: () => void }): JSX.Element {
  const { model, env } = props;
  const [editing, setEditing] = React.useState(false);
  const base = React.useMemo(() => editBase(env, props.revisions), [editing, props.proposal]);
  const editRef = React.useRef<HTMLButtonElement>(null);
  const formOpen = editing || !!props.proposal;
  const wasOpen = React.useRef(formOpen);
  React.useEffect(() => {
    if (wasOpen.current && !formOpen) {
      editRef.current?.focus(); // the form closed (saved, discarded, Escape): back to the button that opened it
    }
    wasOpen.current = formOpen;
  }, [formOpen]);
  const close = () => {
    setEditing(false);
    props.clearProposal();
  };
  if (formOpen) {
    return <SpecForm model={model} env={env} initial={base} proposed={props.proposal ?? undefined} onDone={close} onCancel={close} />;
  }
  const failedLatest = env.status === 'failed' || env.status === 'cancelled';
  const serving = props.revisions.find(r => r.revision === env.ready_revision);
  return (
    <div className="jp-envmgr-overview">
      <button className="jp-mod-styled" ref={editRef} onClick={() => setEditing(true)}>Edit</button>
      {failedLatest && env.ready_revision !== null && (
        <p className="jp-envmgr-hint">Editing starts from revision {env.ready_revision}, the one serving (revision {env.revision} was {env.status}).</p>
      )}
      <dl className="jp-envmgr-facts">
        <Fact term="Description">{env.description || <span className="jp-envmgr-none">none</span>}</Fact>
        <Fact term="Python">{env.python}</Fact>
        <Fact term="Manager">{env.manager}</Fact>
        <Fact term="Serving">{env.ready_revision === null ? 'no ready revision yet' : `revision ${env.ready_revision}`}</Fact>
        <Fact term="Latest revision">{latestLine(env, props.revisions)}</Fact>
        <Fact term="Kernel">{env.kernel_name || '—'}</Fact>
        <Fact term="Owner">{model.ownerName(env.owner)}</Fact>
        <Fact term="Namespace">{env.namespace}</Fact>
        {env.cluster && model.clustered && <Fact term="Cluster">{env.cluster}</Fact>}
        <Fact term="Storage">{env.storage}</Fact>
        <Fact term="GPUs (for builds on a cluster)">{env.gpu}{model.info?.backend === 'local' ? ' (the local backend builds without GPUs: this only matters on Kubernetes)' : ''}</Fact>
        <Fact term="Created">{when(env.created)}</Fact>
        <Fact term="Updated">{when(env.updated)}</Fact>
        <Fact term="Prefix"><code>{env.prefix}</code></Fact>
        <Fact term="Labels"><Pairs pairs={env.labels} /></Fact>
        <Fact term="Annotations"><Pairs pairs={env.annotations} /></Fact>
        <Fact term="Kernel variables"><Pairs pairs={env.env_vars} /></Fact>
        <Fact term="Extra index URLs">
          {env.index_urls.length ? env.index_urls.map(u => <div key={u}><code>{u}</code></div>) : <span className="jp-envmgr-none">none</span>}
        </Fact>
        {failedLatest && serving && (
          <Fact term={`Revision ${serving.revision} (serving) asked for`}>
            <pre className="jp-envmgr-pre" aria-label="Serving packages">{String(serving.inputs.packages ?? '') || '(none)'}</pre>
          </Fact>
        )}
        <Fact term={failedLatest ? `Revision ${env.revision} (${env.status}) asked for` : 'Requested packages'}>
          <pre className="jp-envmgr-pre" aria-label="Requested packages">{env.packages || '(none)'}</pre>
        </Fact>
        <Fact term="Always installed">{env.base_packages.join(', ') || 'nothing'}</Fact>
        <Fact term="Init script">{env.init_script ? 'yes (see Resources)' : <span className="jp-envmgr-none">none</span>}</Fact>
      </dl>
    </div>
  );
}

function Findings(props: { audit: IAudit; propose: () => void }): JSX.Element {
  const { audit } = props;
  return (
    <section className="jp-envmgr-findings" aria-label="Known vulnerabilities">
      <h4>
        Known vulnerabilities in revision {audit.revision} <AuditBadge audit={audit} />
      </h4>
      <p className="jp-envmgr-hint">Checked {when(audit.checked)} against {audit.database}.</p>
      {audit.vulnerabilities.length > 0 && (
        <>
          <table className="jp-envmgr-table" aria-label="Vulnerabilities">
            <thead><tr><th>package</th><th>version</th><th>advisory</th><th>fixed in</th></tr></thead>
            <tbody>
              {audit.vulnerabilities.map(v => (
                <tr key={`${v.package}/${v.id}`}>
                  <td>{v.package}</td>
                  <td>{v.version}</td>
                  <td title={[v.id, ...v.aliases].join(', ')}><b>{v.id}</b> {v.summary}</td>
                  <td>{v.fixed_in.join(', ') || 'no fix yet'}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <button className="jp-mod-styled jp-mod-accept" onClick={props.propose} disabled={!audit.vulnerabilities.some(v => v.fixed_in.length)}>
            Update to fixed versions
          </button>
        </>
      )}
    </section>
  );
}

/** A package's role: the server's marks (`requested`, `base`) when it sends them, else worked out from the spec (older servers). */
export function packageRole(p: IPackage, requested: Set<string>, base: Set<string>): 'requested' | 'base' | 'dependency' {
  const key = p.name.toLowerCase().replace(/[-_.]+/g, '-');
  if (p.requested !== undefined || p.base !== undefined) {
    return p.requested ? 'requested' : p.base ? 'base' : 'dependency';
  }
  return requested.has(key) ? 'requested' : base.has(key) ? 'base' : 'dependency';
}

/** The requirement lines of a spec by normalized name (`numpy==2.1.*`), to show beside the installed version. */
export function specifiers(manager: string, text: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = manager === 'conda'
    ? text.split('\n').filter(l => /^\s*-\s/.test(l) && !l.trim().endsWith(':')).map(l => l.replace(/^\s*-\s*/, ''))
    : text.split('\n');
  for (const raw of lines) {
    const line = raw.split('#')[0].split(';')[0].replace(/\s+--hash\S*/g, '').trim();
    const match = /^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$/.exec(line);
    if (match && !line.startsWith('-')) {
      out.set(match[1].toLowerCase().replace(/[-_.]+/g, '-'), match[3].trim());
    }
  }
  return out;
}

function Packages(props: { model: EnvironmentsModel; env: IEnvironment; packages: IPackage[] | null; serving: string; propose: (spec: Partial<ISpec>) => void }): JSX.Element {
  const { env, model } = props;
  const [query, setQuery] = React.useState('');
  const requested = requestedNames(env.manager, props.serving);
  const asked = specifiers(env.manager, props.serving);
  const base = new Set(env.base_packages.map(n => n.toLowerCase().replace(/[-_.]+/g, '-')));
  const role = (p: IPackage) => packageRole(p, requested, base);
  const all = props.packages || [];
  const rows = all
    .filter(p => p.name.toLowerCase().includes(query.trim().toLowerCase()))
    .sort((a, b) => Number(role(b) === 'requested') - Number(role(a) === 'requested') || a.name.localeCompare(b.name));
  const audit = model.audits.get(env.name);
  const marked = all.some(p => p.required_by !== undefined);
  const source = (p: IPackage) => p.source || (env.manager === 'conda' ? 'conda channel' : env.index_urls.length ? '' : 'default index');
  const showSource = all.some(p => source(p));
  return (
    <div className="jp-envmgr-packages">
      {audit && (
        <Findings audit={audit} propose={() => props.propose({ packages: fixedPackages(env.manager, props.serving, audit) })} />
      )}
      <h4>Installed in revision {env.ready_revision ?? '—'}: {all.length} packages, {all.filter(p => role(p) === 'requested').length} requested</h4>
      <input type="search" aria-label="Search packages" placeholder="search packages" value={query} onChange={e => setQuery(e.target.value)} />
      {query.trim() && <span className="jp-envmgr-hint" role="status"> {rows.length} of {all.length} match</span>}
      {props.packages === null ? (
        <p>loading…</p>
      ) : (
        <table className="jp-envmgr-table" aria-label="Installed packages">
          <thead><tr><th>name</th><th>installed</th><th>asked for</th><th>why</th><th>required by</th>{showSource && <th>source</th>}</tr></thead>
          <tbody>
            {rows.map(p => {
              const key = p.name.toLowerCase().replace(/[-_.]+/g, '-');
              const spec = p.specifier ?? (role(p) === 'requested' ? asked.get(key) : undefined);
              return (
                <tr key={p.name} data-role={role(p)} data-name={key} className={role(p) === 'requested' ? 'jp-envmgr-requested' : undefined}>
                  <td>{p.name}</td>
                  <td>{p.version}</td>
                  <td>{spec === undefined ? '' : spec || 'any version'}</td>
                  <td>{role(p)}</td>
                  <td className="jp-envmgr-required-by">
                    {p.required_by === undefined ? (marked ? '' : <span className="jp-envmgr-none">not known</span>)
                      : p.required_by.length ? p.required_by.join(', ') : <span className="jp-envmgr-none">nothing</span>}
                  </td>
                  {showSource && <td>{source(p)}</td>}
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Revisions(props: { model: EnvironmentsModel; env: IEnvironment; revisions: IRevision[]; act: (what: () => Promise<unknown>) => void; rollback: (revision: number) => void }): JSX.Element {
  const { env, revisions } = props;
  const building = env.status === 'pending' || env.status === 'warming';
  const ids = revisions.filter(r => r.lock).map(r => r.revision); // only built revisions have a lock
  const [pair, setPair] = React.useState<[number, number] | null>(null);
  const [a, b] = pair ?? [ids[ids.length - 2] ?? ids[0], ids[ids.length - 1]];
  const ra = revisions.find(r => r.revision === a);
  const rb = revisions.find(r => r.revision === b);
  const diff = ra && rb ? diffLocks(ra.lock, rb.lock) : null;
  return (
    <div className="jp-envmgr-revisions">
      <table className="jp-envmgr-table" aria-label="Revisions">
        <thead><tr><th>revision</th><th>status</th><th>asked for</th><th>finished</th><th></th></tr></thead>
        <tbody>
          {[...revisions].reverse().map(r => (
            <tr key={r.revision} data-revision={r.revision}>
              <td>{r.revision}{r.current ? ' (serving)' : ''}</td>
              <td>
                <span className={`jp-envmgr-badge jp-envmgr-badge-${r.status}`}>{r.status}</span>
                {r.message && r.message !== r.status && <div className="jp-envmgr-reason">{r.message}</div>}
              </td>
              <td>
                <details>
                  <summary>Python {String(r.inputs.python ?? '')}, {plural(String(r.inputs.packages ?? '').split('\n').filter(l => l.trim()).length, 'line')}</summary>
                  <pre className="jp-envmgr-pre">{String(r.inputs.packages ?? '')}</pre>
                </details>
              </td>
              <td>{when(r.finished)}</td>
              <td>
                {r.status === 'ready' && !r.current && (
                  <button className="jp-mod-styled jp-envmgr-rollback" disabled={building} onClick={() => props.rollback(r.revision)}>
                    Roll back to {r.revision}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {ids.length > 1 && (
        <section aria-label="Lock difference">
          <h4>
            Lock difference:{' '}
            <select aria-label="From revision" value={a} onChange={e => setPair([Number(e.target.value), b])}>
              {ids.map(i => <option key={i} value={i}>{i}</option>)}
            </select>{' → '}
            <select aria-label="To revision" value={b} onChange={e => setPair([a, Number(e.target.value)])}>
              {ids.map(i => <option key={i} value={i}>{i}</option>)}
            </select>
          </h4>
          {diff && (diff.length ? (
            <ul className="jp-envmgr-diff">
              {diff.map(d => (
                <li key={d.name} className={`jp-envmgr-diff-${d.change}`}>
                  {d.change === 'added' ? '+' : d.change === 'removed' ? '−' : '~'} {d.name} {d.from ?? ''}{d.from && d.to ? ' → ' : ''}{d.to ?? ''}
                </li>
              ))}
            </ul>
          ) : <p>The locks are the same.</p>)}
        </section>
      )}
    </div>
  );
}

/** The build log of a revision, followed while it is written (one streamed request, not re-downloads). */
function BuildLog(props: { model: EnvironmentsModel; env: IEnvironment; revisions: IRevision[] }): JSX.Element {
  const { model, env } = props;
  const [revision, setRevision] = React.useState(env.revision);
  const [log, setLog] = React.useState('');
  const [state, setState] = React.useState<'following' | 'done' | string>('following');
  const ref = React.useRef<HTMLPreElement>(null);
  React.useEffect(() => setRevision(env.revision), [env.revision]);
  React.useEffect(() => {
    const controller = new AbortController();
    setLog('');
    setState('following');
    model.api.followLog(env.name, revision, text => setLog(l => l + text), controller.signal).then(
      () => !controller.signal.aborted && setState('done'),
      e => !controller.signal.aborted && setState((e as Error).message)
    );
    return () => controller.abort();
  }, [env.name, revision]);
  React.useEffect(() => {
    const pre = ref.current;
    if (pre) {
      pre.scrollTop = pre.scrollHeight;
    }
  }, [log]);
  const ids = props.revisions.map(r => r.revision);
  return (
    <div className="jp-envmgr-buildlog">
      <label>
        Revision{' '}
        <select aria-label="Log of revision" value={revision} onChange={e => setRevision(Number(e.target.value))}>
          {[...new Set([...ids, env.revision])].map(i => <option key={i} value={i}>{i}</option>)}
        </select>
      </label>{' '}
      <span className="jp-envmgr-hint" aria-live="polite">{state === 'following' ? 'following…' : state === 'done' ? 'complete' : state}</span>
      <pre className="jp-envmgr-log" ref={ref} aria-label="Build log" tabIndex={0}>{log || 'no log yet'}</pre>
    </div>
  );
}

/** Put text on the clipboard: the asynchronous clipboard API, else the copy command (an insecure origin, an older browser). */
export async function copyText(text: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    Clipboard.copyToSystem(text);
  }
}

/** A block of text to paste elsewhere, with its Copy button (which says when it copied). */
function CopyBlock(props: { label: string; text: string }): JSX.Element {
  const [copied, setCopied] = React.useState(false);
  React.useEffect(() => {
    if (!copied) {
      return;
    }
    const timer = setTimeout(() => setCopied(false), 3000); // said for a moment, then back to Copy
    return () => clearTimeout(timer);
  }, [copied, props.text]);
  return (
    <div className="jp-envmgr-copyblock">
      <div className="jp-envmgr-copyblock-head">
        <span className="jp-envmgr-copyblock-label">{props.label}</span>
        <ToolbarButtonComponent icon={copyIcon} label={copied ? 'Copied' : 'Copy'} tooltip={`Copy the ${props.label.toLowerCase()} to the clipboard`}
          className="jp-envmgr-copy" onClick={() => void copyText(props.text).then(() => setCopied(true))} />
      </div>
      <pre className="jp-envmgr-pre" aria-label={props.label} tabIndex={0}>{props.text}</pre>
    </div>
  );
}

/** The serving revision outside a notebook: a command in a terminal, and a pod for a Job, a Deployment or a training operator. */
function UseElsewhere(props: { env: IEnvironment; usage: IUsage | null | undefined | string }): JSX.Element {
  const { usage } = props;
  let body: JSX.Element;
  if (usage === undefined) {
    body = <p>loading…</p>;
  } else if (usage === null) {
    body = <p className="jp-envmgr-none">Nothing to show yet: {props.env.name} has no ready revision. The command and the pod fragment appear when a build is ready.</p>;
  } else if (typeof usage === 'string') {
    body = <div className="jp-envmgr-error" role="alert">{usage}</div>;
  } else {
    body = (
      <>
        <p className="jp-envmgr-hint">Revision {usage.revision} (Python {props.env.python}) serves now. In a terminal, a command runs with this environment's interpreter first on <code>PATH</code> and the variables its kernels get:</p>
        <CopyBlock label="Run command" text={usage.run} />
        <p className="jp-envmgr-hint">In Kubernetes: merge this into a Job's, a Deployment's or a training operator's pod template (the volume, mounted at the same path, and the variables):</p>
        <CopyBlock label="Pod fragment (YAML)" text={usage.yaml} />
      </>
    );
  }
  return (
    <section className="jp-envmgr-elsewhere" aria-label="Use elsewhere">
      <h4>Use elsewhere</h4>
      {body}
    </section>
  );
}

/** Who uses the environment: kernels running now and the starts of the last days (`/usage` `kernels`, `recent`). */
function WhoUses(props: { model: EnvironmentsModel; usage: IEnvUsage | null }): JSX.Element | null {
  const { usage, model } = props;
  if (!usage) {
    return null;
  }
  const rows = (list: IEnvUsage['kernels'], label: string) => (
    <table className="jp-envmgr-table" aria-label={label}>
      <thead><tr><th>user</th><th>notebook</th><th>revision</th><th>started</th><th>last activity</th></tr></thead>
      <tbody>
        {(list || []).map((u, i) => (
          <tr key={`${u.user}/${u.notebook}/${u.started}/${i}`}>
            <td>{model.ownerName(u.user)}</td>
            <td><code>{u.notebook}</code></td>
            <td>{u.revision}</td>
            <td>{when(u.started)}</td>
            <td>{when(u.last_activity)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
  return (
    <section className="jp-envmgr-usage" aria-label="Who uses it">
      <h4>Who uses it</h4>
      <p>{usageSentence(usage)}{usage.last_used ? ` · last used ${when(usage.last_used)}` : ''}</p>
      {usage.kernels && usage.kernels.length > 0 && rows(usage.kernels, 'Kernels running now')}
      {usage.recent && usage.recent.length > 0 && (
        <details>
          <summary>Kernel starts kept ({usage.recent.length})</summary>
          {rows(usage.recent, 'Recent kernel starts')}
        </details>
      )}
    </section>
  );
}

function Resources(props: { env: IEnvironment; kernelEnv: Record<string, string> | null; usage: IUsage | null | undefined | string }): JSX.Element {
  const { env } = props;
  const set = Object.fromEntries(Object.entries(props.kernelEnv || {}).filter(([k]) => !(k in env.env_vars) && k !== 'PYTHONPATH'));
  return (
    <div className="jp-envmgr-resources">
      <h4>Init script</h4>
      {env.init_script ? <pre className="jp-envmgr-pre" aria-label="Init script">{env.init_script}</pre> : <p className="jp-envmgr-none">none (add one with Edit on the Overview)</p>}
      <h4>Variables set for kernels</h4>
      <p className="jp-envmgr-hint">Declared by the environment:</p>
      <Pairs pairs={env.env_vars} />
      <p className="jp-envmgr-hint">Set by the init script (the lines it wrote to <code>ENVMGR_ENV_FILE</code>) and by the environment itself:</p>
      {props.kernelEnv ? <div aria-label="Variables set for kernels"><Pairs pairs={set} /></div> : <p className="jp-envmgr-none">no kernel yet</p>}
      <UseElsewhere env={env} usage={props.usage} />
    </div>
  );
}

function View(props: { model: EnvironmentsModel; name: string; namespace: string; cluster: string; actions: IViewActions; tab: Tab; setTab: (t: Tab) => void }): JSX.Element {
  const { model, name, actions } = props;
  useModel(model);
  const elsewhere = model.namespace !== props.namespace || model.cluster !== props.cluster; // the list shows another namespace now
  const env = elsewhere ? undefined : model.find(name);
  const [packages, setPackages] = React.useState<IPackage[] | null>(null);
  const [revisions, setRevisions] = React.useState<IRevision[]>([]);
  const [error, setError] = React.useState('');
  const [proposal, setProposal] = React.useState<Partial<ISpec> | null>(null);
  const [usage, setUsage] = React.useState<IUsage | null | undefined | string>(undefined);
  const [use, setUse] = React.useState<IEnvUsage | null>(null);
  const [outcome, setOutcome] = React.useState('');
  const key = env ? `${env.status}/${env.revision}/${env.ready_revision}` : '';
  const serving = env ? `${env.ready_revision}/${env.kernel_name}` : '';
  React.useEffect(() => {
    if (env) {
      void model.usage(name).then(setUsage, e => setUsage((e as Error).message)); // a new serving revision: a new fragment
    }
  }, [serving]);
  React.useEffect(() => {
    if (!env) {
      return;
    }
    void model.api.packages(name).then(setPackages, () => setPackages([]));
    void model.api.revisions(name).then(setRevisions, () => setRevisions([]));
    void model.api.envUsage(name).then(setUse, () => setUse(null));
  }, [key]);

  const gone = !env && !elsewhere && !model.deleting.has(name);
  React.useEffect(() => {
    if (gone && model.info) {
      actions.closed();
    }
  }, [gone]);
  if (elsewhere) {
    return (
      <div className="jp-envmgr-view">
        <p>{name} is in namespace {props.namespace}; the list shows {model.namespace}.</p>
        <button className="jp-mod-styled" onClick={() => void model.setNamespace(props.namespace)}>Show namespace {props.namespace}</button>
      </div>
    );
  }
  if (!env) {
    return <div className="jp-envmgr-view"><p>{model.deleting.has(name) ? `Deleting ${name}…` : `${name} is gone.`}</p></div>;
  }
  const building = env.status === 'pending' || env.status === 'warming';
  const deleting = model.deleting.has(name);
  /** Run an action; its outcome is said in the header (what happened), or its refusal (what to do). */
  const act = async (what: () => Promise<unknown>, said?: (result: unknown) => string) => {
    setError('');
    setOutcome('');
    try {
      const result = await what();
      if (said) {
        setOutcome(said(result));
      }
    } catch (e) {
      setError(model.withNames((e as ApiError).message));
    }
  };
  const rollback = (revision: number) => void act(async () => {
    if (!(await actions.confirmRollback(name, revision, env.ready_revision))) {
      return null;
    }
    const done = await model.api.action(name, 'rollback', revision);
    model.apply({ type: 'upsert', environment: done });
    return done;
  }, done => (done ? `Rolled back to ${revision}: new kernels start on revision ${revision}; running kernels keep theirs until they restart.` : ''));
  const firstFailure = env.ready_revision === null && (env.status === 'failed' || env.status === 'cancelled');
  const idBase = `envmgr-view-${env.namespace}-${name}`;
  return (
    <div className="jp-envmgr-view" aria-label={`Environment ${name}`}>
      <div className="jp-envmgr-view-head">
        <h2 tabIndex={-1} className="jp-envmgr-view-title">{env.name}</h2>
        <StatusBadge env={env} />
        <AuditBadge audit={model.audits.get(name)} />
        {deleting && <span className="jp-envmgr-notice" role="status">Deleting… (cancelling any build, removing the kernel and files)</span>}
      </div>
      {firstFailure && (
        <p className="jp-envmgr-notice jp-envmgr-notice-failed jp-envmgr-reason-top" role="status">
          Revision {env.revision} {env.status}{env.message ? `: ${oneLine(env.message)}` : ''}{env.status === 'failed' ? ' (the full output is in the Build log)' : ''}
        </p>
      )}
      {outcome && <p className="jp-envmgr-outcome" role="status">{outcome}</p>}
      {env.description && <p className="jp-envmgr-description">{env.description}</p>}
      <div className="jp-envmgr-actions jp-Toolbar" role="toolbar" aria-label="Actions">
        <ToolbarButtonComponent icon={notebookIcon} label="New notebook" tooltip={env.kernel_name ? `New notebook on ${env.kernel_name}` : 'No revision is ready yet'}
          enabled={!!env.kernel_name && !deleting} onClick={() => env.kernel_name && actions.openNotebook(env.kernel_name)} />
        <ToolbarButtonComponent icon={refreshIcon} label="Rebuild" tooltip="Build the same inputs again as a new revision"
          enabled={!building && !deleting} onClick={() => void act(() => model.api.action(name, 'rebuild'), r => `Rebuild started: revision ${(r as IEnvironment).revision} builds; revision ${env.ready_revision ?? '—'} keeps serving until it is ready.`)} />
        <ToolbarButtonComponent icon={stopIcon} label="Cancel build" tooltip="Stop the build of the latest revision"
          enabled={building && !deleting} onClick={() => void act(() => model.api.action(name, 'cancel'), () => `Cancelled the build of revision ${env.revision}.`)} />
        <ToolbarButtonComponent icon={downloadIcon} label="Lock" tooltip="Download the pinned lock of the serving revision"
          enabled={!!env.ready_revision} onClick={() => void act(async () => actions.download(`${name}.lock.txt`, await model.api.exportText(name, 'requirements')))} />
        <ToolbarButtonComponent icon={downloadIcon} label="Spec" tooltip="Download the inputs as JSON (re-importable)"
          onClick={() => void act(async () => actions.download(`${name}.json`, await model.api.exportText(name, 'spec')))} />
        <ToolbarButtonComponent icon={copyIcon} label="Clone" tooltip="A new environment with the same inputs, in the same namespace and cluster"
          enabled={!deleting} onClick={() => void act(async () => {
            const copy = await actions.cloneWithName(name);
            if (copy) {
              model.apply({ type: 'upsert', environment: copy });
              actions.open(copy.name);
            }
          })} />
        <ToolbarButtonComponent icon={deleteIcon} label="Delete" tooltip="Delete the environment, its kernel and every revision"
          enabled={!deleting} className="jp-envmgr-delete"
          onClick={() => void act(async () => {
            if (await actions.confirmDelete(name)) {
              await model.remove(name);
            }
          })} />
        <ToolbarButtonComponent label="Show in list" tooltip="Close this view and go back to the list" onClick={() => actions.showInList(name)} />
      </div>
      {error && <div className="jp-envmgr-error" role="alert">{error}</div>}
      <Tabs tab={props.tab} setTab={props.setTab} idBase={idBase} />
      <div className="jp-envmgr-tabpanel" role="tabpanel" id={`${idBase}-panel`} aria-labelledby={`${idBase}-tab-${TABS.indexOf(props.tab)}`}>
        {props.tab === 'Overview' && <Overview model={model} env={env} revisions={revisions} proposal={proposal} clearProposal={() => setProposal(null)} />}
        {props.tab === 'Packages' && (
          <Packages model={model} env={env} packages={packages} serving={editBase(env, revisions).packages ?? env.packages} propose={spec => {
            setProposal(spec);
            props.setTab('Overview');
          }} />
        )}
        {props.tab === 'Revisions' && <Revisions model={model} env={env} revisions={revisions} act={what => void act(what)} rollback={rollback} />}
        {props.tab === 'Build log' && <BuildLog model={model} env={env} revisions={revisions} />}
        {props.tab === 'Resources' && <Resources env={env} kernelEnv={env.kernel_name ? actions.kernelEnv(env.kernel_name) : null} usage={usage} />}
        {props.tab === 'Overview' && <WhoUses model={model} usage={use} />}
      </div>
    </div>
  );
}

/** The content of one environment's main-area tab. */
export class EnvironmentView extends ReactWidget {
  constructor(readonly model: EnvironmentsModel, readonly envName: string, private readonly actions: IViewActions) {
    super();
    this.namespace = model.namespace;
    this.cluster = model.cluster;
    this.addClass('jp-envmgr-main');
  }

  tab: Tab = 'Overview';
  readonly namespace: string;
  readonly cluster: string;

  setTab(tab: Tab): void {
    this.tab = tab;
    this.update();
  }

  /** Put the focus on the view's title (after Create, after opening from the list). */
  focusTitle(): void {
    settleFocus(this.node, () => this.node.querySelector<HTMLElement>('.jp-envmgr-view-title'));
  }

  render(): JSX.Element {
    return <View model={this.model} name={this.envName} namespace={this.namespace} cluster={this.cluster} actions={this.actions} tab={this.tab} setTab={t => this.setTab(t)} />;
  }
}

/** The create form in the main area (prefilled from a notebook's suggestion, when it comes from one). */
export class CreateView extends ReactWidget {
  constructor(
    readonly model: EnvironmentsModel,
    private readonly done: (env: IEnvironment) => void,
    private readonly cancel: () => void,
    private readonly requested?: () => void
  ) {
    super();
    this.addClass('jp-envmgr-main');
  }

  prefill(initial: Partial<ISpec> | undefined, unresolved: string[] = []): void {
    this._initial = initial;
    this._unresolved = unresolved;
    this._generation++;
    this.update();
  }

  focusFirstControl(): void {
    settleFocus(this.node, () => this.node.querySelector<HTMLElement>('input, select, textarea'));
  }

  render(): JSX.Element {
    return this.model.info ? (
      <div className="jp-envmgr-view">
        <SpecForm key={this._generation} model={this.model} initial={this._initial} unresolved={this._unresolved}
          onDone={async env => {
            if (env.namespace !== this.model.namespace) {
              await this.model.setNamespace(env.namespace); // its list may come later than the view opens
            }
            this.model.apply({ type: 'upsert', environment: env });
            this.done(env);
          }}
          onCancel={this.cancel}
          onRequested={this.requested} />
      </div>
    ) : <p>loading…</p>;
  }

  private _initial: Partial<ISpec> | undefined;
  private _unresolved: string[] = [];
  private _generation = 0;
}
