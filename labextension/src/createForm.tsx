/**
 * The environment form, for a new environment and for editing one: every field of the record,
 * checked as the user types by the server's own validation (`?dry_run=1`, debounced), with each
 * refusal beside the field and row it names; nothing typed is ever lost.
 */
import * as React from 'react';

import { ApiError, IChanges, IDryRun, IEnvironment, IEnvRequest, IInfo, IPackageHit, ISpec, Manager } from './api';
import { clusterOf, EnvironmentsModel, isNamespaceRefusal, mergePackages } from './model';
import { IFormState, pairsToObject, rowOf, validateForm } from './validation';

const HINTS: Record<Manager, string> = {
  pip: 'requirements.txt: one requirement per line, e.g.\nnumpy==2.1.*\npandas',
  conda: 'environment.yaml, e.g.\nchannels:\n  - conda-forge\ndependencies:\n  - numpy>=2\n  - pip:\n    - six'
};

/** Fields that start a new revision when changed (the server's BUILD_INPUTS): said before saving. */
export const BUILD_INPUTS = ['manager', 'python', 'packages', 'index_urls', 'gpu', 'init_script'];

export interface IForm extends IFormState {
  python: string;
  description: string;
  storage: string;
  namespace: string;
  cluster: string;
  initScript: string;
}

/** The form fields a server message can name; a message about anything else shows at the bottom. */
const SHOWN_FIELDS = ['name', 'namespace', 'cluster', 'python', 'manager', 'packages', 'index_urls', 'labels', 'annotations', 'env_vars', 'description', 'gpu', 'storage', 'init_script'];

export const DEBOUNCE_MS = 400;

function ErrorText(props: { id: string; error?: string }): JSX.Element | null {
  return props.error ? (
    <div className="jp-envmgr-error" id={`${props.id}-error`} role="alert">
      {props.error}
    </div>
  ) : null;
}

/** One labelled control (input, select, textarea) with its problem under it. */
function Field(props: { id: string; label: string; error?: string; hint?: string; children: React.ReactElement }): JSX.Element {
  const described = [props.hint ? `${props.id}-hint` : '', props.error ? `${props.id}-error` : ''].filter(Boolean).join(' ');
  const control = React.cloneElement(props.children, {
    id: props.id,
    'aria-invalid': !!props.error,
    'aria-describedby': described || undefined
  });
  return (
    <div className="jp-envmgr-field">
      <label htmlFor={props.id}>{props.label}</label>
      {props.hint && <div className="jp-envmgr-hint" id={`${props.id}-hint`}>{props.hint}</div>}
      {control}
      <ErrorText id={props.id} error={props.error} />
    </div>
  );
}

/** The requirement name being typed on the line at `caret`, if that line is nothing but the start of a name. */
export function typedName(text: string, caret: number): { name: string; start: number; end: number } | null {
  const start = text.lastIndexOf('\n', caret - 1) + 1;
  const endAt = text.indexOf('\n', caret);
  const end = endAt < 0 ? text.length : endAt;
  const line = text.slice(start, end);
  const match = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*$/.exec(line);
  return match && match[1].length >= 2 ? { name: match[1], start, end } : null;
}

/** The line `name==version` in place of the name being typed. */
export function withPick(text: string, at: { start: number; end: number }, name: string, version: string): string {
  const line = version ? `${name}==${version}` : name;
  const rest = text.slice(at.end);
  return text.slice(0, at.start) + line + (rest.startsWith('\n') ? rest : '\n' + rest);
}

