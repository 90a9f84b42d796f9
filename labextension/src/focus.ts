/**
 * Put the keyboard focus on an element of a widget once it is rendered (a ReactWidget renders on a
 * later frame), and keep it there against the application's own moves just after (activating a
 * main-area tab, closing one, the command palette handing the focus back): the first move out of
 * the widget within `ms` is undone, back to where it was or to the element.
 */
export function settleFocus(root: HTMLElement, find: () => HTMLElement | null, ms = 1000): void {
  const deadline = Date.now() + ms;
  let stopped = false;
  const stop = () => {
    stopped = true;
    document.removeEventListener('focusin', undoSteal, true);
  };
  const undoSteal = (event: FocusEvent) => {
    if (!root.contains(event.target as Node)) {
      stop();
      const previous = event.relatedTarget as HTMLElement | null;
      (previous && root.contains(previous) ? previous : find())?.focus();
    }
  };
  const attempt = () => {
    if (stopped) {
      return;
    }
    const element = root.isConnected ? find() : null;
    if (element) {
      element.focus();
      document.addEventListener('focusin', undoSteal, true);
      setTimeout(stop, ms);
    } else if (Date.now() < deadline) {
      requestAnimationFrame(attempt);
    }
  };
  requestAnimationFrame(attempt);
}
