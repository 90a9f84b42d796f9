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

function Field(props: { id: string; label: string; error?: string; children: React.ReactNode }): JSX.Element {
  return (
    <div className="jp-envmgr-field">
      <label htmlFor={props.id}>{props.label}</label>
      {props.children}
      {props.error && (
        <div className="jp-envmgr-error" id={`${props.id}-error`} role="alert">
          {props.error}
        </div>
      )}
    </div>
  );
}

function PairRows(props: {
  id: string;
  rows: [string, string][];
  keyLabel: string;
  onChange: (rows: [string, string][]) => void;
}): JSX.Element {
  const set = (i: number, j: 0 | 1, value: string) => {
    const rows = props.rows.map(r => [...r] as [string, string]);
    rows[i][j] = value;
    props.onChange(rows);
  };
  return (
    <div className="jp-envmgr-pairs" id={props.id}>
      {props.rows.map((row, i) => (
        <div key={i} className="jp-envmgr-pair">
          <input aria-label={`${props.keyLabel} key ${i + 1}`} placeholder="key" value={row[0]} onChange={e => set(i, 0, e.target.value)} />
          <input aria-label={`${props.keyLabel} value ${i + 1}`} placeholder="value" value={row[1]} onChange={e => set(i, 1, e.target.value)} />
          <button
            className="jp-mod-styled"
            aria-label={`remove ${props.keyLabel} ${i + 1}`}
            onClick={() => props.onChange(props.rows.filter((_, k) => k !== i))}
          >
            ×
          </button>
        </div>
      ))}
      <button type="button" className="jp-mod-styled" onClick={() => props.onChange([...props.rows, ['', '']])}>
        Add {props.keyLabel}
      </button>
    </div>
  );
}

export interface ICreateFormProps {
  model: EnvironmentsModel;
  onCreated: (env: IEnvironment) => void;
  onCancel: () => void;
}