/** Names and versions from the configured index while a requirement name is typed (debounced; the newest answer wins). */
function usePackageSearch(model: EnvironmentsModel, query: string, enabled: boolean): { hits: IPackageHit[]; error: string; pending: boolean } {
  const [state, setState] = React.useState<{ query: string; hits: IPackageHit[]; error: string }>({ query: '', hits: [], error: '' });
  const latest = React.useRef(query);
  latest.current = query;
  React.useEffect(() => {
    if (!enabled || !query) {
      return;
    }
    const timer = setTimeout(() => {
      model.api.searchPackages(query).then(
        hits => latest.current === query && setState({ query, hits, error: '' }),
        e => latest.current === query && setState({ query, hits: [], error: (e as ApiError).status === 404 ? '' : (e as Error).message })
      );
    }, 250);
    return () => clearTimeout(timer);
  }, [query, enabled]);
  return state.query === query ? { ...state, pending: false } : { hits: [], error: '', pending: enabled && !!query };
}

/** What a dry run says a save would change, against the serving lock: downgrades and major upgrades stand out. */
export function ChangesList(props: { changes: IChanges }): JSX.Element {
  const { python, packages } = props.changes;
  if (!python && !packages.length) {
    return <p className="jp-envmgr-hint" id="envmgr-changes">Nothing would change in the installed packages.</p>;
  }
  return (
    <section id="envmgr-changes" aria-label="What would change" className="jp-envmgr-changes">
      <h4>What would change (resolved, not installed)</h4>
      <ul className="jp-envmgr-diff">
        {python && <li className="jp-envmgr-diff-major">Python {python.from} → {python.to}</li>}
        {packages.map(c => (
          <li key={c.name} data-change={c.change} data-major={c.major}
            className={`jp-envmgr-diff-${c.change === 'upgraded' || c.change === 'downgraded' ? 'changed' : c.change}${c.change === 'downgraded' || c.major ? ' jp-envmgr-diff-major' : ''}`}>
            {c.change === 'added' ? '+' : c.change === 'removed' ? '−' : c.change === 'downgraded' ? '↓' : '↑'} {c.name}{' '}
            {c.from ?? ''}{c.from && c.to ? ' → ' : ''}{c.to ?? ''}
            {c.change === 'downgraded' ? ' (downgrade)' : ''}{c.major ? ' (major)' : ''}{c.requested ? '' : ' · dependency'}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** A group of controls (radio buttons, rows) under a legend; its problem under the row it names, else under the group. */
function Group(props: { id: string; legend: string; error?: string; children: React.ReactNode }): JSX.Element {
  return (
    <fieldset className="jp-envmgr-field" id={props.id} aria-describedby={props.error ? `${props.id}-error` : undefined}>
      <legend>{props.legend}</legend>
      {props.children}
      <ErrorText id={props.id} error={props.error} />
    </fieldset>
  );
}

/**
 * Editable rows of strings: extra index URLs are rows of one, labels and the like rows of two. A new
 * row takes the focus; an error that names a row sits under that row.
 */
function Rows<T extends string[]>(props: { id: string; what: string; columns: string[]; rows: T[]; empty: T; error?: string; onChange: (rows: T[]) => void }): JSX.Element {
  const added = React.useRef(false);
  const first = React.useRef<HTMLInputElement | null>(null);
  React.useEffect(() => {
    if (added.current) {
      added.current = false;
      first.current?.focus();
    }
  }, [props.rows.length]);
  const set = (i: number, j: number, value: string) =>
    props.onChange(props.rows.map((row, k) => (k === i ? (row.map((cell, c) => (c === j ? value : cell)) as T) : row)));
  const at = props.error ? rowOf(props.error, props.rows.map(r => r[0].trim())) : -1;
  return (
    <>
      {props.rows.map((row, i) => (
        <React.Fragment key={i}>
          <div className="jp-envmgr-pair">
            {row.map((cell, j) => (
              <input key={j} aria-label={[props.what, props.columns[j], i + 1].filter(Boolean).join(' ')} placeholder={props.columns[j] || props.what}
                value={cell} onChange={e => set(i, j, e.target.value)} aria-invalid={at === i}
                aria-describedby={at === i ? `${props.id}-error` : undefined}
                ref={i === props.rows.length - 1 && j === 0 ? first : undefined} />
            ))}
            <button type="button" className="jp-mod-styled jp-envmgr-remove" aria-label={`remove ${props.what} ${i + 1}`} title={`Remove ${props.what} ${i + 1}`}
              onClick={() => props.onChange(props.rows.filter((_, k) => k !== i))}>
              ×
            </button>
          </div>
          {at === i && <ErrorText id={props.id} error={`${props.what} ${i + 1}: ${props.error}`} />}
        </React.Fragment>
      ))}
      {props.error && at < 0 && <ErrorText id={props.id} error={props.error} />}
      <button type="button" className="jp-mod-styled jp-envmgr-add" onClick={() => {
        added.current = true;
        props.onChange([...props.rows, props.empty]);
      }}>
        Add {props.what}
      </button>
    </>
  );
}

const pairs = (o: Record<string, string> | undefined): [string, string][] => Object.entries(o || {});

/** A form from an existing record (editing), or a new one with the server's defaults, and any prefill (a notebook's suggestion). */
export function initialForm(info: IInfo, namespace: string, from?: Partial<ISpec>): IForm {
  const cluster = from?.cluster || clusterOf(info, from?.namespace || namespace);
  return {
    name: from?.name || '',
    manager: from?.manager || 'pip',
    python: from?.python || info.default_python || info.python_versions[info.python_versions.length - 1] || '',
    packages: from?.packages || '',
    indexUrls: from?.index_urls || [],
    labels: pairs(from?.labels),
    annotations: pairs(from?.annotations),
    envVars: pairs(from?.env_vars),
    gpu: String(from?.gpu ?? 0),
    description: from?.description || '',
    storage: from?.storage || info.storages[0]?.name || 'default',
    namespace: inCluster(info, cluster, from?.namespace || namespace),
    cluster,
    initScript: from?.init_script || ''
  };
}

/** The namespaces a cluster offers (all of `/info` `namespaces` on a server that lists no clusters). */
export function namespacesOf(info: IInfo, cluster: string): string[] {
  return info.clusters?.find(c => c.name === cluster)?.namespaces || info.namespaces;
}

/** `namespace` if the cluster offers it, else the cluster's first (a namespace belongs to one cluster). */
function inCluster(info: IInfo, cluster: string, namespace: string): string {
  const offered = namespacesOf(info, cluster);
  return offered.includes(namespace) || !offered.length ? namespace : offered[0];
}

/** The form after the user picks another cluster: that cluster's first namespace, unless the namespace is also its own. */
export function withCluster(info: IInfo, form: IForm, cluster: string): IForm {
  return { ...form, cluster, namespace: inCluster(info, cluster, form.namespace) };
}

export function toSpec(form: IForm): ISpec {
  const spec: ISpec = {
    name: form.name,
    manager: form.manager,
    python: form.python,
    packages: form.packages,
    index_urls: form.indexUrls.map(u => u.trim()).filter(Boolean),
    description: form.description,
    labels: pairsToObject(form.labels),
    annotations: pairsToObject(form.annotations),
    env_vars: pairsToObject(form.envVars),
    gpu: Number(form.gpu),
    storage: form.storage,
    namespace: form.namespace,
    init_script: form.initScript
  };
  if (form.cluster) {
    spec.cluster = form.cluster;
  }
  return spec;
}

/** The PATCH of an edit: the fields PATCH takes that differ from the base. */
export function changedFields(base: IForm, form: IForm): Partial<ISpec> {
  const a = toSpec(base) as unknown as Record<string, unknown>;
  const b = toSpec(form) as unknown as Record<string, unknown>;
  const patchable = ['packages', 'python', 'index_urls', 'env_vars', 'labels', 'annotations', 'description', 'gpu', 'init_script'];
  const out: Record<string, unknown> = {};
  for (const key of patchable) {
    if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) {
      out[key] = b[key];
    }
  }
  return out as Partial<ISpec>;
}

/**
 * Ask the server what it thinks of `request()` a moment after the user stops typing; the newest
 * question wins (an older answer arriving late is dropped).
 */
function useDryRun<T>(key: string, enabled: boolean, request: () => Promise<T>): { error: ApiError | null; result: T | null; pending: boolean } {
  const [state, setState] = React.useState<{ key: string; error: ApiError | null; result: T | null }>({ key: '', error: null, result: null });
  const latest = React.useRef(key);
  latest.current = key;
  React.useEffect(() => {
    if (!enabled) {
      return;
    }
    const timer = setTimeout(() => {
      request().then(
        result => latest.current === key && setState({ key, error: null, result }),
        error => latest.current === key && setState({ key, error: error instanceof ApiError ? error : new ApiError(0, String(error), ''), result: null })
      );
    }, DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [key, enabled]);
  return state.key === key ? { ...state, pending: false } : { error: null, result: null, pending: enabled };
}

export interface ISpecFormProps {
  model: EnvironmentsModel;
  /** The environment being edited; none for a new one. */
  env?: IEnvironment;
  /** The starting values: the record (or its serving revision's inputs), or a notebook's suggestion. */
  initial?: Partial<ISpec>;
  /** Changes proposed to the user on top of `initial` (the fixed versions of an audit): shown as unsaved edits. */
  proposed?: Partial<ISpec>;
  /** Imports of a notebook that no distribution was found for, shown above the packages. */
  unresolved?: string[];
  onDone: (env: IEnvironment) => void | Promise<void>;
  onCancel: () => void;
  /** A user who may not create in the namespace asked for the environment instead (202). */
  onRequested?: (request: IEnvRequest) => void | Promise<void>;
}

export function SpecForm(props: ISpecFormProps): JSX.Element {
  const { model, env } = props;
  const info = model.info as IInfo;
  const editing = !!env;
  const condaReason = info.managers.includes('conda')
    ? ''
    : 'not available: this server has no conda solver right now (GET /info does not list conda)';
  const base = React.useMemo(() => initialForm(info, model.namespace, props.initial), [props.initial]);
  // Closing without saving keeps what was typed: reopening the form (or Edit) starts from that draft.
  const draftKey = editing ? `edit:${env.namespace}/${env.name}` : props.initial ? '' : 'create';
  const draft = draftKey && !props.proposed ? (model.drafts.get(draftKey) as IForm | undefined) : undefined;
  const [form, setForm] = React.useState<IForm>(() => draft ?? initialForm(info, model.namespace, { ...props.initial, ...props.proposed }));
  const [fromDraft, setFromDraft] = React.useState(!!draft);
  const pristine = React.useMemo(() => JSON.stringify(initialForm(info, model.namespace, props.initial)), [props.initial]);
  React.useEffect(() => {
    if (draftKey && JSON.stringify(form) !== pristine) {
      model.drafts.set(draftKey, form);
    } else if (draftKey) {
      model.drafts.delete(draftKey);
    }
  }, [form]);
  const clearDraft = () => {
    if (draftKey) {
      model.drafts.delete(draftKey);
    }
  };
  const packagesRef = React.useRef<HTMLTextAreaElement>(null);
  const [caret, setCaret] = React.useState(-1);
  const typing = form.manager === 'pip' && caret >= 0 ? typedName(form.packages, caret) : null;
  const search = usePackageSearch(model, typing?.name ?? '', !!typing);
  const pick = (hit: IPackageHit, version: string) => {
    if (!typing) {
      return;
    }
    const packages = withPick(form.packages, typing, hit.name, version);
    update({ packages });
    const at = typing.start + (version ? `${hit.name}==${version}` : hit.name).length + 1;
    setCaret(-1);
    requestAnimationFrame(() => {
      packagesRef.current?.focus();
      packagesRef.current?.setSelectionRange(at, at);
    });
  };
  const [submitError, setSubmitError] = React.useState<{ field: string; message: string; reason?: string } | null>(null);
  const [busy, setBusy] = React.useState(false);
  const [tried, setTried] = React.useState(false);
  const changes = editing ? changedFields(base, form) : {};
  const dry = useDryRun<IDryRun>(
    JSON.stringify(editing ? changes : toSpec(form)),
    model.api.dryRuns && (!editing || Object.keys(changes).length > 0),
    () => (editing ? model.api.update(env.name, changes, true) : model.api.create(toSpec(form), true))
  );
  const problems = validateForm(form);
  const errors: Record<string, string> = { ...problems };
  const server = submitError ?? (dry.error ? { field: dry.error.field || 'form', message: dry.error.message, reason: dry.error.reason } : null);
  // The namespace is not the user's to write: a create would be refused, a request may be granted.
  // Only the namespace's write permission can be granted by a request: a policy's refusal (an index URL, an option line) cannot.
  const namespaceRefused = !editing && !!server && server.reason === 'forbidden' && isNamespaceRefusal({ ...server, field: server.field === 'form' ? null : server.field });
  const mayRequest = namespaceRefused && !!props.onRequested && !Object.keys(problems).length;
  if (server && !mayRequest) {
    errors[SHOWN_FIELDS.includes(server.field) ? server.field : 'form'] = model.withNames(server.message);
  }
  if (!form.name && !tried && !editing) {
    delete errors.name; // not a mistake yet: the user has not reached the name
  }
  const update = (next: Partial<IForm>) => {
    setForm(current => ({ ...current, ...next }));
    setSubmitError(null);
  };
  const presets = info.presets.filter(p => p.manager === form.manager);
  const rebuilds = editing && (dry.result ? dry.result.revision > env.revision : Object.keys(changes).some(k => BUILD_INPUTS.includes(k)));
  const nextRevision = editing ? (dry.result && rebuilds ? dry.result.revision : env.revision + 1) : 1;

  const submit = async () => {
    setTried(true);
    if (Object.keys(problems).length || busy || (editing && !Object.keys(changes).length)) {
      return;
    }
    setBusy(true);
    try {
      const done = editing ? await model.api.update(env.name, changes) : await model.api.create(toSpec(form));
      setBusy(false);
      clearDraft();
      await props.onDone(done);
    } catch (e) {
      const error = e as ApiError;
      setSubmitError({ field: error.field || 'form', message: error.message, reason: error.reason });
      setBusy(false);
    }
  };
  const request = async () => {
    setBusy(true);
    try {
      const done = await model.requestEnvironment(toSpec(form));
      setBusy(false);
      clearDraft();
      await props.onRequested?.(done);
    } catch (e) {
      const error = e as ApiError; // the same 4xx as a create, now about the fields
      setSubmitError({ field: error.field || 'form', message: error.message, reason: error.reason === 'forbidden' ? 'request_refused' : error.reason });
      setBusy(false);
    }
  };
  const clusters = info.clusters || [];
  const namespaces = namespacesOf(info, form.cluster);
  const problemCount = Object.keys(problems).filter(k => k !== 'name' || form.name || tried || editing).length;
  // Why Save or Create cannot be pressed now, said beside it.
  const why = editing && !Object.keys(changes).length ? 'Nothing to save yet: change a field.'
    : !editing && !form.name ? 'Enter a name to create.'
    : problemCount ? `Fix ${problemCount === 1 ? 'the field' : `the ${problemCount} fields`} marked above.`
    : mayRequest ? `You may not create in ${form.namespace}: request it below.`
    : server ? 'Change what the server refused (above).'
    : '';
  const moveHits = (e: React.KeyboardEvent<HTMLElement>) => {
    const items = [...e.currentTarget.querySelectorAll<HTMLElement>('button, select')];
    const at = items.indexOf(document.activeElement as HTMLElement);
    const next = e.key === 'ArrowDown' ? at + 1 : e.key === 'ArrowUp' ? at - 1 : null;
    if (next !== null && at >= 0) {
      e.preventDefault();
      (next < 0 ? packagesRef.current : items[Math.min(items.length - 1, next)])?.focus();
    }
  };

  return (
    <form className="jp-envmgr-form" aria-label={editing ? `Edit ${env.name}` : 'Create an environment'}
      onKeyDown={e => {
        if (e.key === 'Escape') {
          e.preventDefault();
          e.stopPropagation();
          props.onCancel();
        }
      }}
      onSubmit={e => {
        e.preventDefault();
        void submit();
      }}>
      {!editing && <h3>New environment</h3>}
      {props.unresolved && props.unresolved.length > 0 && (
        <div className="jp-envmgr-notice jp-envmgr-unresolved" role="status">
          No package is known for these imports; add the right distributions to the packages yourself:{' '}
          {props.unresolved.map(name => (
            <code key={name}>{name}</code>
          ))}
        </div>
      )}
      <div className="jp-envmgr-columns">
        <div className="jp-envmgr-column">
          {!editing && (
            <>
              <Field id="envmgr-name" label="Name" error={errors.name} hint="lowercase letters, digits and -, e.g. torch-cpu">
                <input value={form.name} autoFocus onChange={e => update({ name: e.target.value })} />
              </Field>
              {clusters.length > 1 && (
                <Field id="envmgr-cluster" label="Cluster" error={errors.cluster}>
                  <select value={form.cluster} onChange={e => update(withCluster(info, form, e.target.value))}>
                    {clusters.map(c => (
                      <option key={c.name}>{c.name}</option>
                    ))}
                  </select>
                </Field>
              )}
              <Field id="envmgr-namespace" label="Namespace" error={errors.namespace}>
                <select value={form.namespace} onChange={e => update({ namespace: e.target.value })}>
                  {namespaces.map(ns => (
                    <option key={ns}>{ns}</option>
                  ))}
                </select>
              </Field>
            </>
          )}
          <Field id="envmgr-python" label="Python version" error={errors.python}>
            <select value={form.python} onChange={e => update({ python: e.target.value })}>
              {[...new Set([...info.python_versions, form.python])].filter(Boolean).map(v => (
                <option key={v}>{v}</option>
              ))}
            </select>
          </Field>
          {!editing && (
            <Group id="envmgr-manager" legend="Package manager" error={errors.manager}>
              {(['pip', 'conda'] as Manager[]).map(m => (
                <label key={m} className="jp-envmgr-radio">
                  <input type="radio" name="envmgr-manager" value={m} checked={form.manager === m}
                    disabled={m === 'conda' && !!condaReason} aria-describedby={m === 'conda' && condaReason ? 'envmgr-conda-reason' : undefined}
                    onChange={() => update({ manager: m })} />
                  {m.toUpperCase()}
                </label>
              ))}
              {condaReason && <div className="jp-envmgr-hint" id="envmgr-conda-reason">CONDA: {condaReason}</div>}
            </Group>
          )}
          <Field id="envmgr-packages" label={form.manager === 'pip' ? 'Packages (requirements.txt)' : 'Packages (environment.yaml)'} error={errors.packages}>
            <textarea rows={8} value={form.packages} placeholder={HINTS[form.manager]} spellCheck={false} ref={packagesRef}
              aria-controls={typing ? 'envmgr-package-hits' : undefined}
              onChange={e => {
                update({ packages: e.target.value });
                setCaret(e.target.selectionStart ?? -1);
              }}
              onSelect={e => setCaret((e.target as HTMLTextAreaElement).selectionStart ?? -1)}
              onKeyDown={e => {
                if (e.key === 'ArrowDown' && typing && search.hits.length && e.altKey) {
                  e.preventDefault();
                  document.querySelector<HTMLElement>('#envmgr-package-hits button')?.focus();
                }
              }}
              onBlur={e => {
                if (!(e.relatedTarget && (e.relatedTarget as HTMLElement).closest('#envmgr-package-hits'))) {
                  setCaret(-1);
                }
              }} />
          </Field>
          {typing && (search.hits.length > 0 || search.error) && (
            <div id="envmgr-package-hits" className="jp-envmgr-package-hits" role="group" aria-label={`Packages matching ${typing.name}`}
              onKeyDown={e => {
                if (e.key === 'Escape') {
                  e.preventDefault();
                  e.stopPropagation();
                  setCaret(-1);
                  packagesRef.current?.focus();
                } else {
                  moveHits(e);
                }
              }}>
              {search.error ? <div className="jp-envmgr-hint" role="status">package search: {search.error}</div> : (
                <>
                  <div className="jp-envmgr-hint" role="status">{search.hits.length} from the index (Alt+Down to reach them):</div>
                  <ul>
                    {search.hits.map(hit => (
                      <li key={hit.name}>
                        <button type="button" className="jp-envmgr-hit" onClick={() => pick(hit, hit.versions[0] ?? '')}
                          onBlur={e => !(e.relatedTarget && (e.relatedTarget as HTMLElement).closest('#envmgr-package-hits, .jp-envmgr-form textarea')) && setCaret(-1)}>
                          <b>{hit.name}</b> {hit.versions[0] ?? ''}
                        </button>
                        {hit.versions.length > 1 && (
                          <select aria-label={`Other versions of ${hit.name}`} value="" onChange={e => e.target.value && pick(hit, e.target.value)}
                            onBlur={e => !(e.relatedTarget && (e.relatedTarget as HTMLElement).closest('#envmgr-package-hits, .jp-envmgr-form textarea')) && setCaret(-1)}>
                            <option value="">other versions…</option>
                            {hit.versions.slice(1).map(v => <option key={v} value={v}>{v}</option>)}
                          </select>
                        )}
                      </li>
                    ))}
                  </ul>
                </>
              )}
            </div>
          )}
          <div className="jp-envmgr-hint">Always installed: {(info.base_packages[form.manager] || []).join(', ') || 'nothing'}</div>
          {presets.length > 0 && (
            <Field id="envmgr-preset" label="Add a set of packages">
              <select value="" onChange={e => {
                const preset = presets.find(p => p.name === e.target.value);
                if (preset) {
                  update({ packages: mergePackages(form.manager, form.packages, preset.packages) });
                }
              }}>
                <option value="">choose a set…</option>
                {presets.map(p => (
                  <option key={p.name} value={p.name}>{p.name}</option>
                ))}
              </select>
            </Field>
          )}
          <Group id="envmgr-index-urls" legend="Extra index URLs">
            <Rows id="envmgr-index-urls" what="extra index URL" columns={['']} rows={form.indexUrls.map(u => [u])} empty={['']} error={errors.index_urls}
              onChange={rows => update({ indexUrls: rows.map(r => r[0]) })} />
          </Group>
          <Field id="envmgr-init-script" label="Init script (Python, optional, run after each build)" error={errors.init_script}>
            <textarea rows={3} value={form.initScript} spellCheck={false} placeholder="import nltk; nltk.download('punkt')"
              onChange={e => update({ initScript: e.target.value })} />
          </Field>
        </div>
        <div className="jp-envmgr-column">
          <Field id="envmgr-description" label="Description" error={errors.description}>
            <input value={form.description} onChange={e => update({ description: e.target.value })} />
          </Field>
          <Group id="envmgr-labels" legend="Labels">
            <Rows<[string, string]> id="envmgr-labels" what="label" columns={['key', 'value']} rows={form.labels} empty={['', '']} error={errors.labels}
              onChange={labels => update({ labels })} />
          </Group>
          <Group id="envmgr-annotations" legend="Annotations">
            <Rows<[string, string]> id="envmgr-annotations" what="annotation" columns={['key', 'value']} rows={form.annotations} empty={['', '']} error={errors.annotations}
              onChange={annotations => update({ annotations })} />
          </Group>
          <Group id="envmgr-env-vars" legend="Kernel environment variables">
            <Rows<[string, string]> id="envmgr-env-vars" what="variable" columns={['name', 'value']} rows={form.envVars} empty={['', '']} error={errors.env_vars}
              onChange={envVars => update({ envVars })} />
          </Group>
          <Field id="envmgr-gpu" label="GPUs for the build" error={errors.gpu}
            hint={info.backend === 'local'
              ? 'The local backend builds on this machine and ignores this; on Kubernetes the build runs on a GPU node with this many GPUs.'
              : 'The build runs on a GPU node with this many GPUs, so CUDA packages are installed where they will run. 0: any node.'}>
            <input type="number" min={0} max={64} value={form.gpu} onChange={e => update({ gpu: e.target.value })} />
          </Field>
          {!editing && (
            <Field id="envmgr-storage" label="Storage" error={errors.storage}>
              <select value={form.storage} onChange={e => update({ storage: e.target.value })}>
                {info.storages.map(s => (
                  <option key={s.name} value={s.name}>{s.name} ({s.access_mode})</option>
                ))}
              </select>
            </Field>
          )}
        </div>
      </div>
      <ErrorText id="envmgr-form" error={errors.form} />
      {mayRequest && (
        <div className="jp-envmgr-request-offer" role="status" id="envmgr-request-offer">
          <p>{model.user?.display_name || 'You'} may read namespace {form.namespace} but not create environments in it. Request it instead: a request keeps these fields, and someone who may write {form.namespace} approves or rejects it.</p>
          <button type="button" className="jp-mod-styled jp-mod-accept" disabled={busy} onClick={() => void request()}>
            {busy ? 'Requesting…' : 'Request it'}
          </button>
        </div>
      )}
      {editing && Object.keys(changes).length > 0 && (
        <div className="jp-envmgr-hint" id="envmgr-save-effect" role="status">
          {rebuilds
            ? `Saving builds revision ${nextRevision} (${Object.keys(changes).filter(k => BUILD_INPUTS.includes(k)).join(', ')} changed); revision ${env.ready_revision ?? '—'} keeps serving until it is ready.`
            : 'Saving changes metadata only: no rebuild, kernels are not affected.'}
        </div>
      )}
      {editing && rebuilds && dry.result?.changes && <ChangesList changes={dry.result.changes} />}
      {fromDraft && (
        <div className="jp-envmgr-hint" role="status">
          Restored what you typed before this form was closed.{' '}
          <button type="button" className="jp-mod-styled" onClick={() => {
            clearDraft();
            setFromDraft(false);
            setSubmitError(null);
            setForm(initialForm(info, model.namespace, props.initial));
          }}>Start over</button>
        </div>
      )}
      <div className="jp-envmgr-actions">
        <button className="jp-mod-styled jp-mod-accept" type="submit" disabled={!!why || busy} aria-describedby={why ? 'envmgr-submit-why' : undefined}>
          {busy ? (editing ? 'Saving…' : 'Creating…') : editing ? (rebuilds ? `Save and build revision ${nextRevision}` : 'Save') : 'Create'}
        </button>
        <button type="button" className="jp-mod-styled" onClick={() => {
          clearDraft();
          props.onCancel();
        }}>{editing ? 'Discard' : 'Cancel'}</button>
        {why && !busy && <span className="jp-envmgr-hint" id="envmgr-submit-why">{why}</span>}
        {dry.pending && <span className="jp-envmgr-hint" aria-live="polite">checking…</span>}
      </div>
    </form>
  );
}
