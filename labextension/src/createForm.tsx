/**
 * The create form: every field of an environment, checked as the user types with the server's rules;
 * a server refusal lands beside the field it names and nothing typed is lost.
 */
import * as React from 'react';

import { ApiError, IEnvironment, IInfo, ISpec, Manager } from './api';
import { EnvironmentsModel, mergePackages } from './model';
import { IFormState, pairsToObject, validateForm } from './validation';

const HINTS: Record<Manager, string> = {
  pip: 'requirements.txt: one requirement per line, e.g.\nnumpy==2.1.*\npandas',
  conda: 'environment.yaml, e.g.\nchannels:\n  - conda-forge\ndependencies:\n  - numpy>=2\n  - pip:\n    - six'
};

interface IForm extends IFormState {
  python: string;
  description: string;
  storage: string;
  namespace: string;
  initScript: string;
}

/** The form fields a server message can name; a message about anything else shows at the bottom. */
const SHOWN_FIELDS = ['name', 'namespace', 'python', 'manager', 'packages', 'index_urls', 'labels', 'annotations', 'env_vars', 'description', 'gpu', 'storage', 'init_script'];

function ErrorText(props: { id: string; error?: string }): JSX.Element | null {
  return props.error ? (
    <div className="jp-envmgr-error" id={`${props.id}-error`} role="alert">
      {props.error}
    </div>
  ) : null;
}

/** One labelled control (input, select, textarea) with its problem under it. */
function Field(props: { id: string; label: string; error?: string; children: React.ReactElement }): JSX.Element {
  const control = React.cloneElement(props.children, {
    id: props.id,
    'aria-invalid': !!props.error,
    'aria-describedby': props.error ? `${props.id}-error` : undefined
  });
  return (
    <div className="jp-envmgr-field">
      <label htmlFor={props.id}>{props.label}</label>
      {control}
      <ErrorText id={props.id} error={props.error} />
    </div>
  );
}

/** A group of controls (radio buttons, rows) under a legend, with its problem under it. */
function Group(props: { id: string; legend: string; error?: string; children: React.ReactNode }): JSX.Element {
  return (
    <fieldset className="jp-envmgr-field" id={props.id} aria-describedby={props.error ? `${props.id}-error` : undefined}>
      <legend>{props.legend}</legend>
      {props.children}
      <ErrorText id={props.id} error={props.error} />
    </fieldset>
  );
}

/** Editable rows of strings: extra index URLs are rows of one, labels and the like rows of two. */
function Rows<T extends string[]>(props: { what: string; columns: string[]; rows: T[]; empty: T; onChange: (rows: T[]) => void }): JSX.Element {
  const set = (i: number, j: number, value: string) =>
    props.onChange(props.rows.map((row, k) => (k === i ? (row.map((cell, c) => (c === j ? value : cell)) as T) : row)));
  return (
    <>
      {props.rows.map((row, i) => (
        <div key={i} className="jp-envmgr-pair">
          {row.map((cell, j) => (
            <input key={j} aria-label={[props.what, props.columns[j], i + 1].filter(Boolean).join(' ')} placeholder={props.columns[j] || props.what}
              value={cell} onChange={e => set(i, j, e.target.value)} />
          ))}
          <button type="button" className="jp-mod-styled jp-envmgr-remove" aria-label={`remove ${props.what} ${i + 1}`}
            onClick={() => props.onChange(props.rows.filter((_, k) => k !== i))}>
            ×
          </button>
        </div>
      ))}
      <button type="button" className="jp-mod-styled jp-envmgr-add" onClick={() => props.onChange([...props.rows, props.empty])}>
        Add {props.what}
      </button>
    </>
  );
}

function initialForm(info: IInfo, namespace: string): IForm {
  return {
    name: '',
    manager: 'pip',
    python: info.python_versions[info.python_versions.length - 1] || '',
    packages: '',
    indexUrls: [],
    labels: [],
    annotations: [],
    envVars: [],
    gpu: '0',
    description: '',
    storage: info.storages[0]?.name || 'default',
    namespace,
    initScript: ''
  };
}

function toSpec(form: IForm): ISpec {
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
    namespace: form.namespace
  };
  if (form.initScript.trim()) {
    spec.init_script = form.initScript;
  }
  return spec;
}

export interface ICreateFormProps {
  model: EnvironmentsModel;
  onCreated: (env: IEnvironment) => Promise<void>;
  onCancel: () => void;
}

