/**
 * One environment: status and progress, the build log following live, installed packages,
 * revisions with rollback, and its actions.
 */
import * as React from 'react';

import { ApiError, IPackage, IRevision } from './api';
import { EnvironmentsModel } from './model';
import { StatusBadge } from './status';
import { PACKAGES_RULE } from './validation';

export interface IDetailsProps {
  model: EnvironmentsModel;
  name: string;
  onBack: () => void;
  onOpenNotebook: (kernelName: string) => void;
  confirmDelete: (name: string) => Promise<boolean>;
  download: (filename: string, text: string) => void;
}

export function Details(props: IDetailsProps): JSX.Element {
  const { model, name } = props;
  const env = model.environments.find(e => e.name === name);
  const [log, setLog] = React.useState('');
  const [packages, setPackages] = React.useState<IPackage[]>([]);
  const [revisions, setRevisions] = React.useState<IRevision[]>([]);
  const [editing, setEditing] = React.useState<string | null>(null);
  const [error, setError] = React.useState('');
  const logRef = React.useRef<HTMLPreElement>(null);
  const key = env ? `${env.status}/${env.revision}/${env.ready_revision}` : '';
  const building = env?.status === 'pending' || env?.status === 'warming';

  // The log follows while the build runs (each poll of the model, every second then, re-reads it);
  // the packages and revisions when the state changes.
  React.useEffect(() => {
    if (!env) {
      return;
    }
    void model.api.log(name).then(setLog, () => undefined);
  }, [key, building ? model.refreshes : 0]);
  React.useEffect(() => {
    if (!env) {
      return;
    }
    void model.api.packages(name).then(setPackages, () => setPackages([]));
    void model.api.revisions(name).then(setRevisions, () => setRevisions([]));
  }, [key]);
  React.useEffect(() => {
    if (logRef.current) {
      logRef.current.scrollTop = logRef.current.scrollHeight;
    }
  }, [log]);

  if (!env) {
    return (
      <div className="jp-envmgr-details">
        <button className="jp-mod-styled" onClick={props.onBack}>← Environments</button>
        <p>{name} is gone.</p>
      </div>
    );
  }
  const act = async (what: () => Promise<unknown>) => {
    setError('');
    try {
      await what();
      await model.refresh();
    } catch (e) {
      setError((e as ApiError).message);
    }
  };
  const editProblem = editing === null ? null : PACKAGES_RULE[env.manager](editing);

  return (
    <div className="jp-envmgr-details" aria-label={`Environment ${name}`}>
      <button className="jp-mod-styled" onClick={props.onBack} aria-label="Back to the list">← Environments</button>
      <h3>{env.name}</h3>
      <StatusBadge env={env} />
      <dl className="jp-envmgr-facts">
        <dt>Manager</dt><dd>{env.manager}</dd>
        <dt>Python</dt><dd>{env.python}</dd>
        <dt>Revision</dt><dd>{env.revision}</dd>
        <dt>Serving</dt><dd>{env.ready_revision === null ? 'no ready revision yet' : `revision ${env.ready_revision}`}</dd>
        <dt>Kernel</dt><dd>{env.kernel_name || '—'}</dd>
        <dt>Owner</dt><dd>{env.owner}</dd>
        <dt>Base packages</dt><dd>{env.base_packages.join(', ')}</dd>
        {env.description && (<><dt>Description</dt><dd>{env.description}</dd></>)}
      </dl>
      {error && <div className="jp-envmgr-error" role="alert">{error}</div>}
      <div className="jp-envmgr-actions" role="toolbar" aria-label="Actions">
        <button className="jp-mod-styled jp-mod-accept" disabled={!env.kernel_name} onClick={() => env.kernel_name && props.onOpenNotebook(env.kernel_name)}>
          New notebook with this environment
        </button>
        <button className="jp-mod-styled" disabled={building} onClick={() => void act(() => model.api.action(name, 'rebuild'))}>Rebuild</button>
        <button className="jp-mod-styled" disabled={!building} onClick={() => void act(() => model.api.action(name, 'cancel'))}>Cancel build</button>
        <button className="jp-mod-styled" disabled={building} onClick={() => setEditing(env.packages)}>Edit packages</button>
        <button className="jp-mod-styled" disabled={!env.ready_revision}
          onClick={() => void act(async () => props.download(`${name}.lock.txt`, await model.api.exportText(name, 'requirements')))}>
          Export lock
        </button>
        <button className="jp-mod-styled" onClick={() => void act(async () => props.download(`${name}.json`, await model.api.exportText(name, 'spec')))}>
          Export spec
        </button>
        <button className="jp-mod-styled jp-mod-warn" onClick={() => void act(async () => {
          if (await props.confirmDelete(name)) {
            await model.api.remove(name);
            props.onBack();
          }
        })}>
          Delete
        </button>
      </div>
      {editing !== null && (
        <div className="jp-envmgr-field">
          <label htmlFor="envmgr-edit-packages">Packages of the next revision ({env.manager === 'pip' ? 'requirements.txt' : 'environment.yaml'})</label>
          <textarea id="envmgr-edit-packages" rows={6} value={editing} spellCheck={false} aria-invalid={!!editProblem}
            aria-describedby="envmgr-edit-packages-error" onChange={e => setEditing(e.target.value)} />
          {editProblem && <div className="jp-envmgr-error" id="envmgr-edit-packages-error" role="alert">{editProblem}</div>}
          <div className="jp-envmgr-actions">
            <button className="jp-mod-styled jp-mod-accept" disabled={!!editProblem} onClick={() => void act(async () => {
              await model.api.update(name, { packages: editing });
              setEditing(null);
            })}>
              Build revision {Math.max(env.revision, ...revisions.map(r => r.revision)) + 1}
            </button>
            <button className="jp-mod-styled" onClick={() => setEditing(null)}>Discard</button>
          </div>
        </div>
      )}
      <h4>Build log</h4>
      <pre className="jp-envmgr-log" ref={logRef} aria-label="Build log" tabIndex={0}>{log || 'no log yet'}</pre>
      <h4>Installed packages ({packages.length})</h4>
      <table className="jp-envmgr-table" aria-label="Installed packages">
        <thead><tr><th>name</th><th>version</th><th>source</th></tr></thead>
        <tbody>
          {packages.map(p => (
            <tr key={p.name}><td>{p.name}</td><td>{p.version}</td><td>{p.source || ''}</td></tr>
          ))}
        </tbody>
      </table>
      <h4>Revisions</h4>
      <table className="jp-envmgr-table" aria-label="Revisions">
        <thead><tr><th>revision</th><th>status</th><th>finished</th><th></th></tr></thead>
        <tbody>
          {revisions.map(r => (
            <tr key={r.revision}>
              <td>{r.revision}{r.current ? ' (serving)' : ''}</td>
              <td title={r.message}>{r.status}</td>
              <td>{r.finished ? new Date(r.finished).toLocaleString() : ''}</td>
              <td>
                {r.status === 'ready' && !r.current && (
                  <button className="jp-mod-styled" disabled={building} onClick={() => void act(() => model.api.action(name, 'rollback', r.revision))}>
                    Roll back to {r.revision}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
