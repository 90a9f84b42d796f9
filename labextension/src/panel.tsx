/**
 * The left side panel: the list of environments with filters and the namespace, and the create
 * form or one environment's details in its place.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { CreateForm } from './createForm';
import { Details } from './details';
import { EnvironmentsModel } from './model';
import { StatusBadge } from './status';

export interface IPanelActions {
  openNotebook: (kernelName: string) => void;
  confirmDelete: (name: string) => Promise<boolean>;
  download: (filename: string, text: string) => void;
}

type View = { kind: 'list' } | { kind: 'create' } | { kind: 'details'; name: string };

function useModel(model: EnvironmentsModel): number {
  const [version, setVersion] = React.useState(0);
  React.useEffect(() => {
    const bump = () => setVersion(v => v + 1);
    model.changed.connect(bump);
    return () => {
      model.changed.disconnect(bump);
    };
  }, [model]);
  return version;
}

function List(props: { model: EnvironmentsModel; open: (name: string) => void; create: () => void }): JSX.Element {
  const { model } = props;
  const info = model.info;
  const visible = model.visible;
  return (
    <div className="jp-envmgr-list-view">
      <div className="jp-envmgr-toolbar" role="toolbar" aria-label="Environments toolbar">
        <button className="jp-mod-styled jp-mod-accept" onClick={props.create} disabled={!info}>New environment</button>
        <button className="jp-mod-styled" onClick={() => void model.refresh()} aria-label="Refresh">↻</button>
      </div>
      <div className="jp-envmgr-filters">
        <label>
          Namespace
          <select aria-label="Namespace" value={model.namespace} onChange={e => void model.setNamespace(e.target.value)}>
            {(info?.namespaces || []).map(ns => (
              <option key={ns}>{ns}</option>
            ))}
          </select>
        </label>
        <input aria-label="Filter by text" placeholder="filter by name, description, package" value={model.filter.text} onChange={e => model.setFilter({ text: e.target.value })} />
        <input aria-label="Filter by label" placeholder="label key=value" value={model.filter.label} onChange={e => model.setFilter({ label: e.target.value })} />
        <select aria-label="Filter by status" value={model.filter.status} onChange={e => model.setFilter({ status: e.target.value })}>
          <option value="">any status</option>
          {['pending', 'warming', 'ready', 'failed', 'cancelled'].map(s => (
            <option key={s}>{s}</option>
          ))}
        </select>
      </div>
      {model.error && <div className="jp-envmgr-error" role="alert">{model.error}</div>}
      {info && model.environments.length === 0 && (
        <div className="jp-envmgr-empty">
          <p>No environments in {model.namespace} yet.</p>
          <p>Click <b>New environment</b>, or run <code>jupyter envmgr create NAME PKG... --wait</code> in a terminal, or <code>%envmgr create NAME PKG... --wait</code> in a notebook.</p>
        </div>
      )}
      {visible.length === 0 && model.environments.length > 0 && (
        <div className="jp-envmgr-empty">No environment matches the filters.</div>
      )}
      <ul className="jp-envmgr-list" aria-label="Environments">
        {visible.map(env => (
          <li key={env.name} className="jp-envmgr-item" data-name={env.name}>
            <button className="jp-envmgr-item-open" onClick={() => props.open(env.name)} aria-label={`Open ${env.name}`}>
              <span className="jp-envmgr-name">{env.name}</span>
              <span className="jp-envmgr-meta">{env.manager} · Python {env.python} · {new Date(env.created).toLocaleString()}</span>
            </button>
            <StatusBadge env={env} />
            {Object.keys(env.labels).length > 0 && (
              <div className="jp-envmgr-labels">
                {Object.entries(env.labels).map(([k, v]) => (
                  <span key={k} className="jp-envmgr-label">{k}={v}</span>
                ))}
              </div>
            )}
          </li>
        ))}
      </ul>
    </div>
  );
}

function Panel(props: { model: EnvironmentsModel; actions: IPanelActions; view: View; setView: (v: View) => void }): JSX.Element {
  useModel(props.model);
  const { model, actions, view, setView } = props;
  if (view.kind === 'create' && model.info) {
    return (
      <CreateForm model={model} onCancel={() => setView({ kind: 'list' })}
        onCreated={async env => {
          await (env.namespace === model.namespace ? model.refresh() : model.setNamespace(env.namespace));
          setView({ kind: 'details', name: env.name });
        }} />
    );
  }
  if (view.kind === 'details') {
    return (
      <Details model={model} name={view.name} onBack={() => setView({ kind: 'list' })} onOpenNotebook={actions.openNotebook}
        confirmDelete={actions.confirmDelete} download={actions.download} />
    );
  }
  return <List model={model} open={name => setView({ kind: 'details', name })} create={() => setView({ kind: 'create' })} />;
}

export class EnvironmentsPanel extends ReactWidget {
  constructor(readonly model: EnvironmentsModel, private readonly actions: IPanelActions) {
    super();
    this.addClass('jp-envmgr-panel');
  }

  /** Show the create form (the command palette's "New environment"). */
  showCreate(): void {
    this.view = { kind: 'create' };
  }

  showList(): void {
    this.view = { kind: 'list' };
  }

  /**
   * Put the keyboard focus on the view's first control. The command palette gives the focus back to
   * the main area just after a command runs, so the first move of the focus out of the panel within a
   * second is undone: the focus goes back to the control that had it (the user may have moved on).
   */
  focusFirstControl(): void {
    const focus = () => this.node.querySelector<HTMLElement>('input, select, textarea, button')?.focus();
    const undoSteal = (event: FocusEvent) => {
      if (!this.node.contains(event.target as Node)) {
        stop();
        const previous = event.relatedTarget as HTMLElement | null;
        if (previous && this.node.contains(previous)) {
          previous.focus();
        } else {
          focus();
        }
      }
    };
    const stop = () => {
      document.removeEventListener('focusin', undoSteal, true);
      clearTimeout(timer);
    };
    const timer = setTimeout(stop, 1000);
    document.addEventListener('focusin', undoSteal, true);
    requestAnimationFrame(focus);
  }

  private set view(view: View) {
    this._view = view;
    this.update();
  }

  render(): JSX.Element {
    return <Panel model={this.model} actions={this.actions} view={this._view} setView={v => (this.view = v)} />;
  }

  private _view: View = { kind: 'list' };
}
