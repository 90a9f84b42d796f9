/**
 * The plugin: the environments side panel, a main-area view per environment and for the create
 * form, commands (palette, notebook toolbar and context menu), settings, and keeping the launcher,
 * the kernel picker and open notebooks in step with environments that turn ready or go.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, InputDialog, MainAreaWidget, Notification, showDialog } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { addIcon, LabIcon, ToolbarButton } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { ApiError, EnvmgrApi, IEnvironment, ISpec, ITransport } from './api';
import { CreateView, EnvironmentView, Tab } from './environmentView';
import { RequestsView } from './requests';
import { EnvironmentsModel, envKey, nameFromPath, usageSentence } from './model';
import { EnvironmentsTable } from './table';
import { EnvironmentsPanel } from './panel';
import { KernelRevisions } from './restartNotice';

const PLUGIN_ID = 'jupyter-envmgr:plugin';

export const envmgrIcon = new LabIcon({
  name: 'envmgr:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<path d="M12 2 3 6.5v11L12 22l9-4.5v-11L12 2zm0 2.2 6.6 3.3L12 10.8 5.4 7.5 12 4.2zM5 9.1l6 3v7.6l-6-3V9.1zm8 10.6v-7.6l6-3v7.6l-6 3z"/>' +
    '</g></svg>'
});

namespace CommandIDs {
  export const open = 'envmgr:open';
  export const create = 'envmgr:create';
  export const refresh = 'envmgr:refresh';
  export const openEnvironment = 'envmgr:open-environment';
  export const fromNotebook = 'envmgr:new-from-notebook';
  export const requests = 'envmgr:requests';
  export const table = 'envmgr:table';
}

/** Who uses an environment, as the delete and rollback dialogs say it ('' when the server cannot tell). */
async function usageLine(model: EnvironmentsModel, name: string): Promise<string> {
  try {
    return usageSentence(await model.api.envUsage(name));
  } catch {
    return '';
  }
}

/** A dialog body of paragraphs (text only, never HTML). */
function paragraphs(...lines: string[]): Widget {
  const body = new Widget();
  for (const line of lines.filter(Boolean)) {
    const p = document.createElement('p');
    p.textContent = line;
    body.node.appendChild(p);
  }
  return body;
}

/** Requests through Jupyter's own connection settings: base URL, token or cookie + XSRF. */
function serverTransport(): ITransport {
  const settings = ServerConnection.makeSettings();
  const transport: ITransport = async (method, path, body, headers) => {
    const init: RequestInit = { method, headers };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
    }
    const response = await ServerConnection.makeRequest(settings.baseUrl + path, init, settings);
    const text = await response.text();
    const isJson = (response.headers.get('Content-Type') || '').includes('application/json');
    return { status: response.status, text, json: isJson && text ? JSON.parse(text) : null, etag: response.headers.get('ETag') };
  };
  transport.stream = async (path, onText, signal) => {
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(settings.baseUrl + path, { method: 'GET', signal }, settings);
    } catch (e) {
      if (signal.aborted) {
        return 0;
      }
      throw e;
    }
    if (!response.ok || !response.body) {
      return response.status;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          break;
        }
        onText(decoder.decode(value, { stream: true }));
      }
    } catch (e) {
      if (!signal.aborted) {
        throw e;
      }
    }
    return response.status;
  };
  return transport;
}

/** A main-area tab of ours: our icon, closable, no toolbar (each view has its own actions). */
function mainAreaTab<T extends Widget>(content: T, id: string, label: string, caption = ''): MainAreaWidget<T> {
  const widget = new MainAreaWidget({ content });
  widget.id = id;
  widget.title.label = label;
  widget.title.caption = caption;
  widget.title.icon = envmgrIcon;
  widget.title.closable = true;
  widget.toolbar.hide();
  return widget;
}

function download(filename: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(url);
}

