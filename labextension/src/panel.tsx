/**
 * The left side panel: a compact list of environments (name, status, Python, manager, labels, a
 * one-line message) with filters, and the count of requests waiting for the user. Opening one, "New
 * environment" or the requests opens a main-area view.
 */
import { addIcon, ReactWidget, refreshIcon, tableRowsIcon, ToolbarButtonComponent } from '@jupyterlab/ui-components';
import * as React from 'react';

import { settleFocus } from './focus';
import { EnvironmentsModel, notice, oneLine, shownStatus, SortKey, statusWords } from './model';
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
  table: () => void;
}

export const SORTS: [SortKey, string][] = [
  ['name', 'name'],
  ['status', 'status'],
  ['updated', 'updated'],
  ['owner', 'owner'],
  ['python', 'Python'],
  ['size', 'size'],
  ['last_used', 'last used']
];

/** Up, Down, Home and End move the focus between the items of a list (one Tab stop for the filters, one for the list). */
export function moveBetweenItems(e: React.KeyboardEvent<HTMLElement>, selector: string): void {
  const items = [...e.currentTarget.querySelectorAll<HTMLElement>(selector)];
  const at = items.indexOf(document.activeElement as HTMLElement);
  const next = e.key === 'ArrowDown' ? at + 1 : e.key === 'ArrowUp' ? at - 1 : e.key === 'Home' ? 0 : e.key === 'End' ? items.length - 1 : null;
  if (next === null || at < 0 || !items.length) {
    return;
  }
  e.preventDefault();
  items[Math.max(0, Math.min(items.length - 1, next))].focus();
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
  const total = model.environments.length;
  const writable = model.writable.get(model.namespace);
  React.useEffect(() => {
    if (info && total === 0) {
      void model.checkWritable(); // the empty list says what this user can do here
    }
  }, [info, total, model.namespace]);
  return (
    <div className="jp-envmgr-list-view">
      <div className="jp-envmgr-sticky">
        <div className="jp-envmgr-toolbar jp-Toolbar" role="toolbar" aria-label="Environments toolbar">
          <span className="jp-envmgr-title">Environments</span>
          <ToolbarButtonComponent icon={addIcon} label="New" tooltip="New environment (opens the form in the main area)"
            enabled={!!info} onClick={props.create} className="jp-envmgr-new" />
          <ToolbarButtonComponent icon={tableRowsIcon} tooltip="All environments as a table (main area)" onClick={props.table} className="jp-envmgr-table-open" />
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
          <select aria-label="Filter by status" title="Status (failed also finds a failed update of a ready environment)" value={model.filter.status} onChange={e => model.setFilter({ status: e.target.value })}>
            <option value="">any status</option>
            {['ready', 'pending', 'warming', 'failed', 'cancelled'].map(s => (
              <option key={s}>{s}</option>
            ))}
          </select>
          <input aria-label="Filter by label" title="key or key=value; several joined by commas; any case" placeholder="label: team=vision,tier=gold" value={model.filter.label} onChange={e => model.setFilter({ label: e.target.value })} />
          <input aria-label="Filter by text" type="search" placeholder="name, description, package" value={model.filter.text} onChange={e => model.setFilter({ text: e.target.value })} />
        </div>
        <div className="jp-envmgr-listbar">
          <span className="jp-envmgr-total" role="status" aria-label="Environments shown">
            {visible.length === total ? `${total} environment${total === 1 ? '' : 's'}` : `${visible.length} of ${total} shown`}
          </span>
          <select aria-label="Sort by" value={model.sort.key} onChange={e => model.setSort(e.target.value as SortKey, false)}>
            {SORTS.map(([k, label]) => (
              <option key={k} value={k}>sort: {label}</option>
            ))}
          </select>
          <button className="jp-envmgr-sortdir" aria-label={model.sort.descending ? 'Descending order (switch to ascending)' : 'Ascending order (switch to descending)'}
            title={model.sort.descending ? 'Descending: switch to ascending' : 'Ascending: switch to descending'}
            onClick={() => model.setSort(model.sort.key, !model.sort.descending)}>{model.sort.descending ? '↓' : '↑'}</button>
        </div>
      </div>
      {model.error && <div className="jp-envmgr-error" role="alert">{model.error}</div>}
      {info && total === 0 && (
        <div className="jp-envmgr-empty">
          <p>No environments in {model.namespace} yet.</p>
          {writable === false ? (
            <p>You may read namespace {model.namespace} but not create in it. <b>New</b> opens the form to ask for one: someone who may write {model.namespace} approves it.</p>
          ) : (
            <p>Click <b>New</b>, or run <code>jupyter envmgr create NAME PKG...</code> in a terminal, or <code>%envmgr create NAME PKG...</code> in a notebook.</p>
          )}
        </div>
      )}
      {visible.length === 0 && total > 0 && (
        <div className="jp-envmgr-empty">No environment matches the filters.</div>
      )}
      <ul className="jp-envmgr-list" aria-label="Environments" onKeyDown={e => moveBetweenItems(e, '.jp-envmgr-item-open')}>
        {visible.map(env => {
          const line = model.deleting.has(env.name) ? 'deleting…' : notice(env) || (env.status !== 'ready' ? oneLine(env.message) : '');
          return (
            <li key={env.name} className="jp-envmgr-item" data-name={env.name} data-status={shownStatus(env)}>
              <button className="jp-envmgr-item-open" onClick={() => props.open(env.name)} aria-label={`Open ${env.name}`}
                title={[env.name, statusWords(env), env.description].filter(Boolean).join('\n')}>
                <span className="jp-envmgr-item-head">
                  <span className="jp-envmgr-name">{env.name}</span>
                  <StatusBadge env={env} compact />
                  <AuditBadge audit={model.audits.get(env.name)} />
                </span>
                <span className="jp-envmgr-meta">Python {env.python} · {env.manager}{env.ready_revision !== null ? ` · serving ${env.ready_revision}` : ''}{env.cluster && model.clustered ? ` · ${env.cluster}` : ''}</span>
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
  constructor(readonly model: EnvironmentsModel, private readonly actions: { open: (name: string) => void; create: () => void; requests: () => void; table: () => void }) {
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
    return <List model={this.model} open={this.actions.open} create={this.actions.create} requests={this.actions.requests} table={this.actions.table} />;
  }
}
