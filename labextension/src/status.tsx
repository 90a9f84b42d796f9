/**
 * The status of an environment, the same in the list and the view: the shown (honest) status as a
 * badge, a bar while a revision builds, and the audit's count of known vulnerabilities.
 */
import * as React from 'react';

import { IAudit, IEnvironment } from './api';
import { notice, shownStatus, statusWords } from './model';

export function StatusBadge(props: { env: IEnvironment; compact?: boolean }): JSX.Element {
  const { env } = props;
  const status = shownStatus(env);
  const building = env.status === 'warming' || env.status === 'pending';
  const note = notice(env);
  return (
    <span className="jp-envmgr-status">
      <span className={`jp-envmgr-badge jp-envmgr-badge-${status}`} data-status={status}
        title={note ? `${statusWords(env)}: revision ${env.ready_revision} serves kernels` : status === 'ready' ? `revision ${env.ready_revision} serves kernels` : env.message}
        aria-label={`status: ${statusWords(env)}`}>
        {status}
      </span>
      {building && (
        <progress className="jp-envmgr-progress" value={env.progress} max={1}
          aria-label={`${env.name} revision ${env.revision} progress`}>
          {Math.round(env.progress * 100)}%
        </progress>
      )}
      {note && !props.compact && (
        <span className={`jp-envmgr-notice jp-envmgr-notice-${env.status}`} role="status">
          {note}; revision {env.ready_revision} keeps serving
        </span>
      )}
    </span>
  );
}

/** A count of known vulnerabilities in the serving lock (nothing while no audit answered). */
export function AuditBadge(props: { audit?: IAudit }): JSX.Element | null {
  const audit = props.audit;
  if (!audit) {
    return null;
  }
  const n = audit.vulnerabilities.length;
  const packages = new Set(audit.vulnerabilities.map(v => v.package)).size;
  return (
    <span className={`jp-envmgr-audit ${n ? 'jp-envmgr-audit-found' : 'jp-envmgr-audit-clean'}`} data-count={n}
      title={n ? `${n} known vulnerabilit${n === 1 ? 'y' : 'ies'} in ${packages} package${packages === 1 ? '' : 's'} of revision ${audit.revision} (${audit.database})` : `no known vulnerability in revision ${audit.revision} (${audit.database})`}
      aria-label={n ? `${n} known vulnerabilities` : 'no known vulnerabilities'}>
      {n ? `⚠ ${n}` : '✓'}
    </span>
  );
}
