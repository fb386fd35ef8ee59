// Subscriptions over one WebSocket (`graphql-transport-ws`). The connection opens with the
// first subscription, reconnects by itself when it drops (with growing pauses) and subscribes
// again; a refused token (close code 4403) signs the user out instead.

import { token } from './session.js';

const PROTOCOL = 'graphql-transport-ws';
const CLOSE_FORBIDDEN = 4403;
const MAX_PAUSE_MS = 10000;

class LiveClient {
  constructor() {
    this.socket = null;
    this.ready = false;
    this.subscriptions = new Map();
    this.nextId = 1;
    this.attempts = 0;
    this.retryTimer = null;
    this.idleTimer = null;
    this.state = 'idle';
    this.listeners = new Set();
  }

  /** Calls `listener(state)` on every change: idle, connecting, open, reconnecting. */
  onState(listener) {
    this.listeners.add(listener);
    listener(this.state);
    return () => this.listeners.delete(listener);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }

  /**
   * Subscribes; `handlers.next(data)` for each message, `handlers.error(message)` when the
   * server refuses the subscription, `handlers.reconnected()` after the connection came back
   * (messages may have been missed meanwhile). Returns the function that unsubscribes.
   */
  subscribe(query, variables, handlers) {
    const id = String(this.nextId++);
    const subscription = { id, query, variables, handlers, started: false };
    this.subscriptions.set(id, subscription);
    clearTimeout(this.idleTimer);
    if (this.ready) this.start(subscription);
    else this.connect();
    return () => this.unsubscribe(id);
  }

  unsubscribe(id) {
    const subscription = this.subscriptions.get(id);
    if (!subscription) return;
    this.subscriptions.delete(id);
    if (this.ready && subscription.started) this.send({ id, type: 'complete' });
    if (this.subscriptions.size === 0) {
      // Pages subscribe again right after a route change: keep the socket a moment.
      clearTimeout(this.idleTimer);
      this.idleTimer = setTimeout(() => this.close(), 5000);
    }
  }

  start(subscription) {
    subscription.started = true;
    this.send({
      id: subscription.id,
      type: 'subscribe',
      payload: { query: subscription.query, variables: subscription.variables },
    });
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  connect() {
    if (this.socket || this.retryTimer) return;
    const url = new URL('graphql', window.location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.setState(this.attempts > 0 ? 'reconnecting' : 'connecting');
    const socket = new WebSocket(url, PROTOCOL);
    this.socket = socket;
    const reconnecting = this.attempts > 0;
    socket.addEventListener('open', () => {
      socket.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${token() || ''}` } }));
    });
    socket.addEventListener('message', (event) => this.receive(socket, event, reconnecting));
    socket.addEventListener('close', (event) => this.closed(socket, event));
  }

  receive(socket, event, reconnecting) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    switch (message.type) {
      case 'connection_ack':
        this.ready = true;
        this.attempts = 0;
        this.setState('open');
        for (const subscription of this.subscriptions.values()) {
          this.start(subscription);
          if (reconnecting) subscription.handlers.reconnected?.();
        }
        break;
      case 'ping':
        socket.send(JSON.stringify({ type: 'pong' }));
        break;
      case 'next': {
        const subscription = this.subscriptions.get(message.id);
        if (!subscription) break;
        const { data, errors } = message.payload || {};
        if (errors && errors.length) this.refused(subscription, errors);
        else if (data) subscription.handlers.next(data);
        break;
      }
      case 'error': {
        const subscription = this.subscriptions.get(message.id);
        if (subscription) this.refused(subscription, message.payload || []);
        break;
      }
      case 'complete':
        this.subscriptions.delete(message.id);
        break;
      default:
        break;
    }
  }

  refused(subscription, errors) {
    const first = errors[0] || {};
    if (first.extensions?.code === 'UNAUTHENTICATED') {
      window.dispatchEvent(new CustomEvent('hookline:unauthenticated', { detail: first.message }));
    }
    subscription.handlers.error?.(first.message || 'The subscription was refused');
  }

  closed(socket, event) {
    if (this.socket !== socket) return;
    this.socket = null;
    this.ready = false;
    for (const subscription of this.subscriptions.values()) subscription.started = false;
    if (event.code === CLOSE_FORBIDDEN) {
      this.subscriptions.clear();
      this.setState('idle');
      window.dispatchEvent(new CustomEvent('hookline:unauthenticated', { detail: event.reason || 'token refused' }));
      return;
    }
    if (this.subscriptions.size === 0) {
      this.setState('idle');
      return;
    }
    this.attempts += 1;
    this.setState('reconnecting');
    const pause = Math.min(MAX_PAUSE_MS, 250 * 2 ** Math.min(this.attempts, 6));
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, pause);
  }

  /** Closes the connection and forgets every subscription (sign-out). */
  close() {
    clearTimeout(this.idleTimer);
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.attempts = 0;
    const socket = this.socket;
    this.socket = null;
    this.ready = false;
    if (socket) socket.close(1000, 'done');
    if (this.subscriptions.size === 0) this.setState('idle');
  }

  /** Forgets everything: the user signed out. */
  reset() {
    this.subscriptions.clear();
    this.close();
    this.setState('idle');
  }
}

export const live = new LiveClient();