export function CreateForm(props: ICreateFormProps): JSX.Element {
  const info = props.model.info as IInfo;
  const condaReason = info.managers.includes('conda')
    ? ''
    : 'not available: this server has no conda solver right now (GET /info does not list conda)';
  const [form, setForm] = React.useState<IForm>(() => initialForm(info, props.model.namespace));
  const [serverError, setServerError] = React.useState<{ field: string; message: string } | null>(null);
  const [busy, setBusy] = React.useState(false);
  const problems = validateForm(form);
  const errors: Record<string, string> = { ...problems };
  if (serverError) {
    errors[serverError.field] = serverError.message;
  }
  const update = (changes: Partial<IForm>) => {
    setForm(current => ({ ...current, ...changes }));
    setServerError(null);
  };
  const presets = info.presets.filter(p => p.manager === form.manager);

  const submit = async () => {
    setBusy(true);
    try {
      await props.onCreated(await props.model.api.create(toSpec(form)));
    } catch (e) {
      const error = e as ApiError;
      const field = error.field && SHOWN_FIELDS.includes(error.field) ? error.field : 'form';
      setServerError({ field, message: error.message });
      setBusy(false);
    }
  };

  return (
    <form className="jp-envmgr-form" aria-label="Create an environment" onSubmit={e => {
      e.preventDefault();
      if (!Object.keys(problems).length && !busy) {
        void submit();
      }
    }}>
      <h3>New environment</h3>
      <Field id="envmgr-name" label="Name" error={form.name || serverError ? errors.name : undefined}>
        <input value={form.name} placeholder="torch-cpu" autoFocus onChange={e => update({ name: e.target.value })} />
      </Field>
      <Field id="envmgr-namespace" label="Namespace" error={errors.namespace}>
        <select value={form.namespace} onChange={e => update({ namespace: e.target.value })}>
          {info.namespaces.map(ns => (
            <option key={ns}>{ns}</option>
          ))}
        </select>
      </Field>
      <Field id="envmgr-python" label="Python version" error={errors.python}>
        <select value={form.python} onChange={e => update({ python: e.target.value })}>
          {info.python_versions.map(v => (
            <option key={v}>{v}</option>
          ))}
        </select>
      </Field>
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
      <Field id="envmgr-packages" label={form.manager === 'pip' ? 'Packages (requirements.txt)' : 'Packages (environment.yaml)'} error={errors.packages}>
        <textarea rows={6} value={form.packages} placeholder={HINTS[form.manager]} spellCheck={false}
          onChange={e => update({ packages: e.target.value })} />
      </Field>
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
      <Group id="envmgr-index-urls" legend="Extra index URLs" error={errors.index_urls}>
        <Rows what="extra index URL" columns={['']} rows={form.indexUrls.map(u => [u])} empty={['']}
          onChange={rows => update({ indexUrls: rows.map(r => r[0]) })} />
      </Group>
      <Group id="envmgr-labels" legend="Labels" error={errors.labels}>
        <Rows<[string, string]> what="label" columns={['key', 'value']} rows={form.labels} empty={['', '']} onChange={labels => update({ labels })} />
      </Group>
      <Group id="envmgr-annotations" legend="Annotations" error={errors.annotations}>
        <Rows<[string, string]> what="annotation" columns={['key', 'value']} rows={form.annotations} empty={['', '']} onChange={annotations => update({ annotations })} />
      </Group>
      <Group id="envmgr-env-vars" legend="Kernel environment variables" error={errors.env_vars}>
        <Rows<[string, string]> what="variable" columns={['name', 'value']} rows={form.envVars} empty={['', '']} onChange={envVars => update({ envVars })} />
      </Group>
      <Field id="envmgr-description" label="Description" error={errors.description}>
        <input value={form.description} onChange={e => update({ description: e.target.value })} />
      </Field>
      <Field id="envmgr-gpu" label="GPUs (preloading)" error={errors.gpu}>
        <input type="number" min={0} max={64} value={form.gpu} onChange={e => update({ gpu: e.target.value })} />
      </Field>
      <Field id="envmgr-storage" label="Storage" error={errors.storage}>
        <select value={form.storage} onChange={e => update({ storage: e.target.value })}>
          {info.storages.map(s => (
            <option key={s.name} value={s.name}>{s.name} ({s.access_mode})</option>
          ))}
        </select>
      </Field>
      <Field id="envmgr-init-script" label="Init script (Python, optional, run after each build)" error={errors.init_script}>
        <textarea rows={3} value={form.initScript} spellCheck={false} placeholder="import nltk; nltk.download('punkt')"
          onChange={e => update({ initScript: e.target.value })} />
      </Field>
      <ErrorText id="envmgr-form" error={errors.form} />
      <div className="jp-envmgr-actions">
        <button className="jp-mod-styled jp-mod-accept" type="submit" disabled={Object.keys(problems).length > 0 || busy}>
          {busy ? 'Creating…' : 'Create'}
        </button>
        <button type="button" className="jp-mod-styled" onClick={props.onCancel}>Cancel</button>
      </div>
    </form>
  );
}
