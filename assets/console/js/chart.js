// Deliveries sent and failed per second over the last minutes, drawn as SVG.

import { h } from './dom.js';

const HEIGHT = 150;
const PAD = 28;

export class RateChart {
  /** `seconds`: how far back the chart looks. */
  constructor(seconds = 300) {
    this.seconds = seconds;
    this.sent = new Map();
    this.failed = new Map();
    this.svg = h('svg:svg', {
      viewBox: `0 0 600 ${HEIGHT}`, class: 'chart', role: 'img', 'aria-labelledby': 'chart-summary',
    });
    this.summary = h('p', { id: 'chart-summary', class: 'chart-summary' });
    this.el = h('figure', { class: 'chart-box' },
      this.svg,
      h('figcaption', {},
        h('span', { class: 'legend sent' }, 'sent'), ' ', h('span', { class: 'legend failed' }, 'failed'),
        ` per second, last ${Math.round(seconds / 60)} minutes`),
      this.summary);
    this.timer = setInterval(() => this.draw(), 1000);
    this.draw();
  }

  /** Counts a delivery that ended (`SENT` or `FAILED`) at `time` (ms since the epoch). */
  add(status, time = Date.now()) {
    const bucket = status === 'SENT' ? this.sent : status === 'FAILED' ? this.failed : null;
    if (!bucket) return;
    const second = Math.floor(time / 1000);
    if (second < Math.floor(Date.now() / 1000) - this.seconds) return;
    bucket.set(second, (bucket.get(second) || 0) + 1);
  }

  draw() {
    // Drawn at the size it is shown, so that its text keeps its size on any screen.
    const WIDTH = Math.max(300, Math.round(this.svg.clientWidth || 600));
    this.svg.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
    const now = Math.floor(Date.now() / 1000);
    const from = now - this.seconds + 1;
    for (const bucket of [this.sent, this.failed]) {
      for (const second of bucket.keys()) if (second < from) bucket.delete(second);
    }
    let max = 1;
    let totalSent = 0;
    let totalFailed = 0;
    for (const [, n] of this.sent) { max = Math.max(max, n); totalSent += n; }
    for (const [, n] of this.failed) { max = Math.max(max, n); totalFailed += n; }
    const x = (second) => PAD + ((second - from) / (this.seconds - 1)) * (WIDTH - PAD - 4);
    const y = (n) => HEIGHT - 16 - (n / max) * (HEIGHT - 26);
    const line = (bucket) => {
      const points = [];
      for (let second = from; second <= now; second += 1) points.push(`${x(second).toFixed(1)},${y(bucket.get(second) || 0).toFixed(1)}`);
      return points.join(' ');
    };
    this.svg.replaceChildren(
      h('svg:line', { x1: PAD, y1: y(0), x2: WIDTH - 4, y2: y(0), class: 'axis' }),
      h('svg:line', { x1: PAD, y1: y(max), x2: WIDTH - 4, y2: y(max), class: 'grid' }),
      h('svg:text', { x: PAD - 4, y: y(max) + 4, class: 'tick', 'text-anchor': 'end' }, String(max)),
      h('svg:text', { x: PAD - 4, y: y(0) + 4, class: 'tick', 'text-anchor': 'end' }, '0'),
      h('svg:text', { x: PAD, y: HEIGHT - 2, class: 'tick' }, `-${Math.round(this.seconds / 60)} min`),
      h('svg:text', { x: WIDTH - 4, y: HEIGHT - 2, class: 'tick', 'text-anchor': 'end' }, 'now'),
      h('svg:polyline', { points: line(this.failed), class: 'series failed' }),
      h('svg:polyline', { points: line(this.sent), class: 'series sent' }),
    );
    this.summary.textContent = `In the last ${Math.round(this.seconds / 60)} minutes: ${totalSent} sent, ${totalFailed} failed (peak ${max} per second).`;
    this.svg.dataset.sent = String(totalSent);
    this.svg.dataset.failed = String(totalFailed);
  }

  stop() {
    clearInterval(this.timer);
  }
}
