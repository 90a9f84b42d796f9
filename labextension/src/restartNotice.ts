/**
 * Tell a notebook that its environment has a newer ready revision than the one its kernel runs,
 * and offer the restart. A kernel runs the revision its kernelspec named when it (re)started
 * (`metadata.envmgr.revision`), so that is noted at every start and restart.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { ISessionContext, Notification } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { EnvironmentsModel } from './model';

/** The restart notice's text: short, as JupyterLab cuts notifications at 140 characters (a name has at most 63). */
export function restartMessage(name: string, running: number, ready: number): string {
  return `${name}: revision ${ready} is ready; this kernel runs revision ${running}. Restart it to use ${ready}.`;
}

export class KernelRevisions {
  constructor(
    private readonly app: JupyterFrontEnd,
    private readonly model: EnvironmentsModel
  ) {
    model.changed.connect(() => this.check());
  }

  /** Follow a notebook's kernel: note the revision at each start, check at each change. */
  watch(widget: Widget): void {
    const context = (widget as unknown as { sessionContext?: ISessionContext }).sessionContext;
    if (!context) {
      return;
    }
    const note = () => {
      const kernel = context.session?.kernel;
      const revision = kernel ? this.specRevision(kernel.name) : null;
      if (kernel && revision !== null) {
        this.started.set(kernel.id, revision);
      }
    };
    context.kernelChanged.connect(note);
    context.statusChanged.connect((_, status) => {
      if (status === 'restarting' || status === 'autorestarting' || status === 'starting') {
        note();
      }
    });
    void context.ready.then(note);
    this.contexts.add(context);
    widget.disposed.connect(() => this.contexts.delete(context));
  }

  private specRevision(kernelName: string): number | null {
    const spec = this.app.serviceManager.kernelspecs.specs?.kernelspecs[kernelName];
    const revision = (spec?.metadata as { envmgr?: { revision?: number } } | undefined)?.envmgr?.revision;
    return typeof revision === 'number' ? revision : null;
  }

  private check(): void {
    // A notice that is no longer true (a rollback, the kernel restarted onto the new revision) goes.
    for (const [key, id] of this.shown) {
      const [kernelId, ready] = key.split('/');
      const context = [...this.contexts].find(c => c.session?.kernel?.id === kernelId);
      const kernel = context?.session?.kernel;
      const env = kernel ? this.model.environments.find(e => e.kernel_name === kernel.name) : undefined;
      const running = kernel ? this.started.get(kernel.id) : undefined;
      if (!kernel || !env || env.ready_revision !== Number(ready) || running === undefined || running >= Number(ready)) {
        Notification.dismiss(id);
        this.shown.delete(key);
        this.told.delete(key);
      }
    }
    for (const context of this.contexts) {
      const kernel = context.session?.kernel;
      const running = kernel ? this.started.get(kernel.id) : undefined;
      const env = kernel ? this.model.environments.find(e => e.kernel_name === kernel.name) : undefined;
      if (!kernel || running === undefined || !env || env.ready_revision === null || env.ready_revision <= running) {
        continue;
      }
      const key = `${kernel.id}/${env.ready_revision}`;
      if (this.told.has(key)) {
        continue;
      }
      this.told.add(key);
      const id = Notification.info(restartMessage(env.name, running, env.ready_revision), {
        autoClose: false,
        actions: [{ label: 'Restart kernel', callback: () => void context.restartKernel() }]
      });
      this.shown.set(key, id);
    }
  }

  private readonly contexts = new Set<ISessionContext>();
  private readonly started = new Map<string, number>();
  private readonly told = new Set<string>();
  /** Notices on screen: kernel id/ready revision → notification id. */
  private readonly shown = new Map<string, string>();
}
