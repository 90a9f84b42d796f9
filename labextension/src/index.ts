/**
 * The plugin: the environments side panel, its commands and settings, and keeping the launcher
 * and kernel picker in step with environments that turn ready or go.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, showDialog } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { EnvmgrApi, ITransport } from './api';
import { EnvironmentsModel } from './model';
import { EnvironmentsPanel } from './panel';

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
}

/** Requests through Jupyter's own connection settings: base URL, token or cookie + XSRF. */
function serverTransport(): ITransport {
  const settings = ServerConnection.makeSettings();
  return async (method, path, body) => {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
    }
    const response = await ServerConnection.makeRequest(settings.baseUrl + path, init, settings);
    const text = await response.text();
    const isJson = (response.headers.get('Content-Type') || '').includes('application/json');
    return { status: response.status, text, json: isJson && text ? JSON.parse(text) : null };
  };
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
    model.kernelsChanged.connect(() => void app.serviceManager.kernelspecs.refreshSpecs());
    const panel = new EnvironmentsPanel(model, {
      openNotebook: kernelName => void app.commands.execute('notebook:create-new', { kernelName }),
      confirmDelete: async name =>
        (
          await showDialog({
            title: `Delete ${name}?`,
            body: 'This removes its kernel and every revision. Running kernels of it stop working.',
            buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
          })
        ).button.accept,
      download
    });
    panel.id = 'jp-envmgr-panel';
    panel.title.icon = envmgrIcon;
    panel.title.caption = 'Environments';
    app.shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, 'jp-envmgr-panel');

    let interval = 3;
    model.start(interval);
    if (settingRegistry) {
      void settingRegistry.load(PLUGIN_ID).then(settings => {
        const apply = () => {
          interval = settings.get('refreshInterval').composite as number;
          model.start(interval);
        };
        settings.changed.connect(apply);
        apply();
      });
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Environments: Show Panel',
      execute: () => {
        panel.showList();
        app.shell.activateById(panel.id);
        panel.focusFirstControl();
      }
    });
    app.commands.addCommand(CommandIDs.create, {
      label: 'Environments: New Environment',
      execute: () => {
        panel.showCreate();
        app.shell.activateById(panel.id);
        panel.focusFirstControl();
      }
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Environments: Refresh',
      execute: () => model.refresh()
    });
    for (const command of [CommandIDs.open, CommandIDs.create, CommandIDs.refresh]) {
      palette?.addItem({ command, category: 'Environments' });
    }
  }
};

export default plugin;
