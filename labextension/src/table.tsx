/**
 * All environments of a namespace as a table in the main area (the side panel stays the compact
 * list): sortable columns (name, status, owner, Python, size, last used, updated, serving revision),
 * a search and a count that stay put while the rows scroll. The order and the filters are the
 * model's, so the list and the table agree.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { when } from './environmentView';
import { settleFocus } from './focus';
import { EnvironmentsModel, oneLine, SortKey, statusWords, usageBytes } from './model';
import { moveBetweenItems, useModel } from './panel';
import { AuditBadge } from './status';

/** Bytes as a person reads them (1 decimal above KB). */
export function humanBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

const COLUMNS: [SortKey | null, string][] = [
  ['name', 'Name'],
  ['status', 'Status'],
  [null, 'Serving'],
  ['owner', 'Owner'],
  ['python', 'Python'],
  ['size', 'Size'],
  ['last_used', 'Last used'],
  ['updated', 'Updated']
];

function Table(props: { model: EnvironmentsModel; open: (name: string) => void }): JSX.Element {
  const { model } = props;
  useModel(model);
  const names = model.environments.map(e => `${e.name}/${e.ready_revision}`).join(',');
  React.useEffect(() => {
    void model.loadUsages();
  }, [names, model.namespace]);
  const rows = model.visible;
  const total = model.environments.length;
  return (
    <div className="jp-envmgr-view jp-envmgr-table-view" aria-label="All environments">
      <div className="jp-envmgr-table-head">
        <div className="jp-envmgr-view-head">
          <h2 tabIndex={-1} className="jp-envmgr-view-title">Environments in {model.namespace}</h2>
          <span className="jp-envmgr-total" role="status" aria-label="Environments shown">
            {rows.length === total ? `${total} environment${total === 1 ? '' : 's'}` : `${rows.length} of ${total} shown`}
          </span>
        </div>
        <div className="jp-envmgr-table-filters">
          <input type="search" aria-label="Search environments" placeholder="name, description, package" value={model.filter.text}
            onChange={e => model.setFilter({ text: e.target.value })} />
          <input aria-label="Filter by label" title="key or key=value; several joined by commas; any case" placeholder="label: team=vision,tier=gold" value={model.filter.label}
            onChange={e => model.setFilter({ label: e.target.value })} />
          <select aria-label="Filter by status" value={model.filter.status} onChange={e => model.setFilter({ status: e.target.value })}>
            <option value="">any status</option>
            {['ready', 'pending', 'warming', 'failed', 'cancelled'].map(s => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </div>
      </div>
      <table className="jp-envmgr-table jp-envmgr-all" aria-label="Environments" onKeyDown={e => moveBetweenItems(e, '.jp-envmgr-row-open')}>
        <thead>
          <tr>
            {COLUMNS.map(([key, label]) => {
              const sorted = key !== null && model.sort.key === key;
              return (
                <th key={label} scope="col" aria-sort={sorted ? (model.sort.descending ? 'descending' : 'ascending') : undefined}>
                  {key === null ? label : (
                    <button className="jp-envmgr-sort" onClick={() => model.setSort(key)}
                      title={`Sort by ${label.toLowerCase()}${sorted ? (model.sort.descending ? ' (now descending)' : ' (now ascending)') : ''}`}>
                      {label}
                      <span aria-hidden="true" className="jp-envmgr-sort-mark">{sorted ? (model.sort.descending ? ' ▼' : ' ▲') : ''}</span>
                    </button>
                  )}
                </th>
              );
            })}
          </tr>
        </thead>
        <tbody>
          {rows.map(env => {
            const usage = model.usages.get(env.name);
            const failed = env.status === 'failed' || env.status === 'cancelled';
            return (
              <tr key={env.name} data-name={env.name} data-status={statusWords(env)}>
                <td>
                  <button className="jp-envmgr-row-open" onClick={() => props.open(env.name)} title={env.description ? `${env.name}\n${env.description}` : env.name}>
                    {env.name}
                  </button>
                  <AuditBadge audit={model.audits.get(env.name)} />
                </td>
                <td>
                  <span className="jp-envmgr-statuswords">{statusWords(env)}</span>
                  {failed && env.message && <div className="jp-envmgr-reason">{oneLine(env.message)}</div>}
                </td>
                <td>{env.ready_revision ?? '—'}</td>
                <td>{model.ownerName(env.owner)}</td>
                <td>{env.python}</td>
                <td>{usage ? humanBytes(usageBytes(usage)) : '…'}</td>
                <td>{usage ? (usage.last_used ? when(usage.last_used) : 'never') : '…'}</td>
                <td>{when(env.updated)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {rows.length === 0 && <p className="jp-envmgr-none">{total ? 'No environment matches the filters.' : `No environments in ${model.namespace} yet.`}</p>}
    </div>
  );
}

/** The table in a main-area tab. */
export class EnvironmentsTable extends ReactWidget {
  constructor(readonly model: EnvironmentsModel, private readonly open: (name: string) => void) {
    super();
    this.addClass('jp-envmgr-main');
  }

  focusTitle(): void {
    settleFocus(this.node, () => this.node.querySelector<HTMLElement>('.jp-envmgr-view-title'));
  }

  render(): JSX.Element {
    return <Table model={this.model} open={this.open} />;
  }
}
