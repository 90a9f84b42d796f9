/** The status of an environment, the same in the list and the details: a badge, a bar while it warms. */
import * as React from 'react';

import { IEnvironment } from './api';

export function StatusBadge(props: { env: IEnvironment }): JSX.Element {
  const { env } = props;
  const warming = env.status === 'warming' || env.status === 'pending';
  return (
    <div className="jp-envmgr-status">
      <span className={`jp-envmgr-badge jp-envmgr-badge-${env.status}`} data-status={env.status}>{env.status}</span>
      {warming && (
        <progress className="jp-envmgr-progress" value={env.progress} max={1} aria-label={`${env.name} progress`}>
          {Math.round(env.progress * 100)}%
        </progress>
      )}
      {env.message && env.status !== 'ready' && <span className="jp-envmgr-message">{env.message}</span>}
      {env.status !== 'ready' && env.ready_revision !== null && (
        <span className="jp-envmgr-serving">revision {env.ready_revision} ready</span>
      )}
    </div>
  );
}
