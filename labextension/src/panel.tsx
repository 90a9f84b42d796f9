/**
 * The left side panel: a compact list of environments (name, status, Python, manager, labels, a
 * one-line message) with filters, and the count of requests waiting for the user. Opening one, "New
 * environment" or the requests opens a main-area view.
 */
import { addIcon, ReactWidget, refreshIcon, ToolbarButtonComponent } from '@jupyterlab/ui-components';
import * as React from 'react';

import { settleFocus } from './focus';
import { EnvironmentsModel, notice, oneLine, shownStatus } from './model';
import { AuditBadge, StatusBadge } from './status';

export function useModel(model: EnvironmentsModel): number {
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

interface IListProps {
  model: EnvironmentsModel;
  open: (name: string) => void;
  create: () => void;
  requests: () => void;
}

/** The line that leads to the requests: how many wait for this user's decision, else how many of theirs are open. */
function RequestsLine(props: { model: EnvironmentsModel; open: () => void }): JSX.Element | null {
  const { model } = props;
  const toDecide = model.toDecide.length;
  const mine = model.requests.filter(r => r.status === 'requested' && r.requester === model.user?.username).length;
  if (!model.requests.length) {
    return null;
  }
  const text = toDecide ? `${toDecide} to decide` : mine ? `${mine} of yours open` : 'none open';
  return (
    <button className="jp-envmgr-requests-open" onClick={props.open} aria-label={`Requests: ${text}`}
      title="Requests for environments: approve, reject or withdraw (opens in the main area)">
      <span>Requests</span>
      <span className={toDecide ? 'jp-envmgr-count jp-mod-attention' : 'jp-envmgr-count'} data-count={toDecide}>{text}</span>
    </button>
  );
}

function List(props: IListProps): JSX.Element {
  const { model } = props;
  useModel(model);
  const info = model.info;
  const visible = model.visible;
  const clusters = info?.clusters || [];
  return (
    <div className="jp-envmgr-list-view">
      <div className="jp-envmgr-toolbar jp-Toolbar" role="toolbar" aria-label="Environments toolbar">
        <span className="jp-envmgr-title">Environments</span>
        <ToolbarButtonComponent icon={addIcon} label="New" tooltip="New environment (opens the form in the main area)"
          enabled={!!info} onClick={props.create} className="jp-envmgr-new" />
        <ToolbarButtonComponent icon={refreshIcon} tooltip="Refresh the list" onClick={() => void model.refresh()} />
      </div>
      <RequestsLine model={model} open={props.requests} />
      <div className="jp-envmgr-filters">
        {model.clustered && (
          <select aria-label="Cluster" title="Cluster (its first namespace is shown)" value={model.cluster}
            onChange={e => void model.setNamespace(clusters.find(c => c.name === e.target.value)?.namespaces[0] ?? model.namespace)}>
            {clusters.map(c => (
              <option key={c.name} value={c.name}>cluster: {c.name}</option>
            ))}
          </select>
        )}
        <select aria-label="Namespace" title="Namespace" value={model.namespace} onChange={e => void model.setNamespace(e.target.value)}>
          {(model.clustered ? clusters.find(c => c.name === model.cluster)?.namespaces ?? [] : info?.namespaces ?? []).map(ns => (
            <option key={ns} value={ns}>namespace: {ns}</option>
          ))}
        </select>
        <select aria-label="Filter by status" value={model.filter.status} onChange={e => model.setFilter({ status: e.target.value })}>
          <option value="">any status</option>
          {['ready', 'pending', 'warming', 'failed', 'cancelled'].map(s => (
            <option key={s}>{s}</option>
          ))}
        </select>
        <input aria-label="Filter by label" placeholder="label key=value" value={model.filter.label} onChange={e => model.setFilter({ label: e.target.value })} />
        <input aria-label="Filter by text" type="search" placeholder="name, description, package" value={model.filter.text} onChange={e => model.setFilter({ text: e.target.value })} />
      </div>
      {model.error && <div className="jp-envmgr-error" role="alert">{model.error}</div>}
      {info && model.environments.length === 0 && (
        <div className="jp-envmgr-empty">
          <p>No environments in {model.namespace} yet.</p>
          <p>Click <b>New</b>, or run <code>jupyter envmgr create NAME PKG...</code> in a terminal, or <code>%envmgr create NAME PKG...</code> in a notebook.</p>
        </div>
      )}
      {visible.length === 0 && model.environments.length > 0 && (
        <div className="jp-envmgr-empty">No environment matches the filters.</div>
      )}
      <ul className="jp-envmgr-list" aria-label="Environments">
        {visible.map(env => {
          const line = model.deleting.has(env.name) ? 'deleting…' : notice(env) || (env.status !== 'ready' ? oneLine(env.message) : '');
          return (
            <li key={env.name} className="jp-envmgr-item" data-name={env.name} data-status={shownStatus(env)}>
              <button className="jp-envmgr-item-open" onClick={() => props.open(env.name)} aria-label={`Open ${env.name}`}
                title={env.description || env.name}>
                <span className="jp-envmgr-item-head">
                  <span className="jp-envmgr-name">{env.name}</span>
                  <StatusBadge env={env} compact />
                  <AuditBadge audit={model.audits.get(env.name)} />
                </span>
                <span className="jp-envmgr-meta">Python {env.python} · {env.manager}{env.cluster && model.clustered ? ` · ${env.cluster}` : ''}</span>
                {Object.keys(env.labels).length > 0 && (
                  <span className="jp-envmgr-labels">
                    {Object.entries(env.labels).map(([k, v]) => (
                      <span key={k} className="jp-envmgr-label">{k}={v}</span>
                    ))}
                  </span>
                )}
                {line && <span className="jp-envmgr-message jp-envmgr-oneline" title={line}>{line}</span>}
              </button>
            </li>
          );
        })}
      </ul>
    </div>
  );
}

export class EnvironmentsPanel extends ReactWidget {
  constructor(readonly model: EnvironmentsModel, private readonly actions: { open: (name: string) => void; create: () => void; requests: () => void }) {
    super();
    this.addClass('jp-envmgr-panel');
  }

  /** Put the keyboard focus on an environment's item (back from its view), else on the toolbar's first button. */
  focusItem(name?: string): void {
    settleFocus(this.node, () =>
      (name ? this.node.querySelector<HTMLElement>(`.jp-envmgr-item[data-name="${CSS.escape(name)}"] button`) : null) ||
      this.node.querySelector<HTMLElement>('.jp-envmgr-new, button, select, input'));
  }

  render(): JSX.Element {
    return <List model={this.model} open={this.actions.open} create={this.actions.create} requests={this.actions.requests} />;
  }
}
