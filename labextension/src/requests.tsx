/**
 * Requests for environments in the main area: those the user may decide (approve, or reject with a
 * message), and the user's own (their state, the reason of a rejection, withdraw while open). The
 * model reads them when the view opens and after each action; requests are not in `/events`.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ApiError, IEnvRequest, RequestAction } from './api';
import { plural, when } from './environmentView';
import { settleFocus } from './focus';
import { EnvironmentsModel } from './model';
import { useModel } from './panel';

const lines = (text: string | undefined) => (text || '').split('\n').filter(l => l.trim()).length;

interface IItemProps {
  model: EnvironmentsModel;
  request: IEnvRequest;
  open: (namespace: string, name: string) => void | Promise<void>;
  /** The server's refusal of the last action on this request: kept by the list, since a refused action moves the request to another section. */
  error: string;
  setError: (message: string) => void;
}

function RequestItem(props: IItemProps): JSX.Element {
  const { model, request: r, error, setError } = props;
  const [rejecting, setRejecting] = React.useState(false);
  const [why, setWhy] = React.useState('');
  const [busy, setBusy] = React.useState(false);
  const mine = !!model.user && r.requester === model.user.username;
  const open = r.status === 'requested';
  const act = async (action: RequestAction, message?: string) => {
    setBusy(true);
    setError('');
    try {
      await model.decide(r.id, action, message);
      setRejecting(false);
    } catch (e) {
      setError((e as ApiError).message);
    }
    setBusy(false);
  };
  const idBase = `envmgr-request-${r.id}`;
  return (
    <li className="jp-envmgr-request" data-id={r.id} data-status={r.status} aria-label={`Request for ${r.name}`}>
      <div className="jp-envmgr-request-head">
        <span className="jp-envmgr-name">{r.name}</span>
        <span className={`jp-envmgr-badge jp-envmgr-request-${r.status}`}>{r.status}</span>
      </div>
      <div className="jp-envmgr-meta">
        namespace {r.namespace} · asked by {mine ? 'you' : model.ownerName(r.requester)} · {when(r.created)}
      </div>
      <details>
        <summary>{r.spec.manager || 'pip'}, {r.spec.python ? `Python ${r.spec.python}` : 'default Python'}, {plural(lines(r.spec.packages), 'package line')}</summary>
        <pre className="jp-envmgr-pre">{r.spec.packages || '(no packages)'}</pre>
        {r.spec.description && <p>{r.spec.description}</p>}
      </details>
      {r.status !== 'requested' && (
        <p className="jp-envmgr-request-outcome">
          {r.status === 'withdrawn' ? 'Withdrawn' : `${r.status === 'approved' ? 'Approved' : 'Rejected'}${r.decided_by ? ` by ${model.ownerName(r.decided_by)}` : ''}`}
          {r.updated ? `, ${when(r.updated)}` : ''}
          {r.message ? <>: <q>{r.message}</q></> : null}
        </p>
      )}
      {error && !rejecting && <div className="jp-envmgr-error" role="alert">{error}</div>}
      <div className="jp-envmgr-actions">
        {open && !mine && !rejecting && (
          <>
            <button className="jp-mod-styled jp-mod-accept" disabled={busy} onClick={() => void act('approve')}
              title={`Create ${r.name} in ${r.namespace} with ${r.requester} as its owner`}>Approve</button>
            <button className="jp-mod-styled jp-mod-warn" disabled={busy} onClick={() => setRejecting(true)}>Reject…</button>
          </>
        )}
        {open && mine && (
          <button className="jp-mod-styled" disabled={busy} onClick={() => void act('withdraw')}>Withdraw</button>
        )}
        {r.status === 'approved' && (
          <button className="jp-mod-styled" onClick={() => void props.open(r.namespace, r.environment || r.name)}>Open {r.environment || r.name}</button>
        )}
      </div>
      {rejecting && (
        <form className="jp-envmgr-reject" onSubmit={e => {
          e.preventDefault();
          void act('reject', why.trim());
        }}>
          <label htmlFor={`${idBase}-why`}>Why (the requester reads this)</label>
          <textarea id={`${idBase}-why`} rows={2} value={why} autoFocus onChange={e => setWhy(e.target.value)}
            aria-invalid={!!error} aria-describedby={error ? `${idBase}-why-error` : undefined}
            onKeyDown={e => e.key === 'Escape' && setRejecting(false)} />
          {error && <div className="jp-envmgr-error" id={`${idBase}-why-error`} role="alert">{error}</div>}
          <div className="jp-envmgr-actions">
            <button type="submit" className="jp-mod-styled jp-mod-warn" disabled={busy || !why.trim()}>Reject</button>
            <button type="button" className="jp-mod-styled" onClick={() => setRejecting(false)}>Cancel</button>
          </div>
        </form>
      )}
    </li>
  );
}

function Requests(props: { model: EnvironmentsModel; open: (namespace: string, name: string) => void | Promise<void> }): JSX.Element {
  const { model } = props;
  useModel(model);
  const me = model.user?.username;
  const [errors, setErrors] = React.useState<Record<string, string>>({});
  const toDecide = model.toDecide;
  const mine = model.requests.filter(r => r.requester === me);
  const others = model.requests.filter(r => r.requester !== me && r.status !== 'requested');
  const section = (title: string, items: IEnvRequest[], empty: string) => (
    <section aria-label={title}>
      <h3>{title} ({items.length})</h3>
      {items.length ? (
        <ul className="jp-envmgr-requests">{items.map(r => <RequestItem key={r.id} model={model} request={r} open={props.open}
          error={errors[r.id] || ''} setError={message => setErrors(all => ({ ...all, [r.id]: message }))} />)}</ul>
      ) : <p className="jp-envmgr-none">{empty}</p>}
    </section>
  );
  return (
    <div className="jp-envmgr-view jp-envmgr-requests-view" aria-label="Requests">
      <div className="jp-envmgr-view-head">
        <h2 tabIndex={-1} className="jp-envmgr-view-title">Requests</h2>
        <button className="jp-mod-styled" onClick={() => void model.loadRequests()}>Refresh</button>
      </div>
      <p className="jp-envmgr-hint">
        Someone who may read a namespace but not write it can ask for an environment there (Create, then “Request it”).
        Approving creates it with the requester as its owner.
      </p>
      {!model.requestsAvailable && <p className="jp-envmgr-error" role="alert">This server does not take requests.</p>}
      {section('To decide', toDecide, 'Nothing waits for you.')}
      {section('Yours', mine, 'You have asked for nothing.')}
      {others.length > 0 && section('Decided', others, '')}
    </div>
  );
}

/** The requests in a main-area tab; read again each time it is shown. */
export class RequestsView extends ReactWidget {
  constructor(readonly model: EnvironmentsModel, private readonly open: (namespace: string, name: string) => void | Promise<void>) {
    super();
    this.addClass('jp-envmgr-main');
  }

  focusTitle(): void {
    settleFocus(this.node, () => this.node.querySelector<HTMLElement>('.jp-envmgr-view-title'));
  }

  render(): JSX.Element {
    return <Requests model={this.model} open={this.open} />;
  }
}
