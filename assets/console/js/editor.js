// A template editor (payload, URL, header values) that offers the item's variables as soon as
// `{{` is typed: ArrowUp/ArrowDown choose, Enter or Tab insert, Escape closes.

import { h, uid } from './dom.js';

const MAX_OPTIONS = 60;

/**
 * A textarea (or an input with `multiline: false`) with completion. `variables()` resolves to
 * the paths to offer (`payloadVariables` of the webhook's itemtype).
 */
export function templateEditor({ value = '', multiline = true, variables, rows = 10, ...props }) {
  const control = multiline
    ? h('textarea', { rows, spellcheck: 'false', class: 'code', ...props })
    : h('input', { type: 'text', spellcheck: 'false', class: 'code', ...props });
  control.value = value;
  const listId = uid('completions');
  const list = h('ul', { id: listId, role: 'listbox', class: 'completions', hidden: true, 'aria-label': 'Template variables' });
  control.setAttribute('aria-autocomplete', 'list');
  control.setAttribute('aria-controls', listId);
  control.setAttribute('aria-expanded', 'false');
  const wrapper = h('div', { class: 'editor' }, control, list);
  let options = [];
  let active = 0;
  let context = null;

  /** The variable being typed: what follows the last unclosed `{{` before the caret. */
  function currentContext() {
    const caret = control.selectionStart ?? control.value.length;
    if (control.selectionEnd !== caret) return null;
    const before = control.value.slice(0, caret);
    const open = before.lastIndexOf('{{');
    if (open < 0 || before.indexOf('}}', open) >= 0) return null;
    const typed = before.slice(open + 2);
    const match = /^(\s*)([\w.[\]-]*)$/.exec(typed);
    if (!match) return null;
    return { start: open + 2 + match[1].length, end: caret, prefix: match[2], spaced: match[1].length > 0 };
  }

  function close() {
    list.hidden = true;
    control.setAttribute('aria-expanded', 'false');
    control.removeAttribute('aria-activedescendant');
    options = [];
    context = null;
  }

  function highlight(index) {
    active = index;
    [...list.children].forEach((li, i) => li.setAttribute('aria-selected', i === index ? 'true' : 'false'));
    const li = list.children[index];
    if (li) {
      control.setAttribute('aria-activedescendant', li.id);
      li.scrollIntoView({ block: 'nearest' });
    }
  }

  async function update() {
    const found = currentContext();
    if (!found) {
      close();
      return;
    }
    const all = await variables();
    // The caret may have moved while the variables loaded.
    const now = currentContext();
    if (!now || now.prefix !== found.prefix) return;
    context = now;
    options = all.filter((path) => path.startsWith(now.prefix) && path !== now.prefix).slice(0, MAX_OPTIONS);
    if (!options.length) {
      close();
      context = now;
      return;
    }
    list.replaceChildren(...options.map((path, i) => h('li', {
      id: `${listId}-${i}`, role: 'option', 'aria-selected': 'false', dataset: { value: path },
      onmousedown: (event) => { event.preventDefault(); accept(i); },
    }, path)));
    list.hidden = false;
    control.setAttribute('aria-expanded', 'true');
    highlight(0);
  }

  function accept(index) {
    const path = options[index];
    if (!path || !context) return;
    const { start, end, spaced } = context;
    const text = control.value;
    const after = text.slice(end);
    const closing = /^\s*}}/.test(after) ? '' : ' }}';
    const inserted = `${spaced ? '' : ' '}${path}${closing}`;
    control.value = text.slice(0, start) + inserted + after;
    const caret = start + inserted.length;
    control.setSelectionRange(caret, caret);
    close();
    control.dispatchEvent(new Event('input', { bubbles: true }));
  }

  control.addEventListener('input', update);
  control.addEventListener('click', update);
  control.addEventListener('blur', () => setTimeout(close, 150));
  control.addEventListener('keydown', (event) => {
    if (list.hidden) return;
    if (event.key === 'ArrowDown') {
      event.preventDefault();
      highlight((active + 1) % options.length);
    } else if (event.key === 'ArrowUp') {
      event.preventDefault();
      highlight((active - 1 + options.length) % options.length);
    } else if (event.key === 'Enter' || event.key === 'Tab') {
      event.preventDefault();
      accept(active);
    } else if (event.key === 'Escape') {
      event.preventDefault();
      close();
    }
  });
  control.addEventListener('keyup', (event) => {
    if (['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(event.key)) update();
  });
  return { wrapper, control };
}

/** `payloadVariables` per itemtype, read once each. */
export function variablesOf(gql) {
  const cache = new Map();
  return (itemtype) => {
    if (!itemtype) return Promise.resolve([]);
    if (!cache.has(itemtype)) {
      cache.set(itemtype, gql('query Variables($t: String!) { payloadVariables(itemtype: $t) }', { t: itemtype })
        .then((data) => data.payloadVariables)
        .catch(() => {
          cache.delete(itemtype);
          return [];
        }));
    }
    return cache.get(itemtype);
  };
}