/** A notebook panel, as far as this plugin needs one (no dependency on @jupyterlab/notebook). */
interface INotebookLike extends Widget {
  context: { path: string; model: { toJSON(): unknown } };
  toolbar?: { insertItem(index: number, name: string, widget: Widget): boolean };
}

function isNotebook(widget: Widget | null): widget is INotebookLike {
  return !!widget && widget.hasClass('jp-NotebookPanel') && 'context' in widget;
}

/**
 * Bring the app's kernelspecs (launcher, kernel picker) in step with the ready environments: the
 * event of a revision turning ready can arrive a moment before the server lists its kernelspec, so a
 * missing or older spec is asked for again a few times (bounded), not once and forgotten.
 */
function kernelSync(specs: JupyterFrontEnd['serviceManager']['kernelspecs'], model: EnvironmentsModel): () => Promise<void> {
  let running: Promise<void> | null = null;
  let again = false;
  const meta = (spec: unknown) => ((spec as { metadata?: { envmgr?: { name?: string; namespace?: string; revision?: number } } } | undefined)?.metadata?.envmgr);
  const behind = () => {
    const have = specs.specs?.kernelspecs || {};
    const missingOrOld = model.environments.some(e => {
      const spec = e.kernel_name ? have[e.kernel_name] : undefined;
      const revision = meta(spec)?.revision;
      return !!e.kernel_name && (!spec || (revision !== undefined && revision !== e.ready_revision));
    });
    const gone = Object.values(have).some(spec => {
      const m = meta(spec);
      return !!m && m.namespace === model.namespace && !model.environments.some(e => e.name === m.name && e.kernel_name);
    });
    return missingOrOld || gone;
  };
  const run = async () => {
    for (const delay of [0, 250, 750, 1500, 3000]) {
      await new Promise(resolve => setTimeout(resolve, delay));
      again = false;
      await specs.refreshSpecs();
      if (!behind() && !again) {
        return;
      }
    }
  };
  return () => {
    again = true;
    running = running ?? run().finally(() => (running = null));
    return running;
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Create, warm and share Python environments as kernels.',
  autoStart: true,
  optional: [ICommandPalette, ISettingRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ) => {
    const model = new EnvironmentsModel(new EnvmgrApi(serverTransport()));
    const specs = app.serviceManager.kernelspecs;
    const syncKernels = kernelSync(specs, model);
    model.kernelsChanged.connect(() => void syncKernels());
    void app.serviceManager.user?.ready.then(() => {
      const identity = app.serviceManager.user.identity;
      if (identity) {
        model.user = { username: identity.username, display_name: identity.display_name || identity.name };
        void model.loadRequests(); // which are one's own (to withdraw) and which are others' (to decide) is known now
      }
    });
    const revisions = new KernelRevisions(app, model);

    const views = new Map<string, MainAreaWidget<EnvironmentView>>();
    let createWidget: MainAreaWidget<CreateView> | null = null;

    const panel = new EnvironmentsPanel(model, {
      open: name => openEnvironment(name),
      create: () => openCreate(),
      requests: () => openRequests(),
      table: () => openTable()
    });
    panel.id = 'jp-envmgr-panel';
    panel.title.icon = envmgrIcon;
    panel.title.caption = 'Environments';
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, 'jp-envmgr-panel');

    const showInList = (name?: string) => {
      app.shell.activateById(panel.id);
      panel.focusItem(name);
    };

    function openEnvironment(name: string, tab?: Tab): void {
      const key = envKey({ cluster: model.cluster, namespace: model.namespace, name });
      let widget = views.get(key);
      if (!widget || widget.isDisposed) {
        const content = new EnvironmentView(model, name, {
          openNotebook: kernelName => void app.commands.execute('notebook:create-new', { kernelName }),
          confirmDelete: async what => {
            const used = await usageLine(model, what);
            return (
              await showDialog({
                title: `Delete ${what}?`,
                body: paragraphs(`${what} is ${used || 'in use by no kernel the server knows of'}.`,
                  'Deleting removes its kernel and every revision. Running kernels of it stop working.'),
                buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })],
                defaultButton: 0 // Enter cancels; deleting takes a deliberate click or Tab
              })
            ).button.accept;
          },
          confirmRollback: async (what, revision, serving) => {
            const used = await usageLine(model, what);
            return (
              await showDialog({
                title: `Roll back ${what} to revision ${revision}?`,
                body: paragraphs(`${what} is ${used || 'in use by no kernel the server knows of'}.`,
                  `New kernels will start on revision ${revision}${serving !== null ? ` instead of ${serving}` : ''}. Running kernels keep the revision they started with until they restart.`),
                buttons: [Dialog.cancelButton(), Dialog.okButton({ label: `Roll back to ${revision}` })],
                defaultButton: 0
              })
            ).button.accept;
          },
          download,
          kernelEnv: kernelName => (specs.specs?.kernelspecs[kernelName]?.env as Record<string, string> | undefined) ?? null,
          showInList: what => {
            views.get(key)?.dispose();
            showInList(what);
          },
          closed: () => {
            views.get(key)?.dispose();
            showInList();
          },
          cloneWithName: async source => {
            // A refused name asks again with the server's reason and the typed name kept, until a copy is made or the user cancels.
            let text = `${source}-copy`;
            let problem = '';
            for (;;) {
              const answer = await InputDialog.getText({
                title: `Clone ${source}`,
                label: problem ? `Name of the copy: ${problem}` : 'Name of the copy',
                text,
                okLabel: 'Clone'
              });
              if (!answer.button.accept || answer.value === null) {
                return null;
              }
              text = answer.value;
              try {
                return await model.api.clone(source, text);
              } catch (e) {
                problem = model.withNames((e as ApiError).message);
              }
            }
          },
          open: other => openEnvironment(other)
        });
        widget = mainAreaTab(content, `envmgr-view-${model.clustered ? model.cluster + '-' : ''}${model.namespace}-${name}`, name,
          `Environment ${name} (${model.clustered ? model.cluster + '/' : ''}${model.namespace})`);
        views.set(key, widget);
        widget.disposed.connect(() => views.delete(key));
        app.shell.add(widget, 'main');
      }
      if (tab) {
        widget.content.setTab(tab);
      }
      app.shell.activateById(widget.id);
      widget.content.focusTitle();
    }

    let requestsWidget: MainAreaWidget<RequestsView> | null = null;
    let tableWidget: MainAreaWidget<EnvironmentsTable> | null = null;

    /** Every environment of the namespace as a sortable table in the main area. */
    function openTable(): void {
      if (!tableWidget || tableWidget.isDisposed) {
        tableWidget = mainAreaTab(new EnvironmentsTable(model, name => openEnvironment(name)), 'envmgr-table', 'Environments', 'All environments as a table');
        app.shell.add(tableWidget, 'main');
      }
      app.shell.activateById(tableWidget.id);
      tableWidget.content.focusTitle();
    }

    /** The requests, read again each time they are opened. */
    function openRequests(): void {
      if (!requestsWidget || requestsWidget.isDisposed) {
        const content = new RequestsView(model, async (namespace, name) => {
          if (namespace !== model.namespace) {
            await model.setNamespace(namespace);
          }
          if (!model.find(name)) {
            await model.refresh(); // the view of an environment the list does not hold yet would close at once
          }
          openEnvironment(name);
        });
        requestsWidget = mainAreaTab(content, 'envmgr-requests', 'Environment requests');
        app.shell.add(requestsWidget, 'main');
      }
      void model.loadRequests();
      app.shell.activateById(requestsWidget.id);
      requestsWidget.content.focusTitle();
    }

    function openCreate(initial?: Partial<ISpec>, unresolved?: string[]): void {
      void model.loadInfo().then(() => {
        if (!createWidget || createWidget.isDisposed) {
          const content = new CreateView(
            model,
            (env: IEnvironment) => {
              createWidget?.dispose();
              openEnvironment(env.name, 'Build log');
            },
            () => {
              createWidget?.dispose();
              showInList();
            },
            () => {
              createWidget?.dispose();
              openRequests();
            }
          );
          createWidget = mainAreaTab(content, 'envmgr-create', 'New environment');
          app.shell.add(createWidget, 'main');
        }
        if (initial || !createWidget.content.isAttached) {
          createWidget.content.prefill(initial, unresolved);
        }
        app.shell.activateById(createWidget.id);
        createWidget.content.focusFirstControl();
      });
    }

    let interval = 3;
    model.start(interval);
    if (settingRegistry) {
      void settingRegistry.load(PLUGIN_ID).then(settings => {
        const apply = () => {
          const next = settings.get('refreshInterval').composite as number;
          if (next !== interval) {
            interval = next;
            model.start(interval);
          }
        };
        settings.changed.connect(apply);
        apply();
      });
    }

    const fromNotebook = async (notebook: INotebookLike) => {
      try {
        const suggestion = await model.api.suggest({ notebook: notebook.context.model.toJSON() });
        openCreate(
          {
            name: nameFromPath(notebook.context.path),
            manager: suggestion.manager,
            packages: suggestion.packages,
            ...(suggestion.python ? { python: suggestion.python } : {})
          },
          suggestion.unresolved
        );
      } catch (e) {
        Notification.error(`Could not read the notebook's imports: ${(e as Error).message}`, { autoClose: 8000 });
      }
    };

    app.commands.addCommand(CommandIDs.open, {
      label: 'Environments: Show Panel',
      execute: () => showInList()
    });
    app.commands.addCommand(CommandIDs.create, {
      label: 'Environments: New Environment',
      icon: addIcon,
      execute: () => openCreate()
    });
    app.commands.addCommand(CommandIDs.requests, {
      label: 'Environments: Requests',
      caption: 'Requests for environments: approve, reject or withdraw',
      execute: () => openRequests()
    });
    app.commands.addCommand(CommandIDs.table, {
      label: 'Environments: Show as Table',
      caption: 'All environments of the namespace as a sortable table in the main area',
      execute: () => openTable()
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Environments: Refresh',
      execute: () => model.refresh()
    });
    app.commands.addCommand(CommandIDs.openEnvironment, {
      label: args => `Environments: Open ${args.name ?? 'Environment'}`,
      execute: args => openEnvironment(String(args.name), args.tab as Tab | undefined)
    });
    app.commands.addCommand(CommandIDs.fromNotebook, {
      label: 'New Environment from This Notebook',
      caption: "Propose an environment from the notebook's imports and %pip lines",
      icon: envmgrIcon,
      isEnabled: () => isNotebook(app.shell.currentWidget),
      execute: () => {
        const widget = app.shell.currentWidget;
        if (isNotebook(widget)) {
          return fromNotebook(widget);
        }
      }
    });
    for (const command of [CommandIDs.open, CommandIDs.create, CommandIDs.table, CommandIDs.refresh, CommandIDs.fromNotebook, CommandIDs.requests]) {
      palette?.addItem({ command, category: 'Environments' });
    }
    app.contextMenu.addItem({ command: CommandIDs.fromNotebook, selector: '.jp-Notebook', rank: 90 });
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (widget: Widget) => {
        const notebook = widget as INotebookLike;
        const button = new ToolbarButton({
          icon: envmgrIcon,
          tooltip: 'New environment from this notebook',
          onClick: () => void fromNotebook(notebook)
        });
        button.addClass('jp-envmgr-from-notebook');
        notebook.toolbar?.insertItem(10, 'envmgr-from-notebook', button);
        revisions.watch(widget);
        return button;
      }
    });
  }
};

export default plugin;
