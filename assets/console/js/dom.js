// Small helpers to build the page: elements, labelled fields, dates and statuses.

/**
 * An element: `h('a', {href: '#/queue', class: 'x', onclick: fn}, 'text', child)`.
 * Props starting with `on` are listeners; `class`, `for` and `dataset` are mapped; `true`
 * booleans become bare attributes; null, undefined and false props are left out.
 */
export function h(tag, props, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'value' && 'value' in el) {
      el.value = value;
    } else if (key === 'checked' || key === 'selected' || key === 'disabled') {
      el[key] = Boolean(value);
    } else {
      el.setAttribute(key === 'className' ? 'class' : key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children (strings, nodes, nested arrays; null and false skipped). */
export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces an element's content. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let nextId = 0;

/** A unique element id with a readable prefix. */
export function uid(prefix) {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/**
 * A labelled form field: the label, the control, an optional help text and an error slot that
 * the control names in `aria-describedby`. `name` is the API's input path (`extensions.field`)
 * that errors are placed by.
 */
export function field(label, control, { name, help, wide, container } = {}) {
  const id = control.id || uid('f');
  control.id = id;
  const error = h('p', { class: 'field-error', id: `${id}-error`, role: 'alert', hidden: true });
  const described = [`${id}-error`];
  let helpEl = null;
  if (help) {
    helpEl = h('p', { class: 'help', id: `${id}-help` }, help);
    described.push(`${id}-help`);
  }
  control.setAttribute('aria-describedby', described.join(' '));
  const isCheck = control.type === 'checkbox';
  const wrapper = h(
    'div',
    { class: `field${isCheck ? ' check' : ''}${wide ? ' wide' : ''}`, dataset: name ? { field: name } : {} },
    isCheck ? [control, h('label', { for: id }, label)] : [h('label', { for: id }, label), container || control],
    helpEl,
    error,
  );
  return wrapper;
}

/** Shows `message` in the error slot of the field named `name` inside `root`; returns it. */
export function showFieldError(root, name, message) {
  const wrapper = root.querySelector(`[data-field="${CSS.escape(name)}"]`);
  if (!wrapper) return null;
  const error = wrapper.querySelector(':scope > .field-error');
  error.textContent = message;
  error.hidden = false;
  wrapper.classList.add('invalid');
  const control = wrapper.querySelector('input, select, textarea');
  if (control) control.setAttribute('aria-invalid', 'true');
  return wrapper;
}

/** Clears every field error inside `root`. */
export function clearFieldErrors(root) {
  for (const wrapper of root.querySelectorAll('.field.invalid')) {
    wrapper.classList.remove('invalid');
    const error = wrapper.querySelector(':scope > .field-error');
    error.hidden = true;
    error.textContent = '';
    const control = wrapper.querySelector('input, select, textarea');
    if (control) control.removeAttribute('aria-invalid');
  }
}

/** A `<select>` of `[value, label]` options. */
export function select(options, value, props = {}) {
  return h(
    'select',
    props,
    options.map(([v, label]) => h('option', { value: v, selected: String(v) === String(value ?? '') }, label)),
  );
}

/** An RFC 3339 time as the browser's local date and time (seconds shown). */
export function when(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, {
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** Only the time of day. */
export function clock(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** A queue status as a coloured badge. */
export function statusBadge(status, isTest) {
  const text = status ? status.toLowerCase() : '—';
  return h('span', { class: `badge status-${text}` }, text, isTest ? h('span', { class: 'test-tag' }, ' test') : null);
}

/** A JSON value as indented text. */
export function pretty(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

/** A button; `variant` adds a class (primary, danger, small). */
export function button(text, onclick, { variant, type = 'button', ...props } = {}) {
  return h('button', { type, class: variant ? `btn ${variant}` : 'btn', onclick, ...props }, text);
}

/** A status message area that screen readers announce. */
export function notice() {
  return h('div', { class: 'notice', role: 'status', 'aria-live': 'polite' });
}

/** Shows a message in a notice (`kind`: info, ok or error). */
export function say(el, message, kind = 'info') {
  el.className = `notice ${kind}`;
  el.textContent = message;
}