export function CreateForm(props: ICreateFormProps): JSX.Element {
  const info = props.model.info as IInfo;
  const condaReason = info.managers.includes('conda') ? '' : 'this server has no conda solver available';
  const [form, setForm] = React.useState<IFormState & { python: string; description: string; storage: string; namespace: string }>({
    name: '',
    manager: 'pip',
    python: info.python_versions[info.python_versions.length - 1] || '',
    packages: '',
    indexUrls: [''],
    labels: [],
    annotations: [],
    envVars: [],
    gpu: '0',
    description: '',
    storage: info.storages[0]?.name || 'default',
    namespace: props.model.namespace
  });
  const [serverErrors, setServerErrors] = React.useState<Record<string, string>>({});
  const [busy, setBusy] = React.useState(false);
  const [touched, setTouched] = React.useState(false);
  const errors = { ...validateForm(form), ...serverErrors };
  const invalid = Object.keys(validateForm(form)).length > 0;
  const update = (changes: Partial<typeof form>) => {
    setForm({ ...form, ...changes });
    setServerErrors({});
    setTouched(true);
  };
  const presets = info.presets.filter(p => p.manager === form.manager);

  const submit = async () => {
    const spec: ISpec = {
      name: form.name,
      manager: form.manager as Manager,
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
    setBusy(true);
    try {
      props.model.api.namespace = form.namespace;
      const env = await props.model.api.create(spec);
      props.onCreated(env);
    } catch (e) {
      const error = e as ApiError;
      setServerErrors({ [error.field || 'form']: error.message });
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="jp-envmgr-form" aria-label="Create an environment" onSubmit={e => e.preventDefault()}>
      <h3>New environment</h3>
      <Field id="envmgr-name" label="Name" error={touched || form.name ? errors.name : undefined}>
        <input id="envmgr-name" value={form.name} placeholder="torch-cpu" autoFocus aria-invalid={!!errors.name}
          aria-describedby="envmgr-name-error" onChange={e => update({ name: e.target.value })} />
      </Field>
      <Field id="envmgr-namespace" label="Namespace" error={errors.namespace}>
        <select id="envmgr-namespace" value={form.namespace} onChange={e => update({ namespace: e.target.value })}>
          {info.namespaces.map(ns => (
            <option key={ns}>{ns}</option>
          ))}
        </select>
      </Field>
      <Field id="envmgr-python" label="Python version" error={errors.python}>
        <select id="envmgr-python" value={form.python} onChange={e => update({ python: e.target.value })}>
          {info.python_versions.map(v => (
            <option key={v}>{v}</option>
          ))}
        </select>
      </Field>
      <fieldset className="jp-envmgr-field" aria-label="Package manager">
        <legend>Package manager</legend>
        {(['pip', 'conda'] as Manager[]).map(m => (
          <label key={m} title={m === 'conda' ? condaReason : ''}>
            <input type="radio" name="envmgr-manager" value={m} checked={form.manager === m}
              disabled={m === 'conda' && !!condaReason} onChange={() => update({ manager: m })} />
            {m.toUpperCase()}
          </label>
        ))}
        {condaReason && <div className="jp-envmgr-hint">CONDA: {condaReason}</div>}
      </fieldset>
      <Field id="envmgr-packages" label={form.manager === 'pip' ? 'Packages (requirements.txt)' : 'Packages (environment.yaml)'} error={errors.packages}>
        <textarea id="envmgr-packages" rows={6} value={form.packages} placeholder={HINTS[form.manager as Manager]}
          aria-invalid={!!errors.packages} onChange={e => update({ packages: e.target.value })} />
        <div className="jp-envmgr-hint">
          Always installed: {(info.base_packages[form.manager] || []).join(', ') || 'nothing'}
        </div>
      </Field>
      {presets.length > 0 && (
        <div className="jp-envmgr-field">
          <label htmlFor="envmgr-preset">Add a set of packages</label>
          <select id="envmgr-preset" value="" onChange={e => {
            const preset = presets.find(p => p.name === e.target.value);
            if (preset) {
              update({ packages: mergePackages(form.manager as Manager, form.packages, preset.packages) });
            }
          }}>
            <option value="">choose a set…</option>
            {presets.map(p => (
              <option key={p.name} value={p.name}>{p.name}</option>
            ))}
          </select>
        </div>
      )}
      <Field id="envmgr-index-urls" label="Extra index URLs" error={errors.index_urls}>
        {form.indexUrls.map((url, i) => (
          <input key={i} aria-label={`extra index URL ${i + 1}`} value={url} placeholder="https://mirror.example/simple"
            onChange={e => update({ indexUrls: form.indexUrls.map((u, k) => (k === i ? e.target.value : u)) })} />
        ))}
        <button type="button" className="jp-mod-styled" onClick={() => update({ indexUrls: [...form.indexUrls, ''] })}>Add index URL</button>
      </Field>
      <Field id="envmgr-labels" label="Labels" error={errors.labels}>
        <PairRows id="envmgr-labels" rows={form.labels} keyLabel="label" onChange={labels => update({ labels })} />
      </Field>
      <Field id="envmgr-annotations" label="Annotations" error={errors.annotations}>
        <PairRows id="envmgr-annotations" rows={form.annotations} keyLabel="annotation" onChange={annotations => update({ annotations })} />
      </Field>
      <Field id="envmgr-env-vars" label="Kernel environment variables" error={errors.env_vars}>
        <PairRows id="envmgr-env-vars" rows={form.envVars} keyLabel="variable" onChange={envVars => update({ envVars })} />
      </Field>
      <Field id="envmgr-description" label="Description" error={errors.description}>
        <input id="envmgr-description" value={form.description} onChange={e => update({ description: e.target.value })} />
      </Field>
      <Field id="envmgr-gpu" label="GPUs (preloading)" error={errors.gpu}>
        <input id="envmgr-gpu" type="number" min={0} max={64} value={form.gpu} onChange={e => update({ gpu: e.target.value })} />
      </Field>
      <Field id="envmgr-storage" label="Storage" error={errors.storage}>
        <select id="envmgr-storage" value={form.storage} onChange={e => update({ storage: e.target.value })}>
          {info.storages.map(s => (
            <option key={s.name} value={s.name}>{s.name} ({s.access_mode})</option>
          ))}
        </select>
      </Field>
      {errors.form && <div className="jp-envmgr-error" role="alert">{errors.form}</div>}
      <div className="jp-envmgr-actions">
        <button className="jp-mod-styled jp-mod-accept" type="submit" disabled={invalid || busy} onClick={() => void submit()}>
          {busy ? 'Creating…' : 'Create'}
        </button>
        <button type="button" className="jp-mod-styled" onClick={props.onCancel}>Cancel</button>
      </div>
    </form>
  );
}
